"""The response HPACK encoder (flashplug.h2output.ResponseEncoder): what it
encodes decodes to the same fields, the same list gives the same bytes on
any connection, and a table size change is still signalled (RFC 7541 §4.2)."""
import hpack

from flashplug.h2output import ResponseEncoder

FIELDS = [(b":status", b"200"), (b"date", b"Mon, 30 Nov 2026 10:42:11 GMT"),
          (b"server", b"flashplug"), (b"content-type", b"text/html; charset=utf-8"),
          (b"etag", b'"18eccc9dc8660f13-6-232602"'), (b"content-length", b"6")]


def test_blocks_decode_to_the_fields_and_are_reused():
    one, two = ResponseEncoder(), ResponseEncoder()
    decoder = hpack.Decoder()
    block = one.encode(FIELDS)
    for _ in range(3):
        assert decoder.decode(block, raw=True) == FIELDS   # no dynamic table to drift
    assert two.encode(list(FIELDS)) is block             # kept, across connections
    assert len(one.header_table.dynamic_entries) == 0


def test_a_table_size_change_is_signalled_first():
    encoder = ResponseEncoder()
    encoder.encode(FIELDS)
    encoder.header_table_size = 0        # the client's SETTINGS_HEADER_TABLE_SIZE
    block = encoder.encode(FIELDS)
    assert block[0] & 0xE0 == 0x20      # a Dynamic Table Size Update (§6.3)
    assert hpack.Decoder().decode(block, raw=True) == FIELDS
    assert encoder.encode(FIELDS) == ResponseEncoder().encode(FIELDS)

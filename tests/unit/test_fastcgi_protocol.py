"""The FastCGI 1.0 record codec: exact bytes in, events out (sans-I/O)."""
import pytest

from flashplug_plugins.fastcgi import protocol as p
from flashplug_plugins.fastcgi.protocol import (
    ClientConnection, EndRequest, ProtocolError, RecordReader, Stderr, Stdout,
    UnknownType, Values)


# -- encoding: the bytes a web server sends ---------------------------------------

def test_begin_request_keep_conn_exact_bytes():
    assert p.encode_begin_request(1) == (
        b"\x01\x01\x00\x01\x00\x08\x00\x00"      # v1 BEGIN_REQUEST id 1 len 8 pad 0
        b"\x00\x01\x01\x00\x00\x00\x00\x00")     # RESPONDER, KEEP_CONN


def test_begin_request_without_keep_conn():
    assert p.encode_begin_request(0x1234, keep_conn=False)[2:4] == b"\x12\x34"
    assert p.encode_begin_request(7, keep_conn=False)[8:] == b"\x00\x01\x00" + b"\0" * 5


def test_record_is_padded_to_eight():
    assert p.encode_record(p.STDIN, 1, b"abc") == (
        b"\x01\x05\x00\x01\x00\x03\x05\x00" + b"abc" + b"\0" * 5)
    assert p.encode_record(p.STDIN, 1, b"12345678") == (
        b"\x01\x05\x00\x01\x00\x08\x00\x00" b"12345678")


def test_empty_stdin_ends_the_stream():
    assert p.encode_stdin(3, b"") == b"\x01\x05\x00\x03\x00\x00\x00\x00"


def test_abort_request_exact_bytes():
    assert p.encode_abort_request(2) == b"\x01\x02\x00\x02\x00\x00\x00\x00"


def test_end_request_exact_bytes():
    assert p.encode_end_request(1, app_status=3, protocol_status=p.OVERLOADED) == (
        b"\x01\x03\x00\x01\x00\x08\x00\x00" b"\x00\x00\x00\x03\x02\x00\x00\x00")


def test_large_stream_splits_at_65535():
    data = b"x" * (p.MAX_CONTENT + 10)
    out = p.encode_stdin(1, data)
    first = out[:8]
    assert first == b"\x01\x05\x00\x01\xff\xff\x01\x00"   # 65535 + 1 pad
    second = out[8 + 65535 + 1:]
    assert second[:8] == b"\x01\x05\x00\x01\x00\x0a\x06\x00"
    assert len(second) == 8 + 10 + 6


def test_record_limits():
    with pytest.raises(ValueError):
        p.encode_record(p.STDIN, 1, b"x" * (p.MAX_CONTENT + 1))
    with pytest.raises(ValueError):
        p.encode_record(p.STDIN, 0x10000)


def test_pairs_short_and_long_lengths():
    assert p.encode_pairs([("A", "bc")]) == b"\x01\x02Abc"
    long_value = "v" * 200
    assert p.encode_pairs([("N", long_value)]) == (
        b"\x01\x80\x00\x00\xc8N" + long_value.encode())
    assert p.encode_pairs([("n" * 128, "")]) == b"\x80\x00\x00\x80\x00" + b"n" * 128
    # 127 still fits one byte
    assert p.encode_pairs([("x" * 127, "")])[:2] == b"\x7f\x00"


def test_pairs_round_trip_with_undecodable_bytes():
    pairs = [("PATH_INFO", "/caf\udcc3\udca9"), ("EMPTY", ""), ("BIG", "z" * 70000)]
    raw = p.encode_pairs(pairs)
    assert p.decode_pairs(raw) == [(b"PATH_INFO", b"/caf\xc3\xa9"), (b"EMPTY", b""),
                                   (b"BIG", b"z" * 70000)]


def _pairs_one_by_one(pairs):
    # The format written out plainly (§3.4), to check the batched encoder.
    out = b""
    for name, value in pairs:
        name = name if type(name) is bytes else name.encode("utf-8", "surrogateescape")
        value = value if type(value) is bytes else value.encode("utf-8", "surrogateescape")
        for n in (len(name), len(value)):
            out += bytes((n,)) if n < 128 else (n | 0x80000000).to_bytes(4, "big")
        out += name + value
    return out


@pytest.mark.parametrize("pairs", [
    [],
    [("A", "b")] * 3,
    [("SHORT", "v"), ("LONG", "l" * 300), ("AFTER", "x"), ("CAFÉ", "é"), ("NUL", "a\0b")],
    [(b"RAW", b"\xff\x00"), ("S", "\udcff"), ("X" * 127, "y" * 127), ("X" * 128, "")],
    [(b"RAW", b"ascii"), ("S", "t")],      # bytes among ASCII text (not its repr)
    [("S", "t"), ("N", b"")],
])
def test_pairs_batched_encoding_matches_the_format(pairs):
    assert p.encode_pairs(pairs) == _pairs_one_by_one(pairs)


def test_params_stream_closed_by_empty_record():
    out = p.encode_params(1, {"A": "b"})
    assert out == (b"\x01\x04\x00\x01\x00\x04\x04\x00" + b"\x01\x01Ab" + b"\0" * 4
                   + b"\x01\x04\x00\x01\x00\x00\x00\x00")


def test_get_values_exact_bytes():
    out = p.encode_get_values(["FCGI_MPXS_CONNS"])
    assert out == (b"\x01\x09\x00\x00\x00\x11\x07\x00"
                   + b"\x0f\x00FCGI_MPXS_CONNS" + b"\0" * 7)


@pytest.mark.parametrize("raw", [
    b"\x05", b"\x05\x01ab", b"\x80\x00\x00", b"\x80\x00\x00\x05\x00abc",
])
def test_decode_pairs_refuses_truncated(raw):
    with pytest.raises(ProtocolError):
        p.decode_pairs(raw)


# -- the reader: framing ----------------------------------------------------------

def test_reader_byte_by_byte():
    wire = p.encode_record(p.STDOUT, 1, b"hello") + p.encode_record(p.STDOUT, 1)
    reader = RecordReader()
    got = []
    for i in range(len(wire)):
        got += reader.feed(wire[i:i + 1])
    assert got == [p.Record(p.STDOUT, 1, b"hello"), p.Record(p.STDOUT, 1, b"")]
    assert reader.buffered == 0
    reader.eof()


def test_reader_refuses_other_versions():
    with pytest.raises(ProtocolError, match="version 72"):
        RecordReader().feed(b"HTTP/1.1 200 OK\r\n")


def test_reader_eof_inside_a_record():
    reader = RecordReader()
    reader.feed(b"\x01\x06\x00\x01\x00\x10\x00\x00abc")
    with pytest.raises(ProtocolError, match="11 bytes into a record"):
        reader.eof()


# -- the client connection: events and checks --------------------------------------

def opened(*ids):
    conn = ClientConnection()
    for rid in ids:
        conn.begin(rid, {"REQUEST_METHOD": "GET"})
    return conn


def test_begin_emits_begin_and_params():
    conn = ClientConnection()
    out = conn.begin(1, [("A", "b")], keep_conn=False)
    assert out == p.encode_begin_request(1, False) + p.encode_params(1, [("A", "b")])
    assert conn.is_open(1) and conn.open_requests == 1
    with pytest.raises(ValueError):
        conn.begin(1, {})
    with pytest.raises(ValueError):
        conn.begin(0, {})


def test_begin_in_one_buffer_with_encoded_params_and_the_end_of_stdin():
    big = [("V", "v" * 70000)]     # PARAMS over one record's 65,535 bytes
    for params in ([("A", "b")], big):
        out = ClientConnection().begin(3, p.encode_pairs(params), end_stdin=True)
        assert out == (p.encode_begin_request(3) + p.encode_params(3, params)
                       + p.encode_stdin(3, b""))


def test_full_response_events():
    conn = opened(1)
    wire = (p.encode_record(p.STDOUT, 1, b"Content-Type: text/plain\r\n\r\nhi")
            + p.encode_record(p.STDERR, 1, b"warning\n")
            + p.encode_record(p.STDOUT, 1) + p.encode_record(p.STDERR, 1)
            + p.encode_end_request(1, 0))
    assert conn.receive(wire) == [
        Stdout(1, b"Content-Type: text/plain\r\n\r\nhi"), Stderr(1, b"warning\n"),
        Stdout(1, b""), Stderr(1, b""), EndRequest(1, 0, p.REQUEST_COMPLETE)]
    assert not conn.is_open(1)
    conn.receive(b"")   # clean end of file


def test_interleaved_requests():
    conn = opened(1, 2)
    wire = (p.encode_record(p.STDOUT, 2, b"b") + p.encode_record(p.STDOUT, 1, b"a")
            + p.encode_end_request(2) + p.encode_end_request(1, 1))
    assert conn.receive(wire) == [Stdout(2, b"b"), Stdout(1, b"a"),
                                  EndRequest(2, 0, 0), EndRequest(1, 1, 0)]


def test_values_and_limits():
    conn = ClientConnection()
    wire = p.encode_record(p.GET_VALUES_RESULT, 0, p.encode_pairs(
        [("FCGI_MAX_CONNS", "5"), ("FCGI_MAX_REQS", "5"), ("FCGI_MPXS_CONNS", "0")]))
    [event] = conn.receive(wire)
    assert event == Values({"FCGI_MAX_CONNS": "5", "FCGI_MAX_REQS": "5",
                            "FCGI_MPXS_CONNS": "0"})
    assert p.limits(event.values, 8, 8) == (5, 5, False)
    assert p.limits({"FCGI_MPXS_CONNS": "1", "FCGI_MAX_CONNS": "x"}, 8, 9) == (8, 9, True)


def test_unknown_type_event():
    conn = ClientConnection()
    wire = p.encode_record(p.UNKNOWN_TYPE, 0, b"\x09" + b"\0" * 7)
    assert conn.receive(wire) == [UnknownType(9)]


@pytest.mark.parametrize("wire, cause", [
    (p.encode_record(p.STDOUT, 3, b"x"), "request id 3, which is not open"),
    (p.encode_record(p.STDOUT, 0, b"x"), "request id 0, which is not open"),
    (p.encode_record(p.PARAMS, 1, b""), "PARAMS .4. may not come from an application"),
    (p.encode_record(12, 1, b""), "unknown .12. may not come"),
    (p.encode_record(p.END_REQUEST, 1, b"\0" * 4), "END_REQUEST body of 4 bytes"),
    (p.encode_record(p.UNKNOWN_TYPE, 0, b"\0"), "UNKNOWN_TYPE body of 1 bytes"),
    (p.encode_record(p.GET_VALUES_RESULT, 1, b""), "GET_VALUES_RESULT for request id 1"),
    (p.encode_record(p.GET_VALUES_RESULT, 0, b"\x01\x01\xff\xff"), "non-ASCII"),
    (p.encode_record(p.STDOUT, 1) + p.encode_record(p.STDOUT, 1, b"late"),
     "STDOUT data for request id 1 after its stream ended"),
    (p.encode_end_request(1) + p.encode_record(p.STDOUT, 1, b"late"),
     "request id 1, which is not open"),
    (b"\x00garbage", "version 0"),
])
def test_violations_raise(wire, cause):
    conn = opened(1)
    with pytest.raises(ProtocolError, match=cause):
        conn.receive(wire)


def test_aborted_request_stays_open_until_end():
    conn = opened(1)
    assert conn.abort(1) == p.encode_abort_request(1)
    assert conn.receive(p.encode_record(p.STDOUT, 1, b"late")) == [Stdout(1, b"late")]
    conn.receive(p.encode_end_request(1))
    assert conn.open_requests == 0


class Sink:
    """Records receive_into's calls, in order."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, kind):
        return lambda *args: self.calls.append((kind, *args))


def test_receive_into_hands_each_event_to_the_sink():
    conn = opened(1)
    sink = Sink()
    conn.receive_into(p.encode_record(p.STDOUT, 1, b"Status: 200\r\n\r\nhi")
                      + p.encode_record(p.STDERR, 1, b"note\n")
                      + p.encode_record(p.STDOUT, 1) + p.encode_end_request(1, 3), sink)
    conn.receive_into(p.encode_record(p.GET_VALUES_RESULT, 0, p.encode_pairs(
        [("FCGI_MPXS_CONNS", "1")])) + p.encode_record(p.UNKNOWN_TYPE, 0, b"\x09" + b"\0" * 7),
        sink)
    assert sink.calls == [("stdout", 1, b"Status: 200\r\n\r\nhi"), ("stderr", 1, b"note\n"),
                          ("stdout", 1, b""), ("end", 1, 3, p.REQUEST_COMPLETE),
                          ("values", {"FCGI_MPXS_CONNS": "1"}), ("unknown_type", 9)]
    assert not conn.is_open(1)


def test_receive_into_refuses_what_receive_refuses():
    conn = opened(1)
    with pytest.raises(ProtocolError, match="request id 2, which is not open"):
        conn.receive_into(p.encode_record(p.STDOUT, 2, b"x"), Sink())


def test_begin_frames_depend_on_id_and_flags():
    # begin() keeps the records around PARAMS per (id, keep_conn, end_stdin):
    # each combination must still give its own bytes.
    params = p.encode_pairs([("A", "b")])
    for rid in (1, 2, 1):
        for keep in (True, False):
            for end in (True, False):
                out = ClientConnection().begin(rid, params, keep_conn=keep, end_stdin=end)
                expected = (p.encode_begin_request(rid, keep_conn=keep)
                            + p.encode_stream(p.PARAMS, rid, params)
                            + p.encode_record(p.PARAMS, rid)
                            + (p.encode_record(p.STDIN, rid) if end else b""))
                assert out == expected


def test_begin_takes_params_in_encoded_parts():
    parts = (p.encode_pairs([("A", "b")]), p.encode_pairs([("C", "d" * 200)]), b"")
    out = ClientConnection().begin(1, parts, end_stdin=True)
    assert out == ClientConnection().begin(1, b"".join(parts), end_stdin=True)
    big = (p.encode_pairs([("V", "v" * 40000)]), p.encode_pairs([("W", "w" * 40000)]))
    out = ClientConnection().begin(1, big)
    assert out == ClientConnection().begin(1, b"".join(big))


def test_receive_into_byte_by_byte():
    # A record cut anywhere is held until its end arrives, whatever the cut.
    conn = opened(1)
    sink = Sink()
    wire = (p.encode_record(p.STDOUT, 1, b"X: y\r\n\r\nhello") + p.encode_record(p.STDERR, 1)
            + p.encode_end_request(1, 7))
    for i in range(len(wire)):
        conn.receive_into(wire[i:i + 1], sink)
    assert sink.calls == [("stdout", 1, b"X: y\r\n\r\nhello"), ("stderr", 1, b""),
                          ("end", 1, 7, p.REQUEST_COMPLETE)]
    conn.receive_into(b"", sink)    # a clean end of file


def test_receive_into_eof_inside_a_record():
    conn = opened(1)
    conn.receive_into(b"\x01\x06\x00\x01\x00\x10\x00\x00abc", Sink())
    with pytest.raises(ProtocolError, match="11 bytes into a record"):
        conn.receive_into(b"", Sink())

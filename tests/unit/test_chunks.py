"""flashplug.http.chunks: chunk sizes read beside llhttp, whatever the cuts."""
import pytest

from flashplug.http.chunks import ChunkSizes
from flashplug.http.h1_checks import ProtocolError

BODY = (b"5\r\nhello\r\n"
        b"0000000000000000000000a;name=\"v\\n\"\r\n0123456789\r\n"    # leading zeros
        b"1\r\n\n\r\n"                                               # an LF as data
        b"0\r\nTrailer: 0ffffffffffffffffff\r\n\r\n"                  # not a size
        b"POST / HTTP/1.1\r\n")                                      # the next request


def feed_cut(sizes, data, every):
    for at in range(0, len(data), every):
        sizes.feed(memoryview(data)[at:at + every] if every % 2 else data[at:at + every])


@pytest.mark.parametrize("every", [1, 2, 3, 7, len(BODY)])
def test_reads_each_size_whatever_the_cuts(every):
    sizes = ChunkSizes(limit=16)
    feed_cut(sizes, BODY, every)
    assert sizes.declared == 16


@pytest.mark.parametrize("line, status", [
    (b"ffffffffffffffff\r\n", 413),            # 16 digits: fits llhttp, too large
    (b"00000000000000000011\r\n", 413),        # 17 > 16 after leading zeros
    (b"10000000000000000\r\n", 400),           # 2**64: llhttp's overflow
    (b"fffffffffffffffffffffff", 400),         # refused before the line ends
    (b"FFFFFFFF;ext=1\r\n", 413),
])
def test_refuses_a_size_at_once(line, status):
    sizes = ChunkSizes(limit=16)
    with pytest.raises(ProtocolError) as e:
        feed_cut(sizes, b"5\r\nhello\r\n" + line, 3)
    assert e.value.status == status


def test_the_limit_counts_every_chunk():
    sizes = ChunkSizes(limit=16)
    sizes.feed(b"8\r\n12345678\r\n8\r\n12345678\r\n")
    with pytest.raises(ProtocolError):
        sizes.feed(b"1\r\n")


def test_bytes_llhttp_refuses_are_left_to_it():
    sizes = ChunkSizes(limit=16)
    sizes.feed(b"zz\r\n")          # no digits: llhttp's 400, nothing declared here
    assert sizes.declared == 0

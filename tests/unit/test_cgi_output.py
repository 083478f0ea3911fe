"""The output of a CGI script or a FastCGI request on the loop (one piece
both plugins use): the header block, then the body stream, against a
scripted backend in memory."""
import asyncio
import logging

import pytest

from flashplug_plugins.cgi.output import NoHead, OutputBody, OutputFailed, read_head
from flashplug_plugins.cgi.response import MAX_HEADER_BLOCK

log = logging.getLogger("test.output")


class Scripted(OutputBody):
    """A backend that says what ``script`` holds: bytes, then b"" (the end);
    ``"silent"`` raises TimeoutError, ``"broken"`` OutputFailed."""

    hard_stop = "stopped hard"

    def __init__(self, script, first=b"", content_length=None, head=False):
        super().__init__(first, log, "test", 1.0, content_length, head)
        self.script = list(script)
        self.stops = []

    async def _read(self):
        item = self.script.pop(0) if self.script else b""
        if item == "silent":
            raise TimeoutError
        if item == "broken":
            raise OutputFailed("the backend closed the connection")
        return item

    def _stop(self, hard):
        self.stops.append(hard)


def drain(body):
    async def go():
        return [chunk async for chunk in body]
    return asyncio.run(go())


def reader(chunks):
    chunks = list(chunks)

    async def read(timeout):
        return chunks.pop(0) if chunks else b""
    return read


def test_read_head_across_reads():
    block, rest = asyncio.run(read_head(reader([b"Content-Type: a/b\nX: 1", b"\n", b"\nbo",
                                                b"dy"]), 5.0))
    assert (block, rest) == (b"Content-Type: a/b\nX: 1", b"bo")


@pytest.mark.parametrize("chunks,partial,too_large", [
    ([], b"", False),
    ([b"Content-Type: a/b\n"], b"Content-Type: a/b\n", False),
    ([b"X: " + b"y" * MAX_HEADER_BLOCK], None, True),
])
def test_read_head_without_a_head(chunks, partial, too_large):
    with pytest.raises(NoHead) as e:
        asyncio.run(read_head(reader(chunks), 5.0))
    assert e.value.too_large is too_large
    if partial is not None:
        assert e.value.partial == partial


def test_body_streams_to_the_end_then_stops_softly():
    body = Scripted([b"b", b"c"], first=b"a")
    assert drain(body) == [b"a", b"b", b"c"]
    assert body.stops == [False]


def test_bytes_past_content_length_are_dropped():
    body = Scripted([b"cdef", b"never read"], first=b"ab", content_length=4)
    assert drain(body) == [b"ab", b"cd"]
    assert body.stops == [False] and body.script == [b"never read"]


def test_short_body_fails(caplog):
    body = Scripted([b"abc"], content_length=10)
    with pytest.raises(OutputFailed):
        drain(body)
    assert "ended 7 bytes short of its Content-Length" in caplog.text


def test_silence_stops_the_backend_hard(caplog):
    body = Scripted([b"a", "silent"])
    with pytest.raises(OutputFailed):
        drain(body)
    assert body.stops == [True]
    assert "silent for 1s after sending headers; stopped hard" in caplog.text


def test_a_broken_backend_cuts_the_response(caplog):
    body = Scripted(["broken"])
    with pytest.raises(OutputFailed):
        drain(body)
    assert body.stops == [False]
    assert "test: the backend closed the connection; response cut short" in caplog.text


@pytest.mark.parametrize("head,hard", [(False, True), (True, False)])
def test_closed_early(head, hard):
    # The client went away (stop the backend), or a HEAD (let it finish).
    body = Scripted([b"x"], first=b"a", head=head)
    asyncio.run(body.aclose())
    asyncio.run(body.aclose())
    assert body.stops == [hard]

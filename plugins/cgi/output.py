"""A backend's output on the loop: its header block, then the body stream.

Theory of operation: a CGI script's stdout and a FastCGI request's
``STDOUT`` stream carry the same thing (RFC 3875 §6: a header block, a
blank line, the body), so both plugins read them with these two pieces:

* :func:`read_head` collects output up to the blank line (the pure
  ``response.find_header_end`` finds it) and returns the block and the
  bytes after it, or raises :class:`NoHead`.
* :class:`OutputBody` is the rest as the response's body stream.  It
  passes on at most the Content-Length the backend promised (bytes past
  it are dropped), and after the head went out turns silence, a broken
  backend or a short body into :class:`OutputFailed`, logged with the
  cause: the kernel then cuts the client connection, so the client sees a
  cut response rather than a complete-looking one.

Each plugin subclasses ``OutputBody`` with how to read its backend and how
to stop it (kill the process; abort the FastCGI request).
"""
import asyncio

from .response import MAX_HEADER_BLOCK, find_header_end


class NoHead(Exception):
    """The output ended, or grew past ``MAX_HEADER_BLOCK``, before its
    header block did; ``partial`` is what came (for the cause)."""

    def __init__(self, partial, too_large):
        super().__init__("header block too large" if too_large else "no header block")
        self.partial = partial
        self.too_large = too_large


class OutputFailed(Exception):
    """The backend broke its response after the head went out; the kernel
    aborts the client connection so the client sees a cut response."""


async def read_head(read, timeout):
    """``(block, rest)``: the output up to its header block's blank line
    (without it), and the bytes after it.

    ``read(seconds)`` gives the next bytes, ``b""`` at the end; its own
    timeout error passes through when the whole block takes longer than
    ``timeout`` seconds.

    :raises NoHead: the output ended first, or the block is too large.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    buf = b""
    while True:
        data = await read(max(0.0, deadline - loop.time()))
        if not data:
            raise NoHead(buf, too_large=False)
        searched = len(buf)
        buf += data
        end = find_header_end(buf, searched)
        if end is not None:
            return buf[:end[0]], buf[end[1]:]
        if len(buf) > MAX_HEADER_BLOCK:
            raise NoHead(buf, too_large=True)


class OutputBody:
    """The rest of a backend's output as the response body (an async
    iterator), after ``first`` (the bytes read with the header block).

    Subclasses give ``_read()`` (the next bytes, ``b""`` at the end; it
    raises ``TimeoutError`` after ``timeout`` seconds of silence and
    :class:`OutputFailed` when the backend broke), ``_stop(hard)`` (done
    with the backend; ``hard``: stop its work) and ``_finished()`` (the
    backend has ended its output: closing early leaves nothing to stop).
    ``hard_stop`` names a hard stop in the log.

    A class, not an async generator: the kernel may ``aclose()`` it before
    the first ``__anext__`` (HEAD, client gone), and an unstarted
    generator would skip its ``finally`` and leave the backend working.
    """

    hard_stop = "stopped"

    def __init__(self, first, log, name, timeout, content_length, head):
        self._first = first
        self._log = log
        self._name = name
        self._timeout = timeout
        self._left = content_length  # bytes the backend promised, if it did
        self._head = head            # a HEAD request: the backend may finish
        self._done = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._first:
            data, self._first = self._first, b""
            return self._limit(data)
        if self._done:
            raise StopAsyncIteration
        try:
            data = await self._read()
        except TimeoutError:
            self._end(hard=True)
            self._log.error("%s: silent for %gs after sending headers; %s, "
                            "response cut short", self._name, self._timeout, self.hard_stop)
            raise OutputFailed("backend timed out") from None
        except OutputFailed as e:
            self._end(hard=False)
            self._log.error("%s: %s; response cut short", self._name, e)
            raise
        if data:
            return self._limit(data)
        self._end(hard=False)
        if self._left:
            self._log.error("%s: ended %d bytes short of its Content-Length; "
                            "response cut short", self._name, self._left)
            raise OutputFailed("short body")
        raise StopAsyncIteration

    def _limit(self, data):
        if self._left is None:
            return data
        if len(data) >= self._left:
            data = data[:self._left]
            self._end(hard=False)   # bytes past Content-Length are dropped
        self._left -= len(data)
        return data

    def _end(self, hard):
        if not self._done:
            self._done = True
            self._stop(hard)

    async def aclose(self):
        # HEAD: the backend may finish; anything else: the client is gone.
        self._end(hard=not self._head and not self._finished())

    async def _read(self):
        raise NotImplementedError

    def _stop(self, hard):
        raise NotImplementedError

    def _finished(self):
        return False

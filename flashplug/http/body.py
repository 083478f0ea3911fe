"""A request's body, as the handler reads it.

Theory of operation: the protocol feeds body bytes in as llhttp finds them
(``BodyReader.feed``) and the handler takes them out with ``async for``.
Between the two sits a bounded buffer: past ``BODY_BUFFER`` bytes the
connection stops reading the socket, so a handler that reads slowly slows
the client down instead of filling our memory.  The first time a handler
waits for bytes, a client that sent ``Expect: 100-continue`` gets its
``100 Continue`` (RFC 9110 §10.1.1).
"""
import collections

# Body bytes buffered for a handler that has not read them yet.
BODY_BUFFER = 256 * 1024
# Why reading is paused, for the body's part (a bit of pause_reasons).
PAUSE_BODY = 1


class BodyReader:
    """The request body as an async iterator, fed by the parser.

    The connection stops reading the socket while more than BODY_BUFFER
    bytes wait here, so a handler that reads slowly slows the client down
    instead of filling our memory.
    """

    __slots__ = ("_conn", "_chunks", "_buffered", "_done", "_waiter", "_error",
                 "received", "abandoned")

    def __init__(self, conn):
        self._conn = conn
        self._chunks = collections.deque()
        self._buffered = 0
        self._done = False
        self._waiter = None
        self._error = None
        self.received = 0
        self.abandoned = False

    def feed(self, chunk):
        self.received += len(chunk)
        if self.abandoned:
            return
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > BODY_BUFFER:
            self._conn.pause_reading(PAUSE_BODY)
        self._wake()

    def finish(self):
        self._done = True
        self._wake()

    def fail(self, error):
        self._error = error
        self._wake()

    def discard(self):
        """The handler answered without reading it all: drop the rest."""
        self.abandoned = True
        self._chunks.clear()
        self._buffered = 0
        self._conn.resume_reading(PAUSE_BODY)

    def _wake(self):
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                raise StopAsyncIteration
            self._conn.send_continue()
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered <= BODY_BUFFER // 2:
            self._conn.resume_reading(PAUSE_BODY)
        return chunk

    async def read(self):
        """The whole body as bytes (mind the size: prefer iterating)."""
        return b"".join([c async for c in self])


class _EmptyBody:
    """The body of a request that has none."""

    received = 0
    abandoned = True

    def __aiter__(self):
        return self

    async def __anext__(self):
        raise StopAsyncIteration

    async def read(self):
        return b""

    def discard(self):
        pass


EMPTY_BODY = _EmptyBody()

"""The client's side of a connection after ``101 Switching Protocols``.

Theory of operation: a plugin that answers an Upgrade request (a WebSocket
handshake) with ``Response(101, headers, upgrade=fn)`` gets, once the 101 is
written, ``await fn(tunnel)`` with a :class:`Tunnel`.  From then on the
connection is no HTTP: the driver hands every byte it reads to the tunnel
(a ``BodyReader``, so past its buffer the socket is no longer read: a
plugin that reads slowly slows the client down), and what the plugin
writes goes out as is.  When ``fn`` returns, or raises, the connection
closes; when the client goes away, ``read`` raises ``ConnectionError`` and
the task running ``fn`` is cancelled.

Timeouts are the plugin's (a WebSocket proxy has its idle timeout); the
kernel's ``--send-timeout`` still cuts a client that takes nothing.
"""


class Tunnel:
    """Raw bytes to and from the client (a plugin's view of the socket).

    - ``await read()``: the next bytes from the client; ``b""`` once it
      has sent its last (half-close).  Raises ``ConnectionError`` when the
      connection is gone.
    - ``write(data)``: queue ``data`` for the client.
    - ``await drain()``: wait while much is queued (backpressure); raises
      ``ConnectionError`` when the client is gone.
    - ``sent``: bytes written so far (the access log's size).
    """

    __slots__ = ("_conn", "_incoming", "sent")

    def __init__(self, conn, incoming):
        self._conn = conn
        self._incoming = incoming
        self.sent = 0

    async def read(self):
        try:
            return await self._incoming.__anext__()
        except StopAsyncIteration:
            return b""

    def write(self, data):
        if data:
            self.sent += len(data)
            self._conn.write(data)

    async def drain(self):
        await self._conn.drain()

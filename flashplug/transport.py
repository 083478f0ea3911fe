"""Transports: where a driver's bytes go.

Theory of operation: a driver (``connection.py`` on the loop,
``blocking.py`` for mt/mp) never calls the socket itself; it reads and
writes through a transport, so a transport that is not a plain socket (TLS,
which must copy every byte through the library; an in-memory one in tests)
slots in without touching the protocol or the request cycle.

A transport offers the socket calls the drivers use, with their meaning:
``recv_into``/``recv``, ``send(data, flags)`` (may take part of ``data``;
raises BlockingIOError when it takes none), ``sendmsg(buffers)``,
``sendall`` and ``settimeout`` (blocking drivers), ``shutdown_write``,
``pending_error`` (a reset noticed by the kernel, else 0), ``close`` and
``fileno``.  ``zero_copy`` says whether file ranges may go out with
``os.sendfile`` on ``fileno()``; a copying transport gets them as bytes.

``SocketTransport`` is the socket itself, so a send through it costs the
same as a send on the socket and an idle connection carries nothing more.
"""
import socket


class SocketTransport(socket.socket):
    """A plain stream socket: sendfile and MSG_MORE work on it.

    It is the accepted socket itself, taken over (``detach``), so the
    socket's own methods serve as the transport's: a send through it costs
    what a send on the socket costs, and an idle connection pays nothing
    extra for the seam.
    """

    __slots__ = ("fd",)

    zero_copy = True

    def __init__(self, sock):
        super().__init__(sock.family, sock.type, sock.proto, sock.detach())
        self.fd = self.fileno()

    def local_address(self):
        return self.getsockname()

    def shutdown_write(self):
        self.shutdown(socket.SHUT_WR)

    def pending_error(self):
        return self.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

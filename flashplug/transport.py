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

``SocketTransport`` binds the socket's own methods, so a send through it
costs the same as a send on the socket.
"""
import socket


class SocketTransport:
    """A plain stream socket: sendfile and MSG_MORE work on it."""

    __slots__ = ("sock", "fd", "recv_into", "recv", "send", "sendmsg", "sendall",
                 "settimeout")

    zero_copy = True

    def __init__(self, sock):
        self.sock = sock
        self.fd = sock.fileno()
        self.recv_into = sock.recv_into
        self.recv = sock.recv
        self.send = sock.send
        self.sendmsg = sock.sendmsg
        self.sendall = sock.sendall
        self.settimeout = sock.settimeout

    def fileno(self):
        return self.fd

    def local_address(self):
        return self.sock.getsockname()

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def pending_error(self):
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def close(self):
        self.sock.close()

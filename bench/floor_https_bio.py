"""The floor of issue 14's HTTPS points with flashplug's own TLS design.

    python bench/floor_https_bio.py PORT CERT KEY FILE

The least Python can do per request over the TLS that Python offers, in
the shape flashplug's transport has (``flashplug.transport.TLSTransport``):
non-blocking sockets watched with uvloop's ``add_reader``, an
``ssl.SSLObject`` over two memory BIOs per connection, ciphertext read
into one shared buffer.  Per readable event: one ``recv_into``, one
``MemoryBIO.write``, one ``SSLObject.read``, and for each request head
found one ``SSLObject.write`` of a response built at start from FILE, one
``MemoryBIO.read`` and one ``send``.  It parses nothing (a head is
whatever ends in a blank line), checks nothing, logs nothing, keeps no
timers; TLS 1.3's session tickets go out with the first response, as
flashplug sends them.  A reference for ``bench/tls_counts.py`` (and
``bench/https_bench.py --floor``), not a server to use.

``bench/floor_https.py`` is the other floor: uvloop's own TLS transport.
"""
import socket
import ssl
import sys

import uvloop

from floor_https import answers  # bench/ is not a package: a sibling script

_READ = 64 * 1024
_CIPHERTEXT = bytearray(_READ)
_CIPHERTEXT_VIEW = memoryview(_CIPHERTEXT)
_PLAIN = bytearray(_READ)
_END = b"\r\n\r\n"


class Floor:
    """One connection: handshake, then a fixed answer per request head."""

    __slots__ = ("loop", "sock", "fd", "incoming", "outgoing", "tls", "handshaken")
    keep = close = b""

    def __init__(self, loop, sock, ctx):
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.handshaken = False
        loop.add_reader(self.fd, self.readable)

    def readable(self):
        try:
            n = self.sock.recv_into(_CIPHERTEXT)
        except BlockingIOError:
            return
        except OSError:
            self.end()
            return
        if not n:
            self.end()
            return
        self.incoming.write(_CIPHERTEXT_VIEW[:n])
        tls = self.tls
        if not self.handshaken:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                if self.outgoing.pending:
                    self.sock.send(self.outgoing.read())
                return
            except ssl.SSLError:
                self.end()
                return
            self.handshaken = True
            if not self.incoming.pending:
                return          # session tickets wait for the first response
        try:
            n = tls.read(_READ, _PLAIN)
        except ssl.SSLWantReadError:
            return
        except ssl.SSLError:
            self.end()
            return
        if not n:
            self.end()
            return
        heads = _PLAIN.count(_END, 0, n)
        if heads:
            if _PLAIN.find(b"HTTP/1.0", 0, n) > 0:
                tls.write(self.close)
                self.sock.send(self.outgoing.read())
                self.end()
                return
            tls.write(self.keep * heads)
            self.sock.send(self.outgoing.read())

    def end(self):
        self.loop.remove_reader(self.fd)
        self.sock.close()


def main():
    port, cert, key, path = sys.argv[1:5]
    Floor.keep, Floor.close = answers(path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE    # the client's order, as flashplug
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    loop = uvloop.new_event_loop()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(port)))
    listener.listen(4096)
    listener.setblocking(False)

    def accept():
        while True:
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            Floor(loop, sock, ctx)

    loop.add_reader(listener.fileno(), accept)
    loop.run_forever()


if __name__ == "__main__":
    main()

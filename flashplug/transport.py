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
``scheme`` is what requests on it are (``"http"``, ``"https"``).

A copying transport may hold bytes the socket has not taken yet: its
``backlog`` (0 for a plain socket, always).  While it is non-zero the loop
driver watches for writing and calls ``flush()`` (which returns the
backlog left), and a response is not over until it is 0.  A copying
transport calls ``on_backlog()`` (set by the driver) when a send leaves a
backlog, so the driver knows to watch.

``SocketTransport`` is the socket itself, so a send through it costs the
same as a send on the socket and an idle connection carries nothing more.
"""
import fcntl
import socket
import struct
import ssl
import termios


# SO_LINGER on with a zero time: close() drops what the socket still holds
# and sends a reset (nginx's reset_timedout_connection), so a client dropped
# for reading too slowly cannot keep draining megabytes of our send buffer.
_LINGER_ZERO = struct.pack("ii", 1, 0)


def unsent_bytes(fd):
    """Bytes the kernel still holds in the socket's send queue (Linux
    SIOCOUTQ): what we wrote that the client has not taken yet.  0 where
    the query is not available."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, AttributeError):
        return 0


def unread_bytes(fd):
    """Bytes the kernel holds in the socket's receive queue (FIONREAD):
    what the client sent that the loop has not read yet.  0 where the
    query is not available."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except (OSError, AttributeError):
        return 0


class SocketTransport(socket.socket):
    """A plain stream socket: sendfile and MSG_MORE work on it.

    It is the accepted socket itself, taken over (``detach``), so the
    socket's own methods serve as the transport's: a send through it costs
    what a send on the socket costs, and an idle connection pays nothing
    extra for the seam.
    """

    __slots__ = ("fd",)

    zero_copy = True
    scheme = "http"
    backlog = 0

    def __init__(self, sock):
        super().__init__(sock.family, sock.type, sock.proto, sock.detach())
        self.fd = self.fileno()

    def local_address(self):
        return self.getsockname()

    def flush(self):
        return 0

    def shutdown_write(self):
        self.shutdown(socket.SHUT_WR)

    def pending_error(self):
        return self.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def reset_on_close(self):
        self.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)

    def unsent(self):
        return unsent_bytes(self.fd)

    def unread(self):
        return unread_bytes(self.fd)


# Ciphertext is received at most this much at a time, so what one
# ``recv_into`` decrypts always fits the driver's buffer (plaintext is
# never longer than its records).
_TLS_RECV = 64 * 1024
_CIPHERTEXT = bytearray(_TLS_RECV)
_CIPHERTEXT_VIEW = memoryview(_CIPHERTEXT)
# The first byte of a TLS record that starts a handshake (RFC 8446 §5.1).
_HANDSHAKE = 0x16
# A fatal no_application_protocol alert (120) in a plaintext record: the
# answer to a ClientHello whose ALPN protocols are none of ours (RFC 7301
# §3.2), sent in place of the server's first flight.
_NO_APPLICATION_PROTOCOL = b"\x15\x03\x03\x00\x02\x02\x78"
# A fatal unrecognized_name alert (112): the answer to a server name that is
# not ASCII (RFC 6066 §3), sent in place of the internal_error CPython sends.
_UNRECOGNIZED_NAME = b"\x15\x03\x03\x00\x02\x02\x70"
_PLAIN_HTTP_BODY = (b"<html><head><title>400 The plain HTTP request was sent to HTTPS port"
                    b"</title></head><body><h1>400 Bad Request</h1><p>The plain HTTP request "
                    b"was sent to HTTPS port.</p></body></html>\n")
PLAIN_HTTP_ANSWER = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                     % len(_PLAIN_HTTP_BODY)) + _PLAIN_HTTP_BODY


class TLSError(ConnectionError):
    """The TLS session failed (a bad handshake, a protocol we refuse, plain
    HTTP); the driver closes the connection as for any socket error."""


class PlainHTTP(TLSError):
    """Plain HTTP came to the TLS port and got nginx's 400
    (``PLAIN_HTTP_ANSWER``, ``answered`` its body bytes sent, 0 when the
    send failed); ``head``: the bytes that came, for the access log."""

    def __init__(self, head, answered):
        super().__init__("plain HTTP sent to the HTTPS port")
        self.head = head
        self.answered = answered

    def log_fields(self):
        """``(method, target, version, referer, agent)`` (str or None) as
        far as the head shows them, the access-log fields of a request
        that failed to parse (``flashplug.cycle.ErrorItem``'s ``line``);
        None when its first line is no request line."""
        lines = self.head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/") or len(lines) < 2:
            return None
        fields = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if colon:
                fields.setdefault(name.strip().lower(), value.strip().decode("latin-1"))
        method, target, version = (p.decode("latin-1") for p in parts)
        return (method, target, version[5:], fields.get(b"referer"),
                fields.get(b"user-agent"))


class TLSTransport:
    """TLS over a non-blocking socket, sans-I/O: an ``ssl.SSLObject`` over
    two memory BIOs, pumped by the driver's own reads and writes.

    The handshake happens inside ``recv_into``: until it is done a read
    returns nothing to the driver (BlockingIOError) and the handshake's
    own records go out as backlog.  TLS 1.3's session tickets, written as
    the handshake ends, go out with the response to the request that came
    with the client's Finished (one send, not two), or at once when no
    request came with it; ciphertext held so is not backlog (the next
    ``send`` or ``shutdown_write`` takes it along).  Plaintext is taken by ``send`` only
    when the previous ciphertext has all reached the socket, so one
    connection holds at most one send's worth of ciphertext, however slow
    its client.  ``alpn``: the ALPN protocol chosen, once the handshake is
    done (None when none was).
    """

    __slots__ = ("sock", "fd", "tls", "io", "incoming", "outgoing", "tail", "backlog",
                 "started", "handshaken", "alpn", "on_backlog", "settimeout", "certificates",
                 "hello", "choosing")

    zero_copy = False
    scheme = "https"
    # Plaintext taken by one send: 16 TLS records of 16 KiB.
    SEND_MAX = 256 * 1024

    def __init__(self, sock, certificates):
        self.sock = sock
        self.fd = sock.fileno()
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.certificates = certificates
        self._use(certificates.new_session(self.incoming, self.outgoing))
        self.tail = b""           # ciphertext read from outgoing the socket did not take
        self.backlog = 0
        self.started = False      # the client's first bytes have arrived
        self.hello = None         # the ClientHello's bytes until OpenSSL answers it
        self.choosing = False     # held from OpenSSL until the ClientHello is whole
        self.handshaken = False
        self.alpn = None          # the ALPN protocol chosen, once handshaken
        self.on_backlog = None
        self.settimeout = sock.settimeout

    def _use(self, session):
        """Take ``session`` (an ``ssl.SSLObject``) as the connection's.
        ``io``: what each read and write calls, the ``_ssl`` object under
        it, whose ``read``, ``write`` and ``do_handshake`` the SSLObject's
        own only pass on (a Python call less per read and per write, the
        most frequent calls of HTTPS); the SSLObject itself where it has
        none."""
        self.tls = session
        self.io = getattr(session, "_sslobj", session)

    def fileno(self):
        return self.fd

    def local_address(self):
        return self.sock.getsockname()

    # -- reading -------------------------------------------------------------------------

    def recv_into(self, buf):
        """Decrypted bytes into ``buf``: their count, 0 at the end of the
        stream, BlockingIOError while there are none yet (a handshake in
        progress, half a record)."""
        # Ciphertext lands in one buffer shared by every connection (the
        # loop is one thread, and the BIO copies it at once): a read
        # allocates nothing.
        n = self.sock.recv_into(_CIPHERTEXT)
        if not n:
            return 0
        if self.handshaken:
            self.incoming.write(_CIPHERTEXT_VIEW[:n])
        else:
            self._handshake(bytes(_CIPHERTEXT_VIEW[:n]))
        try:
            # A read returns one record's plaintext: a request in one
            # record, nearly all, is one call.  Reading stops once no
            # ciphertext is left, which skips the SSLWantReadError a last
            # call would raise.
            got = self.io.read(len(buf), buf)
            if not got:
                # The client's close_notify (``_ssl`` returns 0 for it, not
                # SSLZeroReturnError): the end of its stream, like a FIN.
                # Said now, not after one more wake-up for the FIN.
                return 0
            if self.incoming.pending:
                got = self._read_on(buf, got)
        except ssl.SSLWantReadError:
            got = 0
        except ssl.SSLZeroReturnError:    # (the same, should ``_ssl`` raise it)
            return 0
        except ssl.SSLError as e:
            raise TLSError(f"TLS: {e.reason or e}") from None
        if got:
            # What TLS wrote while reading (TLS 1.3's session tickets after
            # the handshake, a KeyUpdate's answer) waits in ``outgoing`` for
            # the response to this plaintext: one send for both.  Neither
            # is urgent (RFC 8446 §4.6.1, §4.6.3), and a read that returns
            # nothing sends it at once.
            return got
        if self.outgoing.pending:
            self._after_write()
        raise BlockingIOError

    def _read_on(self, buf, got):
        """Records after the first one of a read: decrypt into ``buf``
        after its ``got`` bytes while ciphertext is left and there is
        room; the count in ``buf``."""
        size = len(buf)
        view = memoryview(buf)
        try:
            while got < size and self.incoming.pending:
                n = self.io.read(size - got, view[got:])
                if not n:
                    break
                got += n
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass    # half a record; the client's close_notify after its data
        return got

    def recv(self, size):
        buf = bytearray(size)
        return bytes(buf[:self.recv_into(buf)])

    def _handshake(self, data):
        if not self.started and data[0] != _HANDSHAKE:
            if data[:1].isupper():
                # nginx's answer to plain HTTP on an HTTPS port.
                try:
                    sent = self.sock.send(PLAIN_HTTP_ANSWER)
                except OSError:
                    sent = 0
                raise PlainHTTP(data, max(0, sent - (len(PLAIN_HTTP_ANSWER)
                                                     - len(_PLAIN_HTTP_BODY))))
            raise TLSError("not a TLS handshake")
        if not self.started:
            self.started = True
            self.hello = data
            self.choosing = bool(self.certificates.alpn_only)
        elif self.hello is not None:
            self.hello += data        # a ClientHello over several reads
        if self.choosing:
            # A challenge certificate is out (RFC 8737): is this the CA?  Its
            # ClientHello may come in several segments (a post-quantum key
            # share makes it longer than one): OpenSSL gets nothing until
            # the first record is whole, within the header timeout.
            hello = self.hello
            if len(hello) < 5 + int.from_bytes(hello[3:5], "big"):
                raise BlockingIOError
            self.choosing = False
            special = self.certificates.special_session(hello, self.incoming, self.outgoing)
            if special is not None:
                self._use(special)
            data = hello
        self.incoming.write(data)
        try:
            self.io.do_handshake()
        except ssl.SSLWantReadError:
            if self.hello is not None and self.outgoing.pending:
                self._answered_hello()
            self._after_write()
            raise BlockingIOError from None
        except ssl.SSLError as e:
            if self.hello is not None and self.certificates.unreadable_name(self.hello):
                self.outgoing.read()      # OpenSSL's internal_error alert: never sent
                try:
                    self.sock.send(_UNRECOGNIZED_NAME)
                except OSError:
                    pass
                raise TLSError("TLS handshake: a server name that is not ASCII "
                               "(unrecognized_name)") from None
            self.flush()   # the alert, if any, so the client learns why
            raise TLSError(f"TLS handshake: {e.reason or e}") from None
        self.handshaken = True
        self.alpn = self.io.selected_alpn_protocol()
        if self.io.version() != "TLSv1.3":
            # TLS 1.2's last flight (the server's Finished) ends the
            # handshake: it goes now.  TLS 1.3 has only session tickets
            # left, which recv_into sends with the first response.
            self._after_write()

    def _answered_hello(self):
        """OpenSSL has answered the ClientHello (its first flight waits in
        ``outgoing``): refuse it instead when its ALPN protocols are none
        of ours (``Certificates.refuses_alpn``).  A handshake that chose a
        protocol, nearly all, costs one call here."""
        hello, self.hello = self.hello, None
        if self.io.selected_alpn_protocol() is None and \
                self.certificates.refuses_alpn(hello):
            self.outgoing.read()      # the ServerHello flight: never sent
            try:
                self.sock.send(_NO_APPLICATION_PROTOCOL)
            except OSError:
                pass
            raise TLSError("TLS handshake: no ALPN protocol in common "
                           "(no_application_protocol)")

    # -- writing -------------------------------------------------------------------------

    def send(self, data, flags=0):
        """Encrypt up to SEND_MAX bytes of ``data`` and send the records;
        BlockingIOError while earlier records still wait for the socket."""
        if self.backlog and self.flush():
            raise BlockingIOError
        n = len(data)
        if n > self.SEND_MAX:
            n = self.SEND_MAX
            data = data[:n]
        if n:
            # _encrypt and flush's usual case, inline: this is every
            # response's path.  With no backlog there is no tail, and
            # ``read()`` empties ``outgoing`` (held session tickets too).
            try:
                self.io.write(data)
            except ssl.SSLError as e:
                raise TLSError(f"TLS: {e.reason or e}") from None
            records = self.outgoing.read()
            try:
                sent = self.sock.send(records)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent < len(records):
                self.tail = memoryview(records)[sent:]
                if self.flush() and self.on_backlog is not None:
                    self.on_backlog()
        return n

    def sendmsg(self, buffers):
        """Like ``send`` for several buffers, encrypted back to back and
        sent together."""
        if self.backlog and self.flush():
            raise BlockingIOError
        taken = 0
        for data in buffers:
            n = min(len(data), self.SEND_MAX - taken)
            if n <= 0:
                break
            self._encrypt(data[:n] if n < len(data) else data)
            taken += n
        self._after_write()
        return taken

    def _encrypt(self, data):
        try:
            self.io.write(data)
        except ssl.SSLError as e:
            raise TLSError(f"TLS: {e.reason or e}") from None

    def _after_write(self):
        if self.flush() and self.on_backlog is not None:
            self.on_backlog()

    def flush(self):
        """Send what ciphertext the socket takes; return the backlog left.
        Raises OSError when the socket fails."""
        tail = self.tail
        outgoing = self.outgoing
        sock = self.sock
        if not tail and outgoing.pending:
            # The usual case: the socket takes all the new records at once.
            data = outgoing.read()
            try:
                n = sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            if n == len(data):      # read() took all: nothing pending
                self.backlog = 0
                return 0
            tail = memoryview(data)[n:]
        try:
            while True:
                if not tail:
                    if not outgoing.pending:
                        break
                    tail = memoryview(outgoing.read())
                tail = tail[sock.send(tail):]
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self.tail = tail
            self.backlog = len(tail) + outgoing.pending
        return self.backlog

    def sendall(self, data):
        raise NotImplementedError("TLS runs on the event loop only")

    # -- closing -------------------------------------------------------------------------

    def shutdown_write(self):
        """Send close_notify, then half-close the socket."""
        if self.handshaken:
            try:
                self.tls.unwrap()
            except ssl.SSLError:
                pass
            self.flush()
        self.sock.shutdown(socket.SHUT_WR)

    def pending_error(self):
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def reset_on_close(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)

    def unsent(self):
        return unsent_bytes(self.sock.fileno())

    def unread(self):
        return self.incoming.pending + unread_bytes(self.fd)

    def close(self):
        self.on_backlog = None
        self.sock.close()

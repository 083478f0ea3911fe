"""Upstreams for the proxy tests: a recording HTTP/1.1 server that can
misbehave on purpose, a raw-socket WebSocket echo, and real app servers.

``RecordingUpstream`` parses what it gets with httptools (llhttp, strict)
and keeps every request (``requests``: method, target, headers, body) and
every connection's raw bytes (``raw``), so a test can check what reached
the upstream, byte for byte.  The path picks the behaviour:

=================  ==============================================
``/slow?S``        waits S seconds, then answers
``/garbage``       answers bytes that are no HTTP
``/hop``           a response with hop-by-hop fields
``/drop-next``     answers, then closes the connection without an
                   answer when the next request on it comes (an
                   idle connection closed just as it is reused)
``/badheader``     a response field with a bare CR in its value
``/badreason``     a reason phrase with a control character
``/crash``         promises 1 MB, sends 100 kB, closes
``/hold``          never answers; ``closed`` gets set when the
                   proxy closes the connection
``/big?N``         N bytes (a repeating pattern), Content-Length;
                   ``aborted`` gets set if the proxy closes the
                   connection before the end
``/trickle?N``     N chunks of 1 KiB, 0.2 s apart (a slow backend)
``/noread``        reads the head, then nothing for 30 s (an upstream
                   that takes no body)
``/bigchunked?N``  N bytes, chunked
``/sha``           the body's length and sha256
``/cgi-bin/echo.sh`` ``len=N\\n`` and the N bytes of the body (the
                   smuggling corpus's echo script)
``/cgi-bin/canary.sh`` ``canary\\n``
anything else      ``index\\n``
=================  ==============================================
"""
import hashlib
import socket
import threading
import time

import httptools

PATTERN = bytes(range(256)) * 256     # 64 KiB


def read_head(conn):
    """The bytes read from ``conn`` up to and past a request head's blank
    line (the head, and whatever came after it in the last read); None if
    the peer closes first."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return None
        data += more
    return data


def pattern(n):
    """The first ``n`` bytes the /big endpoints send."""
    whole, part = divmod(n, len(PATTERN))
    return PATTERN * whole + PATTERN[:part]


class _Message:
    def __init__(self):
        self.method = None
        self.target = b""
        self.headers = []
        self.body = bytearray()
        self.done = False

    def on_url(self, url):
        self.target += url

    def on_header(self, name, value):
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, body):
        self.body += body

    def on_message_complete(self):
        self.done = True

    def header(self, name):
        values = [v for n, v in self.headers if n == name]
        return values[0] if len(values) == 1 else (values or None)


class RecordingUpstream:
    def __init__(self, unix_path=None):
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(unix_path)
            self.address = f"unix:{unix_path}"
        else:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.sock.listen(128)
        self.requests = []
        self.raw = []
        self.connections = 0
        self.closed = threading.Event()
        self.aborted = threading.Event()
        self.lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self._stop = True
        self.sock.close()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        raw = bytearray()
        with self.lock:
            self.raw.append(raw)
        msg = _Message()
        parser = httptools.HttpRequestParser(msg)
        drop_next = False
        try:
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    return
                raw += data
                if b"/noread" in msg.target:
                    time.sleep(30)
                    return
                try:
                    parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    pass    # answered as a plain request: no 101 from us
                if msg.done:
                    msg.method = parser.get_method().decode()
                    with self.lock:
                        self.requests.append(msg)
                    if drop_next:
                        return
                    drop_next = msg.target.endswith(b"/drop-next")
                    if not self._answer(conn, msg):
                        return
                    msg = _Message()
                    parser = httptools.HttpRequestParser(msg)
        except (httptools.HttpParserError, OSError) as e:
            with self.lock:
                self.requests.append(("error", repr(e)))
        finally:
            conn.close()

    def _answer(self, conn, msg):
        """Answer ``msg``; False to close the connection."""
        path, _, query = msg.target.decode("latin-1").partition("?")
        if path.endswith("/slow"):
            time.sleep(float(query or 5))
            body = b"late\n"
        elif path.endswith("/garbage"):
            conn.sendall(b"\x16\x03\x01 this is not HTTP at all\r\n\r\n")
            return False
        elif path.endswith("/badheader"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Bad: a\rb\r\nContent-Length: 2\r\n\r\nok")
            return True
        elif path.endswith("/badreason"):
            conn.sendall(b"HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nok")
            return True
        elif path.endswith("/hop"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\n"
                         b"Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n"
                         b"Trailer: X-T\r\nUpgrade: h2c\r\nX-Kept: yes\r\n"
                         b"Content-Length: 3\r\n\r\nhop")
            return True
        elif path.endswith("/crash"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"c" * 100000)
            return False
        elif path.endswith("/hold"):
            conn.settimeout(30)
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass
            self.closed.set()
            return False
        elif path.endswith("/bigchunked"):
            n = int(query)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            data = pattern(n)
            for i in range(0, n, 1 << 20):
                piece = data[i:i + (1 << 20)]
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.sendall(b"0\r\n\r\n")
            return True
        elif path.endswith("/big"):
            n = int(query)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
            data = pattern(n)
            try:
                for i in range(0, n, 1 << 20):
                    conn.sendall(data[i:i + (1 << 20)])
            except OSError:
                self.aborted.set()
                raise
            return True
        elif path.endswith("/trickle"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(int(query)):
                time.sleep(0.2)
                conn.sendall(b"400\r\n" + b"t" * 1024 + b"\r\n")
            conn.sendall(b"0\r\n\r\n")
            return True
        elif path.endswith("/sha"):
            body = b"%d %s\n" % (len(msg.body), hashlib.sha256(msg.body).hexdigest().encode())
        elif path.endswith("/echo.sh"):
            body = b"len=%d\n%s" % (len(msg.body), msg.body)
        elif path.endswith("/canary.sh"):
            body = b"canary\n"
        else:
            body = b"index\n"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Upstream: rec\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        return True


class ThreadedUpstream:
    """A loopback TCP listener (or one on the Unix socket ``unix_path``)
    serving each connection in a thread of its own: subclasses give
    ``_serve(conn)``, and set their own state before calling ``__init__``
    (the first connection may come at once)."""

    def __init__(self, unix_path=None):
        if unix_path is None:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        else:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(unix_path)
            self.address = f"unix:{unix_path}"
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.sock.close()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()


class WebSocketEcho(ThreadedUpstream):
    """A WebSocket server on raw sockets: the handshake (RFC 6455 §4.2),
    then every byte read is written back (frames echo as they are)."""

    def __init__(self):
        self.handshakes = []
        super().__init__()

    def _serve(self, conn):
        import base64
        with conn:
            head = read_head(conn)
            if head is None:
                return
            head, _, rest = head.partition(b"\r\n\r\n")
            self.handshakes.append(head)
            fields = {name.lower(): value for name, _, value in
                      (line.partition(b": ") for line in head.split(b"\r\n")[1:])}
            key = fields.get(b"sec-websocket-key", b"")
            accept = base64.b64encode(hashlib.sha1(
                key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                         b"\r\n\r\n" + b"hello from upstream")
            if rest:
                conn.sendall(rest)
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

"""HTTP/1.1 connection handling of a real `flashplug serve` (issue 2, part 3).

Framing cases are sent as exact wire bytes over a raw socket; `Wire` reads
responses back one at a time (Content-Length, chunked, or until close) so a
test can check order, keep-alive and who closed the connection.  The helpers
here are imported by the other test_kernel_* files.
"""
import socket
import time

import pytest
import requests

from conftest import start_server

SMALL = b"hello world\n"
MEDIUM = bytes(range(256)) * 1200          # 300 KiB, bigger than one recv


class Closed(Exception):
    """The peer closed the connection before a full response arrived."""


class Wire:
    """A raw client connection that reads whole responses."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(262144)
        if not chunk:
            raise Closed(self.buf)
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self, head=False, skip_1xx=True):
        """(status, headers {lower: [values]}, body).  head=True: no body."""
        while True:
            status_line = self._line()
            parts = status_line.split(b" ", 2)
            assert parts[0] == b"HTTP/1.1", status_line
            status = int(parts[1])
            headers = {}
            while True:
                line = self._line()
                if not line:
                    break
                name, _, value = line.partition(b":")
                headers.setdefault(name.decode("latin-1").lower(), []).append(
                    value.strip().decode("latin-1"))
            if 100 <= status < 200 and skip_1xx:
                continue
            break
        if head or status in (204, 304) or 100 <= status < 200:
            return status, headers, b""
        if "chunked" in ",".join(headers.get("transfer-encoding", [])):
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    return status, headers, body
                body += self._exact(size)
                assert self._exact(2) == b"\r\n"
        if "content-length" in headers:
            return status, headers, self._exact(int(headers["content-length"][0]))
        try:
            while True:
                self._fill()
        except Closed:
            pass
        body, self.buf = self.buf, b""
        return status, headers, body

    def closed_by_peer(self, within=3.0):
        """True if the server closes (EOF or reset) within `within` seconds
        with no further bytes."""
        self.sock.settimeout(within)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(5)
        assert not self.buf and not data, f"unexpected bytes {self.buf + data!r}"
        return True

    def close(self):
        self.sock.close()


def wire(server, timeout=5):
    return Wire(server.connect(timeout=timeout))


def one(server, raw, head=False):
    """Send raw bytes on a fresh connection, return the first response."""
    w = wire(server)
    try:
        w.send(raw)
        return w.response(head=head)
    finally:
        w.close()


def req(path="/a.txt", method="GET", extra=b"", version=b"HTTP/1.1", host=b"t"):
    head = method.encode() + b" " + path.encode("latin-1") + b" " + version + b"\r\n"
    if host is not None:
        head += b"Host: " + host + b"\r\n"
    return head + extra + b"\r\n"


def error_then_closed(server, raw, status):
    """The server answers `status` and then closes the connection."""
    w = wire(server)
    try:
        w.send(raw)
        got, headers, _ = w.response()
        assert got == status, (raw[:80], got)
        assert w.closed_by_peer(), f"connection left open after {status} for {raw[:80]!r}"
        return headers
    finally:
        w.close()


def sockets_in_close_wait(port):
    """Server-side sockets on `port` the peer has closed but the server has
    not (TCP state CLOSE_WAIT, 08 in /proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for r in rows if int(r[1].split(":")[1], 16) == port and r[3] == "08")


@pytest.fixture(scope="module")
def docroot(tmp_path_factory):
    # Read-only for every test of the module, so one server can serve them all.
    root = tmp_path_factory.mktemp("http") / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(SMALL)
    (root / "m.bin").write_bytes(MEDIUM)
    (root / "index.html").write_bytes(b"<p>index</p>")
    return root


@pytest.fixture(scope="module")
def srv(docroot):
    server = start_server(docroot, "--access-log", "off", tmp_path=docroot.parent)
    yield server
    server.stop()


# -- persistent connections -------------------------------------------------------------

def test_http11_is_persistent_by_default(srv):
    w = wire(srv)
    for _ in range(3):
        w.send(req())
        status, headers, body = w.response()
        assert (status, body) == (200, SMALL)
        assert "close" not in ",".join(headers.get("connection", [])).lower()
    w.close()


def test_http10_keep_alive_gets_keep_alive(srv):
    w = wire(srv)
    for _ in range(2):
        w.send(req(version=b"HTTP/1.0", extra=b"Connection: keep-alive\r\n"))
        status, headers, body = w.response()
        assert (status, body) == (200, SMALL)
        assert "keep-alive" in ",".join(headers.get("connection", [])).lower()
    w.close()


def test_http10_without_keep_alive_closes(srv):
    w = wire(srv)
    w.send(req(version=b"HTTP/1.0", host=None))
    status, _, body = w.response()
    assert (status, body) == (200, SMALL)
    assert w.closed_by_peer()


def test_connection_close_is_honoured(srv):
    w = wire(srv)
    w.send(req(extra=b"Connection: close\r\n"))
    status, headers, body = w.response()
    assert (status, body) == (200, SMALL)
    assert "close" in ",".join(headers.get("connection", [])).lower()
    assert w.closed_by_peer()


def test_keepalive_idle_timeout(server_factory, docroot):
    srv = server_factory(docroot, "--keepalive-timeout", "1", "--access-log", "off")
    w = wire(srv)
    w.send(req())
    assert w.response()[0] == 200
    t0 = time.monotonic()
    assert w.closed_by_peer(within=4), "idle keep-alive connection not closed"
    elapsed = time.monotonic() - t0
    assert 0.5 <= elapsed <= 3.5, elapsed


def test_keepalive_is_not_cut_while_in_use(server_factory, docroot):
    srv = server_factory(docroot, "--keepalive-timeout", "1", "--access-log", "off")
    w = wire(srv)
    for _ in range(5):          # 2.5 s of use, 0.5 s idle each time
        w.send(req())
        assert w.response()[0] == 200
        time.sleep(0.5)
    w.close()


# -- pipelining -------------------------------------------------------------------------

def test_pipelined_responses_in_order(srv):
    w = wire(srv)
    w.send(req("/a.txt") + req("/m.bin") + req("/m.bin", method="HEAD") + req("/missing")
           + req("/m.bin", extra=b"Range: bytes=10-19\r\n") + req("/index.html") + req("/a.txt"))
    assert w.response()[::2] == (200, SMALL)
    assert w.response()[::2] == (200, MEDIUM)
    status, headers, body = w.response(head=True)
    assert status == 200 and headers["content-length"] == [str(len(MEDIUM))]
    assert w.response()[0] == 404
    assert w.response()[::2] == (206, MEDIUM[10:20])
    assert w.response()[::2] == (200, b"<p>index</p>")
    assert w.response()[::2] == (200, SMALL)
    w.close()


def test_pipelined_many_small_requests(srv):
    w = wire(srv)
    w.send(b"".join(req(f"/a.txt?n={i}") for i in range(50)))
    for _ in range(50):
        assert w.response()[::2] == (200, SMALL)
    w.close()



def test_http10_close_option_wins_over_keep_alive(srv):
    # RFC 9112 §9.6: a "close" option means close after this response, even
    # next to "keep-alive".
    w = wire(srv)
    w.send(req(version=b"HTTP/1.0", extra=b"Connection: keep-alive, close\r\n"))
    status, headers, body = w.response()
    assert (status, body) == (200, SMALL)
    assert "keep-alive" not in ",".join(headers.get("connection", [])).lower()
    assert w.closed_by_peer()


def test_http10_with_transfer_encoding_closes(srv):
    # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
    # framing (a smuggling tell); the server MUST close after responding,
    # keep-alive or not.
    w = wire(srv)
    w.send(req(version=b"HTTP/1.0", extra=b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n")
           + b"0\r\n\r\n")
    status = w.response()[0]
    assert status in (200, 400), status
    assert w.closed_by_peer(), "connection kept alive after an HTTP/1.0 request with Transfer-Encoding"


def test_pipelined_after_close_is_not_answered(srv):
    w = wire(srv)
    w.send(req(extra=b"Connection: close\r\n") + req("/m.bin"))
    assert w.response()[::2] == (200, SMALL)
    assert w.closed_by_peer()


# -- timeouts ---------------------------------------------------------------------------

def test_header_timeout_slowloris(server_factory, docroot):
    srv = server_factory(docroot, "--header-timeout", "1", "--access-log", "off")
    s = srv.connect()
    s.settimeout(0.05)
    t0 = time.monotonic()
    got = b""
    closed = False
    # One new header line every 0.3 s: every read makes progress, so only a
    # deadline on the whole head (not an idle timer) stops it.
    lines = [b"GET /a.txt HTTP/1.1\r\n", b"Host: t\r\n"] + [b"X-%d: y\r\n" % i for i in range(40)]
    for line in lines:
        try:
            s.sendall(line)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            try:
                data = s.recv(4096)
            except socket.timeout:
                continue
            except ConnectionResetError:
                closed = True
                break
            if not data:
                closed = True
                break
            got += data
        if closed:
            break
    elapsed = time.monotonic() - t0
    s.close()
    assert closed, "slowloris head kept the connection open for %.1f s" % elapsed
    assert elapsed < 4, elapsed
    assert got == b"" or got.startswith(b"HTTP/1.1 408"), got[:60]


def test_header_timeout_idle_after_connect(server_factory, docroot):
    srv = server_factory(docroot, "--header-timeout", "1", "--keepalive-timeout", "1",
                         "--access-log", "off")
    w = wire(srv)
    w.send(b"GET /a.txt HTTP/1.1\r\nHo")
    w.sock.settimeout(4)
    t0 = time.monotonic()
    data = b""
    try:
        while chunk := w.sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    assert time.monotonic() - t0 < 3.5
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:60]
    w.close()


# -- limits -----------------------------------------------------------------------------

def test_long_request_line_414(srv):
    error_then_closed(srv, req("/" + "a" * 9000), 414)


def test_request_line_just_under_limit_is_fine(srv):
    status, _, _ = one(srv, req("/" + "a" * 7000))
    assert status == 404


def test_huge_header_431(srv):
    error_then_closed(srv, req(extra=b"X-Big: " + b"b" * 10000 + b"\r\n"), 431)


def test_too_many_headers_431(srv):
    error_then_closed(srv, req(extra=b"".join(b"X-H%d: v\r\n" % i for i in range(101))), 431)


def test_many_headers_under_limit_ok(srv):
    assert one(srv, req(extra=b"".join(b"X-H%d: v\r\n" % i for i in range(60))))[0] == 200


def test_body_over_limit_413(server_factory, docroot):
    srv = server_factory(docroot, "--max-body-size", "1000", "--access-log", "off")
    error_then_closed(srv, req(method="POST", extra=b"Content-Length: 2000\r\n"), 413)
    error_then_closed(srv, req(method="GET", extra=b"Content-Length: 2000\r\n"), 413)


def test_chunked_body_over_limit_413(server_factory, docroot):
    srv = server_factory(docroot, "--max-body-size", "1000", "--access-log", "off")
    chunk = b"%x\r\n" % 600 + b"z" * 600 + b"\r\n"
    w = wire(srv)
    w.send(req(extra=b"Transfer-Encoding: chunked\r\n") + chunk + chunk + b"0\r\n\r\n")
    assert w.response()[0] == 413
    assert w.closed_by_peer()


def test_get_with_body_is_discarded_and_connection_reused(srv):
    w = wire(srv)
    w.send(req(extra=b"Content-Length: 12\r\n") + b"GET /x HTTP/")
    w.send(req())
    assert w.response()[::2] == (200, SMALL)
    assert w.response()[::2] == (200, SMALL)
    w.send(req(extra=b"Transfer-Encoding: chunked\r\n") + b"5\r\nhello\r\n0\r\n\r\n" + req("/m.bin"))
    assert w.response()[::2] == (200, SMALL)
    assert w.response()[::2] == (200, MEDIUM)
    w.close()


def test_get_with_large_body_is_discarded(srv):
    body = b"q" * 500_000
    w = wire(srv)
    w.send(req(extra=b"Content-Length: %d\r\n" % len(body)) + body + req())
    assert w.response()[::2] == (200, SMALL)
    assert w.response()[::2] == (200, SMALL)
    w.close()


# -- Host and target --------------------------------------------------------------------

def test_http11_without_host_400(srv):
    error_then_closed(srv, req(host=None), 400)


def test_duplicate_host_400(srv):
    error_then_closed(srv, req(extra=b"Host: other\r\n"), 400)



@pytest.mark.parametrize("host", [b"t/../x", b"a b", b"t\\x", b"[::1", b"t:port"])
def test_invalid_host_value_400(srv, host):
    # RFC 9112 §3.2: a Host field with an invalid value MUST get 400 (nginx:
    # "client sent invalid host header").
    status, _, _ = one(srv, req(host=host))
    assert status == 400, (host, status)


def test_empty_host_is_refused(srv):
    # The target URI of a request to us is an "http" URI, whose host must not
    # be empty (RFC 9110 §4.2.1: a recipient MUST reject it); nginx and
    # lighttpd say 400 as well.  An HTTP/1.0 request may leave Host out.
    assert one(srv, req(host=b""))[0] == 400
    assert one(srv, req(host=b"", version=b"HTTP/1.0"))[0] == 400


def test_http10_without_host_ok(srv):
    assert one(srv, req(version=b"HTTP/1.0", host=None))[::2] == (200, SMALL)


def test_absolute_form_target(srv):
    target = f"http://127.0.0.1:{srv.port}/a.txt?x=1"
    assert one(srv, req(target))[::2] == (200, SMALL)


def test_asterisk_form_only_for_options(srv):
    status, headers, _ = one(srv, req("*", method="OPTIONS"))
    assert status in (200, 204)
    assert one(srv, req("*"))[0] == 400


# -- framing defences -------------------------------------------------------------------

def test_content_length_and_transfer_encoding_400(srv):
    error_then_closed(srv, req(extra=b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")
                      + b"0\r\n\r\n", 400)


def test_differing_content_lengths_400(srv):
    error_then_closed(srv, req(extra=b"Content-Length: 5\r\nContent-Length: 6\r\n") + b"hello!", 400)
    error_then_closed(srv, req(extra=b"Content-Length: 5, 6\r\n") + b"hello!", 400)


@pytest.mark.parametrize("value", [b"-1", b"+5", b"0x5", b"5 5", b"abc"])
def test_bad_content_length_400(srv, value):
    error_then_closed(srv, req(extra=b"Content-Length: " + value + b"\r\n") + b"hello", 400)


@pytest.mark.parametrize("body", [b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n",
                                  b"-5\r\nhello\r\n0\r\n\r\n", b"5 \r\nhello\r\n0\r\n\r\n"])
def test_invalid_chunk_400(srv, body):
    error_then_closed(srv, req(extra=b"Transfer-Encoding: chunked\r\n") + body, 400)


CLIENT_HELLO = bytes.fromhex(
    "160301012c010001280303" + "11" * 32 + "20" + "22" * 32
    + "0004130113020100" + "00fb" + "00" * 251)


def test_tls_client_hello_400(srv):
    error_then_closed(srv, CLIENT_HELLO, 400)


def test_http2_preface_400(srv):
    error_then_closed(srv, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400)


def test_garbage_request_line_400(srv):
    error_then_closed(srv, b"\x00\x01\x02 garbage\r\n\r\n", 400)
    # HTTP/0.9 style (no version): a malformed line (400) or an unsupported version (505).
    w = wire(srv)
    w.send(b"GET /a.txt\r\nHost: t\r\n\r\n")
    assert w.response()[0] in (400, 505)
    assert w.closed_by_peer()


def test_obsolete_line_folding_and_space_before_colon_400(srv):
    # RFC 9112 §5.1 / §5.2: whitespace before the colon must be rejected; obs-fold
    # must be rejected or replaced (we require rejection: strict parser).
    error_then_closed(srv, req(extra=b"X-A : b\r\n"), 400)
    error_then_closed(srv, req(extra=b"X-A: b\r\n c\r\n"), 400)


def test_unknown_transfer_coding_501(srv):
    error_then_closed(srv, req(extra=b"Transfer-Encoding: foo, chunked\r\n") + b"0\r\n\r\n", 501)


def test_transfer_encoding_not_ending_in_chunked_rejected(srv):
    # RFC 9112 §6.3: a request whose final coding is not chunked -> 400 and
    # close; an unknown coding may also be answered 501 (§6.1).
    w = wire(srv)
    w.send(req(extra=b"Transfer-Encoding: gzip\r\n") + b"xxxx")
    assert w.response()[0] in (400, 501)
    assert w.closed_by_peer()


def test_http2_version_505(srv):
    error_then_closed(srv, req(version=b"HTTP/2.0"), 505)
    error_then_closed(srv, req(version=b"HTTP/3.0"), 505)


def test_http12_version(srv):
    # RFC 9110 §2.5: a later minor version is read as the highest we
    # implement, and answered in it (nginx, Apache, Go; lighttpd says 505).
    status, _, body = one(srv, req(version=b"HTTP/1.2"))
    assert status == 200, status


def test_lowercase_method_is_not_get(srv):
    # Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET.
    status, _, _ = one(srv, req(method="get"))
    assert status in (400, 501), status


# -- Expect -----------------------------------------------------------------------------

def test_expect_100_continue_get_with_body(srv):
    w = wire(srv)
    w.send(req(extra=b"Content-Length: 5\r\nExpect: 100-continue\r\n"))
    w.sock.settimeout(3)
    status, _, _ = w.response(skip_1xx=False)
    if status == 100:
        w.send(b"hello")
        assert w.response()[::2] == (200, SMALL)
    else:
        # A final answer without reading the body is allowed (RFC 9110 §10.1.1);
        # it closes the connection, whose next bytes could be the body or the
        # next request (test_h1_differential).
        assert status == 200
        assert w.closed_by_peer()
    w.close()


def test_expect_100_continue_post_does_not_hang(srv):
    w = wire(srv)
    w.send(req(method="POST", extra=b"Content-Length: 5\r\nExpect: 100-continue\r\n"))
    w.sock.settimeout(3)
    status, headers, _ = w.response()          # 1xx skipped; final must come
    assert status == 405
    # Its body never came: the answer is the connection's last (RFC 9110
    # §10.1.1: it says so), see test_h1_differential.
    assert headers["connection"] == ["close"]
    assert w.closed_by_peer()
    w.close()


def test_client_gone_mid_body_is_closed(server_factory, tmp_path):
    # The client announces a body, gets its final answer, then hangs up
    # without sending the body.  The server must see the EOF and close its
    # side instead of holding the socket in CLOSE_WAIT until a timeout.
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(SMALL)
    srv = server_factory(root, "--access-log", "off")
    for method in ("POST", "GET"):
        w = wire(srv)
        w.send(req(method=method, extra=b"Content-Length: 5\r\nExpect: 100-continue\r\n"))
        w.sock.settimeout(3)
        assert w.response()[0] in (200, 405)
        w.close()
    time.sleep(1.0)
    assert sockets_in_close_wait(srv.port) == 0, "server kept closed connections in CLOSE_WAIT"


def test_expect_unknown_417(srv):
    w = wire(srv)
    w.send(req(extra=b"Content-Length: 5\r\nExpect: fancy\r\n") + b"hello")
    assert w.response()[0] == 417
    w.close()


def test_100_continue_not_sent_to_http10(srv):
    w = wire(srv)
    w.send(req(version=b"HTTP/1.0", extra=b"Content-Length: 5\r\nExpect: 100-continue\r\n") + b"hello")
    status, _, body = w.response(skip_1xx=False)
    assert (status, body) == (200, SMALL)
    w.close()


# -- Date and Server everywhere ---------------------------------------------------------

@pytest.mark.parametrize("raw", [
    req(), req("/missing"), req(method="POST", extra=b"Content-Length: 0\r\n"),
    req(method="FOO"), req(host=None), req("/" + "a" * 9000), req(method="OPTIONS"),
    req(extra=b'If-None-Match: *\r\n'), req(extra=b"Range: bytes=999999-\r\n"),
    req(version=b"HTTP/2.0"), req("/%2e%2e/x"),
])
def test_date_and_server_on_every_response(srv, raw):
    status, headers, _ = one(srv, raw)
    assert "date" in headers and "server" in headers, (status, headers)
    assert len(headers["date"]) == 1 and headers["date"][0].endswith(" GMT")
    assert headers["server"][0].lower().startswith("flashplug")


def test_requests_library_smoke(srv):
    r = requests.get(srv.url + "/a.txt", timeout=5)
    assert r.status_code == 200 and r.content == SMALL
    with requests.Session() as s:
        for _ in range(5):
            assert s.get(srv.url + "/m.bin", timeout=5).content == MEDIUM


def test_send_timeout_drops_a_client_that_stops_reading(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(b"s" * (16 * 1024 * 1024))
    srv = server_factory(root, "--send-timeout", "1", "--access-log", "off")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.connect(("127.0.0.1", srv.port))
    s.sendall(req("/big.bin"))
    s.recv(1000)
    time.sleep(4)                  # read nothing for well past --send-timeout
    s.settimeout(5)
    got = 0
    try:
        while chunk := s.recv(1 << 20):
            got += len(chunk)
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    assert got < 16 * 1024 * 1024, "a stalled reader was never dropped"
    # And the server still serves others.
    assert requests.get(srv.url + "/big.bin", headers={"Range": "bytes=0-2"}, timeout=5).content == b"sss"

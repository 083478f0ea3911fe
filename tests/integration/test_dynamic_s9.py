"""Session 9 review of the dynamic backends' HTTP semantics: the proxy as an
intermediary (RFC 9110 §7.6, §7.8; RFC 9112 §6.1, §7).

One flashplug proxies ``/c`` to a canned upstream (it answers the bytes a
test gives for the path's last segment, after recording the request) and
``/old`` to Python's ``http.server``, a real HTTP/1.0 upstream that echoes
the body it read by its Content-Length.
"""
import http.server
import socket
import threading

import pytest

from conftest import start_server
from h2_client import H2Client
from proxy_upstreams import ThreadedUpstream

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class CannedUpstream(ThreadedUpstream):
    """Records each request's raw bytes; answers ``answers[last segment]``
    (default OK) and closes."""

    def __init__(self):
        self.answers = {}
        self.got = []
        super().__init__()

    def _serve(self, conn):
        data = b""
        conn.settimeout(5)
        try:
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            chunked = b"transfer-encoding: chunked" in head.lower()
            while len(body) < length or (chunked and not body.endswith(b"0\r\n\r\n")):
                more = conn.recv(65536)
                if not more:
                    break
                body += more
            self.got.append((head, body))
            target = head.split(b" ")[1].decode()
            conn.sendall(self.answers.get(target.rsplit("/", 1)[-1], OK))
        except OSError:
            pass
        finally:
            conn.close()


class Echo10(http.server.BaseHTTPRequestHandler):
    """HTTP/1.0 (http.server's default): knows Content-Length, not chunked."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dyn-s9")
    canned = CannedUpstream()
    old = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo10)
    threading.Thread(target=old.serve_forever, daemon=True).start()
    server = start_server(tmp, "--access-log", "off", "--proxy-read-timeout", "3", "--h2c",
                          "--proxy", f"/c={canned.address}",
                          "--proxy", f"/old=http://127.0.0.1:{old.server_address[1]}",
                          tmp_path=tmp)
    server.canned = canned
    yield server
    server.stop()
    canned.stop()
    old.shutdown()


def exchange(server, data, timeout=5):
    """Send raw bytes on a new connection; all the bytes until it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            more = s.recv(65536)
            if not more:
                return out
            out += more


def forwarded(server, data):
    """The client's answer and the head the canned upstream got (or None)."""
    before = len(server.canned.got)
    answer = exchange(server, data)
    got = server.canned.got[before:]
    return answer, (got[0][0] if got else None)


def fields(head):
    return head.split(b"\r\n")[1:]


# -- Via (RFC 9110 §7.6.3: a gateway MUST send Via in each request it forwards)

def test_via_is_appended_to_the_clients_upstream(proxy):
    answer, head = forwarded(proxy, b"GET /c/a HTTP/1.1\r\nHost: h\r\nVia: 1.0 fred\r\n"
                                    b"Accept: */*\r\nVia: 1.1 fred2\r\n"
                                    b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    vias = [line for line in fields(head) if line.lower().startswith(b"via:")]
    # The client's entries first, ours after them, in one field line: an
    # upstream that reads a field's first line (http.server does) sees all.
    assert vias == [b"Via: 1.0 fred, 1.1 fred2, 1.1 flashplug"]


def test_via_listed_in_connection_is_not_passed_but_ours_is(proxy):
    _, head = forwarded(proxy, b"GET /c/a HTTP/1.1\r\nHost: h\r\nVia: 1.0 fred\r\n"
                               b"Connection: close, via\r\n\r\n")
    assert [line for line in fields(head) if b"via" in line.lower()] == [b"Via: 1.1 flashplug"]


def test_via_names_the_clients_protocol_version(proxy):
    _, head = forwarded(proxy, b"GET /c/a HTTP/1.0\r\nHost: h\r\n\r\n")
    assert b"Via: 1.0 flashplug" in fields(head)


# -- Forwarding fields: only ours

def test_no_x_forwarded_field_of_the_client_is_passed(proxy):
    """An app behind a proxy trusts X-Forwarded-Port and -Prefix (Werkzeug's
    ProxyFix, Spring) to build URLs: a client's own would spoof them."""
    _, head = forwarded(proxy, b"GET /c/a HTTP/1.1\r\nHost: h\r\nX-Forwarded-Port: 1\r\n"
                               b"X-Forwarded-Prefix: /evil\r\nX-Forwarded-Server: e\r\n"
                               b"X-Forwarded-Ssl: on\r\nConnection: close\r\n\r\n")
    names = [line.split(b":")[0].lower() for line in fields(head) if line]
    assert [n for n in names if n.startswith(b"x-forwarded-")] == \
        [b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"]


# -- Max-Forwards (RFC 9110 §7.6.2)

def test_options_with_max_forwards_0_is_answered_by_the_proxy(proxy):
    answer, head = forwarded(proxy, b"OPTIONS /c/a HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n"
                                    b"Connection: close\r\n\r\n")
    assert head is None
    assert answer.startswith(b"HTTP/1.1 200 ") and b"\r\nAllow: " in answer


def test_trace_with_max_forwards_0_is_not_forwarded(proxy):
    answer, head = forwarded(proxy, b"TRACE /c/a HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n"
                                    b"Connection: close\r\n\r\n")
    assert head is None
    assert answer.startswith(b"HTTP/1.1 405 ") and b"\r\nAllow: " in answer


def test_max_forwards_is_decremented_for_options(proxy):
    # (TRACE, the other method it counts for, never goes upstream: 405.)
    _, head = forwarded(proxy, b"OPTIONS /c/a HTTP/1.1\r\nHost: h\r\n"
                        b"Max-Forwards: 3\r\nConnection: close\r\n\r\n")
    assert b"max-forwards: 2" in [line.lower() for line in fields(head)]


def test_max_forwards_of_other_methods_is_passed_as_it_is(proxy):
    _, head = forwarded(proxy, b"GET /c/a HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n"
                               b"Connection: close\r\n\r\n")
    assert b"max-forwards: 0" in [line.lower() for line in fields(head)]


# -- Upgrade (RFC 9110 §7.8: a server switches only to a protocol asked for)

def test_101_to_a_protocol_not_asked_for_is_a_502(proxy):
    """A WebSocket handshake answered by a switch to h2c would open a
    tunnel the client can smuggle HTTP/2 requests through (Go's
    ReverseProxy refuses it: "backend tried to switch protocol")."""
    proxy.canned.answers["h2c"] = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                                   b"Connection: Upgrade\r\n\r\n")
    answer = exchange(proxy, b"GET /c/h2c HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, close\r\n"
                             b"Upgrade: websocket\r\nSec-WebSocket-Key: x\r\n"
                             b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502 ")
    assert "not to the 'websocket' asked for" in proxy.log()


def test_101_to_the_protocol_asked_for_is_a_tunnel(proxy):
    proxy.canned.answers["ws"] = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n"
                                  b"Connection: Upgrade\r\n\r\nframe")
    answer = exchange(proxy, b"GET /c/ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                             b"Upgrade: websocket\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 101 ") and answer.endswith(b"\r\n\r\nframe")


# -- Fields from the upstream

def test_a_response_without_content_type_gets_none_invented(proxy):
    """RFC 9110 §8.3 leaves a missing type to the recipient (assume
    octet-stream, or look at the data); no proxy (nginx, HAProxy, Caddy)
    fills one in, and flashplug did only for short bodies over HTTP/1.1."""
    proxy.canned.answers["untyped"] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    answer = exchange(proxy, b"GET /c/untyped HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nhello")
    assert b"content-type" not in answer.lower()


# -- Framing from the upstream (RFC 9112 §6.1)

def test_http10_response_with_transfer_encoding_is_a_502(proxy):
    """An HTTP/1.0 message with Transfer-Encoding has faulty framing, even
    when it says chunked: a 1.0 hop would have read the chunks as content."""
    proxy.canned.answers["te10"] = (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    b"3\r\nabc\r\n0\r\n\r\n")
    answer = exchange(proxy, b"GET /c/te10 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502 ")
    assert "Transfer-Encoding in an HTTP/1.0 response" in proxy.log()


# -- Chunked request bodies (RFC 9112 §7: chunked only to a known HTTP/1.1 server)

def chunked_post(path, body, piece=1000):
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + piece]), body[i:i + piece])
                      for i in range(0, len(body), piece))
    return (b"POST " + path + b" HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + chunks + b"0\r\n\r\n")


def test_small_chunked_body_goes_upstream_with_a_content_length(proxy):
    before = len(proxy.canned.got)
    exchange(proxy, chunked_post(b"/c/post", b"x" * 5000))
    head, body = proxy.canned.got[before]
    assert b"Content-Length: 5000" in fields(head) and b"chunked" not in head.lower()
    assert body == b"x" * 5000


def test_long_chunked_body_to_an_http11_upstream_streams_chunked(proxy):
    before = len(proxy.canned.got)
    exchange(proxy, chunked_post(b"/c/post", b"y" * 200_000, piece=50_000))
    head, body = proxy.canned.got[before]
    assert b"Transfer-Encoding: chunked" in fields(head)
    assert body.endswith(b"0\r\n\r\n") and body.count(b"y") == 200_000


def test_chunked_body_to_an_http10_upstream(proxy):
    """http.server knows no chunked: a small body reaches it whole (with a
    Content-Length); once it is known to answer HTTP/1.0, a body too long
    to read ahead is refused with 411, not sent chunked to be misread."""
    answer = exchange(proxy, chunked_post(b"/old/echo", b"hello" * 100, piece=7))
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"hello" * 100)
    answer = exchange(proxy, chunked_post(b"/old/echo", b"z" * 200_000, piece=50_000))
    assert answer.startswith(b"HTTP/1.1 411 ")
    answer = exchange(proxy, b"POST /old/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 200000\r\n"
                             b"Connection: close\r\n\r\n" + b"z" * 200_000)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"z" * 200_000)


def test_http2_body_without_length_goes_up_with_one(proxy):
    """An HTTP/2 request body has no length unless a field gives one: it is
    read ahead like a chunked one, and the HTTP/1.1 upstream gets its
    Content-Length; Via names HTTP/2 ("2")."""
    before = len(proxy.canned.got)
    client = H2Client(proxy.port)
    try:
        sid = client.request("/c/h2post", method="POST", body=b"q" * 3000)
        status, _, _ = client.response(sid)
    finally:
        client.close()
    assert status == 200
    head, body = proxy.canned.got[before]
    assert b"Content-Length: 3000" in fields(head) and body == b"q" * 3000
    assert b"Via: 2 flashplug" in fields(head)

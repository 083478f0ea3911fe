"""Faults the HTTP/1.1 differential review found (bench/h1_differential.py,
docs/reliability.md), each checked against a real `flashplug serve`.

Theory of operation: the review sends the same raw requests to flashplug,
nginx, Apache and lighttpd; where flashplug differed and the RFC sides with
the others, the fix has a test here, on raw sockets (the exact bytes
matter), against one server for the module.
"""
import pytest

from conftest import start_server
from test_kernel_http import Closed, wire
from tests.h2_client import H2Client

H = b"Host: t\r\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("h1diff")
    root = tmp / "root"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "a.txt").write_bytes(b"a\n")
    (root / "index.html").write_bytes(b"<p>index</p>\n")
    server = start_server(root, "--access-log", "off", "--h2c", tmp_path=tmp)
    yield server
    server.stop()


def everything(server, raw):
    """All the bytes the server sends for ``raw`` up to its close."""
    w = wire(server)
    try:
        w.send(raw)
        try:
            while True:
                w._fill()
        except Closed:
            pass
        return w.buf
    finally:
        w.close()


# RFC 9110 §9.3.2: the answer to a HEAD has no content, an error's neither
# (nginx sends none; flashplug sent the error page after the head when the
# request failed to parse, which a client reads as the start of the next
# response).
@pytest.mark.parametrize("raw, status", [
    (b"HEAD * HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"HEAD / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    (b"HEAD / HTTP/1.1\r\n\r\n", 400),
    (b"HEAD http://u@t/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"HEAD / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
     400),
    (b"HEAD / HTTP/1.1\r\n" + H + b"Expect: fancy\r\n\r\n", 417),
    (b"HEAD / HTTP/2.0\r\n" + H + b"\r\n", 505),
    (b"HEAD /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    (b"HEAD / HTTP/1.1\r\n" + H + b"".join(b"X-%d: a\r\n" % i for i in range(101)) + b"\r\n",
     431),
], ids=["asterisk", "bad-host", "no-host", "userinfo", "cl-te", "expect", "http2", "414",
        "431"])
def test_an_error_answered_to_a_head_has_no_content(srv, raw, status):
    data = everything(srv, raw)
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 %d " % status), data[:80]
    assert rest == b"", f"content after the head of a HEAD's {status}: {rest[:60]!r}"
    # The head is the one a GET would get: its Content-Length included.
    assert b"\r\ncontent-length: " in head.lower()


def test_an_error_answered_to_a_head_over_h2_has_no_data(srv):
    # The same error path answers HTTP/2 streams: no DATA after the HEADERS.
    client = H2Client(srv.port, timeout=5)
    try:
        sid = client.request("/", method="HEAD", headers=[("expect", "fancy")])
        ended = []
        while not ended and not client.closed:
            ended = [e for e in client.pump() if type(e).__name__ == "StreamEnded"]
        status, headers, body = client.response(sid)
    finally:
        client.close()
    assert (status, body) == (417, b"")
    assert headers[b"content-length"] != b"0"


# RFC 9110 §10.1.1: a server that answers before it read the content SHOULD
# say whether it closes the connection or goes on reading.  A client that
# waits for "100 Continue" and gets a final answer instead may never send
# the body, or send its next request in its place (curl closes; Node.js's
# client and many proxies reuse the connection): read as the body, that
# request would vanish.  nginx kept such a connection open; flashplug now
# says "Connection: close" and closes, as Node.js, Play and Go's proxies do.
EXPECT = b"Expect: 100-continue\r\nContent-Length: 5\r\n"


@pytest.mark.parametrize("raw, status", [
    (b"POST /index.html HTTP/1.1\r\n" + H + EXPECT + b"\r\n", 405),    # static, not allowed
    (b"GET /index.html HTTP/1.1\r\n" + H + EXPECT + b"\r\n", 200),     # static, cached path
    (b"GET /dir/ HTTP/1.1\r\n" + H + EXPECT + b"\r\n", 200),           # a plugin's handler
], ids=["405", "cached-file", "autoindex"])
def test_an_answer_instead_of_100_continue_closes_the_connection(srv, raw, status):
    w = wire(srv)
    try:
        w.send(raw)
        got, headers, _ = w.response()
        assert got == status
        assert headers.get("connection") == ["close"]
        # (After a lingering close: a body sent anyway must not reset the
        # connection under the answer.)
        assert w.closed_by_peer(within=10), "the connection waits for a body never sent"
    finally:
        w.close()



# A request line without a version (HTTP/0.9's "GET /") is no request-line of
# RFC 9112 §3, which SHOULD get 400; llhttp reads it as version 0.9, which
# was answered 505.  lighttpd answers it 400, nginx and Apache 400 to an
# explicit "HTTP/0.9" (and the HTTP/0.9 body to none).
@pytest.mark.parametrize("line", [b"GET /index.html", b"GET /index.html HTTP/0.9"])
def test_a_request_line_of_http09_is_400(srv, line):
    data = everything(srv, line + b"\r\n" + H + b"\r\n")
    assert data.startswith(b"HTTP/1.1 400 "), data[:60]

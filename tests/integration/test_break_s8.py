"""Faults found in the eighth session by testing flashplug as outside
testers would: from the RFCs (9110, 9112, 9113, 3875, 6455) and from public
bug reports of other servers.  Each test failed before its fix, against a
real ``flashplug serve``."""
import os
import socket
import textwrap
import time

import pytest

from conftest import start_server
from proxy_upstreams import RecordingUpstream
from test_kernel_http import error_then_closed, wire
from test_upgrade import start as start_echoer


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("break_s8")
    root = tmp / "root"
    (root / "cgi-bin").mkdir(parents=True)
    (root / "index.html").write_bytes(b"index\n")
    scripts = {
        "echo.sh": 'printf "Content-Type: text/plain\\n\\nlen=%s\\n" "$CONTENT_LENGTH"\ncat\n',
        # Its head first (the sleep lets it go out), then its body's echo.
        "late.sh": 'printf "Content-Type: text/plain\\n\\nlen=%s\\n" "$CONTENT_LENGTH"\n'
                   'sleep 0.3\ncat\n',
        # A script that tells its error log what a client sent it.
        "complain.sh": 'printf "bad name: %s\\n" "$QUERY_STRING" | sed "s/%1b/\\x1b/g; s/%0d/\\r/g" >&2\n'
                       'printf "Content-Type: text/plain\\n\\nok\\n"\n',
    }
    for name, text in scripts.items():
        script = root / "cgi-bin" / name
        script.write_text("#!/bin/sh\n" + textwrap.dedent(text))
        os.chmod(script, 0o755)
    server = start_server(root, "--plugins", "cgi", "--access-log", "off", tmp_path=tmp)
    yield server
    server.stop()


# -- RFC 9110 §7.8: a server may ignore an Upgrade, but then the request is an
#    HTTP/1.1 request with its body.  httptools tells llhttp to skip the body of
#    a request that asks for one, so `curl --http2 -d hello http://...` (which
#    offers h2c on its POST) reached the script with CONTENT_LENGTH=5 and an
#    empty body; through the proxy, the upstream was promised 5 bytes that never
#    came (uvicorn#2722 and httptools#124 are the same fault).  nginx, lighttpd
#    and Apache read the body and answer the POST. ---------------------------------

UPGRADE_H2C = (b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
               b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n")
UPGRADE_WS = (b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


@pytest.mark.parametrize("upgrade", [UPGRADE_H2C, UPGRADE_WS], ids=["h2c", "websocket"])
@pytest.mark.parametrize("framing, body", [
    (b"Content-Length: 5\r\n", b"hello"),
    (b"Transfer-Encoding: chunked\r\n", b"2\r\nhe\r\n3;x=y\r\nllo\r\n0\r\nX-T: 1\r\n\r\n"),
], ids=["content-length", "chunked"])
@pytest.mark.parametrize("split", [False, True], ids=["one-write", "body-later"])
def test_the_body_of_a_request_that_offers_an_upgrade_is_read(srv, upgrade, framing, body,
                                                              split):
    head = b"POST /cgi-bin/echo.sh HTTP/1.1\r\nHost: t\r\n" + upgrade + framing + b"\r\n"
    w = wire(srv)
    try:
        if split:
            w.send(head)
            time.sleep(0.2)
            w.send(body)
        else:
            w.send(head + body)
        status, headers, got = w.response()
        assert status == 200
        assert got.endswith(b"\nhello"), got
        # The Upgrade was ignored, and the connection goes on (session 10).
        assert headers.get("connection") is None
        w.send(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
        assert w.response()[0] == 200
    finally:
        w.close()
    assert "Traceback" not in srv.log()


def test_the_proxy_passes_the_body_of_a_post_that_offers_h2c(server_factory, tmp_path):
    upstream = RecordingUpstream()
    try:
        s = server_factory(tmp_path, "--access-log", "off", "--proxy", f"/={upstream.address}")
        w = wire(s)
        try:
            w.send(b"POST /x HTTP/1.1\r\nHost: x\r\n" + UPGRADE_H2C
                   + b"Content-Length: 5\r\n\r\nhello")
            assert w.response()[0] == 200
        finally:
            w.close()
        seen = upstream.requests[-1]
        assert (bytes(seen.body), seen.header("upgrade")) == (b"hello", None)
    finally:
        upstream.stop()


def test_an_upgrade_body_is_framed_as_any_other(srv):
    # The made-up head of the second parser frames nothing of its own: a
    # trailer that tries framing is refused as in any chunked body, and the
    # request behind the body is never answered (the connection closes) ...
    error_then_closed(srv, b"POST /cgi-bin/echo.sh HTTP/1.1\r\nHost: t\r\n" + UPGRADE_WS
                      + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
                      + b"Content-Length: 9\r\n\r\nGET /index.html HTTP/1.1\r\nHost: t\r\n\r\n",
                      400)
    # ... while behind a well-framed body it is, as behind any POST.
    w = wire(srv)
    try:
        w.send(b"POST /index.html HTTP/1.1\r\nHost: t\r\n" + UPGRADE_WS
               + b"Content-Length: 5\r\n\r\nhelloGET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
        assert w.response()[0] == 405
        assert w.response()[0] == 200
    finally:
        w.close()
    assert "error while parsing" not in srv.log()


# -- RFC 9110 §7.8: "A server MUST ignore an Upgrade header field that is received
#    in an HTTP/1.0 request" (and §15.2: no 1xx to an HTTP/1.0 client).  A plugin's
#    101 switched an HTTP/1.0 connection, and the proxy passed the Upgrade on and
#    relayed the upstream's 101 (nginx does too). ---------------------------------

def test_a_plugin_cannot_switch_an_http10_connection(server_factory, tmp_path):
    s = start_echoer(server_factory, tmp_path)
    error_then_closed(
        s, b"GET /echo HTTP/1.0\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n", 500)
    assert "answered 101 to a request that asked for no Upgrade" in s.log()


def test_the_proxy_passes_no_upgrade_of_an_http10_request(server_factory, tmp_path):
    upstream = RecordingUpstream()
    try:
        s = server_factory(tmp_path, "--access-log", "off", "--proxy", f"/={upstream.address}")
        w = wire(s)
        try:
            w.send(b"GET /x HTTP/1.0\r\nHost: x\r\n" + UPGRADE_WS + b"\r\n")
            status, _, body = w.response()
        finally:
            w.close()
        assert (status, body) == (200, b"index\n")
        assert upstream.requests[-1].header("upgrade") is None
    finally:
        upstream.stop()


# -- Terminal escapes in the error log (CVE-2009-4487 in nginx, CVE-2013-1862 in
#    Apache): a script's stderr went to the error log raw, so a client whose input
#    a script echoes there could send ESC sequences to the terminal that shows
#    the log, or a CR that overwrites the line's prefix. -------------------------

def test_a_scripts_stderr_reaches_the_error_log_escaped(srv):
    w = wire(srv)
    try:
        w.send(b"GET /cgi-bin/complain.sh?%1b]0;owned%07%1b[2J%0d2026-01-01%20[ERROR]%20forged "
               b"HTTP/1.1\r\nHost: t\r\n\r\n")
        assert w.response()[0] == 200
    finally:
        w.close()
    for _ in range(50):
        if "bad name:" in srv.log():
            break
        time.sleep(0.1)
    line = [ln for ln in srv.log().splitlines() if "bad name:" in ln][0]
    assert "\x1b" not in line and "\r" not in line
    assert line.endswith(r"bad name: \x1b]0;owned%07\x1b[2J\x0d2026-01-01%20[ERROR]%20forged")


# -- RFC 9110 §15.2, §10.1.1: a 1xx comes before the final response, never after.
#    A script that answered before it read its body (its head already sent) and
#    then read, made the kernel send "100 Continue" then: into the chunked body
#    (curl: "Illegal or missing hexadecimal sequence in chunked-encoding", with
#    the Expect curl adds to uploads over 1 MiB), or over HTTP/2 as DATA. ---------

EXPECT_POST = (b"POST /cgi-bin/%s HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
               b"Content-Length: 5\r\n\r\n")


def _read_for(w, seconds):
    w.sock.settimeout(seconds)
    data = b""
    try:
        while more := w.sock.recv(65536):
            data += more
    except socket.timeout:
        pass
    return data


def test_no_100_continue_after_the_final_response_head(srv):
    w = wire(srv)
    try:
        w.send(EXPECT_POST % b"late.sh")
        data = _read_for(w, 1.5)
        # (A 100 before the final head is right: the script may read first.)
        final = data.partition(b"HTTP/1.1 200 OK\r\n")[2]
        assert final, data
        assert b"100 Continue" not in final, data
        # The client sends its body after all (it waited long enough): the
        # answer ends as it should.  If the final head came while the client
        # still waited for its 100, the head said "Connection: close" (its
        # next bytes could be the body or a request: test_h1_differential),
        # and the connection then closes, in step; after a 100 it stays.
        told_to_send = data.startswith(b"HTTP/1.1 100 Continue\r\n")
        closing = b"\r\nConnection: close\r\n" in final.partition(b"\r\n\r\n")[0] + b"\r\n"
        assert closing != told_to_send, data
        w.send(b"hello")
        rest = final + _read_for(w, 1.5)
        assert b"100 Continue" not in rest
        assert rest.endswith(b"\r\n\r\n6\r\nlen=5\n\r\n5\r\nhello\r\n0\r\n\r\n"), rest
        assert w.closed_by_peer() == closing
    finally:
        w.close()


def test_no_100_continue_after_the_final_response_head_over_h2(server_factory, tmp_path):
    pytest.importorskip("h2")
    import h2.events
    from tests.h2_client import H2Client
    root = tmp_path / "root"
    (root / "cgi-bin").mkdir(parents=True)
    script = root / "cgi-bin" / "echo.sh"
    script.write_text('#!/bin/sh\nprintf "Content-Type: text/plain\\n\\nlen=%s\\n" '
                      '"$CONTENT_LENGTH"\nsleep 0.3\ncat\n')
    script.chmod(0o755)
    s = server_factory(root, "--h2c", "--plugins", "cgi")
    client = H2Client(s.port)
    sid = client.request("/cgi-bin/echo.sh", method="POST", end=False,
                         headers=[("content-length", "5"), ("expect", "100-continue")])
    while not any(isinstance(e, h2.events.DataReceived) for e in client.events):
        client.pump()
    time.sleep(1.0)     # the script reads its standard input by now
    client.h2.send_data(sid, b"hello", end_stream=True)
    client.flush()
    status, _, body = client.response(sid)
    client.close()
    assert (status, body) == (200, b"len=5\nhello"), body


# -- RFC 9110 §9.3.6, RFC 9112 §3.2.3: CONNECT takes host:port.  An origin-form
#    CONNECT went to the plugin whose route its path named: the proxy passed it
#    upstream and relayed a "200 OK" with a Content-Length (a 2xx to CONNECT makes
#    the connection a tunnel, whose client must ignore that field), a CGI script
#    answered it.  It is 400 now, before any route (Apache: 400; nginx and
#    lighttpd: 405). --------------------------------------------------------------

def test_an_origin_form_connect_reaches_no_script(srv):
    error_then_closed(srv, b"CONNECT /cgi-bin/echo.sh HTTP/1.1\r\nHost: t\r\n\r\n", 400)


def test_an_origin_form_connect_is_not_proxied(server_factory, tmp_path):
    upstream = RecordingUpstream()
    try:
        s = server_factory(tmp_path, "--access-log", "off", "--proxy", f"/={upstream.address}")
        w = wire(s)
        try:
            w.send(b"CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n")
            assert w.response()[0] == 400
        finally:
            w.close()
        assert not upstream.requests
    finally:
        upstream.stop()

"""Faults found in the eighth session by testing flashplug as outside
testers would: from the RFCs (9110, 9112, 9113, 3875, 6455) and from public
bug reports of other servers.  Each test failed before its fix, against a
real ``flashplug serve``."""
import os
import textwrap

import pytest

from conftest import start_server
from test_kernel_http import wire


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("break_s8")
    root = tmp / "root"
    (root / "cgi-bin").mkdir(parents=True)
    (root / "index.html").write_bytes(b"index\n")
    echo = root / "cgi-bin" / "echo.sh"
    echo.write_text("#!/bin/sh\n" + textwrap.dedent(
        'printf "Content-Type: text/plain\\n\\nlen=%s\\n" "$CONTENT_LENGTH"\ncat\n'))
    os.chmod(echo, 0o755)
    server = start_server(root, "--plugins", "cgi", "--access-log", "off", tmp_path=tmp)
    yield server
    server.stop()


# -- RFC 9110 §7.8: a server may ignore an Upgrade, but then the request is an
#    HTTP/1.1 request with its body.  httptools tells llhttp to skip the body of
#    a request that asks for one, so `curl --http2 -d hello http://...` (which
#    offers h2c on its POST) reached the script with CONTENT_LENGTH=5 and an
#    empty body; through the proxy, the upstream was promised 5 bytes that never
#    came.  nginx and lighttpd read the body and answer the POST. ----------------

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
            import time
            time.sleep(0.2)
            w.send(body)
        else:
            w.send(head + body)
        status, headers, got = w.response()
        assert status == 200
        assert got.endswith(b"\nhello"), got
        assert headers.get("connection") == ["close"]    # the Upgrade was ignored
        assert w.closed_by_peer()
    finally:
        w.close()
    assert "Traceback" not in srv.log()


def test_an_upgrade_body_is_framed_as_any_other(srv):
    # The made-up head of the second parser frames nothing of its own: a
    # trailer that tries framing is refused as in any chunked body, and a
    # request behind the body is never answered (the connection closes).
    w = wire(srv)
    try:
        w.send(b"POST /cgi-bin/echo.sh HTTP/1.1\r\nHost: t\r\n" + UPGRADE_WS
               + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 9\r\n\r\n"
               + b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
        assert w.response()[0] == 400
        assert w.closed_by_peer()
    finally:
        w.close()
    w = wire(srv)
    try:
        w.send(b"POST /index.html HTTP/1.1\r\nHost: t\r\n" + UPGRADE_WS
               + b"Content-Length: 5\r\n\r\nhelloGET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
        assert w.response()[0] == 405
        assert w.closed_by_peer()
    finally:
        w.close()

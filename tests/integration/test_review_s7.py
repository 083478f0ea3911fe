"""Faults a hostile review found in the seventh session by writing requests
from the RFCs (9110, 9112, 3875, 3986) and comparing the answers with nginx's
and lighttpd's, each against a real ``flashplug serve``.  Each test failed
before its fix."""
import socket
import stat
import time

import pytest

from test_review_s5 import head_fields, raw

from conftest import start_server
from tests.h2_client import H2Client


def script(path, text):
    path.write_text("#!/usr/bin/env python3\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("review_s7") / "root"
    (root / "cgi-bin").mkdir(parents=True)
    (root / "t.txt").write_bytes(b"0123456789" * 30)
    (root / "empty.txt").write_bytes(b"")
    (root / "index.html").write_bytes(b"<p>home</p>\n")
    script(root / "cgi-bin" / "away.py",
           "print('Status: 200 OK')\nprint('Location: https://example.org/x')\n"
           "print('Content-Type: text/plain')\nprint()\nprint('not a redirect page')\n")
    return root


@pytest.fixture(scope="module")
def srv(root):
    log = root.parent / "access.log"
    server = start_server(root, "--plugins", "cgi,status", "--h2c", "--access-log", log,
                          tmp_path=root.parent)
    server.access_log = log
    yield server
    server.stop()


def status_of(response):
    return int(response.split(b" ", 2)[1])


def logged(server, marker):
    """The access-log line that holds ``marker`` (str), waiting for it to
    be written (the log is flushed once a second)."""
    for _ in range(200):
        lines = [line for line in server.access_log.read_text("latin-1").splitlines()
                 if marker in line]
        if lines:
            return lines[-1]
        time.sleep(0.05)
    raise AssertionError(f"{marker!r} not in the access log")


# -- RFC 9110 §9.3.6, §9.1: CONNECT ----------------------------------------------------------


def test_connect_is_501_over_http1_as_over_h2(srv):
    """We are no proxy: a CONNECT (authority-form, RFC 9112 §3.2.3) is a
    method not implemented, 501, over HTTP/1.1 as over HTTP/2 (it was 400
    over HTTP/1.1, 501 over h2)."""
    out = raw(srv.port, b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n")
    assert status_of(out) == 501, out[:200]
    c = H2Client(srv.port)
    sid = c.h2.get_next_available_stream_id()
    c.h2.send_headers(sid, [(b":method", b"CONNECT"), (b":authority", b"h2.example.org:443"),
                            (b"user-agent", b"ua-h2")], end_stream=True)
    c.flush()
    assert c.response(sid)[0] == 501
    # logged as read, as over HTTP/1.1 (it was "-")
    line = logged(srv, "h2.example.org")
    assert '"CONNECT h2.example.org:443 HTTP/2.0" 501 ' in line and line.endswith('"ua-h2"'), line


@pytest.mark.parametrize("target", [b"example.org", b"*", b"http://example.org/", b"/x:443"])
def test_connect_to_no_host_and_port_is_400(srv, target):
    """RFC 9112 §3.2.3: CONNECT takes host:port and nothing else."""
    out = raw(srv.port, b"CONNECT " + target + b" HTTP/1.1\r\nHost: example.org\r\n\r\n")
    assert status_of(out) == 400, out[:200]


# -- the access log of a refused head -----------------------------------------------------


def test_head_refused_after_its_request_line_is_logged_with_it(srv):
    """Two Host fields: 400; the log shows the request line, Referer and
    User-Agent read (as nginx logs them), not "-"."""
    out = raw(srv.port, b"GET /t.txt?two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n"
                        b"Referer: http://r/\r\nUser-Agent: ua-s7\r\n\r\n")
    assert status_of(out) == 400
    line = logged(srv, "two-hosts")
    assert '"GET /t.txt?two-hosts HTTP/1.1" 400 ' in line, line
    assert line.endswith('"http://r/" "ua-s7"'), line


def test_head_refused_in_a_field_line_is_logged_with_its_request_line(srv):
    out = raw(srv.port, b"GET /t.txt?bad-field HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n")
    assert status_of(out) == 400
    assert '"GET /t.txt?bad-field HTTP/1.1" 400 ' in logged(srv, "bad-field")


# -- RFC 9110 §9.3.7: OPTIONS * ---------------------------------------------------------------


def test_options_asterisk_allows_post_when_scripts_are_served(srv, root, tmp_path):
    """With the cgi plugin a script takes POST: ``OPTIONS *`` says so
    (lighttpd with mod_cgi: ``OPTIONS, GET, HEAD, POST``); without it, a
    static server allows GET and HEAD."""
    status, fields = head_fields(raw(srv.port, b"OPTIONS * HTTP/1.1\r\nHost: a\r\n"
                                               b"Connection: close\r\n\r\n"))
    assert (status, fields["allow"]) == (200, "GET, HEAD, POST, OPTIONS")
    plain = start_server(root, "--plugins", "status", tmp_path=tmp_path)
    try:
        status, fields = head_fields(raw(plain.port, b"OPTIONS * HTTP/1.1\r\nHost: a\r\n"
                                                     b"Connection: close\r\n\r\n"))
        assert (status, fields["allow"]) == (200, "GET, HEAD, OPTIONS")
    finally:
        plain.stop()


# -- RFC 3875 §6.2.4: a client redirect's status ------------------------------------------------


def test_cgi_status_200_with_absolute_location_is_302(srv):
    """Apache's mod_cgi answers 302 too, without the script's body; a 200
    with a Location is no redirect a browser follows."""
    out = raw(srv.port, b"GET /cgi-bin/away.py HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    status, fields = head_fields(out)
    assert (status, fields["location"]) == (302, "https://example.org/x")
    assert b"not a redirect page" not in out       # Apache drops it too


# -- RFC 9110 §14.2: an invalid bytes range ----------------------------------------------------


@pytest.mark.parametrize("value", [b"bytes=5-2", b"bytes=abc", b"bytes=-",
                                   b"bytes=99999999999999999999999-"])
def test_invalid_bytes_range_is_416_as_nginx_answers(srv, value):
    """They were ignored (200 with the whole file)."""
    status, fields = head_fields(raw(srv.port, b"GET /t.txt HTTP/1.1\r\nHost: a\r\nRange: " +
                                     value + b"\r\nConnection: close\r\n\r\n"))
    assert (status, fields["content-range"]) == (416, "bytes */300")


def test_range_of_another_unit_spelling_is_ignored(srv):
    """``bytes =`` is no ``bytes`` unit: 200, as nginx and lighttpd answer."""
    out = raw(srv.port, b"GET /t.txt HTTP/1.1\r\nHost: a\r\nRange: bytes = 0-1\r\n"
                        b"Connection: close\r\n\r\n")
    assert status_of(out) == 200


# -- RFC 9110 §9.1: methods are case-sensitive tokens ---------------------------------------------


@pytest.mark.parametrize("method", [b"get", b"Get", b"BREW"])
def test_unknown_method_in_any_case_is_501(srv, method):
    """``get`` is not GET but another, unknown method: 501, as Apache and
    lighttpd answer (it was 400, as if malformed)."""
    out = raw(srv.port, method + b" /t.txt HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status_of(out) == 501, out[:100]


# -- RFC 9112 §3.2.2, RFC 3986 §3.2.3: absolute-form reads its host as Host does -------------------


@pytest.mark.parametrize("authority", [b"a:", b"a:99999", b"[::1]", b"A.example"])
def test_absolute_form_takes_every_host_a_host_field_takes(srv, authority):
    """``Host: a:`` was 200 and ``GET http://a:/t.txt`` 400 (port = *DIGIT)."""
    for target in (b"/t.txt", b"http://" + authority + b"/t.txt"):
        out = raw(srv.port, b"GET " + target + b" HTTP/1.1\r\nHost: " + authority +
                  b"\r\nConnection: close\r\n\r\n")
        assert status_of(out) == 200, (target, out[:100])


@pytest.mark.parametrize("target, status", [
    (b"http://u@a/t.txt", 400), (b"http://a:x/t.txt", 400), (b"http:///t.txt", 400),
    (b"http://a", 200), (b"http://a?x", 200), (b"HTTP://A/t.txt?q#f", 200),
])
def test_absolute_form_edges(srv, target, status):
    out = raw(srv.port, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert status_of(out) == status, out[:100]


def test_head_refused_in_its_version_is_logged_as_unread(srv):
    """A second message's broken version is not logged with the first's."""
    out = raw(srv.port, b"GET /t.txt HTTP/1.1\r\nHost: a\r\n\r\n"
                        b"GET /t.txt?bad-version HTX/1.1\r\nHost: a\r\n\r\n")
    assert out.count(b"HTTP/1.1 200 OK") == 1 and b"HTTP/1.1 400" in out
    logged(srv, '"-" 400 ')      # waits for the flush
    assert "bad-version" not in srv.access_log.read_text("latin-1")


def test_request_whose_body_breaks_is_logged_with_its_line(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /cgi-bin/away.py?bad-chunk HTTP/1.1\r\nHost: a\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.3)                # so the body comes in a piece of its own
        s.sendall(b"zz\r\n")           # not a chunk size
        assert b" 400 " in s.recv(65536)
    assert '"POST /cgi-bin/away.py?bad-chunk HTTP/1.1" 400 ' in logged(srv, "bad-chunk")

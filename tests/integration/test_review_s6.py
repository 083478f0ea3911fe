"""Faults a hostile review found in the sixth session by writing requests
from the RFCs (9110, 9112, 9113, 3875) and from other servers' bug reports, each
against a real ``flashplug serve``.  Each test failed before its fix."""
import email.utils
import os
import socket
import stat

import pytest

from test_review_s5 import raw

from conftest import start_server


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("review_s6") / "root"
    (root / "cgi-bin").mkdir(parents=True)
    (root / "t.txt").write_bytes(b"0123456789" * 30)
    env = root / "cgi-bin" / "env.py"
    env.write_text("#!/usr/bin/env python3\nimport os\nprint('Content-Type: text/plain')\n"
                   "print()\nfor k in sorted(os.environ):\n    print(f'{k}={os.environ[k]!r}')\n")
    env.chmod(env.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return root


@pytest.fixture(scope="module")
def srv(root):
    server = start_server(root, "--plugins", "cgi", "--access-log", "off",
                          tmp_path=root.parent)
    yield server
    server.stop()


def status_of(response):
    return int(response.split(b" ", 2)[1])


# -- RFC 9110 §5.5: the whitespace that ends a field line is not in its value -------------


@pytest.mark.parametrize("host", [b"t ", b"t\t", b"t  \t "])
def test_trailing_whitespace_of_host_is_not_part_of_it(srv, host):
    """nginx, Apache and h11 take ``Host: t `` as host ``t``; it was a 400."""
    for _ in range(2):      # the full parse, then the scanned-head path
        out = raw(srv.port, b"GET /t.txt HTTP/1.1\r\nHost: " + host +
                  b"\r\nConnection: close\r\n\r\n")
        assert status_of(out) == 200, out[:200]


def continued_post(port, expect):
    """POST a one-byte body with ``Expect: <expect>`` (bytes): the server
    must answer 100 Continue before the body, then 200."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /cgi-bin/env.py HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
                  b"Expect: " + expect + b"\r\nConnection: close\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n")
        s.sendall(b"x")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert b"200 OK" in out, out[:300]


def test_trailing_whitespace_of_expect_still_asks_for_100(srv):
    """``Expect: 100-continue `` was answered 417."""
    continued_post(srv.port, b"100-continue ")


def test_trailing_whitespace_does_not_reach_cgi_variables(srv):
    out = raw(srv.port, b"POST /cgi-bin/env.py HTTP/1.1\r\nHost: t\r\n"
                        b"Content-Type: text/plain \r\nX-Y: v\t\r\nContent-Length: 1\r\n"
                        b"Connection: close\r\n\r\nx")
    assert b"CONTENT_TYPE='text/plain'\n" in out, out
    assert b"HTTP_X_Y='v'\n" in out, out


# -- RFC 9110 §10.1.1: Expect ---------------------------------------------------------------


@pytest.mark.parametrize("fields", [b"", b"Content-Length: 0\r\n"])
def test_an_unknown_expectation_is_417_with_or_without_a_body(srv, fields):
    """It was 417 only beside a body; without one the expectation was
    silently dropped.  Apache and Go's net/http (Caddy) answer 417 both
    ways; so do we now."""
    out = raw(srv.port, b"GET /t.txt HTTP/1.1\r\nHost: t\r\nExpect: fancy\r\n" + fields +
              b"Connection: close\r\n\r\n")
    assert status_of(out) == 417, out[:200]


@pytest.mark.parametrize("expect", [b"100-Continue", b"100-continue, 100-continue"])
def test_100_continue_is_read_as_a_list_member_without_regard_to_case(srv, expect):
    continued_post(srv.port, expect)


def test_an_empty_expect_is_no_expectation(srv):
    out = raw(srv.port, b"GET /t.txt HTTP/1.1\r\nHost: t\r\nExpect:\r\n"
                        b"Connection: close\r\n\r\n")
    assert status_of(out) == 200, out[:200]


# -- RFC 9110 §8.8.2.1: no Last-Modified later than the Date ---------------------------------


def test_a_listing_of_a_folder_dated_in_the_future_is_last_modified_now(tmp_path,
                                                                         server_factory):
    """The static handler clamped a file's future mtime; the autoindex
    listing sent its folder's (here 2040) as it was."""
    root = tmp_path / "root"
    (root / "future").mkdir(parents=True)
    (root / "future" / "f.txt").write_bytes(b"x")
    later = 2_208_988_800       # 2040-01-01
    os.utime(root / "future" / "f.txt", (later, later))
    os.utime(root / "future", (later, later))
    server = server_factory(root, "--plugins", "autoindex")
    out = raw(server.port, b"GET /future/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head = out.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in head[1:])
    assert status_of(out) == 200
    modified = email.utils.parsedate_to_datetime(fields["Last-Modified"]).timestamp()
    # The Date line is renewed once a second, so "now" may run a second ahead of it.
    assert modified <= email.utils.parsedate_to_datetime(fields["Date"]).timestamp() + 1, fields


# -- as python -m http.server does ----------------------------------------------------------


def test_index_htm_is_an_index_file_as_for_http_server(tmp_path, server_factory):
    """http.server, which flashplug replaces, serves index.htm for a folder
    without index.html; we listed the folder instead."""
    root = tmp_path / "root"
    (root / "old").mkdir(parents=True)
    (root / "old" / "index.htm").write_bytes(b"<p>old site</p>")
    (root / "both").mkdir()
    (root / "both" / "index.htm").write_bytes(b"second")
    (root / "both" / "index.html").write_bytes(b"first")
    server = server_factory(root, "--plugins", "autoindex")
    for path, body in ((b"/old/", b"<p>old site</p>"), (b"/both/", b"first")):
        out = raw(server.port, b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert status_of(out) == 200 and out.endswith(b"\r\n\r\n" + body), out[-300:]


# -- RFC 9113 §8.3.1: Host and :authority compared once normalised ----------------------------


def test_h2_host_that_names_the_authority_in_other_case_or_port_is_not_malformed(
        root, server_factory):
    """§8.3.1 asks to normalise both (RFC 3986 §6.2) before comparing; a
    byte comparison reset the stream of ``Host: LOCALHOST:80`` beside
    ``:authority: localhost``.  A Host naming another host still resets it."""
    from h2_client import H2Client
    server = server_factory(root, "--h2c", "--plugins", "none")
    client = H2Client(server.port)
    for host in ("LOCALHOST", "localhost:80", "Localhost.:"):
        status, _, body = client.get("/t.txt", headers=[("host", host)])
        assert status == 200 and body == b"0123456789" * 30, host
    status, _, _ = client.get("/t.txt", headers=[("host", "other.example")])
    assert status == ("reset", 1)

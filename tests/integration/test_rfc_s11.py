"""RFC 9110/9112 conformance sweep of session 11, on a real `flashplug serve`.

Theory of operation: each case here is a difference the sweep found
between flashplug and the RFC (or, where the RFC leaves room, nginx,
Apache httpd and lighttpd agreeing with each other), fixed in the kernel.
Requests are raw bytes on a socket, as the difference lies in the exact
bytes or in how they are cut into TCP segments; each test fails without
its fix (docs/reliability.md lists the decisions).
"""
import socket
import time

import pytest

from conftest import start_server
from test_kernel_http import wire

H = b"Host: t\r\n"
LINE_REST = b" /a.txt HTTP/1.1\r\n" + H + b"\r\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rfc_s11")
    root = tmp / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"hello\n")
    server = start_server(root, "--access-log", "off", "--header-timeout", "2", tmp_path=tmp)
    yield server
    server.stop()


def status_of(server, pieces, pause=0.15):
    """The status line's code for ``pieces`` sent one by one, ``pause``
    seconds apart (each its own TCP segment, as Nagle is off)."""
    s = server.connect(timeout=5)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            s.sendall(piece)
            time.sleep(pause)
        got = b""
        while b"\r\n" not in got:
            data = s.recv(4096)
            if not data:
                break
            got += data
    finally:
        s.close()
    return int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/1.1 ") else got


# RFC 9110 §9.1/§15.6.2: a method the server does not know is 501.  llhttp
# refuses such a method at its first unknown byte, and the kernel told 501
# from 400 by what followed the method in the bytes at hand: "FOO" in one
# segment and " / HTTP/1.1" in the next was 400, in one segment 501.
# nginx, Apache and lighttpd read the whole line first; so does flashplug.
@pytest.mark.parametrize("pieces", [
    [b"FOO", LINE_REST],
    [b"F", b"OO" + LINE_REST],
    [b"get", LINE_REST],
    [b"\r\nFO", b"O" + LINE_REST],
    [b"FOO" + LINE_REST],
], ids=["method-then-line", "first-byte", "lowercase", "leading-crlf", "one-segment"])
def test_an_unknown_method_is_501_however_tcp_cuts_it(srv, pieces):
    assert status_of(srv, pieces) == 501


@pytest.mark.parametrize("pieces", [
    [b"G", b"ET" + LINE_REST],
    [b"GE", b"T", LINE_REST],
    [b"\r\n", b"GET", LINE_REST],
])
def test_a_known_method_cut_short_is_still_served(srv, pieces):
    assert status_of(srv, pieces) == 200


def test_a_cut_method_after_a_kept_alive_request(srv):
    w = wire(srv)
    try:
        w.send(b"GET /a.txt HTTP/1.1\r\n" + H + b"\r\n")
        assert w.response()[0] == 200
        w.send(b"FO")
        time.sleep(0.15)
        w.send(b"O" + LINE_REST)
        assert w.response()[0] == 501
    finally:
        w.close()


# The version, likewise: llhttp refuses any but 1.0 and 1.1, and the
# kernel reads a later 1.x as 1.1 (RFC 9110 §2.5) and answers another major
# version 505, from the line's bytes at hand: "HTTP/1." then "2" was 400,
# "HTTP/1.2" then CRLF 505, "GET /" then " HTTP/3.0" 400.
@pytest.mark.parametrize("pieces, status", [
    ([b"GET /a.txt HTTP/1.", b"2\r\n" + H + b"\r\n"], 200),
    ([b"GET /a.txt HTTP/1.2", b"\r\n" + H + b"\r\n"], 200),
    ([b"GET /a.txt HTTP/1.2\r", b"\n" + H + b"\r\n"], 200),
    ([b"GET /a.txt", b" HTTP/3.0\r\n" + H + b"\r\n"], 505),
    ([b"GET /a.txt HTTP/2", b".0\r\n" + H + b"\r\n"], 505),
    ([b"GET /" + b"a" * 5000, b"a" * 5000 + b" HTTP/1.1\r\n" + H + b"\r\n"], 414),
], ids=["1.2-cut-in-version", "1.2-before-crlf", "1.2-between-cr-lf", "3.0", "2.0", "414"])
def test_the_version_is_read_however_tcp_cuts_the_line(srv, pieces, status):
    assert status_of(srv, pieces) == status


# A request pipelined behind a body in the same segment: llhttp went on
# from the body into it, and an error in it was told from no bytes at all
# (400): "FOO" was not 501, "HTTP/1.2" not read as 1.1.  The body's piece
# now ends where its Content-Length does, and the next request begins a
# piece of its own, as it does behind a head.
@pytest.mark.parametrize("second, status", [
    (b"FOO /a.txt HTTP/1.1\r\n" + H + b"\r\n", 501),
    (b"GET /a.txt HTTP/1.2\r\n" + H + b"\r\n", 200),
    (b"GET /a.txt HTTP/1.1\r\n" + H + b"\r\n", 200),
    (b"GET /a.txt HTTP/3.0\r\n" + H + b"\r\n", 505),
], ids=["unknown-method", "http-1.2", "http-1.1", "http-3.0"])
def test_a_request_behind_a_body_in_one_segment(srv, second, status):
    w = wire(srv)
    try:
        w.send(b"GET /a.txt HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello" + second)
        assert w.response()[0] == 200
        assert w.response()[0] == status
    finally:
        w.close()


# RFC 9112 §3: "A server that receives a method longer than any that it
# implements SHOULD respond with a 501".  A 100 kB method was 400 (the line
# read for the answer stopped before the method did); nginx and Apache say
# 414 and lighttpd 431, their line limits, but the RFC names 501.
@pytest.mark.parametrize("pieces", [
    [b"A" * 100000 + LINE_REST],
    [b"A" * 100, b"A" * 100, LINE_REST],
    [b"A" * 100 + b"\r\n" + H + b"\r\n"],
], ids=["100k", "in-pieces", "no-target"])
def test_a_method_longer_than_any_is_501(srv, pieces):
    assert status_of(srv, pieces) == 501


def test_a_method_trickled_byte_by_byte_meets_the_header_deadline(srv):
    # What is held waiting for the line's end is under the header timeout
    # (2 s here), like any head: a client that never ends it gets a 408.
    s = srv.connect(timeout=6)
    try:
        t0 = time.monotonic()
        got = b""
        for _ in range(40):
            try:
                s.sendall(b"X")
            except OSError:
                break
            s.settimeout(0.15)
            try:
                data = s.recv(4096)
            except socket.timeout:
                continue
            if not data:
                break
            got += data
            break
        assert time.monotonic() - t0 < 5
        assert got.startswith(b"HTTP/1.1 408 "), got[:40]
    finally:
        s.close()


# RFC 9110 §15.4.5: a 304 SHOULD NOT carry representation metadata but for
# what guides a cache's update; a cache refreshes its stored response with
# the 304's fields (RFC 9111 §4.3.4).  A script's 304 kept its Content-Type
# (and Content-Language); Apache's mod_cgi drops the Content-Type.
NOT_MODIFIED_SCRIPT = """#!/bin/sh
printf 'Status: 304\\nContent-Type: text/plain\\nContent-Language: en\\nContent-Encoding: gzip\\n'
printf 'ETag: "abc"\\nLast-Modified: Sun, 13 Sep 2020 12:26:40 GMT\\nCache-Control: max-age=60\\n'
printf 'Vary: Accept\\n\\nbody\\n'
"""


@pytest.fixture(scope="module")
def cgi_srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rfc_s11_cgi")
    root = tmp / "root"
    (root / "cgi-bin").mkdir(parents=True)
    script = root / "cgi-bin" / "nm.sh"
    script.write_text(NOT_MODIFIED_SCRIPT)
    script.chmod(0o755)
    server = start_server(root, "--plugins", "cgi", "--access-log", "off", tmp_path=tmp)
    yield server
    server.stop()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_scripts_304_leaves_out_representation_metadata(cgi_srv, method):
    w = wire(cgi_srv)
    try:
        w.send(method.encode() + b" /cgi-bin/nm.sh HTTP/1.1\r\n" + H + b"\r\n"
               + b"GET /cgi-bin/nm.sh HTTP/1.1\r\n" + H + b"\r\n")
        status, headers, body = w.response(head=method == "HEAD")
        assert (status, body) == (304, b"")
        for name in ("content-type", "content-language", "content-encoding", "content-length"):
            assert name not in headers, name
        assert headers["etag"] == ['"abc"']
        assert headers["last-modified"] == ["Sun, 13 Sep 2020 12:26:40 GMT"]
        assert headers["cache-control"] == ["max-age=60"]
        assert headers["vary"] == ["Accept"]
        assert w.response()[0] == 304      # nothing stray after the first
    finally:
        w.close()

"""HTTP/1.1 differential review: the same raw requests to flashplug, nginx,
Apache httpd and lighttpd, and a table of how each answered.

Theory of operation: every server is started on a free loopback port with
its own configuration, pid and log files under one temporary directory,
serving the same small document root (static files only).  Each case of
``CORPUS`` is one write of raw bytes on a fresh connection (a case may hold
several pipelined requests), or a tuple of writes sent as separate TCP
segments 0.1 s apart (group ``split``); the answer is read until the server closes
the connection or stays silent for ``--idle`` seconds, and parsed into the
sequence of responses (status and a few fields each) and how the connection
ended: ``C`` closed, ``R`` reset, ``O`` still open.  The servers are
queried in parallel (one thread each), the cases in order.

The table marks a row ``*`` when flashplug's answer differs from every
other server's and ``~`` when it differs from some; the cells are the
statuses of the responses read, then the connection's end (``400 C``:
one 400, then closed; ``200,200 O``: two 200s, connection still open;
``- O``: nothing answered yet, the server waits for more bytes).  This is a
review tool, not a test: the differences it shows are read against RFC
9110/9112 and decided by hand (docs/reliability.md lists the decisions).

Run it from the project's venv (it needs nginx, apache2 and lighttpd
installed; a server that is missing or fails to start is left out)::

    .venv/bin/python bench/h1_differential.py            # table to stdout
    .venv/bin/python bench/h1_differential.py --only host --json out.json
    .venv/bin/python bench/h1_differential.py --diff     # differing rows only
    .venv/bin/python bench/h1_differential.py --only range/ --show content-range

Loopback only; every server is stopped (its process group killed) on exit.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

INDEX = b"<html>index</html>\n"
T_TXT = b"hello\n"
BIG = bytes(range(48, 123)) * 100          # 7500 bytes, for ranges
MTIME = 1_600_000_000                      # every file's mtime, for preconditions
MTIME_DATE = b"Sun, 13 Sep 2020 12:26:40 GMT"


# -- the corpus ---------------------------------------------------------------

def req(target=b"/index.html", method=b"GET", version=b"HTTP/1.1", fields=b"Host: t\r\n",
        body=b""):
    """A request's bytes: request line, ``fields`` (each ending in CRLF),
    the empty line, then ``body`` as is."""
    return method + b" " + target + b" " + version + b"\r\n" + fields + b"\r\n" + body


H = b"Host: t\r\n"
TE = b"Transfer-Encoding: chunked\r\n"
HELLO = b"5\r\nhello\r\n0\r\n\r\n"
NEXT = req(b"/t.txt")          # a second request pipelined behind a case


def _cases():
    c = []

    def add(group, name, data, head=False):
        c.append((f"{group}/{name}", data, head))

    # request line (RFC 9112 §3)
    g = "line"
    add(g, "plain", req())
    add(g, "leading-crlf", b"\r\n" + req())
    add(g, "leading-2crlf", b"\r\n\r\n" + req())
    add(g, "leading-lf", b"\n" + req())
    add(g, "double-space-after-method", req(method=b"GET "))
    add(g, "double-space-before-version", req(target=b"/index.html "))
    add(g, "trailing-space", req(version=b"HTTP/1.1 "))
    add(g, "tab-separators", b"GET\t/index.html\tHTTP/1.1\r\nHost: t\r\n\r\n")
    add(g, "lf-line-end", b"GET /index.html HTTP/1.1\nHost: t\r\n\r\n")
    add(g, "cr-only", b"GET /index.html HTTP/1.1\rHost: t\r\n\r\n")
    add(g, "no-version", b"GET /index.html\r\nHost: t\r\n\r\n")
    add(g, "http09", b"GET /index.html\r\n")
    add(g, "http09-crlf2", b"GET /index.html\r\n\r\n")
    add(g, "no-target", b"GET HTTP/1.1\r\nHost: t\r\n\r\n")
    add(g, "empty-line-only", b"\r\n")
    add(g, "space-in-target", req(b"/a b"))
    add(g, "whitespace-only", b"   \r\n\r\n")
    add(g, "long-method-100k", req(method=b"A" * 100000))
    add(g, "binary-garbage", random.Random(42).randbytes(256))
    add(g, "long-target-8000", req(b"/" + b"a" * 8000))
    add(g, "long-target-9000", req(b"/" + b"a" * 9000))
    add(g, "long-target-70000", req(b"/" + b"a" * 70000))
    # versions
    g = "version"
    for v in (b"HTTP/1.0", b"HTTP/1.2", b"HTTP/1.9", b"HTTP/2.0", b"HTTP/3.0", b"HTTP/0.9",
              b"HTTP/9.9", b"HTTP/1.01", b"HTTP/01.1", b"HTTP/1", b"HTTP/1.1.1", b"HTTP/ 1.1",
              b"http/1.1", b"HTTP/1.a", b"HTTPS/1.1", b"HTTP/11", b"HTTP/1.10"):
        add(g, v.decode().replace("/", "_").replace(" ", "sp"), req(version=v))
    # methods (RFC 9110 §9)
    g = "method"
    for m in (b"POST", b"PUT", b"DELETE", b"PATCH", b"FOO", b"PROPFIND", b"get", b"Get",
              b"G(T", b"GE\x7fT", b"G\xe9T", b"A" * 100, b"1GET", b"M-SEARCH"):
        add(g, m[:12].decode("latin-1").encode("ascii", "backslashreplace").decode(),
            req(method=m))
    add(g, "HEAD", req(method=b"HEAD"), head=True)
    add(g, "HEAD-missing", req(b"/nope", method=b"HEAD"), head=True)
    add(g, "OPTIONS-slash", req(b"/", method=b"OPTIONS"))
    add(g, "OPTIONS-file", req(method=b"OPTIONS"))
    add(g, "OPTIONS-star", req(b"*", method=b"OPTIONS"))
    add(g, "GET-star", req(b"*"))
    add(g, "HEAD-star", req(b"*", method=b"HEAD"), head=True)
    # errors answered to HEAD: no content after the head (RFC 9110 §9.3.2)
    for name, data in (("bad-host", req(method=b"HEAD", fields=b"Host: a b\r\n")),
                       ("no-host", req(method=b"HEAD", fields=b"")),
                       ("bad-escape", req(b"/%zz", b"HEAD")),
                       ("long-target", req(b"/" + b"a" * 9000, b"HEAD")),
                       ("http2", req(method=b"HEAD", version=b"HTTP/2.0")),
                       ("expect", req(method=b"HEAD", fields=H + b"Expect: fancy\r\n")),
                       ("cl-te", req(method=b"HEAD", fields=H + b"Content-Length: 1\r\n" + TE)),
                       ("te-gzip", req(method=b"HEAD", fields=H + b"Transfer-Encoding: gzip\r\n")),
                       ("fields-101", req(method=b"HEAD", fields=H + b"".join(
                           b"X-%d: a\r\n" % i for i in range(101)))),
                       ("absolute-userinfo", req(b"http://u@t/", b"HEAD"))):
        add(g, "HEAD-error-" + name, data, head=True)
    add(g, "TRACE", req(b"/", method=b"TRACE"))
    add(g, "TRACE-body", req(b"/", method=b"TRACE", fields=H + b"Content-Length: 5\r\n",
                             body=b"hello"))
    add(g, "CONNECT-authority", req(b"t:80", method=b"CONNECT"))
    add(g, "CONNECT-no-port", req(b"t", method=b"CONNECT"))
    add(g, "CONNECT-origin", req(b"/", method=b"CONNECT"))
    add(g, "PRI-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    add(g, "POST-no-length", req(method=b"POST"))
    add(g, "POST-cl0", req(method=b"POST", fields=H + b"Content-Length: 0\r\n"))
    add(g, "POST-body", req(method=b"POST", fields=H + b"Content-Length: 5\r\n", body=b"hello"))
    add(g, "PUT-no-length", req(b"/new.txt", method=b"PUT"))
    # request-target forms (RFC 9112 §3.2)
    g = "target"
    for name, t in (
            ("absolute", b"http://t/index.html"), ("absolute-https", b"https://t/index.html"),
            ("absolute-no-path", b"http://t"), ("absolute-port", b"http://t:80/index.html"),
            ("absolute-ftp", b"ftp://t/index.html"), ("absolute-upper", b"HTTP://T/index.html"),
            ("absolute-empty-host", b"http:///index.html"),
            ("absolute-userinfo", b"http://u@t/index.html"),
            ("absolute-bad-port", b"http://t:x/index.html"),
            ("absolute-big-port", b"http://t:99999/index.html"),
            ("absolute-ipv6", b"http://[::1]/index.html"),
            ("absolute-query", b"http://t/index.html?a=b"),
            ("absolute-no-slashes", b"http:t/index.html"),
            ("authority", b"t:80"), ("no-slash", b"index.html"), ("fragment", b"/index.html#f"),
            ("query", b"/index.html?a=b"), ("empty-query", b"/index.html?"),
            ("query-with-slash-dots", b"/index.html?/../x"),
            ("double-slash", b"//index.html"), ("dot", b"/./index.html"),
            ("dotdot-root", b"/../index.html"), ("dotdot-in", b"/dir/../index.html"),
            ("dotdot-deep", b"/../../etc/passwd"), ("enc-dotdot", b"/%2e%2e/index.html"),
            ("enc-dotdot-in", b"/dir/%2e%2e/index.html"), ("enc-dot-upper", b"/%2E/index.html"),
            ("enc-ext-dot", b"/index%2ehtml"), ("enc-letter", b"/%69ndex.html"),
            ("enc-nul", b"/index.html%00"), ("enc-nul-mid", b"/index%00.html"),
            ("bad-escape", b"/%zz"), ("trunc-escape", b"/index.html%"),
            ("trunc-escape2", b"/index.html%4"), ("enc-slash", b"/dir%2findex.html"),
            ("backslash", b"/dir\\index.html"), ("enc-backslash", b"/dir%5cindex.html"),
            ("obs-text", b"/\xe9"), ("utf8-raw", b"/\xc3\xa9"), ("utf8-enc", b"/%C3%A9"), ("ctl-01", b"/a\x01b"),
            ("del", b"/a\x7fb"), ("tab", b"/a\tb"), ("semicolon", b"/index.html;x"),
            ("quote-lt", b'/a"<b'), ("braces-pipe", b"/{a}|b"), ("dir-no-slash", b"/dir"),
            ("dir-slash", b"/dir/"), ("missing", b"/nope"), ("hidden", b"/.hidden"),
            ("enc-space", b"/a%20b.txt"), ("plus", b"/a+b.txt")):
        add(g, name, req(t))
    # header syntax (RFC 9112 §5, RFC 9110 §5)
    g = "field"
    for name, f in (
            ("space-before-colon", b"X-A : b\r\n"), ("tab-before-colon", b"X-A\t: b\r\n"),
            ("empty-name", b": b\r\n"), ("no-colon", b"X-A\r\n"),
            ("space-in-name", b"X A: b\r\n"), ("obs-text-name", b"X-\xe9: b\r\n"),
            ("paren-name", b"X(A): b\r\n"), ("slash-name", b"X/A: b\r\n"),
            ("at-name", b"X@A: b\r\n"), ("obs-text-value", b"X-A: \xe9\xff\r\n"),
            ("ctl-value", b"X-A: a\x01b\r\n"), ("del-value", b"X-A: a\x7fb\r\n"),
            ("nul-value", b"X-A: a\x00b\r\n"), ("cr-value", b"X-A: a\rb\r\n"),
            ("lf-line", b"X-A: b\n"), ("tab-value", b"X-A: a\tb\r\n"),
            ("obs-fold", b"X-A: a\r\n b\r\n"), ("obs-fold-tab", b"X-A: a\r\n\tb\r\n"),
            ("ws-only-line", b" \r\n"), ("no-space-after-colon", b"X-A:b\r\n"),
            ("vt-value", b"X-A: a\x0bb\r\n"), ("ff-before-value", b"X-A:\x0cb\r\n"),
            ("long-value-8000", b"X-A: " + b"a" * 8000 + b"\r\n"),
            ("long-value-9000", b"X-A: " + b"a" * 9000 + b"\r\n"),
            ("long-value-70000", b"X-A: " + b"a" * 70000 + b"\r\n"),
            ("long-name-9000", b"X" * 9000 + b": a\r\n"),
            ("long-value-100k", b"X-A: " + b"a" * 100000 + b"\r\n"),
            ("fields-10000", b"".join(b"X-%d: a\r\n" % i for i in range(10000))),
            ("bel-bs-value", b"X-A: a\x07\x08b\r\n"),
            ("fields-90", b"".join(b"X-%d: a\r\n" % i for i in range(90))),
            ("fields-101", b"".join(b"X-%d: a\r\n" % i for i in range(101))),
            ("fields-1000", b"".join(b"X-%d: a\r\n" % i for i in range(1000))),
            ("head-70k-in-small", b"".join(b"X-%d: %s\r\n" % (i, b"a" * 700) for i in range(95)))):
        add(g, name, req(fields=H + f))
    add(g, "fold-first-line", req(fields=b" X-A: b\r\n" + H))
    # Host (RFC 9112 §3.2, RFC 9110 §7.2)
    g = "host"
    add(g, "missing-11", req(fields=b""))
    add(g, "missing-10", req(version=b"HTTP/1.0", fields=b""))
    for name, v in (("dup-same", b"t\r\nHost: t"), ("dup-differ", b"t\r\nHost: u"),
                    ("empty", b""), ("userinfo", b"u@t"), ("port-alpha", b"t:x"),
                    ("port-big", b"t:99999"), ("port-empty", b"t:"), ("port-zero", b"t:0"),
                    ("only-port", b":80"), ("ipv6", b"[::1]"), ("ipv6-port", b"[::1]:80"),
                    ("ipv6-unclosed", b"[::1"), ("ipv6-junk", b"[zz]"), ("ipv6-bare", b"::1"),
                    ("ipv4", b"127.0.0.1:80"), ("underscore", b"a_b"),
                    ("trailing-dot", b"t."), ("double-dot", b"a..b"), ("slash", b"t/x"),
                    ("backslash", b"t\\x"), ("percent", b"t%41"), ("space", b"a b"),
                    ("comma", b"a,b"), ("sub-delims", b"a!$&'()*+;=b"), ("upper", b"T"), ("long-300", b"a" * 300),
                    ("two-ports", b"t:80:80"), ("dot-only", b"."), ("obs-text", b"\xe9")):
        add(g, name, req(fields=b"Host: " + v + b"\r\n"))
    for name, v in (("ipv6-zone", b"[fe80::1%25eth0]"), ("ipvfuture", b"[v1.x]"),
                    ("ipv4-5-parts", b"1.2.3.4.5"), ("port-sign", b"t:+80"),
                    ("port-space", b"t: 80"), ("tab-inside", b"a\tb"), ("quote", b'"t"')):
        add(g, name, req(fields=b"Host: " + v + b"\r\n"))
    add(g, "dup-case", req(fields=b"Host: t\r\nhost: u\r\n"))
    add(g, "dup-empty-second", req(fields=b"Host: t\r\nHost:\r\n"))
    add(g, "dup-10", req(version=b"HTTP/1.0", fields=b"Host: t\r\nHost: u\r\n"))
    add(g, "absolute-vs-host", req(b"http://a/index.html", fields=b"Host: b\r\n"))
    add(g, "absolute-no-host-11", req(b"http://a/index.html", fields=b""))
    add(g, "absolute-empty-host-field", req(b"http://a/index.html", fields=b"Host:\r\n"))
    # message framing (RFC 9112 §6-7)
    g = "framing"
    post = b"POST"
    for name, f, body in (
            ("cl-te", b"Content-Length: 5\r\n" + TE, HELLO),
            ("te-cl", TE + b"Content-Length: 5\r\n", HELLO),
            ("cl-dup-same", b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
            ("cl-list-same", b"Content-Length: 5, 5\r\n", b"hello"),
            ("cl-negative", b"Content-Length: -1\r\n", b""),
            ("cl-plus", b"Content-Length: +5\r\n", b"hello"),
            ("cl-huge", b"Content-Length: 99999999999999999999\r\n", b"hello"),
            ("cl-leading-zeros", b"Content-Length: 0005\r\n", b"hello"),
            ("cl-ws", b"Content-Length:  5 \r\n", b"hello"),
            ("te-chunked", TE, HELLO),
            ("te-chunked-upper", b"Transfer-Encoding: CHUNKED\r\n", HELLO),
            ("te-identity", b"Transfer-Encoding: identity\r\n", b""),
            ("te-gzip-chunked", b"Transfer-Encoding: gzip, chunked\r\n", HELLO),
            ("te-chunked-gzip", b"Transfer-Encoding: chunked, gzip\r\n", HELLO),
            ("te-chunked-chunked", b"Transfer-Encoding: chunked, chunked\r\n", HELLO),
            ("te-two-fields", TE + TE, HELLO),
            ("te-empty", b"Transfer-Encoding:\r\n", HELLO),
            ("chunk-ext", TE, b"5;a=b\r\nhello\r\n0\r\n\r\n"),
            ("chunk-ext-quoted", TE, b'5;a="x y"\r\nhello\r\n0\r\n\r\n'),
            ("chunk-ext-bws", TE, b"5 ;a=b\r\nhello\r\n0\r\n\r\n"),
            ("chunk-size-lf", TE, b"5\nhello\r\n0\r\n\r\n"),
            ("chunk-data-lf", TE, b"5\r\nhello\n0\r\n\r\n"),
            ("chunk-last-lf", TE, b"5\r\nhello\r\n0\n\n"),
            ("chunk-overflow", TE, b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n"),
            ("chunk-size-ffff", TE, b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
            ("chunk-0x", TE, b"0x5\r\nhello\r\n0\r\n\r\n"),
            ("chunk-upper-hex", TE, b"A\r\nhellohello\r\n0\r\n\r\n"),
            ("chunk-trailer", TE, b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
            ("chunk-trailer-cl", TE, b"5\r\nhello\r\n0\r\nContent-Length: 9\r\n\r\n"),
            ("chunk-trailer-bad", TE, b"5\r\nhello\r\n0\r\nX T: 1\r\n\r\n"),
            ("chunk-trailer-fold", TE, b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"),
            ("chunk-no-last", TE, b"5\r\nhello\r\n"),
            ("chunk-data-short", TE, b"5\r\nhel\r\n0\r\n\r\n"),
            ("chunk-size-nul", TE, b"5\x00\r\nhello\r\n0\r\n\r\n")):
        add(g, "post-" + name, req(b"/index.html", post, fields=H + f, body=body) + NEXT)
    add(g, "cl-and-empty-cl", req(b"/index.html", post, fields=H + b"Content-Length: 5\r\n"
                                  b"Content-Length:\r\n", body=b"hello") + NEXT)
    add(g, "cl-trailing-comma", req(b"/index.html", post, fields=H + b"Content-Length: 5,\r\n",
                                    body=b"hello") + NEXT)
    add(g, "head-cl-body", req(method=b"HEAD", fields=H + b"Content-Length: 5\r\n",
                               body=b"hello") + NEXT.replace(b"GET", b"HEAD"), head=True)
    add(g, "options-star-body", req(b"*", b"OPTIONS", fields=H + b"Content-Length: 5\r\n",
                                    body=b"hello") + NEXT)
    add(g, "get-chunked-trailer", req(fields=H + TE, body=b"0\r\nX-T: 1\r\n\r\n") + NEXT)
    add(g, "te-cl-10-keepalive", req(b"/index.html", b"GET", b"HTTP/1.0",
                                     H + b"Connection: keep-alive\r\nContent-Length: 5\r\n",
                                     b"hello") + NEXT)
    add(g, "get-cl-body", req(fields=H + b"Content-Length: 5\r\n", body=b"hello") + NEXT)
    add(g, "get-chunked-body", req(fields=H + TE, body=HELLO) + NEXT)
    add(g, "get-cl-short", req(fields=H + b"Content-Length: 50\r\n", body=b"hello"))
    add(g, "http10-te", req(b"/index.html", post, b"HTTP/1.0", H + TE, HELLO) + NEXT)
    add(g, "http10-cl", req(b"/index.html", post, b"HTTP/1.0", H + b"Content-Length: 5\r\n",
                            b"hello"))
    add(g, "te-in-get-10", req(version=b"HTTP/1.0", fields=H + TE, body=HELLO) + NEXT)
    # Expect (RFC 9110 §10.1.1)
    g = "expect"
    for name, v, body in (("100-continue-body", b"100-continue", b""),
                          ("100-continue-nobody", b"100-continue", None),
                          ("100-Continue-case", b"100-Continue", b""),
                          ("unknown", b"fancy", None), ("empty", b"", None),
                          ("100-continue-param", b"100-continue;x=1", None)):
        f = H + b"Expect: " + v + b"\r\n"
        if body is not None:
            f += b"Content-Length: 5\r\n"
        add(g, name, req(b"/index.html", b"POST" if body is not None else b"GET", fields=f))
    add(g, "100-continue-10", req(b"/index.html", b"POST", b"HTTP/1.0",
                                   H + b"Expect: 100-continue\r\nContent-Length: 5\r\n"))
    # connection management (RFC 9112 §9)
    g = "conn"
    add(g, "pipeline-2", req() + NEXT)
    add(g, "pipeline-3", req() + NEXT + req(b"/nope"))
    add(g, "pipeline-after-close", req(fields=H + b"Connection: close\r\n") + NEXT)
    add(g, "close-upper", req(fields=H + b"Connection: CLOSE\r\n") + NEXT)
    add(g, "close-and-keepalive", req(fields=H + b"Connection: keep-alive, close\r\n") + NEXT)
    add(g, "http10-plain", req(version=b"HTTP/1.0") + NEXT)
    add(g, "http10-keepalive", req(version=b"HTTP/1.0", fields=H + b"Connection: keep-alive\r\n")
        + NEXT)
    add(g, "http10-keepalive-upper", req(version=b"HTTP/1.0",
                                         fields=H + b"Connection: Keep-Alive\r\n") + NEXT)
    ka10 = H + b"Connection: keep-alive\r\n"
    add(g, "http10-keepalive-404", req(b"/nope", version=b"HTTP/1.0", fields=ka10) + NEXT)
    add(g, "http10-keepalive-head", req(method=b"HEAD", version=b"HTTP/1.0", fields=ka10)
        + NEXT.replace(b"GET", b"HEAD"), head=True)
    add(g, "http10-keepalive-301", req(b"/dir", version=b"HTTP/1.0", fields=ka10) + NEXT)
    add(g, "two-connection-fields", req(fields=H + b"Connection: keep-alive\r\n"
                                        b"Connection: close\r\n") + NEXT)
    add(g, "close-in-list", req(fields=H + b"Connection: foo, close\r\n") + NEXT)
    add(g, "upper-host-name", req(fields=b"HOST: t\r\n") + NEXT)
    add(g, "keep-alive-11", req(fields=H + b"Connection: keep-alive\r\n") + NEXT)
    add(g, "upgrade-websocket", req(fields=H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n")
        + NEXT)
    add(g, "upgrade-h2c", req(fields=H + b"Connection: Upgrade, HTTP2-Settings\r\n"
                              b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n")
        + NEXT)
    add(g, "upgrade-no-connection", req(fields=H + b"Upgrade: websocket\r\n") + NEXT)
    add(g, "head-then-get", req(method=b"HEAD") + NEXT, head=True)
    add(g, "error-then-get", req(b"/%zz") + NEXT)
    add(g, "404-then-get", req(b"/nope") + NEXT)
    add(g, "garbage-after", req() + b"\x16\x03\x01\x00\xa5\x01")
    add(g, "tls-hello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 32)
    # conditionals and ranges with odd syntax (quick sanity of the answer)
    g = "cond"
    add(g, "range-ok", req(fields=H + b"Range: bytes=0-1\r\n"))
    add(g, "range-multi-overlap", req(fields=H + b"Range: bytes=0-1,0-1\r\n"))
    add(g, "range-bad", req(fields=H + b"Range: bytes=x-y\r\n"))
    add(g, "range-past-end", req(fields=H + b"Range: bytes=999-\r\n"))
    add(g, "ims-bad-date", req(fields=H + b"If-Modified-Since: yesterday\r\n"))
    add(g, "inm-star", req(fields=H + b"If-None-Match: *\r\n"))
    add(g, "if-match-no", req(fields=H + b'If-Match: "x"\r\n'))
    # ranges (RFC 9110 §14), on big.txt (7500 bytes) and empty.txt
    g = "range"
    big = b"/big.txt"
    for name, v in (("multi", b"0-1,10-12"), ("overlap", b"0-5,3-8"), ("adjacent", b"0-4,5-9"),
                    ("suffix", b"-3"), ("suffix-longer", b"-99999"), ("suffix-0", b"-0"),
                    ("last-past-end", b"7490-9999"), ("first-past-end", b"7500-"),
                    ("all-past-end", b"9999-,8888-"), ("one-past-one-in", b"9999-,0-1"),
                    ("reversed", b"5-1"), ("bws", b"0-1 , 4-5"), ("empty-members", b",0-1,"),
                    ("many-200", b",".join(b"%d-%d" % (i * 20, i * 20) for i in range(200))),
                    ("huge-last", b"0-" + b"9" * 30)):
        add(g, name, req(big, fields=H + b"Range: bytes=" + v + b"\r\n"))
    add(g, "unit-upper", req(big, fields=H + b"Range: BYTES=0-1\r\n"))
    add(g, "unit-other", req(big, fields=H + b"Range: items=0-1\r\n"))
    add(g, "space-around-eq", req(big, fields=H + b"Range: bytes = 0-1\r\n"))
    add(g, "empty-0-", req(b"/empty.txt", fields=H + b"Range: bytes=0-\r\n"))
    add(g, "empty-suffix", req(b"/empty.txt", fields=H + b"Range: bytes=-5\r\n"))
    add(g, "head", req(big, b"HEAD", fields=H + b"Range: bytes=0-1\r\n"), head=True)
    add(g, "post", req(big, b"POST", fields=H + b"Range: bytes=0-1\r\nContent-Length: 0\r\n"))
    add(g, "missing", req(b"/nope", fields=H + b"Range: bytes=0-1\r\n"))
    add(g, "dir-index", req(b"/dir/", fields=H + b"Range: bytes=0-1\r\n"))
    add(g, "if-range-date", req(big, fields=H + b"Range: bytes=0-1\r\nIf-Range: " + MTIME_DATE
                                + b"\r\n"))
    add(g, "if-range-later", req(big, fields=H + b"Range: bytes=0-1\r\n"
                                 b"If-Range: Sun, 13 Sep 2020 12:26:41 GMT\r\n"))
    add(g, "if-range-no-range", req(big, fields=H + b"If-Range: " + MTIME_DATE + b"\r\n"))
    # preconditions (RFC 9110 §13); every file's mtime is MTIME
    g = "precond"
    for name, f in (("ims-equal", b"If-Modified-Since: " + MTIME_DATE),
                    ("ims-later", b"If-Modified-Since: Sun, 13 Sep 2020 12:26:41 GMT"),
                    ("ims-earlier", b"If-Modified-Since: Sun, 13 Sep 2020 12:26:39 GMT"),
                    ("ims-rfc850", b"If-Modified-Since: Sunday, 13-Sep-20 12:26:40 GMT"),
                    ("ims-asctime", b"If-Modified-Since: Sun Sep 13 12:26:40 2020"),
                    ("ius-earlier", b"If-Unmodified-Since: Sun, 13 Sep 2020 12:26:39 GMT"),
                    ("ius-equal", b"If-Unmodified-Since: " + MTIME_DATE),
                    ("ius-bad-date", b"If-Unmodified-Since: garbage"),
                    ("inm-malformed", b"If-None-Match: abc"),
                    ("im-malformed", b"If-Match: abc"), ("im-star", b"If-Match: *"),
                    ("ims-with-range", b"If-Modified-Since: " + MTIME_DATE
                     + b"\r\nRange: bytes=0-1")):
        add(g, name, req(b"/t.txt", fields=H + f + b"\r\n"))
    add(g, "ims-head", req(b"/t.txt", b"HEAD", fields=H + b"If-Modified-Since: " + MTIME_DATE
                           + b"\r\n"), head=True)
    add(g, "im-star-missing", req(b"/nope", fields=H + b"If-Match: *\r\n"))
    add(g, "inm-star-missing", req(b"/nope", fields=H + b"If-None-Match: *\r\n"))
    add(g, "inm-star-dir-index", req(b"/dir/", fields=H + b"If-None-Match: *\r\n"))
    add(g, "im-other-redirect", req(b"/dir", fields=H + b'If-Match: "x"\r\n'))
    # methods on files, folders and nothing (RFC 9110 §9)
    g = "sem"
    add(g, "options-missing", req(b"/nope", b"OPTIONS"))
    add(g, "options-dir", req(b"/dir/", b"OPTIONS"))
    add(g, "options-max-forwards-0", req(b"/t.txt", b"OPTIONS", fields=H + b"Max-Forwards: 0\r\n"))
    add(g, "options-absolute-no-path", req(b"http://t", b"OPTIONS"))
    add(g, "trace-max-forwards-0", req(b"/", b"TRACE", fields=H + b"Max-Forwards: 0\r\n"))
    add(g, "delete-star", req(b"*", b"DELETE"))
    add(g, "connect-star", req(b"*", b"CONNECT"))
    add(g, "post-dir-index", req(b"/dir/", b"POST", fields=H + b"Content-Length: 0\r\n"))
    add(g, "dir-redirect-head", req(b"/dir", b"HEAD"), head=True)
    add(g, "dir-redirect-absolute", req(b"http://other/dir"))
    add(g, "dir-redirect-10-no-host", req(b"/dir", version=b"HTTP/1.0", fields=b""))
    add(g, "no-extension", req(b"/noext"))
    add(g, "identity-q0", req(fields=H + b"Accept-Encoding: identity;q=0\r\n"))
    add(g, "star-q0", req(fields=H + b"Accept-Encoding: *;q=0\r\n"))
    add(g, "te-trailers", req(fields=H + b"TE: trailers\r\n"))
    # the same requests cut into segments (sent 0.1 s apart): the answer
    # must not hang on where TCP cut them
    g = "split"
    rest = b" /index.html HTTP/1.1\r\n" + H + b"\r\n"
    add(g, "unknown-method", (b"FOO", rest))
    add(g, "unknown-method-first-byte", (b"F", b"OO" + rest))
    add(g, "lowercase-method", (b"get", rest))
    add(g, "known-method", (b"GE", b"T" + rest))
    add(g, "version-1.2-cut", (b"GET /index.html HTTP/1.", b"2\r\n" + H + b"\r\n"))
    add(g, "version-1.2-before-crlf", (b"GET /index.html HTTP/1.2", b"\r\n" + H + b"\r\n"))
    add(g, "version-3.0", (b"GET /index.html", b" HTTP/3.0\r\n" + H + b"\r\n"))
    add(g, "long-method", (b"A" * 100, b"A" * 100, rest))
    add(g, "head-fields", (b"GET /index.html HTTP/1.1\r\nHo", b"st: t\r\n\r\n"))
    return c


CORPUS = _cases()


# -- the servers --------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _program(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _nginx(tmp, root, port):
    conf = tmp / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(f"""{user}daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    types {{ text/plain txt; text/html html; }}
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
    return [_program("nginx"), "-e", f"{tmp}/nginx-error.log", "-p", str(tmp), "-c", str(conf)]


def _apache(tmp, root, port):
    modules = "/usr/lib/apache2/modules"
    run = tmp / "apache"
    run.mkdir(exist_ok=True)
    conf = tmp / "apache2.conf"
    user = "User www-data\nGroup www-data\n" if os.geteuid() == 0 else ""
    loads = "".join(f"LoadModule {m}_module {modules}/mod_{m}.so\n"
                    for m in ("mpm_event", "authz_core", "mime", "dir"))
    conf.write_text(f"""ServerRoot {run}
{loads}{user}ServerName t
Listen 127.0.0.1:{port}
PidFile {run}/httpd.pid
DefaultRuntimeDir {run}
Mutex file:{run} default
ErrorLog {tmp}/apache-error.log
LogLevel info
DocumentRoot {root}
TypesConfig /etc/mime.types
DirectoryIndex index.html
<Directory {root}>
    Require all granted
</Directory>
""")
    return [_program("apache2"), "-X", "-f", str(conf)]


def _lighttpd(tmp, root, port):
    conf = tmp / "lighttpd.conf"
    conf.write_text(f"""server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{tmp}/lighttpd-error.log"
server.pid-file = "{tmp}/lighttpd.pid"
index-file.names = ("index.html")
mimetype.assign = (".txt" => "text/plain", ".html" => "text/html")
""")
    return [_program("lighttpd"), "-D", "-f", str(conf)]


def _flashplug(tmp, root, port, exe=None):
    cmd = [exe] if exe else [sys.executable, "-m", "flashplug"]
    return cmd + ["serve", str(root), "--port", str(port), "--access-log", "off"]


SERVERS = {"flashplug": _flashplug, "nginx": _nginx, "apache": _apache, "lighttpd": _lighttpd}


def make_docroot(root):
    (root / "dir").mkdir(parents=True)
    (root / "index.html").write_bytes(INDEX)
    (root / "t.txt").write_bytes(T_TXT)
    (root / "dir" / "index.html").write_bytes(INDEX)
    (root / "a b.txt").write_bytes(T_TXT)
    (root / "a+b.txt").write_bytes(T_TXT)
    (root / ".hidden").write_bytes(T_TXT)
    (root / "\xe9").write_bytes(T_TXT)
    (root / "big.txt").write_bytes(BIG)
    (root / "empty.txt").write_bytes(b"")
    (root / "noext").write_bytes(T_TXT)
    for path in root.rglob("*"):
        os.utime(path, (MTIME, MTIME))


def start(name, tmp, root, exe=None):
    """Start server ``name``; (process, port), or None with a note on stderr."""
    port = free_port()
    build = SERVERS[name]
    argv = build(tmp, root, port, exe) if name == "flashplug" else build(tmp, root, port)
    if argv[0] is None:
        print(f"{name}: not installed, left out", file=sys.stderr)
        return None
    log = open(tmp / f"{name}.out", "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True, cwd=tmp)
    log.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            status = exchange(port, req(b"/t.txt", fields=H + b"Connection: close\r\n"),
                              False, 1.0)["responses"]
            if status and status[0]["status"] == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.1)
    stop(proc)
    tail = (tmp / f"{name}.out").read_text(errors="replace").strip().splitlines()[-1:]
    print(f"{name}: did not start ({tail}), left out", file=sys.stderr)
    return None


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


# -- one exchange -------------------------------------------------------------

KEY_FIELDS = ("content-length", "transfer-encoding", "connection", "allow", "location",
              "content-range", "content-type", "vary")
SEGMENT_PAUSE = 0.1


def parse_responses(data, head):
    """The responses in ``data`` (bytes): a list of dicts with ``status``
    and ``KEY_FIELDS``; the last may be cut short (``partial``)."""
    out = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0 or not data.startswith(b"HTTP/"):
            out.append({"status": "junk" if not data.startswith(b"HTTP/") else "partial",
                        "raw": data[:60].decode("latin-1")})
            break
        lines = data[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            out.append({"status": "junk", "raw": lines[0][:60]})
            break
        fields = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            fields[k] = (fields[k] + ", " if k in fields else "") + v.strip()
        data = data[end + 4:]
        item = {"status": status, "version": parts[0]}
        item.update({k: fields[k] for k in KEY_FIELDS if k in fields})
        out.append(item)
        if status < 200 and status != 101:
            continue
        if head or status in (204, 304) or status == 101:
            continue
        if "chunked" in fields.get("transfer-encoding", "").lower():
            data = _after_chunks(data)
        elif "content-length" in fields and fields["content-length"].isdigit():
            data = data[int(fields["content-length"]):]
        else:
            data = b""
    return out


def _after_chunks(data):
    """What follows a chunked body at the start of ``data`` (b"" if it is
    cut short): chunk by chunk, so that "0" CRLF CRLF inside a chunk's data
    is not taken for the last chunk."""
    while True:
        line_end = data.find(b"\r\n")
        if line_end < 0:
            return b""
        try:
            size = int(data[:line_end].split(b";")[0], 16)
        except ValueError:
            return b""
        data = data[line_end + 2:]
        if size == 0:
            end = data.find(b"\r\n\r\n") if not data.startswith(b"\r\n") else -2
            return data[end + 4:] if end != -1 else b""
        data = data[size + 2:]


def exchange(port, data, head, idle):
    """Send ``data`` on a fresh connection (a tuple of bytes: one segment
    each, ``SEGMENT_PAUSE`` apart); read until close or ``idle`` seconds
    of silence.  {"responses": [...], "end": "C" | "R" | "O"}."""
    with socket.create_connection(("127.0.0.1", port), timeout=idle) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for i, piece in enumerate(data if isinstance(data, tuple) else (data,)):
                if i:
                    time.sleep(SEGMENT_PAUSE)
                s.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = b""
        end = "O"
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                end = "R"
                break
            if not chunk:
                end = "C"
                break
            got += chunk
    return {"responses": parse_responses(got, head), "end": end}


def cell(result, show=()):
    """A table cell: the statuses, then how the connection ended; with
    ``show`` (field names), each response's values of those fields too,
    a ``Content-Type``'s parameters left out (``200[bytes 0-1/9] O``)."""
    if result is None:
        return "n/a"

    def one(r):
        values = [str(r.get(name, "")).split(";")[0] if name == "content-type"
                  else str(r.get(name, "")) for name in show]
        return str(r["status"]) + (f"[{' '.join(values)}]" if any(values) else "")
    statuses = ",".join(one(r) for r in result["responses"]) or "-"
    return f"{statuses} {result['end']}"


def run(names, cases, idle, exe=None):
    tmp = Path(tempfile.mkdtemp(prefix="h1diff-"))
    os.chmod(tmp, 0o755)     # Apache's children run as www-data
    root = tmp / "root"
    make_docroot(root)
    running = {}
    results = {}
    try:
        for name in names:
            started = start(name, tmp, root, exe)
            if started is not None:
                running[name] = started

        def work(name, port):
            out = results[name] = {}
            for case_id, data, head in cases:
                try:
                    out[case_id] = exchange(port, data, head, idle)
                except OSError as e:
                    out[case_id] = {"responses": [], "end": f"error {e}"}

        threads = [threading.Thread(target=work, args=(n, p)) for n, (_, p) in running.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for proc, _ in running.values():
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def table(names, cases, results, only_diff, show=()):
    others = [n for n in names if n != "flashplug" and n in results]
    cols = [n for n in names if n in results]
    rows = ["| case | " + " | ".join(cols) + " | Δ |", "|---" * (len(cols) + 2) + "|"]
    for case_id, _, _ in cases:
        cells = {n: cell(results[n].get(case_id), show) for n in cols}
        mark = ""
        if "flashplug" in cells and others:
            differ = [n for n in others if cells[n] != cells["flashplug"]]
            mark = "*" if len(differ) == len(others) else "~" if differ else ""
        if only_diff and not mark:
            continue
        rows.append(f"| {case_id} | " + " | ".join(cells[n] for n in cols) + f" | {mark} |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default="flashplug,nginx,apache,lighttpd",
                   help="comma-separated subset of " + ",".join(SERVERS))
    p.add_argument("--only", default="", help="run only cases whose id starts with this")
    p.add_argument("--idle", type=float, default=0.5,
                   help="seconds of silence after which a connection counts as open")
    p.add_argument("--diff", action="store_true", help="show only rows where flashplug differs")
    p.add_argument("--json", help="also write every response's key fields to this file")
    p.add_argument("--exe", help="a flashplug executable to test instead of this tree's")
    p.add_argument("--show", default="",
                   help="comma-separated fields whose values join each status in the table "
                        "(of " + ", ".join(KEY_FIELDS) + ")")
    args = p.parse_args(argv)
    names = [n for n in args.servers.split(",") if n]
    unknown = set(names) - set(SERVERS)
    if unknown:
        p.error(f"unknown server(s) {', '.join(sorted(unknown))}; choose from "
                + ", ".join(SERVERS))
    cases = [c for c in CORPUS if c[0].startswith(args.only)]
    results = run(names, cases, args.idle, args.exe)
    show = [f.strip().lower() for f in args.show.split(",") if f.strip()]
    if set(show) - set(KEY_FIELDS):
        p.error("--show takes fields of " + ", ".join(KEY_FIELDS))
    print(table(names, cases, results, args.diff, show))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

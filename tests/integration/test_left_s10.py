"""The faults session 9 left known, each against a real `flashplug serve`.

* a variant compressed on the fly has a weak ETag (RFC 9110 §8.8.1), and the
  preconditions compare it as §8.8.3 says; a sidecar's stays strong;
* a chunk-size line that declares more than --max-body-size is answered at
  once (413; 400 past what llhttp can count), leading zeros still legal;
* an Upgrade no plugin takes is ignored (RFC 9110 §7.8): the request is
  served and the connection goes on, requests pipelined behind it too;
* mt and mp log a response cut off mid-send with the body bytes that went;
* a server name that is not ASCII gets the unrecognized_name alert (RFC
  6066 §3), not internal_error;
* the proxy passes an upstream's 103 Early Hints on (RFC 8297): its Link
  fields that are well formed, to HTTP/1.1 and HTTP/2 clients, never to
  HTTP/1.0 ones (RFC 9110 §15.2), through ``Request.send_interim``.
"""
import gzip
import os
import time

import h2.events

import pytest

import requests

from conftest import start_server
from test_kernel_http import one, req, wire
from h2_client import H2Client
from proxy_upstreams import ThreadedUpstream, read_head
from test_https_s9 import hello_bytes, read_all, status_over, two_certificates  # noqa: F401
from test_ops_s9 import BIG, _leave_early, _logged_size, log_lines
from tests.tls_certs import ca, site  # noqa: F401 - fixtures
from tests.waiting import wait_for

TEXT = b"".join(b"<p>line %d of a page that compresses well</p>\n" % i for i in range(500))
MTIME = 1_600_000_000 * 10**9
LAST_MODIFIED = b"Sun, 13 Sep 2020 12:26:40 GMT"     # MTIME as an HTTP-date


@pytest.fixture(scope="module")
def cgi(tmp_path_factory):
    """A server whose /cgi-bin/count answers the body's length in bytes."""
    root = tmp_path_factory.mktemp("left-cgi")
    (root / "cgi-bin").mkdir()
    script = root / "cgi-bin" / "count"
    script.write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nwc -c\n")
    script.chmod(0o755)
    (root / "a.txt").write_bytes(b"a\n")
    (root / "b.txt").write_bytes(b"b\n")
    s = start_server(root, "--plugins", "cgi", "--max-body-size", "1000",
                     tmp_path=tmp_path_factory.mktemp("left-cgi-log"))
    yield s
    s.stop()


def put(root, name, data, mtime=MTIME):
    path = root / name
    path.write_bytes(data)
    os.utime(path, ns=(mtime, mtime))


@pytest.fixture(scope="module")
def compressing(tmp_path_factory):
    root = tmp_path_factory.mktemp("left-root")
    put(root, "page.html", TEXT)
    put(root, "pre.html", TEXT)
    put(root, "pre.html.gz", gzip.compress(TEXT), MTIME + 10**9)
    s = start_server(root, "--compress", "--access-log", "off",
                     tmp_path=tmp_path_factory.mktemp("left-log"))
    yield s
    s.stop()


def gzip_get(srv, path, extra=b""):
    status, headers, body = one(srv, req(path, extra=b"Accept-Encoding: gzip\r\n" + extra))
    return status, {k: v[0] for k, v in headers.items()}, body


# -- 1. weak ETags for bytes compressed on the fly ---------------------------------------

def test_on_the_fly_variant_has_a_weak_etag_and_a_304_still_works(compressing):
    _, identity, _ = one(compressing, req("/page.html"))
    status, headers, whole = gzip_get(compressing, "/page.html")
    assert status == 200 and headers["content-encoding"] == "gzip"
    tag = headers["etag"]
    assert tag == "W/" + identity["etag"][0][:-1] + '-gzip"'
    # If-None-Match compares weakly: our tag, or its strong spelling, is a 304.
    for sent in (tag, tag[2:], '"other", ' + tag):
        status, headers, _ = gzip_get(compressing, "/page.html",
                                      b"If-None-Match: " + sent.encode() + b"\r\n")
        assert status == 304, sent
        assert headers["etag"] == tag and headers["vary"] == "Accept-Encoding"


def test_a_weak_etag_never_satisfies_if_match(compressing):
    tag = gzip_get(compressing, "/page.html")[1]["etag"].encode()
    for sent in (tag, tag[2:]):
        assert gzip_get(compressing, "/page.html", b"If-Match: " + sent + b"\r\n")[0] == 412
    assert gzip_get(compressing, "/page.html", b"If-Match: *\r\n")[0] == 200


def test_if_range_never_holds_for_a_weak_variant(compressing):
    _, headers, whole = gzip_get(compressing, "/page.html")
    tag = headers["etag"].encode()
    # A plain Range is still served from the bytes we have ...
    status, _, body = gzip_get(compressing, "/page.html", b"Range: bytes=0-9\r\n")
    assert status == 206 and body == whole[:10]
    # ... but no If-Range validator can promise they are the bytes the
    # client holds: the whole variant (§13.1.5).
    for validator in (tag, tag[2:], LAST_MODIFIED):
        status, _, body = gzip_get(compressing, "/page.html",
                                   b"Range: bytes=0-9\r\nIf-Range: " + validator + b"\r\n")
        assert status == 200 and body == whole, validator
    # The identity representation keeps its strong validators.
    for validator in (one(compressing, req("/page.html"))[1]["etag"][0].encode(), LAST_MODIFIED):
        status, _, body = one(compressing, req(
            "/page.html", extra=b"Range: bytes=0-9\r\nIf-Range: " + validator + b"\r\n"))
        assert status == 206 and body == TEXT[:10], validator


def test_a_sidecar_keeps_a_strong_etag(compressing):
    status, headers, whole = gzip_get(compressing, "/pre.html")
    assert headers["content-encoding"] == "gzip" and gzip.decompress(whole) == TEXT
    tag = headers["etag"]
    assert not tag.startswith("W/") and tag.endswith('-gzip"')
    status, _, body = gzip_get(compressing, "/pre.html",
                               b"Range: bytes=0-9\r\nIf-Range: " + tag.encode() + b"\r\n")
    assert status == 206 and body == whole[:10]
    assert gzip_get(compressing, "/pre.html", b"If-Match: " + tag.encode() + b"\r\n")[0] == 200


# -- 2. a chunk-size beyond the body limit, answered at once --------------------------------

CHUNKED_POST = b"POST /cgi-bin/count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("line, status", [
    (b"ffffffffffffffff", 413),          # 16 hex digits: llhttp holds it, we must refuse it
    (b"3e9", 413),                       # 1001 > --max-body-size 1000
    (b"00000000000000000000003e9;x=y", 413),
    (b"10000000000000000", 400),         # 2**64: more than a chunk size can be
])
def test_a_chunk_too_large_is_refused_before_its_data(cgi, line, status):
    w = wire(cgi)
    try:
        # Only the chunk-size line: nothing of its data is ever sent.
        w.send(CHUNKED_POST + b"100\r\n" + b"x" * 256 + b"\r\n" + line + b"\r\n")
        got, _, _ = w.response()
        assert got == status
        assert w.closed_by_peer()
    finally:
        w.close()
    if status == 413:
        assert "intended to send too large body, over --max-body-size 1000" in cgi.log()


def test_leading_zeros_are_a_size_as_llhttp_reads_them(cgi):
    body = (b"0000000000000000000001\r\nx\r\n" + b"0" * 40 + b"3e7\r\n" + b"y" * 999
            + b"\r\n0\r\n\r\n")
    w = wire(cgi)
    try:
        w.send(CHUNKED_POST + body + b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, got = w.response()
        assert status == 200 and got.strip() == b"1000"       # exactly the limit
        assert w.response()[2] == b"a\n"                      # and the connection goes on
    finally:
        w.close()


# -- 3. an Upgrade no plugin takes: served, and the connection goes on ---------------------

WEBSOCKET = b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
H2C = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
NEXT = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.mark.parametrize("upgrade", [WEBSOCKET, H2C], ids=["websocket", "h2c"])
@pytest.mark.parametrize("first, answer", [
    # a static file (answered before the parser even stops) ...
    (b"GET /a.txt HTTP/1.1\r\nHost: t\r\n%s\r\n", b"a\n"),
    # ... a script (answered later, while the parser waits) ...
    (b"GET /cgi-bin/count HTTP/1.1\r\nHost: t\r\n%s\r\n", b"0\n"),
    # ... with a body of either framing (llhttp would skip it) ...
    (b"POST /cgi-bin/count HTTP/1.1\r\nHost: t\r\n%sContent-Length: 5\r\n\r\nhello", b"5\n"),
    (b"POST /cgi-bin/count HTTP/1.1\r\nHost: t\r\n%sTransfer-Encoding: chunked\r\n\r\n"
     b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n", b"5\n"),
    # ... and HTTP/1.0, whose Upgrade is ignored anyway (§7.8: MUST).
    # (A file: a script's answer to 1.0 has no length, so it ends with a close.)
    (b"GET /a.txt HTTP/1.0\r\nHost: t\r\n%sConnection: keep-alive\r\n\r\n", b"a\n"),
], ids=["static", "cgi", "content-length", "chunked", "http10"])
def test_an_upgrade_no_plugin_takes_keeps_the_connection(cgi, upgrade, first, answer):
    w = wire(cgi)
    try:
        # The next requests in the same write: nothing of them is lost.
        w.send(first % upgrade + NEXT + NEXT)
        status, headers, body = w.response()
        assert status == 200 and body.strip() == answer.strip()
        assert headers.get("connection", ["keep-alive"]) == ["keep-alive"]
        assert "upgrade" not in headers
        for _ in range(2):
            assert w.response()[2] == b"a\n"
        # And the connection stays open for more.
        w.send(first % upgrade)
        assert w.response()[2].strip() == answer.strip()
        w.send(NEXT)
        assert w.response()[2] == b"a\n"
    finally:
        w.close()


def test_more_requests_behind_an_ignored_upgrade_than_the_pipeline_holds(cgi):
    # 40 > MAX_PIPELINE: what follows the Upgrade is parsed in turns, in order.
    w = wire(cgi)
    try:
        w.send(b"GET /cgi-bin/count HTTP/1.1\r\nHost: t\r\n" + WEBSOCKET + b"\r\n"
               + b"".join(b"GET /a.txt?%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(40)))
        time.sleep(0.05)        # (the script still runs): one more, read later
        w.send(b"GET /b.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        assert w.response()[2].strip() == b"0"
        assert [w.response()[2] for _ in range(41)] == [b"a\n"] * 40 + [b"b\n"]
    finally:
        w.close()


def test_an_upgrade_that_asks_to_close_still_closes(cgi):
    w = wire(cgi)
    try:
        w.send(b"GET /cgi-bin/count HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, close\r\n"
               b"Upgrade: websocket\r\n\r\n" + NEXT)
        status, headers, _ = w.response()
        assert status == 200 and headers["connection"] == ["close"]
        assert w.closed_by_peer()
    finally:
        w.close()


@pytest.mark.parametrize("arch", ["mt", "mp"])
def test_an_ignored_upgrade_keeps_the_connection_in_the_blocking_architectures(
        server_factory, tmp_path, arch):
    (tmp_path / "a.txt").write_bytes(b"a\n")
    s = server_factory(tmp_path, "--arch", arch, "--procs", "2", "--access-log", "off")
    w = wire(s)
    try:
        w.send(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n" + WEBSOCKET + b"\r\n" + NEXT)
        for _ in range(2):
            status, headers, body = w.response()
            assert (status, body) == (200, b"a\n") and "connection" not in headers
    finally:
        w.close()


# -- 4. mt and mp log the bytes a cut-off response sent ------------------------------------

@pytest.mark.parametrize("arch", ["mt", "mp"])
def test_a_cut_off_download_is_logged_with_the_bytes_sent_by_mt_and_mp(
        server_factory, tmp_path, arch):
    root = tmp_path / "www"
    root.mkdir()
    with open(root / "big.bin", "wb") as f:
        f.truncate(BIG)
    log = tmp_path / "access.log"
    srv = server_factory(root, "--access-log", log, "--arch", arch, "--procs", "2")
    _leave_early(srv, "/big.bin")
    [line] = wait_for(lambda: log_lines(log, "/big.bin"), what="the cut-off line")
    assert 64 * 1024 <= _logged_size(line) < BIG // 4, line
    # A whole one is logged whole.
    assert len(requests.get(srv.url + "/big.bin").content) == BIG
    wait_for(lambda: len(log_lines(log, "/big.bin")) == 2, what="the whole line")
    assert _logged_size(log_lines(log, "/big.bin")[1]) == BIG


# -- 5. a server name that is not ASCII: unrecognized_name --------------------------------

UNRECOGNIZED_NAME = b"\x15\x03\x03\x00\x02\x02\x70"     # a fatal alert, 112


def test_a_server_name_that_is_not_ascii_gets_unrecognized_name(two_certificates):
    s, ca_path = two_certificates
    hello, *_ = hello_bytes("xx.test")
    for name in ("é.test", "b.t\xe9st"):
        with s.connect() as sock:
            sock.sendall(hello.replace(b"xx.test", name.encode()[:7].ljust(7, b"x")))
            assert read_all(sock) == UNRECOGNIZED_NAME
    # The server goes on choosing certificates by name.
    assert status_over(s, ca_path, "b.test", "b.test") == [200]
    assert "Traceback" not in s.log()


# -- 6. 103 Early Hints through the proxy -------------------------------------------------

HINTS = (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n"
         b"Link: javascript:alert(1)\r\nSet-Cookie: a=b\r\n"
         b"Link: </a.js>; rel=preload; as=script, </b.js>; rel=preload\r\n\r\n")
FINAL = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
PASSED = ["</style.css>; rel=preload; as=style",
          "</a.js>; rel=preload; as=script, </b.js>; rel=preload"]


class HintingUpstream(ThreadedUpstream):
    """Answers each request with a 103, then, a moment later (the app
    still at work), its 200."""

    def _serve(self, conn):
        conn.settimeout(5)
        try:
            if read_head(conn) is None:
                return
            conn.sendall(HINTS)
            time.sleep(0.3)
            conn.sendall(FINAL)
        except OSError:
            pass
        finally:
            conn.close()


@pytest.fixture(scope="module")
def hinting(tmp_path_factory):
    upstream = HintingUpstream()
    tmp = tmp_path_factory.mktemp("left-hints")
    s = start_server(tmp, "--access-log", "off", "--h2c", "--proxy", f"/={upstream.address}",
                     tmp_path=tmp)
    yield s
    s.stop()
    upstream.stop()


def test_the_proxy_passes_early_hints_on_to_an_http11_client(hinting):
    w = wire(hinting)
    try:
        w.send(b"GET /page HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, _ = w.response(skip_1xx=False)
        assert status == 103
        assert headers == {"link": PASSED}         # only its well-formed Links
        status, headers, body = w.response(skip_1xx=False)
        assert (status, body) == (200, b"hello")
        assert "link" not in headers and "set-cookie" not in headers
    finally:
        w.close()


def test_an_http10_client_gets_no_early_hints(hinting):
    w = wire(hinting)
    try:
        w.send(b"GET /page HTTP/1.0\r\nHost: t\r\n\r\n")
        status, _, body = w.response(skip_1xx=False)
        assert (status, body) == (200, b"hello")
    finally:
        w.close()


def test_the_proxy_passes_early_hints_on_over_http2(hinting):
    client = H2Client(hinting.port)
    try:
        sid = client.request("/page")
        events = []
        while not any(isinstance(e, h2.events.StreamEnded) for e in events):
            events += client.pump()
        kinds = [type(e) for e in events if getattr(e, "stream_id", None) == sid]
        # A HEADERS without END_STREAM first, then the response.
        assert kinds.index(h2.events.InformationalResponseReceived) \
            < kinds.index(h2.events.ResponseReceived)
        [hint] = [e for e in events if isinstance(e, h2.events.InformationalResponseReceived)]
        fields = [(n.decode(), v.decode()) for n, v in hint.headers]
        assert fields == [(":status", "103")] + [("link", v) for v in PASSED]
    finally:
        client.close()

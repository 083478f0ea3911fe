"""HTTP/2 end to end: negotiation, the same answers as over HTTP/1.1 for
every static feature and plugin, flow control, with real clients (curl,
h2load, httpx, and the raw h2 client of tests/h2_client.py).
"""
import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time

import pytest

from tests.h2_client import H2Client
from tests.tls_certs import ca, site  # noqa: F401 - fixtures

httpx = pytest.importorskip("httpx", reason="pip install 'httpx[http2]' (the test extra)")
pytest.importorskip("h2")

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
needs_h2load = pytest.mark.skipif(shutil.which("h2load") is None,
                                  reason="h2load is not installed (apt-get install nghttp2-client)")

BIG = os.urandom(3 * 1024 * 1024 + 77)

# A plugin that reports what it was asked, streams a body and adds a
# header: it cannot know which protocol carried the request.
ECHO_PLUGIN = '''
import hashlib
from flashplug import Response, Route, hookimpl


async def echo(request):
    body = await request.body.read()
    lines = [request.method, request.path, request.query, request.host,
             request.headers.get("x-test", "-"), str(len(body)),
             hashlib.sha256(body).hexdigest(), request.scheme]
    return Response(200, [("Content-Type", "text/plain")], ("\\n".join(lines) + "\\n").encode())


async def stream(request):
    async def chunks():
        for i in range(50):
            yield b"%d:" % i + b"s" * 3000 + b"\\n"
    return Response(200, [("Content-Type", "text/plain")], stream=chunks())


@hookimpl
def flashplug_routes():
    return [Route(path="/echo", handler=echo), Route(path="/stream", handler=stream)]


@hookimpl
def flashplug_response_headers(request, response):
    response.headers.append(("X-Echo", "seen " + request.method))
'''

UPLOAD_CGI = '''#!/usr/bin/env python3
import hashlib, os, sys
data = sys.stdin.buffer.read()
sys.stdout.write("Content-Type: text/plain\\n\\n")
sys.stdout.write("%s %d %s %s\\n" % (os.environ.get("CONTENT_LENGTH", "-"), len(data),
                                    hashlib.sha256(data).hexdigest(),
                                    os.environ["SERVER_PROTOCOL"]))
'''


@pytest.fixture
def docroot(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "cgi-bin").mkdir()
    (root / "index.html").write_bytes(b"<h1>home</h1>\n")
    (root / "big.bin").write_bytes(BIG)
    (root / "small.txt").write_bytes(b"0123456789" * 100)
    (root / "sub" / "a.txt").write_bytes(b"a\n")
    (root / "sub" / "b.css").write_bytes(b"body{}\n")
    script = root / "cgi-bin" / "upload.py"
    script.write_text(UPLOAD_CGI)
    script.chmod(0o755)
    plugs = tmp_path / "plugs"
    plugs.mkdir()
    (plugs / "echo.py").write_text(ECHO_PLUGIN)
    return root


@pytest.fixture
def h2c_server(server_factory, docroot, tmp_path):
    return server_factory(docroot, "--h2c", "--plugins", "cgi,autoindex,status,echo",
                          "--plugins-dir", tmp_path / "plugs",
                          "--access-log", tmp_path / "access.log")


def h1_client(server):
    return httpx.Client(base_url=server.url, http1=True, http2=False)


def h2_client(server):
    # http1=False: HTTP/2 with prior knowledge on a plain port.
    return httpx.Client(base_url=server.url, http1=False, http2=True)


# -- negotiation --------------------------------------------------------------------------

@needs_curl
def test_curl_prior_knowledge_and_alpn(server_factory, site, tmp_path):
    root, cert, key, ca_path = site
    plain = server_factory(root, "--h2c")
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-w", "|%{http_version}",
                          plain.url + "/index.html"], capture_output=True, timeout=30)
    assert out.stdout == b"<h1>secure</h1>\n|2", out.stderr
    # HTTP/1.1 still works on the same port.
    out = subprocess.run(["curl", "-sS", "--http1.1", "-w", "|%{http_version}",
                          plain.url + "/index.html"], capture_output=True, timeout=30)
    assert out.stdout == b"<h1>secure</h1>\n|1.1"
    tls = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    url = f"https://localhost:{tls.port}/big.bin"
    out = subprocess.run(["curl", "-sS", "--http2", "--cacert", str(ca_path), "-w",
                          "|%{http_version}", url], capture_output=True, timeout=60)
    body, _, version = out.stdout.rpartition(b"|")
    assert version == b"2" and body == (root / "big.bin").read_bytes(), out.stderr


def alpn_of(port, ca_path, offer):
    ctx = ssl.create_default_context(cafile=str(ca_path))
    ctx.set_alpn_protocols(offer)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            return sock.selected_alpn_protocol()


def test_alpn_offers_h2_unless_turned_off(server_factory, site):
    root, cert, key, ca_path = site
    on = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    assert alpn_of(on.port, ca_path, ["h2", "http/1.1"]) == "h2"
    assert alpn_of(on.port, ca_path, ["http/1.1"]) == "http/1.1"
    off = server_factory(root, "--tls-cert", cert, "--tls-key", key, "--no-http2")
    assert alpn_of(off.port, ca_path, ["h2", "http/1.1"]) == "http/1.1"


def test_h2c_is_off_by_default(server_factory, docroot):
    s = server_factory(docroot)
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 ") and b" 200 " not in answer[:20]
    # ... and an HTTP/1.1 Upgrade to h2c is not taken.
    with h1_client(s) as c:
        r = c.get("/index.html", headers={"Connection": "Upgrade, HTTP2-Settings",
                                          "Upgrade": "h2c", "HTTP2-Settings": ""})
    assert r.http_version == "HTTP/1.1" and r.status_code == 200


def test_h2c_needs_an_event_loop(tmp_path, docroot):
    proc = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(docroot),
                           "--h2c", "--arch", "mt", "--port", "0"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--h2c needs --arch amped or sped" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_httpx_over_tls(server_factory, site):
    root, cert, key, ca_path = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=str(ca_path))) as c:
        r = c.get(f"https://localhost:{s.port}/big.bin")
        assert r.http_version == "HTTP/2" and r.content == (root / "big.bin").read_bytes()
        r = c.get(f"https://localhost:{s.port}/big.bin", headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == (root / "big.bin").read_bytes()[10:20]


# -- the same answers over both protocols --------------------------------------------------

_UNCOMPARED = {"date", "connection", "keep-alive", "transfer-encoding"}


def comparable(response):
    headers = sorted((k.lower(), v) for k, v in response.headers.items()
                     if k.lower() not in _UNCOMPARED)
    body = response.content
    boundary = re.search(r"boundary=(\S+)", response.headers.get("content-type", ""))
    if boundary:
        body = body.replace(boundary.group(1).encode(), b"BOUNDARY")
        headers = [(k, v.replace(boundary.group(1), "BOUNDARY")) for k, v in headers]
    return response.status_code, headers, body


def test_every_static_feature_answers_the_same(h2c_server, docroot):
    with h1_client(h2c_server) as c1, h2_client(h2c_server) as c2:
        etag = c1.get("/small.txt").headers["etag"]
        modified = c1.get("/small.txt").headers["last-modified"]
        cases = [
            ("GET", "/index.html", {}),
            ("GET", "/small.txt", {}),
            ("HEAD", "/small.txt", {}),
            ("GET", "/big.bin", {}),
            ("GET", "/small.txt", {"If-None-Match": etag}),
            ("GET", "/small.txt", {"If-Modified-Since": modified}),
            ("GET", "/small.txt", {"If-Match": '"nope"'}),
            ("GET", "/small.txt", {"Range": "bytes=5-14"}),
            ("GET", "/big.bin", {"Range": "bytes=1000000-1000099,-50"}),
            ("GET", "/small.txt", {"Range": "bytes=5000-"}),
            ("GET", "/small.txt", {"Range": "bytes=0-3", "If-Range": etag}),
            ("GET", "/small.txt?x=1", {}),
            ("GET", "/missing.txt", {}),
            ("GET", "/sub/", {}),
            ("GET", "/sub", {}),
            ("GET", "/cgi-bin/../small.txt", {}),
            ("GET", "/%2e%2e/etc/passwd", {}),
            ("POST", "/small.txt", {}),
            ("DELETE", "/small.txt", {}),
            ("GET", "/echo?a=b", {"X-Test": "yes"}),
            ("GET", "/stream", {}),
        ]
        for method, path, headers in cases:
            r1 = c1.request(method, path, headers=headers)
            r2 = c2.request(method, path, headers=headers)
            assert r2.http_version == "HTTP/2" and r1.http_version == "HTTP/1.1"
            assert comparable(r1) == comparable(r2), (method, path, headers)
        # The listing's HTML and the status page too.
        assert "a.txt" in c2.get("/sub/").text
        r = c2.get("/server-status?format=json")
        assert r.status_code == 200 and "connections_active" in r.text


def test_plugin_sees_the_same_request_over_both(h2c_server):
    body = os.urandom(300_000)
    with h1_client(h2c_server) as c1, h2_client(h2c_server) as c2:
        r1 = c1.post("/echo?q=1", content=body, headers={"X-Test": "t"})
        r2 = c2.post("/echo?q=1", content=body, headers={"X-Test": "t"})
    assert r1.text == r2.text
    assert r2.text.splitlines()[5:7] == [str(len(body)), hashlib.sha256(body).hexdigest()]
    assert r1.headers["x-echo"] == r2.headers["x-echo"] == "seen POST"
    assert "connection" not in r2.headers and "transfer-encoding" not in r2.headers


def test_cgi_reads_the_body_from_data_frames(h2c_server):
    body = os.urandom(1_000_000)
    with h2_client(h2c_server) as c:
        r = c.post("/cgi-bin/upload.py", content=body)
    assert r.text == f"{len(body)} {len(body)} {hashlib.sha256(body).hexdigest()} HTTP/2.0\n"
    # Without a Content-Length: the body's end is the stream's END_STREAM.
    client = H2Client(h2c_server.port)
    sid = client.request("/cgi-bin/upload.py", method="POST", body=b"x" * 5000)
    status, headers, got = client.response(sid)
    assert status == 200
    assert got.split()[1:3] == [b"5000", hashlib.sha256(b"x" * 5000).hexdigest().encode()]
    client.close()


def test_access_log_says_http_2(h2c_server, tmp_path):
    with h2_client(h2c_server) as c:
        assert c.get("/index.html").status_code == 200
    deadline = time.monotonic() + 5
    log_path = tmp_path / "access.log"
    while time.monotonic() < deadline:
        if log_path.exists() and b'"GET /index.html HTTP/2.0" 200' in log_path.read_bytes():
            return
        time.sleep(0.1)
    pytest.fail("no HTTP/2.0 line in the access log")


def test_fastcgi_over_h2(server_factory, docroot, tmp_path):
    pytest.importorskip("flup")
    from tests.fcgi_backends import start_flup, stop, write_flup_app
    proc, sock = start_flup(tmp_path, write_flup_app(tmp_path))
    try:
        s = server_factory(docroot, "--h2c", "--fastcgi", f"/app=unix:{sock}")
        with h2_client(s) as c:
            r = c.post("/app/x?q=1", content=b"y" * 100_000)
            assert r.http_version == "HTTP/2"
            assert r.text == ("script_name=/app path_info=/x query=q=1 method=POST "
                              "body=100000 proxy=-\n")
            assert c.get("/app/big").content == b"x" * (64 * 65536)
    finally:
        stop(proc)


# -- RFC 9113 §8: malformed requests are stream errors ---------------------------------------

def test_malformed_requests_reset_their_stream_only(h2c_server):
    client = H2Client(h2c_server.port)
    malformed = [
        [("X-Upper", "1")],                       # uppercase field name
        [("connection", "keep-alive")],           # connection-specific
        [("transfer-encoding", "chunked")],
        [("te", "gzip")],
        [("x-bad", " padded")],                   # leading whitespace
        [("host", "other.example")],              # Host differs from :authority
        [("content-length", "abc")],              # no number (RFC 9110 §8.6)
        [("content-length", "1"), ("content-length", "2")],
    ]
    for extra in malformed:
        status, _, _ = client.get("/index.html", headers=extra)
        assert status == ("reset", 1), extra     # PROTOCOL_ERROR
    # Pseudo-header fields: unknown, repeated, after a regular field, missing.
    for fields in ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
                    (b":authority", b"localhost"), (b":protocol", b"x")],
                   [(b":method", b"GET"), (b":method", b"GET"), (b":scheme", b"http"),
                    (b":path", b"/")],
                   [(b":method", b"GET"), (b"x-a", b"1"), (b":scheme", b"http"),
                    (b":path", b"/")],
                   [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a")]):
        sid = client.h2.get_next_available_stream_id()
        client.h2.send_headers(sid, fields, end_stream=True)
        client.flush()
        assert client.response(sid)[0] == ("reset", 1), fields
    # Well-formed but wrong: HTTP errors, as over HTTP/1.1.
    sid = client.h2.get_next_available_stream_id()
    client.h2.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"),
                                 (b":path", b"/index.html")], end_stream=True)
    client.flush()
    assert client.response(sid)[0] == 400          # no :authority, no Host
    assert client.get("/index.html", authority="bad host")[0] == 400
    # The connection is still good.
    status, headers, body = client.get("/index.html")
    assert status == 200 and body == b"<h1>home</h1>\n"
    assert not set(headers) & {b"connection", b"transfer-encoding", b"keep-alive"}
    client.close()


# -- multiplexing and flow control -----------------------------------------------------------

def test_a_stream_with_a_shut_window_does_not_hold_the_others(h2c_server, docroot):
    client = H2Client(h2c_server.port)
    big = client.request("/big.bin")
    small = [client.request(f"/sub/{name}") for name in ("a.txt", "b.css")]
    got = {big: b"", small[0]: b"", small[1]: b""}
    ended = set()
    import h2.events
    # Give the connection's window back, never the big stream's: it stops
    # at its 65535 bytes while the small ones complete.
    # (The big file's first window may come after the small files' ends:
    # it is read from disk by a helper first.)
    deadline = time.monotonic() + 20
    while len(ended) < 2 or len(got[big]) < 65535:
        assert time.monotonic() < deadline, (ended, len(got[big]))
        for event in client.pump(ack=False):
            if isinstance(event, h2.events.DataReceived):
                got[event.stream_id] += event.data
                client.h2.increment_flow_control_window(event.flow_controlled_length)
            elif isinstance(event, h2.events.StreamEnded):
                ended.add(event.stream_id)
        client.flush()
        assert not client.closed
    assert ended == set(small) and got[small[0]] == b"a\n" and got[small[1]] == b"body{}\n"
    assert len(got[big]) == 65535
    # Opening the big stream's window lets the rest come.
    client.h2.increment_flow_control_window(len(BIG), stream_id=big)
    client.h2.increment_flow_control_window(len(BIG))
    client.flush()
    client.events = []
    status, _, rest = client.response(big)
    assert got[big] + rest == BIG
    client.close()


def test_many_streams_at_once_each_complete(h2c_server, docroot):
    client = H2Client(h2c_server.port)
    sids = [client.request("/big.bin" if i % 10 == 0 else "/small.txt") for i in range(60)]
    for i, sid in enumerate(sids):
        status, _, body = client.response(sid)
        assert status == 200
        assert body == (BIG if i % 10 == 0 else b"0123456789" * 100)
    client.close()


@needs_h2load
def test_h2load_h2c(h2c_server):
    out = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10",
                          h2c_server.url + "/small.txt"],
                         capture_output=True, text=True, timeout=120)
    assert "2000 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout


@needs_h2load
def test_h2load_tls(server_factory, site):
    root, cert, key, ca_path = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    out = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "10",
                          f"https://127.0.0.1:{s.port}/index.html"],
                         capture_output=True, text=True, timeout=120)
    assert "Application protocol: h2" in out.stdout
    assert "400 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout


def test_cold_ranges_are_read_in_by_helpers(h2c_server, docroot):
    """Pages not in memory are read by a helper, never on the loop."""
    # A file of its own, which no other test has read (or is reading).
    path = docroot / "cold.bin"
    path.write_bytes(BIG)
    from flashplug.residency import MINCORE, PAGE
    start = 2000000 // PAGE * PAGE
    fd = os.open(path, os.O_RDONLY)
    addr = MINCORE.map_file(fd, len(BIG))
    try:
        # Pages still being written back are not dropped at once: retry
        # until mincore sees the range's first page gone.
        for _ in range(100):
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            if MINCORE.resident_prefix(addr, start, PAGE) == 0:
                break
            time.sleep(0.02)
        else:
            pytest.skip("the kernel would not drop this file's pages")
    finally:
        MINCORE.unmap(addr, len(BIG))
        os.close(fd)
    with h2_client(h2c_server) as c:
        r = c.get("/cold.bin", headers={"Range": "bytes=2000000-2999999"})
        assert r.status_code == 206 and r.content == BIG[2000000:3000000]
        stats = c.get("/server-status?format=json").json()
    assert stats["residency_offloads"] >= 1


def test_expect_continue_and_a_body_the_static_handler_ignores(h2c_server):
    import h2.events
    client = H2Client(h2c_server.port)
    # A GET with a body: answered once the body is in (as over HTTP/1.1).
    sid = client.request("/index.html", end=False)
    client.h2.send_data(sid, b"x" * 1000, end_stream=True)
    client.flush()
    assert client.response(sid)[:3:2] == (200, b"<h1>home</h1>\n")
    # Expect: 100-continue: an informational HEADERS once the script reads.
    sid = client.request("/cgi-bin/upload.py", method="POST", end=False,
                         headers=[("content-length", "7"), ("expect", "100-continue")])
    while not any(isinstance(e, h2.events.InformationalResponseReceived)
                  for e in client.events):
        client.pump()
        assert not client.closed
    client.h2.send_data(sid, b"a=1&b=2", end_stream=True)
    client.flush()
    status, _, body = client.response(sid)
    assert status == 200 and body.split()[:2] == [b"7", b"7"]
    client.close()


def test_streams_take_turns(h2c_server):
    """A small response asked for after a 3 MiB one ends first: streams
    are served round-robin, not one after the other."""
    import h2.events
    client = H2Client(h2c_server.port)
    big, small = 1, 3
    for sid, path in ((big, b"/big.bin"), (small, b"/small.txt")):
        client.h2.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"),
                                     (b":path", path), (b":authority", b"localhost")],
                               end_stream=True)
    client.flush()       # both requests in one write
    order = []
    while len(order) < 2:
        for event in client.pump():
            if isinstance(event, h2.events.StreamEnded):
                order.append(event.stream_id)
        assert not client.closed
    assert order == [small, big]
    client.close()


def test_settings_are_advertised(h2c_server):
    import h2.events
    import h2.settings
    client = H2Client(h2c_server.port)
    while not any(isinstance(e, h2.events.RemoteSettingsChanged) for e in client.events):
        client.pump()
    changed = [e for e in client.events if isinstance(e, h2.events.RemoteSettingsChanged)][0]
    values = {code: s.new_value for code, s in changed.changed_settings.items()}
    codes = h2.settings.SettingCodes
    assert values[codes.MAX_CONCURRENT_STREAMS] == 100
    assert values[codes.MAX_HEADER_LIST_SIZE] == 65536
    assert values[codes.ENABLE_PUSH] == 0
    client.close()

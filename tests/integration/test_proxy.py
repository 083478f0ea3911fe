"""The proxy plugin against real upstreams: gunicorn, another flashplug, and a
recording upstream that misbehaves on purpose (tests/proxy_upstreams.py).

Each test starts a real `flashplug serve --proxy ...` process and talks to
it over loopback; the recording upstream tells what reached the upstream.
"""
import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import requests

from conftest import free_port, start_server
from proxy_upstreams import RecordingUpstream, WebSocketEcho, pattern
from test_kernel_http import Closed, wire
from test_smuggling import CASES, Accept, Reject, ThenClose, sentinel

MB = 1 << 20


@pytest.fixture
def upstream():
    u = RecordingUpstream()
    yield u
    u.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One proxy in front of one recording upstream, for the tests that need
    no option of their own (read timeout 2 s, for the slow upstream)."""
    tmp = tmp_path_factory.mktemp("proxy-shared")
    u = RecordingUpstream()
    server = start_server(tmp, "--access-log", "off", "--proxy", f"/={u.address}",
                          "--proxy-read-timeout", "2", tmp_path=tmp)
    server.upstream = u
    yield server
    server.stop()
    u.stop()


@pytest.fixture
def serve(server_factory, tmp_path):
    root = tmp_path / "www"
    root.mkdir(exist_ok=True)
    (root / "local.txt").write_bytes(b"local file\n")

    def start(*args, **kw):
        return server_factory(root, "--access-log", "off", *args, **kw)
    return start


def fds_of(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# -- a real app server: gunicorn ------------------------------------------------------

GUNICORN_APP = """
    import json

    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "HTTP_HOST",
                "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                "HTTP_FORWARDED", "HTTP_COOKIE", "HTTP_X_SECRET", "HTTP_KEEP_ALIVE",
                "HTTP_TE", "HTTP_PROXY_AUTHORIZATION", "HTTP_X_CLIENT")
        seen = {k: environ.get(k) for k in keys}
        seen["body"] = len(body)
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        return [json.dumps(seen).encode()]
"""


@pytest.fixture
def gunicorn(tmp_path):
    (tmp_path / "gapp.py").write_text(textwrap.dedent(GUNICORN_APP))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}",
                             "-w", "1", "gapp:app"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_gunicorn_app_behind_the_proxy(serve, gunicorn):
    s = serve("--proxy", f"/app={gunicorn}")
    r = requests.get(s.url + "/app/hello?x=1", cookies={"c": "v"},
                     headers={"X-Forwarded-For": "6.6.6.6", "X-Client": "kept"})
    assert r.status_code == 200
    seen = r.json()
    assert seen["PATH_INFO"] == "/app/hello" and seen["QUERY_STRING"] == "x=1"
    # The client's own X-Forwarded-For is replaced by the peer we saw.
    assert seen["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert seen["HTTP_X_FORWARDED_PROTO"] == "http"
    assert seen["HTTP_HOST"] == seen["HTTP_X_FORWARDED_HOST"] == f"127.0.0.1:{s.port}"
    assert seen["HTTP_FORWARDED"] == f'for=127.0.0.1;proto=http;host="127.0.0.1:{s.port}"'
    assert seen["HTTP_COOKIE"] == "c=v" and seen["HTTP_X_CLIENT"] == "kept"
    assert r.headers["Set-Cookie"] == "a=1, b=2"
    assert r.headers["Server"] == "flashplug"
    r = requests.post(s.url + "/app/form", data=b"x" * 100_000)
    assert r.json()["body"] == 100_000 and r.json()["REQUEST_METHOD"] == "POST"
    # Outside the prefix: our own static files.
    assert requests.get(s.url + "/local.txt").text == "local file\n"
    assert requests.get(s.url + "/application").status_code == 404


def test_prefix_replaced_by_the_upstream_path(serve, gunicorn):
    s = serve("--proxy", f"/app={gunicorn}/")
    seen = requests.get(s.url + "/app/a%20b/c?q=%2F").json()
    assert seen["PATH_INFO"] == "/a b/c" and seen["QUERY_STRING"] == "q=%2F"
    assert requests.get(s.url + "/app").json()["PATH_INFO"] == "/"


def test_hop_by_hop_fields_are_dropped_on_the_way_up(serve, gunicorn):
    s = serve("--proxy", f"/app={gunicorn}")
    r = requests.get(s.url + "/app/", headers={
        "Connection": "keep-alive, X-Secret", "X-Secret": "1", "Keep-Alive": "300",
        "TE": "trailers", "Proxy-Authorization": "Basic eA=="})
    seen = r.json()
    for key in ("HTTP_X_SECRET", "HTTP_KEEP_ALIVE", "HTTP_TE", "HTTP_PROXY_AUTHORIZATION"):
        assert seen[key] is None, key


def test_hop_by_hop_fields_are_dropped_on_the_way_down(shared):
    s, upstream = shared, shared.upstream
    r = requests.get(s.url + "/hop")
    assert r.text == "hop" and r.headers["X-Kept"] == "yes"
    for name in ("X-Internal", "Keep-Alive", "Proxy-Authenticate", "Trailer", "Upgrade"):
        assert name not in r.headers, name


def test_a_reason_phrase_with_a_control_character_is_a_502(shared):
    """llhttp takes any byte in a reason phrase; the upstream broke HTTP
    (RFC 9112 §4), so the client gets 502, not the 500 of a plugin bug."""
    r = requests.get(shared.url + "/badreason")
    assert r.status_code == 502


def test_proxy_and_x_real_ip_from_the_client_are_not_passed(shared):
    """``Proxy`` is httpoxy (CVE-2016-5385: a CGI upstream would read it as
    HTTP_PROXY); ``X-Real-IP`` would let a client name its own address to
    an app that trusts nginx's usual header: ours replaces it."""
    upstream = shared.upstream
    requests.get(shared.url + "/x", headers={"Proxy": "http://evil.example:8080",
                                             "X-Real-IP": "6.6.6.6"})
    seen = upstream.requests[-1]
    assert seen.header("proxy") is None
    assert seen.header("x-real-ip") == "127.0.0.1"


def test_underscore_fields_are_not_passed(shared):
    s, upstream = shared, shared.upstream
    requests.get(s.url + "/x", headers={"X_Forwarded_For": "6.6.6.6", "X-Ok": "1"})
    names = [n for n, _ in upstream.requests[-1].headers]
    assert "x-ok" in names and not any("_" in n for n in names)


# -- another flashplug as the upstream, keep-alive -----------------------------------------

def test_flashplug_upstream_over_one_kept_alive_connection(serve, server_factory, tmp_path,
                                                           upstream):
    back_root = tmp_path / "back"
    back_root.mkdir()
    (back_root / "f.txt").write_bytes(b"from the back\n")
    back = server_factory(back_root, "--access-log", "off")
    s = serve("--proxy", f"/b={back.url}/", "--proxy", f"/r={upstream.address}")
    with requests.Session() as client:
        for _ in range(20):
            r = client.get(s.url + "/b/f.txt")
            assert r.status_code == 200 and r.text == "from the back\n"
            assert client.get(s.url + "/r/x").text == "index\n"
        r = client.get(s.url + "/b/f.txt", headers={"If-None-Match": r.headers["ETag"]})
        assert r.status_code == 304 and r.content == b""
        assert client.head(s.url + "/b/f.txt").headers["Content-Length"] == "14"
    # One connection to the recording upstream carried all 20 requests.
    assert upstream.connections == 1 and len(upstream.requests) == 20


def test_a_reused_connection_closed_under_a_request(serve, upstream):
    s = serve("--proxy", f"/={upstream.address}")
    assert requests.get(s.url + "/drop-next").text == "index\n"
    # The upstream closes the kept-alive connection as this request arrives:
    # without a body it is sent again on a new connection...
    assert requests.get(s.url + "/x").text == "index\n"
    assert upstream.connections == 2
    assert "a kept-alive connection was closed; trying a new one" in s.log()
    # ...with one, it cannot be (its body is gone): 502.
    assert requests.get(s.url + "/drop-next").text == "index\n"
    assert requests.post(s.url + "/x", data=b"body").status_code == 502
    assert requests.get(s.url + "/x").text == "index\n"


def test_unix_socket_upstream(serve, tmp_path):
    path = str(tmp_path / "up.sock")
    u = RecordingUpstream(unix_path=path)
    try:
        s = serve("--proxy", f"/u=unix:{path}")
        assert requests.get(s.url + "/u/x").text == "index\n"
        assert upstream_target(u) == "/u/x"
    finally:
        u.stop()


def upstream_target(u):
    return u.requests[-1].target.decode()


# -- request smuggling: the kernel's corpus, through the proxy -------------------------------

@pytest.fixture(scope="module")
def smuggling_proxy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxy-smuggling")
    u = RecordingUpstream()
    server = start_server(tmp, "--access-log", "off", "--proxy", f"/={u.address}",
                          tmp_path=tmp)
    server.upstream = u
    yield server
    server.stop()
    u.stop()


def canary_reached(u, case_id):
    return any(not isinstance(m, tuple) and m.target.endswith(b"?" + case_id.encode())
               for m in list(u.requests))


@pytest.mark.parametrize("case_id,request_bytes,expected,nginx", CASES,
                         ids=[c.values[0] if hasattr(c, "values") else c[0] for c in CASES])
def test_smuggling_case_through_the_proxy(smuggling_proxy, case_id, request_bytes, expected,
                                          nginx):
    """What the upstream gets for each ambiguous request: nothing, or one
    request framed one way, and the sentinel behind it only when the
    client's request was unambiguous."""
    u = smuggling_proxy.upstream
    before = len(u.requests)
    w = wire(smuggling_proxy, timeout=10)
    try:
        try:
            w.send(request_bytes + sentinel(case_id))
        except (BrokenPipeError, ConnectionResetError):
            pass
        if isinstance(expected, Accept):
            assert w.response()[::2] == (200, expected.body)
            assert w.response()[::2] == (200, b"canary\n")
        else:
            status, _, body = w.response()
            if isinstance(expected, Reject):
                assert status == expected.status
            elif isinstance(expected, ThenClose):
                assert (status, body) == (200, expected.body)
            else:
                assert status == 200 and w.response()[0] >= 400
            assert w.closed_by_peer()
    except Closed:
        pytest.fail("connection closed before a whole response arrived")
    finally:
        w.close()
    time.sleep(0.05)
    got = u.requests[before:]
    assert not any(isinstance(m, tuple) for m in got), got   # all strictly parseable
    assert canary_reached(u, case_id) == isinstance(expected, Accept)
    for m in got:
        framing = [n for n, _ in m.headers if n in ("content-length", "transfer-encoding")]
        assert len(framing) <= 1, m.headers        # framed one way, never both
        assert not any("_" in n for n, _ in m.headers)
        if isinstance(expected, Reject):
            pytest.fail(f"a refused request reached the upstream: {m.target!r}")


# -- failures: 502, 504, cut responses -----------------------------------------------------

def test_refused_upstream_is_a_502_with_the_cause_logged(serve):
    s = serve("--proxy", f"/app=http://127.0.0.1:{free_port()}")
    assert requests.get(s.url + "/app/").status_code == 502
    assert "502: cannot connect to http://127.0.0.1:" in s.log()


def test_garbage_and_bad_fields_are_502(shared):
    s, upstream = shared, shared.upstream
    assert requests.get(s.url + "/garbage").status_code == 502
    assert "sent an invalid response head" in s.log()
    assert requests.get(s.url + "/badheader").status_code == 502
    assert requests.get(s.url + "/x").text == "index\n"


def test_slow_upstream_is_a_504(shared):
    s, upstream = shared, shared.upstream
    assert requests.get(s.url + "/slow?4").status_code == 504
    assert "504: no response within 2s" in s.log()
    assert requests.get(s.url + "/x").text == "index\n"


def test_upstream_crashing_mid_response_cuts_the_response(shared):
    s, upstream = shared, shared.upstream
    with pytest.raises(requests.exceptions.RequestException):
        r = requests.get(s.url + "/crash", stream=True)
        assert r.status_code == 200
        b"".join(r.iter_content(65536))
    assert "response cut short" in s.log()
    assert requests.get(s.url + "/x").text == "index\n"


def test_client_disconnect_closes_the_upstream_request(shared):
    s, upstream = shared, shared.upstream
    with s.connect() as c:
        c.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: upstream.requests)
    assert upstream.closed.wait(10), "the upstream request stayed open"


def test_client_leaving_mid_response_closes_the_upstream_connection(serve, upstream):
    s = serve("--proxy", f"/={upstream.address}")
    with s.connect() as c:
        c.sendall(b"GET /big?%d HTTP/1.1\r\nHost: x\r\n\r\n" % (64 * MB))
        assert c.recv(65536).startswith(b"HTTP/1.1 200 OK")
    # The upstream, still sending, finds its connection closed.
    assert upstream.aborted.wait(10), "the upstream went on sending to nobody"


def test_slow_upstream_within_the_timeout_streams(shared):
    # 10 chunks 0.2 s apart, with a 2 s read timeout: each gap is short.
    r = requests.get(shared.url + "/trickle?10", stream=True)
    assert r.headers["Transfer-Encoding"] == "chunked"
    assert r.content == b"t" * 10240


def test_upstream_taking_no_body_is_a_504(serve, upstream):
    s = serve("--proxy", f"/={upstream.address}", "--proxy-send-timeout", "1")
    # (Not when the upstream finally closes: once the send timeout is over,
    # the connection is dropped, queued bytes and all.)
    r = requests.post(s.url + "/noread", data=b"x" * (32 * MB), timeout=20)
    assert r.status_code == 504
    assert "504: took no request body for 1s" in s.log()


# -- bodies: 50 MiB each way, bounded memory -----------------------------------------------

def test_upload_50_mib_streams_with_bounded_memory(serve, upstream):
    s = serve("--proxy", f"/={upstream.address}")
    pid = s.proc.pid
    assert requests.get(s.url + "/x").status_code == 200
    before = peak_rss(pid)
    block = os.urandom(MB)
    digest = hashlib.sha256()
    for _ in range(50):
        digest.update(block)

    def chunks():
        for _ in range(50):
            yield block
    r = requests.post(s.url + "/sha", data=chunks())          # chunked
    assert r.text == f"{50 * MB} {digest.hexdigest()}\n"
    r = requests.post(s.url + "/sha", data=block * 50)         # Content-Length
    assert r.text == f"{50 * MB} {digest.hexdigest()}\n"
    # The recording upstream holds the body; the proxy only streams it.
    assert peak_rss(pid) - before < 24 * MB


@pytest.mark.parametrize("kind", ["big", "bigchunked"])
def test_download_50_mib_to_a_slow_client_with_bounded_memory(serve, upstream, kind):
    s = serve("--proxy", f"/={upstream.address}")
    pid = s.proc.pid
    assert requests.get(s.url + "/x").status_code == 200
    before = peak_rss(pid)
    r = requests.get(s.url + f"/{kind}?{50 * MB}", stream=True)
    body = r.iter_content(MB)
    first = next(body)
    time.sleep(1.5)     # the upstream could send it all in this time; we read none
    digest = hashlib.sha256(first)
    size = len(first)
    for data in body:
        digest.update(data)
        size += len(data)
    assert size == 50 * MB
    assert digest.hexdigest() == hashlib.sha256(pattern(50 * MB)).hexdigest()
    assert peak_rss(pid) - before < 24 * MB


# -- several upstreams: balancing and passive health ----------------------------------------

def test_round_robin_over_two_upstreams(serve):
    a, b = RecordingUpstream(), RecordingUpstream()
    try:
        s = serve("--proxy", f"/={a.address},{b.address}")
        for _ in range(10):
            assert requests.get(s.url + "/x").status_code == 200
        assert len(a.requests) == len(b.requests) == 5
    finally:
        a.stop()
        b.stop()


def test_least_conn_sends_to_the_idle_upstream(serve):
    a, b = RecordingUpstream(), RecordingUpstream()
    try:
        s = serve("--proxy", f"/={a.address},{b.address}", "--proxy-balance", "least-conn")
        with s.connect() as c:
            c.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")   # busy on one of them
            wait_for(lambda: a.requests or b.requests)
            busy = a if a.requests else b
            for _ in range(4):
                assert requests.get(s.url + "/x").status_code == 200
            assert len(busy.requests) == 1
    finally:
        a.stop()
        b.stop()


def test_a_dead_upstream_is_taken_out_for_a_while(serve):
    a = RecordingUpstream()
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        s = serve("--proxy", f"/={dead},{a.address}", "--proxy-fail-timeout", "30",
                  "--plugins", "status")
        for _ in range(6):
            assert requests.get(s.url + "/x").text == "index\n"
        log = s.log()
        assert log.count("cannot connect to " + dead) == 1, log
        assert "out for 30s" in log
        assert len(a.requests) == 6
        rows = requests.get(s.url + "/server-status?format=json").json()["proxy_upstreams"]
        assert [(r["upstream"], r["state"], r["requests"], r["failures"]) for r in rows] == \
            [(dead, "out", 0, 1), (a.address, "up", 6, 0)]
        assert rows[1]["idle"] == 1 and rows[1]["active"] == 0
    finally:
        a.stop()


def test_no_live_upstream(serve):
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    s = serve("--proxy", f"/app={','.join(dead)}")
    assert requests.get(s.url + "/app/").status_code == 502    # both tried, both out
    assert requests.get(s.url + "/app/").status_code == 502    # none tried
    log = s.log()
    assert all(log.count(f"cannot connect to {d}") == 1 for d in dead), log
    assert "/app/: 502: no live upstream (all out after failures)" in log


# -- descriptors ---------------------------------------------------------------------------

def test_1000_requests_leak_no_descriptor(serve, upstream):
    s = serve("--proxy", f"/={upstream.address}", "--proxy-read-timeout", "1")
    pid = s.proc.pid
    assert requests.get(s.url + "/x").status_code == 200
    time.sleep(0.5)     # the server has seen that client close
    before = fds_of(pid)
    with requests.Session() as client:
        for i in range(1000):
            path = ("/garbage", "/crash", "/slow?0", "/x")[i % 4] if i % 50 == 0 else "/x"
            try:
                client.get(s.url + path, timeout=10).content
            except requests.exceptions.RequestException:
                client.close()
    for _ in range(100):
        requests.get(s.url + "/x").content     # new client connections, closed
    time.sleep(0.5)
    # As before: the listening socket, the loop's, one parked upstream
    # connection; every client and every failed upstream connection closed.
    assert fds_of(pid) == before


# -- the command line ----------------------------------------------------------------------

@pytest.mark.parametrize("value,words", [
    ("app=http://127.0.0.1:1", "expected /PREFIX=UPSTREAM"),
    ("/app=https://127.0.0.1:1", "https upstreams are not supported"),
    ("/app=unix:run.sock", "absolute socket path"),
])
def test_bad_proxy_flag_is_one_line(tmp_path, value, words):
    p = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(tmp_path),
                        "--port", str(free_port()), "--proxy", value],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.count("\n") == 1 and words in p.stderr


def test_config_file_table(serve, upstream, tmp_path):
    conf = tmp_path / "flashplug.toml"
    conf.write_text(f'[plugins.proxy]\npass = ["/t={upstream.address}"]\n'
                    f'read_timeout = 5\nbalance = "least-conn"\n')
    s = serve("--config", str(conf))
    assert requests.get(s.url + "/t/x").text == "index\n"


# -- WebSocket -------------------------------------------------------------------------------

def test_websocket_upgrade_is_passed_through(serve):
    echo = WebSocketEcho()
    try:
        s = serve("--proxy", f"/ws={echo.address}")
        with s.connect() as c:
            c.sendall(b"GET /ws/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 13\r\n\r\n")
            data = b""
            while b"hello from upstream" not in data:
                more = c.recv(65536)
                assert more, data
                data += more
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
            assert b"Upgrade: websocket" in lines and b"Connection: upgrade" in lines
            assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in lines
            assert rest == b"hello from upstream"
            # A masked text frame "ping" (RFC 6455 §5.7), and 1 MiB of raw bytes.
            frame = b"\x81\x84\x00\x00\x00\x00ping"
            c.sendall(frame)
            got = b""
            while len(got) < len(frame):
                got += c.recv(65536)
            assert got == frame
            blob = os.urandom(MB)
            c.sendall(blob)
            got = b""
            while len(got) < len(blob):
                more = c.recv(1 << 20)
                assert more
                got += more
            assert got == blob
        handshake = echo.handshakes[0].split(b"\r\n")
        assert handshake[0] == b"GET /ws/chat HTTP/1.1"
        assert b"Upgrade: websocket" in handshake and b"Connection: upgrade" in handshake
        # The kernel is still well: plain requests go on.
        assert requests.get(s.url + "/local.txt").text == "local file\n"
    finally:
        echo.stop()


def test_upgrade_refused_upstream_is_a_plain_answer(shared):
    s = shared
    w = wire(s)
    try:
        w.send(b"GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\n\r\n")
        status, headers, body = w.response()
        assert (status, body) == (200, b"index\n")
        # The Upgrade was ignored: the connection goes on (RFC 9110 §7.8).
        assert "connection" not in headers
        w.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert w.response()[2] == b"index\n"
    finally:
        w.close()


@pytest.mark.parametrize("upgrade", [b"h2c", b"H2C", b"h2c, websocket"])
def test_an_h2c_upgrade_is_not_passed_upstream(shared, upgrade):
    """h2c smuggling (Bishop Fox 2020; Go's ReverseProxy, golang/go#80416;
    Traefik #13797): an upstream that took "Upgrade: h2c" would switch the
    tunnel to HTTP/2, and every request inside it would pass the proxy
    unseen (any path, not just the prefix).  The request goes on as a plain
    one; a websocket named beside h2c is still passed."""
    s, upstream = shared, shared.upstream
    w = wire(s)
    try:
        w.send(b"GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: " + upgrade + b"\r\n"
               b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade\r\n\r\n")
        status, _, body = w.response()
        assert (status, body) == (200, b"index\n")
    finally:
        w.close()
    seen = upstream.requests[-1]
    assert seen.header("http2-settings") is None
    passed = seen.header("upgrade")
    assert passed == ("websocket" if b"websocket" in upgrade else None), passed


def test_http2_requests_through_the_proxy_on_one_connection(serve, upstream):
    """An HTTP/2 stream takes the handler's task-less way too
    (flashplug.reply) once the upstream connection is parked: each answer
    goes to its own stream, checked and framed the same."""
    import httpx
    s = serve("--h2c", "--proxy", f"/={upstream.address}")
    with httpx.Client(base_url=s.url, http1=False, http2=True) as client:
        got = [client.get(f"/n{i}") for i in range(6)]
    assert [(r.http_version, r.status_code, r.text, r.headers["x-upstream"]) for r in got] \
        == [("HTTP/2", 200, "index\n", "rec")] * 6
    assert len(upstream.requests) == 6

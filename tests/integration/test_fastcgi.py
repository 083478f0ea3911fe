"""The fastcgi plugin against real backends: php-fpm, php-cgi, flup.

Each test starts a real `flashplug serve --fastcgi ...` process and a real
backend (or a scripted one that misbehaves on purpose, tests/fcgi_backends.py)
and talks to the server over loopback.
"""
import concurrent.futures
import hashlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import requests

from fcgi_backends import (ScriptedBackend, php_fpm_binary, start_flup, start_php_cgi,
                           start_php_fpm, stop, write_flup_app)
from procfs import zombies_of

MB = 1 << 20

needs_php_fpm = pytest.mark.skipif(php_fpm_binary() is None,
                                   reason="php-fpm is not installed (apt-get install php-fpm)")
needs_php_cgi = pytest.mark.skipif(shutil.which("php-cgi") is None,
                                   reason="php-cgi is not installed (apt-get install php-cgi)")

PHP_APP = {
    "app.php": r"""<?php
        setcookie("session", "s1");
        setcookie("theme", "dark");
        header("X-App: php");
        echo "method=", $_SERVER["REQUEST_METHOD"], "\n";
        echo "name=", $_GET["name"] ?? "-", "\n";
        echo "posted=", $_POST["field"] ?? "-", "\n";
        echo "script_name=", $_SERVER["SCRIPT_NAME"], "\n";
        echo "path_info=", $_SERVER["PATH_INFO"] ?? "-", "\n";
        echo "script_filename=", $_SERVER["SCRIPT_FILENAME"], "\n";
        echo "document_root=", $_SERVER["DOCUMENT_ROOT"], "\n";
        echo "proxy=", getenv("HTTP_PROXY") ?: "-", "\n";
        echo "cookie=", $_COOKIE["c"] ?? "-", "\n";
    """,
    "big.php": r"""<?php
        header("Content-Type: application/octet-stream");
        $chunk = str_repeat("0123456789abcdef", 4096);   // 64 KiB
        $n = intval($_GET["mib"] ?? "8") * 16;
        for ($i = 0; $i < $n; $i++) { echo $chunk; flush(); }
    """,
    "upload.php": r"""<?php
        $h = hash_init("sha256");
        $in = fopen("php://input", "rb");
        $n = 0;
        while (!feof($in)) { $d = fread($in, 65536); $n += strlen($d); hash_update($h, $d); }
        echo $n, " ", hash_final($h), "\n";
    """,
    "slow.php": r"""<?php sleep(5); echo "late\n";""",
    "crash.php": r"""<?php
        header("Content-Type: text/plain");
        echo str_repeat("z", 100000); flush();
        posix_kill(posix_getpid(), 9);
    """,
    "redirect.php": r"""<?php header("Location: /app.php"); setcookie("r", "1");""",
    "forever.php": r"""<?php
        ignore_user_abort(false);
        register_shutdown_function(function () {
            file_put_contents(__DIR__ . "/../aborted.txt", connection_aborted() ? "yes" : "no");
        });
        header("Content-Type: text/plain");
        for ($i = 0; $i < 6000; $i++) { echo str_repeat("w", 8192), "\n"; flush(); usleep(5000); }
    """,
    "index.php": r"""<?php echo "front controller for ", $_SERVER["REQUEST_URI"], "\n";""",
}


@pytest.fixture
def docroot(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    for name, body in PHP_APP.items():
        (root / name).write_text(textwrap.dedent(body).lstrip())
    (root / "static.txt").write_text("plain file\n")
    (root / "uploads").mkdir()
    (root / "uploads" / "image.jpg").write_text("not php")
    return root


@pytest.fixture
def fpm(tmp_path):
    if php_fpm_binary() is None:
        pytest.skip("php-fpm is not installed (apt-get install php-fpm)")
    proc, sock = start_php_fpm(tmp_path)
    yield sock
    stop(proc)


@pytest.fixture
def scripted(tmp_path):
    """Make a ScriptedBackend: ``scripted(mode, values=...)``; each is closed
    when the test ends."""
    made = []

    def make(mode, **kw):
        backend = ScriptedBackend(str(tmp_path / f"{mode}-{len(made)}.sock"), mode, **kw)
        made.append(backend)
        return backend
    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def serve(server_factory, docroot):
    def start(*args, **kw):
        return server_factory(docroot, "--access-log", "off", *args, **kw)
    return start


def fields(text):
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def fds_of(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024


# -- php-fpm (an external pool on a Unix socket) ----------------------------------------

@needs_php_fpm
def test_php_fpm_get_post_cookies(serve, fpm, docroot):
    s = serve("--fastcgi", f".php=unix:{fpm}")
    r = requests.get(s.url + "/app.php/extra/path?name=ada", cookies={"c": "v"},
                     headers={"Proxy": "http://evil.example"})
    assert r.status_code == 200 and r.headers["X-App"] == "php"
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.cookies["session"] == "s1" and r.cookies["theme"] == "dark"
    f = fields(r.text)
    assert f["method"] == "GET" and f["name"] == "ada" and f["cookie"] == "v"
    assert f["script_name"] == "/app.php" and f["path_info"] == "/extra/path"
    assert f["script_filename"] == str(docroot / "app.php")
    assert f["document_root"] == str(docroot)
    assert f["proxy"] == "-"    # httpoxy: a Proxy header never becomes HTTP_PROXY
    r = requests.post(s.url + "/app.php", data={"field": "value 1"})
    assert fields(r.text)["posted"] == "value 1" and fields(r.text)["method"] == "POST"
    # PHP answers HEAD without a body: no "Content-Length: 0" that would
    # misstate the GET's length.
    r = requests.head(s.url + "/app.php")
    assert r.status_code == 200 and r.headers.get("Content-Length") != "0"
    assert r.cookies["session"] == "s1"


@needs_php_fpm
def test_php_fpm_concurrent_first_requests_share_one_probe(serve, fpm):
    s = serve("--fastcgi", f".php=unix:{fpm}")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: requests.get(s.url + "/app.php").status_code,
                              range(8)))
    assert codes == [200] * 8
    assert s.log().count("request(s) each") == 1
    # php-fpm states no FCGI_MAX_CONNS: the log says how to size the pool.
    assert "the backend gave no FCGI_MAX_CONNS" in s.log()


@needs_php_fpm
def test_php_fpm_default_pool_is_never_given_a_connection_no_child_reads(serve, tmp_path,
                                                                        docroot):
    """Debian's pool has 5 children (pm.max_children), and php-fpm states no
    FCGI_MAX_CONNS.  A child serves one kept-alive connection until it is
    closed, so a sixth connection would wait in php-fpm's listen queue,
    its request unanswered until the timeout; with the default pool size
    the requests past five wait in flashplug's queue instead."""
    proc, sock = start_php_fpm(tmp_path, children=5)
    try:
        (docroot / "nap.php").write_text('<?php usleep(300000); echo "rested\\n";')
        s = serve("--fastcgi", f".php=unix:{sock}", "--fastcgi-timeout", "4")
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            codes = list(pool.map(lambda i: requests.get(s.url + "/nap.php").status_code,
                                  range(10)))
        assert codes == [200] * 10
        assert "5 connection(s), 1 request(s) each" in s.log()
    finally:
        stop(proc)


@needs_php_fpm
def test_php_fpm_children_recycled_under_kept_alive_connections(serve, tmp_path):
    """pm.max_requests: a php-fpm child exits after its quota and its kept-
    alive connection closes, maybe just as the next request goes out on
    it: that request is retried on a new connection, never a 502."""
    proc, sock = start_php_fpm(tmp_path, children=2, max_requests=3)
    try:
        s = serve("--fastcgi", f".php=unix:{sock}")
        with requests.Session() as session:
            codes = [session.get(s.url + "/app.php").status_code for _ in range(60)]
        assert codes == [200] * 60
    finally:
        stop(proc)


@needs_php_fpm
def test_php_fpm_static_files_and_missing_scripts(serve, fpm):
    s = serve("--fastcgi", f".php=unix:{fpm}")
    assert requests.get(s.url + "/static.txt").text == "plain file\n"
    assert requests.get(s.url + "/missing.php").status_code == 404
    # The classic cgi.fix_pathinfo attack: a non-PHP file is never run as PHP.
    assert requests.get(s.url + "/uploads/image.jpg/x.php").status_code == 403


@needs_php_fpm
def test_php_fpm_removed_script_is_a_404_within_cache_valid(serve, fpm, docroot):
    (docroot / "gone.php").write_text("<?php echo 'here';")
    s = serve("--fastcgi", f".php=unix:{fpm}", "--cache-valid", "0.5")
    assert requests.get(s.url + "/gone.php").text == "here"
    (docroot / "gone.php").unlink()
    time.sleep(1)
    assert requests.get(s.url + "/gone.php").status_code == 404


@needs_php_fpm
def test_php_fpm_location_is_a_client_redirect_with_its_cookies(serve, fpm):
    s = serve("--fastcgi", f".php=unix:{fpm}")
    r = requests.get(s.url + "/redirect.php", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/app.php"
    assert r.cookies["r"] == "1"


@needs_php_fpm
def test_php_fpm_streams_a_large_response(serve, fpm):
    s = serve("--fastcgi", f".php=unix:{fpm}")
    r = requests.get(s.url + "/big.php?mib=32", stream=True)
    digest, size = hashlib.sha256(), 0
    for chunk in r.iter_content(MB):
        digest.update(chunk)
        size += len(chunk)
    assert size == 32 * MB
    expected = hashlib.sha256(b"0123456789abcdef" * 4096 * 16 * 32).hexdigest()
    assert digest.hexdigest() == expected


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024


@needs_php_fpm
def test_php_fpm_slow_client_holds_back_the_backend(serve, fpm):
    s = serve("--fastcgi", f".php=unix:{fpm}")
    pid = s.proc.pid
    assert requests.get(s.url + "/app.php").status_code == 200
    before = rss(pid)
    with s.connect(timeout=30) as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.sendall(b"GET /big.php?mib=64 HTTP/1.1\r\nHost: x\r\n\r\n")
        data = c.recv(65536)
        assert data.startswith(b"HTTP/1.1 200")
        time.sleep(3)    # PHP could write 64 MiB in this time; we read none
        # Only socket buffers and the plugin's high-water mark are held.
        assert rss(pid) - before < 16 * MB
        got, tail = len(data), data[-16:]
        while not tail.endswith(b"\r\n0\r\n\r\n"):   # the last chunk
            data = c.recv(1 << 20)
            assert data
            got, tail = got + len(data), (tail + data)[-16:]
        assert got > 64 * MB


@needs_php_fpm
def test_php_fpm_upload_50_mib_streams_with_bounded_memory(serve, fpm):
    s = serve("--fastcgi", f".php=unix:{fpm}")
    pid = s.proc.pid
    assert requests.get(s.url + "/app.php").status_code == 200
    before = peak_rss(pid)
    block = bytes(range(256)) * 4096    # 1 MiB
    digest = hashlib.sha256()
    with s.connect(timeout=60) as c:
        c.sendall(b"POST /upload.php HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/octet-stream\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (50 * MB))
        for _ in range(50):
            c.sendall(block)
            digest.update(block)
        reply = b""
        while True:
            data = c.recv(65536)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 200")
    assert reply.split(b"\r\n\r\n", 1)[1] == b"%d %s\n" % (50 * MB, digest.hexdigest().encode())
    # Streamed, not held: the server grew by far less than the body.
    assert peak_rss(pid) - before < 20 * MB


@needs_php_fpm
def test_php_fpm_chunked_upload_is_spooled_with_a_length(serve, fpm):
    s = serve("--fastcgi", f".php=unix:{fpm}")
    data = os.urandom(700_000)

    def chunks():
        for i in range(0, len(data), 100_000):
            yield data[i:i + 100_000]
    r = requests.post(s.url + "/upload.php", data=chunks())
    assert r.text == f"{len(data)} {hashlib.sha256(data).hexdigest()}\n"


@needs_php_fpm
def test_php_fpm_slow_script_is_a_504(serve, fpm):
    s = serve("--fastcgi", f".php=unix:{fpm}", "--fastcgi-timeout", "1")
    assert requests.get(s.url + "/slow.php").status_code == 504
    assert "504: no response header within 1s" in s.log()
    # The pool is still usable afterwards.
    assert requests.get(s.url + "/app.php").status_code == 200


@needs_php_fpm
def test_php_fpm_slow_script_found_before_is_a_504_too(serve, fpm):
    # A script found lately is begun without a task (flashplug.reply):
    # its failures are answered and logged as the coroutine's are.
    s = serve("--fastcgi", f".php=unix:{fpm}", "--fastcgi-timeout", "1")
    with requests.Session() as session:
        assert [session.get(s.url + "/slow.php").status_code for _ in range(2)] == [504, 504]
        assert s.log().count("504: no response header within 1s") == 2
        assert [session.get(s.url + "/app.php").status_code for _ in range(3)] == [200] * 3


@needs_php_fpm
def test_php_fpm_crash_mid_response_cuts_the_response(serve, fpm):
    s = serve("--fastcgi", f".php=unix:{fpm}")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        r = requests.get(s.url + "/crash.php", stream=True)
        assert r.status_code == 200
        b"".join(r.iter_content(65536))
    assert "response cut short" in s.log()
    assert requests.get(s.url + "/app.php").status_code == 200


@needs_php_fpm
def test_php_fpm_client_disconnect_stops_the_script(serve, fpm, tmp_path):
    s = serve("--fastcgi", f".php=unix:{fpm}")
    marker = tmp_path / "aborted.txt"
    with s.connect() as c:
        c.sendall(b"GET /forever.php HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.recv(65536).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline, "the script never noticed the client left"
        time.sleep(0.05)
    assert marker.read_text() == "yes"


@needs_php_fpm
def test_php_fpm_index_php_for_directories(serve, fpm, docroot):
    (docroot / "blog").mkdir()
    (docroot / "blog" / "index.php").write_text(
        '<?php echo "blog index ", $_SERVER["SCRIPT_NAME"], "\\n";')
    s = serve("--fastcgi", f".php=unix:{fpm}", "--fastcgi-index", "index.php")
    assert requests.get(s.url + "/blog/").text == "blog index /blog/index.php\n"
    assert requests.get(s.url + "/").text.startswith("front controller for /")


@needs_php_fpm
def test_php_fpm_front_controller_for_missing_paths(serve, fpm):
    s = serve("--fastcgi", f".php=unix:{fpm}", "--fastcgi-fallback", "/index.php")
    r = requests.get(s.url + "/2026/11/hello-world/?utm=1")
    assert r.text == "front controller for /2026/11/hello-world/?utm=1\n"
    assert requests.get(s.url + "/static.txt").text == "plain file\n"
    assert fields(requests.get(s.url + "/app.php?name=direct").text)["name"] == "direct"


@needs_php_fpm
def test_php_fpm_per_site_roots_and_fallbacks(server_factory, fpm, docroot, tmp_path):
    """Two [[site]] tables on one pool: each site's scripts run from its own
    root, with its own fallback or none; the top level has no fastcgi."""
    other = tmp_path / "other"
    shutil.copytree(docroot, other)
    (tmp_path / "top").mkdir()
    conf = tmp_path / "sites.toml"
    conf.write_text(textwrap.dedent(f"""\
        [plugins]
        enable = []
        [[site]]
        names = ["a.test"]
        root = "www"
        [site.plugins]
        enable = ["fastcgi"]
        [site.plugins.fastcgi]
        backend = [".php=unix:{fpm}"]
        fallback = "/index.php"
        [[site]]
        names = ["b.test"]
        root = "other"
        [site.plugins]
        enable = ["fastcgi"]
        [site.plugins.fastcgi]
        backend = [".php=unix:{fpm}"]
        """))
    s = server_factory(tmp_path / "top", "--config", conf, "--access-log", "off")
    for host, root in (("a.test", docroot), ("b.test", other)):
        got = fields(requests.get(s.url + "/app.php", headers={"Host": host}).text)
        assert got["document_root"] == str(root)
        assert got["script_filename"] == str(root / "app.php")
    assert requests.get(s.url + "/x/y", headers={"Host": "a.test"}).text == \
        "front controller for /x/y\n"
    assert requests.get(s.url + "/x/y", headers={"Host": "b.test"}).status_code == 404
    assert requests.get(s.url + "/app.php", headers={"Host": "c.test"}).status_code == 404


@needs_php_fpm
def test_php_fpm_thousand_requests_leave_no_descriptor(serve, fpm):
    s = serve("--fastcgi", f".php=unix:{fpm}")
    pid = s.proc.pid

    def batch(n):
        with requests.Session() as session:
            for _ in range(n):
                assert session.get(s.url + "/app.php?name=x").status_code == 200

    batch(10)
    time.sleep(0.2)
    before = fds_of(pid)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(batch, [250] * 4))    # 1,000 requests, 4 at a time
    time.sleep(0.5)
    # Pooled connections may stay open (at most the 4 used at once) until
    # their idle timeout; after it, the count is back where it was.
    assert fds_of(pid) <= before + 4
    time.sleep(6)
    assert fds_of(pid) <= before
    assert zombies_of(pid) == []


# -- php-cgi -b (an external backend on TCP) -----------------------------------------

@needs_php_cgi
def test_php_cgi_over_tcp_by_prefix(serve):
    from conftest import free_port
    port = free_port()
    proc = start_php_cgi(port)
    try:
        s = serve("--fastcgi", f".php=127.0.0.1:{port}")
        r = requests.post(s.url + "/app.php?name=tcp", data={"field": "f"})
        f = fields(r.text)
        assert (f["name"], f["posted"], f["method"]) == ("tcp", "f", "POST")
        assert r.cookies["session"] == "s1"
    finally:
        stop(proc)


# -- flup: a Python WSGI app --------------------------------------------------------

def test_flup_wsgi_app_by_prefix(serve, tmp_path):
    proc, sock = start_flup(tmp_path, write_flup_app(tmp_path))
    try:
        s = serve("--fastcgi", f"/app=unix:{sock}")
        r = requests.get(s.url + "/app/hello/world?q=1", headers={"Proxy": "x"})
        assert r.status_code == 200 and r.cookies["flup"] == "1"
        assert r.text == ("script_name=/app path_info=/hello/world query=q=1 "
                          "method=GET body=0 proxy=-\n")
        r = requests.post(s.url + "/app", data=b"x" * 100_000)
        assert "script_name=/app path_info= " in r.text and "body=100000" in r.text
        r = requests.get(s.url + "/app/big")
        assert r.content == b"x" * (64 * 65536)
        assert requests.get(s.url + "/application").status_code == 404
    finally:
        stop(proc)


def test_multiplexing_backend_gets_requests_on_one_connection(serve, scripted):
    backend = scripted("hello", values=[("FCGI_MAX_CONNS", "1"), ("FCGI_MAX_REQS", "4"),
                                        ("FCGI_MPXS_CONNS", "1")])
    s = serve("--fastcgi", f"/app=unix:{backend.path}", "--plugins", "status")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda i: requests.get(s.url + "/app/").status_code,
                              range(4)))
    assert codes == [200] * 4
    assert "1 connection(s), 4 request(s) each" in s.log()
    assert backend.connections == 2             # the GET_VALUES probe, then one
    assert len(backend.request_ids) > 1         # several requests on it at once
    [row] = requests.get(s.url + "/server-status?format=json").json()["fastcgi_backends"]
    assert row["connections"] == 1 and row["requests"] == 4


def test_backend_max_conns_is_honoured(serve, scripted):
    backend = scripted("hello", values=[("FCGI_MAX_CONNS", "1"), ("FCGI_MAX_REQS", "1"),
                                        ("FCGI_MPXS_CONNS", "0")])
    s = serve("--fastcgi", f"/app=unix:{backend.path}")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda i: requests.get(s.url + "/app/").status_code,
                              range(4)))
    assert codes == [200] * 4
    assert backend.most_at_once == 1
    assert "1 connection(s), 1 request(s) each" in s.log()
    assert "gave no FCGI_MAX_CONNS" not in s.log()


# -- failures, with a backend that misbehaves on purpose ------------------------------

def test_refused_connection_is_a_502(serve, tmp_path):
    s = serve("--fastcgi", f"/app=unix:{tmp_path}/nobody.sock")
    assert requests.get(s.url + "/app/").status_code == 502
    assert "cannot connect to unix:" in s.log()


def test_garbage_from_the_backend_is_a_502(serve, scripted):
    backend = scripted("garbage")
    s = serve("--fastcgi", f"/app=unix:{backend.path}")
    assert requests.get(s.url + "/app/x").status_code == 502
    assert "protocol error: record version 72" in s.log()


def test_client_disconnect_sends_abort_request(serve, scripted):
    backend = scripted("stream")
    s = serve("--fastcgi", f"/app=unix:{backend.path}")
    with s.connect() as c:
        c.sendall(b"GET /app/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.recv(65536).startswith(b"HTTP/1.1 200")
    assert backend.aborted.wait(10), f"records seen: {backend.seen}"


def test_backend_closing_inside_a_record_cuts_the_response(serve, scripted):
    backend = scripted("cut")
    s = serve("--fastcgi", f"/app=unix:{backend.path}")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        r = requests.get(s.url + "/app/x", stream=True)
        assert r.status_code == 200
        b"".join(r.iter_content(65536))
    assert "protocol error: connection closed" in s.log()
    assert "response cut short" in s.log()


def test_backend_taking_no_body_is_a_504_without_holding_the_upload(serve, scripted):
    # Backpressure from the backend: the body waits in socket buffers, not
    # in the server, and the send times out with the response head.
    backend = scripted("deaf")
    s = serve("--fastcgi", f"/app=unix:{backend.path}", "--fastcgi-timeout", "2")
    pid = s.proc.pid
    assert requests.get(s.url + "/server-status").status_code in (200, 404)
    before = peak_rss(pid)
    with s.connect(timeout=30) as c:
        c.sendall(b"POST /app/up HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: %d\r\n\r\n" % (40 * MB))

        def upload():
            try:
                for _ in range(40):
                    c.sendall(b"u" * MB)
            except OSError:
                pass
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(upload)
            assert c.recv(65536).startswith(b"HTTP/1.1 504")
            c.shutdown(socket.SHUT_RDWR)
    assert "504: no response header within 2s" in s.log()
    assert peak_rss(pid) - before < 20 * MB


# -- the one flag, the config file, bad options ------------------------------------

@needs_php_fpm
def test_config_file_table_enables_the_plugin(server_factory, docroot, fpm, tmp_path):
    conf = tmp_path / "flashplug.toml"
    conf.write_text(f'[plugins.fastcgi]\nbackend = [".php=unix:{fpm}"]\ntimeout = 30\n')
    s = server_factory(docroot, "--config", str(conf))
    assert fields(requests.get(s.url + "/app.php?name=toml").text)["name"] == "toml"


@pytest.mark.parametrize("flag, message", [
    ("php=unix:/x", "expected .EXT=BACKEND or /PREFIX=BACKEND"),
    (".php=localhost", "expected unix:PATH or HOST:PORT"),
    (".php=spawn:php-cgi", "needs an absolute program path"),
    ("/app=127.0.0.1:0", "expected unix:PATH or HOST:PORT"),
])
def test_bad_mappings_are_one_line_errors(docroot, flag, message):
    import subprocess
    from conftest import free_port
    # A port of its own: the default 8000 may be taken on the machine, and
    # that error would come first.
    r = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(docroot),
                        "--port", str(free_port()), "--fastcgi", flag],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# -- supervised backends (spawn:) ---------------------------------------------------

def processes(server):
    r = requests.get(server.url + "/server-status?format=json")
    return r.json().get("fastcgi_processes", [])


def children_of(pid, program="php-cgi"):
    """Live children of ``pid`` running ``program`` (not, say, the process
    guard that procs.py starts beside them)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields_ = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv0 = f.read().split(b"\0")[0]
            except OSError:
                continue
            if (int(fields_[1]) == pid and fields_[0] != "Z"
                    and os.path.basename(argv0).decode() == program):
                found.append(int(entry))
    return found


def wait_until(check, within=15, what="condition"):
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@needs_php_cgi
def test_spawned_php_cgi_recycles_after_max_requests(serve):
    php = shutil.which("php-cgi")
    s = serve("--fastcgi", f".php=spawn:{php}", "--fastcgi-procs", "2",
              "--fastcgi-max-requests", "5", "--plugins", "status")
    rows = processes(s)
    assert [r["state"] for r in rows] == ["running", "running"]
    first = {r["pid"] for r in rows}
    with requests.Session() as session:
        for i in range(30):
            r = session.get(s.url + f"/app.php?name=n{i}")
            assert r.status_code == 200 and fields(r.text)["name"] == f"n{i}"
    assert "served 5 requests; replacing it" in s.log()
    # The last replacement is listed as "starting" from before its spawn
    # returns, when its process may already be a child.
    wait_until(lambda: len(children_of(s.proc.pid)) == 2
               and {r["state"] for r in processes(s)} == {"running"},
               what="draining processes to stop and their replacements to run")
    rows = processes(s)
    # A keep-alive connection is reused, so the requests went to one process
    # slot, whose process was replaced every 5 requests.
    assert {r["state"] for r in rows} == {"running"} and first != {r["pid"] for r in rows}
    assert all(r["requests"] < 5 and r["restarts"] == 0 for r in rows)
    assert zombies_of(s.proc.pid) == []


@needs_php_cgi
def test_spawned_backend_killed_under_load_is_restarted(serve):
    php = shutil.which("php-cgi")
    s = serve("--fastcgi", f".php=spawn:{php}", "--fastcgi-procs", "2", "--plugins", "status")
    victim = int(processes(s)[0]["pid"])
    statuses = []

    def load(n):
        with requests.Session() as session:
            for _ in range(n):
                statuses.append(session.get(s.url + "/app.php").status_code)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        running = [pool.submit(load, 100) for _ in range(3)]
        time.sleep(0.3)
        os.kill(victim, signal.SIGKILL)
        for f in running:
            f.result()
    # At most the requests on the killed process failed, as 502s.
    assert statuses.count(200) >= len(statuses) - 3
    assert set(statuses) <= {200, 502}
    wait_until(lambda: [r["restarts"] for r in processes(s)] in ([1, 0], [0, 1])
               and all(r["state"] == "running" for r in processes(s)),
               what="the restart")
    assert f"process {victim} ended (signal 9)" in s.log()
    assert requests.get(s.url + "/app.php").status_code == 200
    assert zombies_of(s.proc.pid) == []


def test_spawned_flup_app_and_graceful_shutdown(serve, tmp_path, request):
    app = write_flup_app(tmp_path)
    # A temporary directory of its own, short (a socket path holds 107
    # bytes): other servers' socket folders in the shared /tmp come and go
    # meanwhile.
    tmp = Path(tempfile.mkdtemp(prefix="fp-t-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(tmp, ignore_errors=True))
    s = serve("--fastcgi", f"/app=spawn:{sys.executable} {app}", "--fastcgi-procs", "2",
              "--plugins", "status", env={**os.environ, "TMPDIR": str(tmp)})
    r = requests.get(s.url + "/app/x?y=1")
    assert r.text.startswith("script_name=/app path_info=/x query=y=1 method=GET")
    pids = [int(r["pid"]) for r in processes(s)]
    assert len(pids) == 2
    assert [d.name.startswith("flashplug-fastcgi-") for d in tmp.iterdir()] == [True]
    assert s.stop() == 0
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"backend {pid} outlived the server"
    assert list(tmp.iterdir()) == [], "the sockets' folder outlived the server"


def test_spawned_backends_start_under_a_long_tmpdir(serve, tmp_path):
    # Sockets go under TMPDIR; one too long for a socket path (107 bytes)
    # made every start and restart fail: /tmp serves instead.
    app = write_flup_app(tmp_path)
    long = tmp_path / ("d" * 100)
    long.mkdir()
    s = serve("--fastcgi", f"/app=spawn:{sys.executable} {app}", env={**os.environ, "TMPDIR": str(long)})
    assert requests.get(s.url + "/app/x", timeout=10).text.startswith("script_name=/app path_info=/x")
    assert s.stop() == 0
    assert "too long" not in s.log()


@needs_php_cgi
def test_spawned_thousand_requests_no_zombie_no_descriptor(serve):
    php = shutil.which("php-cgi")
    s = serve("--fastcgi", f".php=spawn:{php}", "--fastcgi-procs", "2",
              "--fastcgi-max-requests", "100")
    pid = s.proc.pid

    def batch(n):
        with requests.Session() as session:
            for _ in range(n):
                assert session.get(s.url + "/app.php").status_code == 200

    batch(10)
    time.sleep(0.3)
    before = fds_of(pid)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(batch, [500] * 2))    # 1,000 requests; ~10 recycles
    wait_until(lambda: len(children_of(pid)) == 2, what="recycled processes to stop")
    time.sleep(6)    # pooled connections' idle timeout
    assert zombies_of(pid) == []
    assert fds_of(pid) <= before

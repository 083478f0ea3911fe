"""The plugin API end to end: a real third-party plugin, selection, failures.

The example distribution docs/examples/flashplug-hello is pip-installed
(for real, not editable) into a throwaway folder put on this session's path,
once per session, and exercised the way its users would: found through the
`flashplug` entry-point group and enabled with `--plugins hello`.  Plugins
that exist only to fail or to count are single files in a --plugins-dir.

Most tests start a real `flashplug serve` process.  The hook-counting tests
run a Worker in this process instead, on a real loopback socket, because
they watch the plugin manager with pluggy's hook-call monitoring.
"""
import asyncio
import http.client
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from flashplug import plugins as plugin_mod
from flashplug.cli import build_serve
from flashplug.server import bind_listener
from flashplug.worker import Worker

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "docs", "examples", "flashplug-hello")
HOOKS = plugin_mod.spec_names()


# -- installing the example plugin ------------------------------------------------

@pytest.fixture(scope="session")
def hello(tmp_path_factory):
    """The example plugin, installed for real (not editable) into a throwaway
    folder that this session alone puts on the path (PYTHONPATH for the
    servers it starts, sys.path for the in-process ones): the developer's
    own environment is never changed."""
    # Build from a copy: pip builds in the source folder and would leave
    # build/ and *.egg-info in the repository.
    src = tmp_path_factory.mktemp("hello-src") / "flashplug-hello"
    shutil.copytree(EXAMPLE, src)
    target = str(tmp_path_factory.mktemp("hello-site"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--disable-pip-version-check", "--target", target, str(src)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"pip install {EXAMPLE} failed:\n{proc.stdout}\n{proc.stderr}")
    old_env = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (target, old_env) if p)
    sys.path.insert(0, target)
    importlib.invalidate_caches()
    assert importlib.metadata.distribution("flashplug-hello").version == "1.0.0"
    yield "hello"
    sys.path.remove(target)
    if old_env is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = old_env
    importlib.invalidate_caches()


def test_the_example_plugin_stays_out_of_the_environment(hello):
    """The suite installs the example plugin only for itself: the same
    interpreter without this session's PYTHONPATH does not see it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "flashplug", "plugins"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert not any(line.startswith("hello ") for line in proc.stdout.splitlines())
    assert "hello 1.0.0" in flashplug("plugins").stdout


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"a" * 1024)
    (root / "warm.txt").write_bytes(b"warm\n")
    (root / "sub" / "b.txt").write_bytes(b"b\n")
    return root


def flashplug(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "flashplug", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- flashplug plugins --------------------------------------------------------------

def test_plugins_json_lists_every_source(hello, plugdir):
    plugdir("local", """
        from flashplug import hookimpl

        @hookimpl
        def flashplug_request_done(status):
            pass
    """)
    proc = flashplug("plugins", "--json", "--plugins-dir", plugdir.path, "--plugins", "hello")
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert rows["hello"] == {
        "name": "hello", "version": "1.0.0", "source": "entry point",
        "location": "flashplug_hello", "enabled": True,
        "hooks": sorted(set(HOOKS) - {"flashplug_directory", "flashplug_tls_certificates"}),
    }
    assert rows["local"]["source"] == "plugins dir"
    assert rows["local"]["hooks"] == ["flashplug_request_done"]
    assert rows["local"]["enabled"] is False
    assert rows["autoindex"]["source"] == "bundled"
    assert "flashplug_directory" in rows["autoindex"]["hooks"]
    assert set(rows) >= {"hello", "local", "autoindex", "cgi"}


def test_plugins_text(hello):
    proc = flashplug("plugins")
    assert proc.returncode == 0, proc.stderr
    assert "hello 1.0.0 (entry point: flashplug_hello) [disabled]" in proc.stdout
    assert "    flashplug_response_headers" in proc.stdout


def test_plugins_lists_a_broken_plugin_and_exits_0(plugdir):
    plugdir("broken", """
        import flashplug_no_such_dependency
    """)
    proc = flashplug("plugins", "--plugins-dir", plugdir.path)
    assert proc.returncode == 0, proc.stderr
    assert (f"broken - (plugins dir: {plugdir.path / 'broken.py'}) [broken: "
            f"ModuleNotFoundError: No module named 'flashplug_no_such_dependency']"
            in proc.stdout.splitlines())
    assert "cgi 0.1.0" in proc.stdout
    rows = {row["name"]: row for row in json.loads(
        flashplug("plugins", "--json", "--plugins-dir", plugdir.path).stdout)}
    assert rows["broken"]["broken"].startswith("ModuleNotFoundError")
    assert "broken" not in rows["cgi"]


def test_plugins_unknown_name(hello):
    proc = flashplug("plugins", "--plugins", "helo")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "unknown plugin 'helo'" in proc.stderr and "hello" in proc.stderr


# -- start-up failures ------------------------------------------------------------------

def test_unknown_plugin_fails_at_start(hello, site):
    proc = flashplug("serve", site, "--port", "0", "--plugins", "hello,nosuch")
    assert proc.returncode == 2
    assert proc.stderr.startswith("flashplug: error: unknown plugin 'nosuch'; "
                                  "installed plugins: ")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    installed = proc.stderr.split("installed plugins: ")[1]
    assert "hello" in installed and "autoindex" in installed


def test_unknown_hook_fails_at_start(site, plugdir):
    plugdir("typo", """
        from flashplug import hookimpl

        @hookimpl
        def flashplug_no_such_hook(request):
            pass
    """)
    proc = flashplug("serve", site, "--port", "0", "--plugins-dir", plugdir.path,
                     "--plugins", "typo")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "typo" in proc.stderr and "'flashplug_no_such_hook'" in proc.stderr
    assert "Serving" not in proc.stdout


def test_bad_hook_signature_is_one_line(site, plugdir):
    plugdir("badargs", """
        from flashplug import hookimpl

        @hookimpl
        def flashplug_routes(bogus):
            return []
    """)
    proc = flashplug("serve", site, "--port", "0", "--plugins-dir", plugdir.path,
                     "--plugins", "badargs")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("flashplug: error: plugin 'badargs'")
    assert "'bogus'" in proc.stderr and "flashplug_routes" in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr


def test_configure_refuses_empty_greeting(hello, site):
    proc = flashplug("serve", site, "--port", "0", "--plugins", "hello",
                     "--hello-greeting", " ")
    assert proc.returncode == 2
    assert proc.stderr == ("flashplug: error: --hello-greeting (greeting in "
                           "[plugins.hello]) is empty; give a word such as 'Hello'\n")


def test_configure_runs_only_for_enabled_plugins(hello, site, server_factory):
    # The same bad value is harmless while the plugin is not enabled.
    server = server_factory(site, "--hello-greeting", " ")
    assert requests.get(server.url + "/a.txt").status_code == 200


def test_config_file_error_from_a_plugin_table(hello, site, tmp_path):
    cfg = tmp_path / "site.toml"
    cfg.write_text('[plugins.hello]\ngreting = "Hi"\n')
    proc = flashplug("serve", site, "--port", "0", "--config", cfg, "--plugins", "hello")
    assert proc.returncode == 2
    assert proc.stderr == (f"flashplug: error: {cfg}:2: [plugins.hello] greting: unknown "
                           f"setting; allowed: chunk_delay, greeting\n")


# -- the example plugin, through its entry point ------------------------------------------

def test_kernel_alone_by_default(hello, site, server_factory):
    server = server_factory(site)
    r = requests.get(server.url + "/hello/")
    assert r.status_code == 404
    assert "X-Hello" not in r.headers
    assert b"404 Not Found" in r.content            # the kernel's own page
    assert requests.get(server.url + "/x.hello").status_code == 404


def test_hello_routes_and_headers(hello, site, server_factory):
    """flashplug_routes, flashplug_response_headers, flashplug_route_request."""
    server = server_factory(site, "--plugins", "hello", "--hello-greeting", "Howdy")
    r = requests.get(server.url + "/hello/")
    assert (r.status_code, r.text) == (200, "Howdy, world!\n")
    assert r.headers["X-Hello"] == "Howdy"
    assert requests.get(server.url + "/hello/ada").text == "Howdy, ada!\n"
    assert requests.get(server.url + "/hello").text == "Howdy, world!\n"
    # a static file goes through the hook too
    r = requests.get(server.url + "/a.txt")
    assert r.content == b"a" * 1024 and r.headers["X-Hello"] == "Howdy"
    # the predicate route (flashplug_route_request) claims *.hello anywhere
    r = requests.get(server.url + "/sub/grace.hello")
    assert (r.status_code, r.text) == (200, "Howdy, grace!\n")
    assert requests.post(server.url + "/hello/").status_code == 405


def test_hello_streams_chunked(hello, site, server_factory):
    server = server_factory(site, "--plugins", "hello")
    with server.connect() as s:
        s.sendall(b"GET /hello/stream?n=3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert b"Content-Length" not in head
    assert body == (b"11\r\nHello, number 1!\n\r\n11\r\nHello, number 2!\n\r\n"
                    b"11\r\nHello, number 3!\n\r\n0\r\n\r\n")
    assert requests.get(server.url + "/hello/stream?n=-1").status_code == 400


def test_hello_error_page(hello, site, server_factory):
    """flashplug_error_page: the plugin renders 404s, the kernel the rest."""
    server = server_factory(site, "--plugins", "hello")
    r = requests.get(server.url + "/missing.txt")
    assert r.status_code == 404
    assert r.text == "Hello! There is nothing here, but /hello/ is always here.\n"
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    r = requests.delete(server.url + "/a.txt")
    assert r.status_code == 405 and b"405 Method Not Allowed" in r.content
    assert r.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_hello_counts_finished_requests(hello, site, server_factory):
    """flashplug_request_done sees every response, with its status."""
    server = server_factory(site, "--plugins", "hello")
    for path in ("/a.txt", "/a.txt", "/nope", "/hello/"):
        requests.get(server.url + path)
    assert requests.get(server.url + "/hello/stats").json() == {"200": 3, "404": 1}


def test_request_done_sees_an_aborted_response(hello, site, server_factory):
    server = server_factory(site, "--plugins", "hello", "--hello-chunk-delay", "0.05")
    with server.connect() as s:
        s.sendall(b"GET /hello/stream?n=100 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
    # The client went away mid-stream; the plugin still hears of the request
    # once a write fails.  Each /hello/stats request is counted too, after
    # its own answer: a poll sees the earlier polls, plus the stream once
    # its request_done has run.
    polls = []

    def stream_counted():
        seen = requests.get(server.url + "/hello/stats").json().get("200", 0)
        polls.append(seen)
        return seen == len(polls)       # the len(polls) - 1 earlier polls, and the stream
    assert wait_for(stream_counted, timeout=3), polls


def test_hello_startup_and_shutdown_log(hello, site, server_factory):
    """flashplug_startup runs before serving; the async flashplug_shutdown at stop."""
    server = server_factory(site, "--plugins", "hello", "--hello-greeting", "Hi")
    assert wait_for(lambda: "hello: ready to greet with 'Hi'" in server.log())
    requests.get(server.url + "/hello/")
    assert server.stop() == 0
    assert "flashplug.hello: hello: answered 1 requests" in server.log()


def test_hello_with_workers(hello, site, server_factory):
    server = server_factory(site, "--plugins", "hello", "--workers", "2")
    # Both workers up before the stop: a SIGTERM during a worker's start-up
    # hooks kills it without its shutdown hooks (see report).
    assert wait_for(lambda: server.log().count("hello: ready to greet") == 2)
    assert requests.get(server.url + "/hello/").headers["X-Hello"] == "Hello"
    assert server.stop() == 0
    log = server.log()
    assert log.count("hello: ready to greet") == 2
    assert log.count("hello: answered") == 2, log


def test_config_file_sets_plugin_options(hello, site, server_factory, tmp_path):
    cfg = tmp_path / "flashplug.toml"
    cfg.write_text('access_log = "off"\n[plugins]\nenable = ["hello"]\n'
                   '[plugins.hello]\ngreeting = "Ahoy"\n')
    server = server_factory(site, "--config", cfg)
    assert requests.get(server.url + "/hello/").text == "Ahoy, world!\n"
    server.stop()
    assert "GET /hello/" not in server.log()         # access_log = "off" from the file
    again = server_factory(site, "--config", cfg, "--hello-greeting", "Hey")
    assert requests.get(again.url + "/hello/").text == "Hey, world!\n"   # the flag wins
    alone = server_factory(site, "--config", cfg, "--plugins", "")
    assert "X-Hello" not in requests.get(alone.url + "/a.txt").headers


# -- plugins that fail while serving ---------------------------------------------------------

CRASHY = """
    from flashplug import Route, hookimpl

    async def boom(request):
        raise RuntimeError("kaboom")

    @hookimpl
    def flashplug_routes():
        return [Route(prefix="/boom/", handler=boom)]

    @hookimpl
    def flashplug_request_done(request, status):
        if request.path == "/sub/b.txt":
            raise ValueError("counting failed")
"""


def test_plugin_exception_is_a_500_for_that_request_only(site, plugdir, server_factory):
    plugdir("crashy", CRASHY)
    server = server_factory(site, "--plugins-dir", plugdir.path, "--plugins", "crashy")
    with requests.Session() as s:
        r = s.get(server.url + "/boom/now")
        assert r.status_code == 500
        assert b"kaboom" not in r.content           # no internals to the client
        assert s.get(server.url + "/a.txt").status_code == 200   # the server goes on
        # flashplug_request_done raising: the response was already sent
        assert s.get(server.url + "/sub/b.txt").content == b"b\n"
        assert s.get(server.url + "/a.txt").status_code == 200
    assert wait_for(lambda: "counting failed" in server.log())
    log = server.log()
    assert ("plugin 'crashy' failed while serving GET /boom/now: RuntimeError: kaboom"
            in log)
    assert "plugin 'crashy' failed while serving GET /sub/b.txt: ValueError" in log
    assert "Traceback" not in log


def test_response_headers_exception_is_a_500(site, plugdir, server_factory):
    plugdir("badhdr", """
        from flashplug import hookimpl

        @hookimpl
        def flashplug_response_headers(request, response):
            if request.path == "/a.txt":
                raise ValueError("no headers today")
    """)
    server = server_factory(site, "--plugins-dir", plugdir.path, "--plugins", "badhdr")
    assert requests.get(server.url + "/a.txt").status_code == 500
    assert "plugin 'badhdr' failed" in server.log()


def test_route_request_exception_is_a_500(site, plugdir, server_factory):
    plugdir("badroute", """
        from flashplug import hookimpl

        @hookimpl
        def flashplug_route_request(request):
            if request.path == "/x":
                raise ValueError("no route today")
    """)
    server = server_factory(site, "--plugins-dir", plugdir.path, "--plugins", "badroute")
    assert requests.get(server.url + "/x", timeout=3).status_code == 500
    assert "plugin 'badroute' failed" in server.log()


# -- plugin mistakes: checked at the API boundary (flashplug/http/validate.py) --------------------

MISTAKES = """
    from flashplug import Response, Route, hookimpl

    async def handler(request):
        kind = request.path.rsplit("/", 1)[-1]
        if kind == "str":
            return Response(200, [("Content-Type", "text/plain")], "a str body")
        if kind == "dict":
            return Response(200, {"Content-Type": "text/plain"}, b"x")
        if kind == "crlf":   # request data copied into a header: response splitting
            return Response(200, [("X-Echo", "a\\r\\nSet-Cookie: evil=1")], b"x")
        if kind == "lf":
            return Response(200, [("X-Echo", "a\\nb")], b"x")
        if kind == "nul":
            return Response(200, [("X-Echo", "a\\x00b")], b"x")
        if kind == "name":
            return Response(200, [("X Echo", "a")], b"x")
        if kind == "status":
            return Response("200", [], b"x")
        if kind == "none":
            return None
        if kind == "length":   # the client would wait for 2 more bytes
            return Response(200, [("Content-Length", "3")], b"x")
        if kind == "stream":
            async def chunks():
                yield b"first"
                yield "second"
            return Response(200, [("Content-Type", "text/plain")], stream=chunks())
        if kind == "raise":
            async def failing():
                yield b"first"
                raise KeyError("gone")
            return Response(200, [("Content-Type", "text/plain")], stream=failing())
        return Response(200, [("Content-Type", "text/plain")], b"fine")

    def plain(request):
        return Response(200, [], b"x")

    @hookimpl
    def flashplug_routes():
        return [Route(prefix="/m", handler=handler)]

    @hookimpl
    def flashplug_route_request(request):
        return plain if request.path == "/plain" else None

    @hookimpl
    def flashplug_directory(request, fspath):
        return Response(200, [], b"not awaitable")

    @hookimpl
    def flashplug_response_headers(request, response):
        if request.path == "/a.txt":
            response.headers.append(("X-Bad", "a\\rb"))
"""

# (path, what the error log says after "... gave an invalid response to GET path: ")
MISTAKE_CASES = [
    ("/m/str", "body is a str, not bytes (encode it"),
    ("/m/dict", "headers is a dict, not a list of (name, value) pairs"),
    ("/plain", "handler 'plain' is not an async function; define it with 'async def'"),
    ("/m/crlf", "header 'X-Echo' value has a control character (CR"),
    ("/m/lf", "header 'X-Echo' value has a control character (LF"),
    ("/m/nul", "header 'X-Echo' value has a control character (NUL"),
    ("/m/name", "header name 'X Echo' is not a token"),
    ("/m/status", "status '200' is not an int from 200 to 599"),
    ("/m/none", "returned None, not a flashplug.Response"),
    ("/m/length", "Content-Length 3 but the body has 1 bytes"),
    ("/sub/", "gave a Response where an awaitable was due"),
    ("/a.txt", "header 'X-Bad' value has a control character (CR"),
]


def test_plugin_mistakes_are_logged_500s(site, plugdir, server_factory):
    """Each mistake: a complete 500 on a connection that stays usable, an
    access-log line, and an error-log line naming the plugin and the mistake."""
    plugdir("mistakes", MISTAKES)
    server = server_factory(site, "--plugins-dir", plugdir.path, "--plugins", "mistakes")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    status, body, _ = get(conn, "/m/fine")
    assert (status, body) == (200, b"fine")
    sock = conn.sock
    for path, _ in MISTAKE_CASES:
        status, body, r = get(conn, path)
        assert status == 500, path
        assert b"500 Internal Server Error" in body          # the whole page arrived
        assert r.getheader("Set-Cookie") is None and r.getheader("X-Echo") is None
        assert conn.sock is sock, f"{path}: the connection was closed"
    assert get(conn, "/m/fine")[:2] == (200, b"fine")        # still in step
    conn.close()
    assert wait_for(lambda: all(f'"GET {path} HTTP/1.1" 500 ' in server.log()
                                for path, _ in MISTAKE_CASES))
    log = server.log()
    for path, mistake in MISTAKE_CASES:
        owner = "plugin 'mistakes'"
        if path == "/sub/":
            owner += " (flashplug_directory)"
        elif path == "/a.txt":
            owner += " (flashplug_response_headers)"
        assert f"{owner} gave an invalid response to GET {path}: {mistake}" in log, path
    assert "Traceback" not in log


def test_a_bad_chunk_mid_stream_closes_the_connection(site, plugdir, server_factory):
    """The status line is gone when the bad chunk comes: no 500 is possible,
    so the connection closes before a chunked body's end, and the log says why."""
    plugdir("mistakes", MISTAKES)
    server = server_factory(site, "--plugins-dir", plugdir.path, "--plugins", "mistakes")
    with server.connect() as s:
        s.sendall(b"GET /m/stream HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Transfer-Encoding: chunked" in head
    assert body == b"5\r\nfirst\r\n"                # cut off: no last chunk
    assert wait_for(lambda: "plugin 'mistakes' streamed a str after 5 bytes" in server.log())
    assert requests.get(server.url + "/m/fine").text == "fine"


def test_a_stream_that_raises_mid_way_is_logged_with_its_plugin(site, plugdir, server_factory):
    """An exception inside a plugin's stream is that plugin's failure: the
    error log names the plugin and where it raised, as for a handler."""
    plugdir("mistakes", MISTAKES)
    server = server_factory(site, "--plugins-dir", plugdir.path, "--plugins", "mistakes")
    with server.connect() as s:
        s.sendall(b"GET /m/raise HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.endswith(b"\r\n\r\n5\r\nfirst\r\n")       # cut off: no last chunk
    assert wait_for(lambda: re.search(
        r"GET /m/raise: .*plugin 'mistakes' failed after 5 bytes of its stream: "
        r"KeyError: 'gone' at \S+mistakes\.py:\d+; the response was cut off", server.log()))
    assert "Traceback" not in server.log()


def test_a_cut_off_stream_still_gets_its_access_log_line(site, plugdir, server_factory):
    plugdir("mistakes", MISTAKES)
    server = server_factory(site, "--plugins-dir", plugdir.path, "--plugins", "mistakes")
    for path in ("/m/stream", "/m/raise"):
        with server.connect() as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            while s.recv(65536):
                pass
    assert requests.get(server.url + "/m/fine").text == "fine"
    assert wait_for(lambda: '"GET /m/fine HTTP/1.1" 200 ' in server.log())
    log = server.log()
    assert '"GET /m/stream HTTP/1.1" 200 ' in log and '"GET /m/raise HTTP/1.1" 200 ' in log


def test_head_closes_a_checked_stream(site, plugdir, server_factory):
    """HEAD sends no body: the kernel closes the stream unread, and the
    plugin must hear of it through the check's wrapper (a CGI script's
    process is stopped that way)."""
    plugdir("closing", """
        import json
        from flashplug import Response, Route, hookimpl

        closed = []

        class Body:
            def __aiter__(self):
                return self

            async def __anext__(self):
                return b"x"

            async def aclose(self):
                closed.append(True)

        async def stream(request):
            return Response(200, [("Content-Type", "text/plain")], stream=Body())

        async def report(request):
            return Response(200, [("Content-Type", "application/json")],
                            json.dumps(len(closed)).encode())

        @hookimpl
        def flashplug_routes():
            return [Route(path="/stream", handler=stream), Route(path="/closed", handler=report)]
    """)
    server = server_factory(site, "--plugins-dir", plugdir.path, "--plugins", "closing")
    with requests.Session() as s:
        assert s.head(server.url + "/stream").status_code == 200
        assert s.get(server.url + "/closed").json() == 1


def test_bad_error_page_falls_back_to_the_kernel_page(site, plugdir, server_factory):
    plugdir("badpage", """
        from flashplug import Response, hookimpl

        @hookimpl
        def flashplug_error_page(request, status, message):
            return Response(status, [("Content-Type", "text/plain")], "not bytes")
    """)
    server = server_factory(site, "--plugins-dir", plugdir.path, "--plugins", "badpage")
    r = requests.get(server.url + "/missing")
    assert r.status_code == 404 and b"404 Not Found" in r.content
    assert wait_for(lambda: "plugin 'badpage' (flashplug_error_page) gave an invalid "
                            "response to GET /missing: body is a str" in server.log())


def test_plain_def_route_handler_is_refused_at_start(site, plugdir):
    plugdir("syncroute", """
        from flashplug import Response, Route, hookimpl

        def plain(request):
            return Response(200, [], b"x")

        @hookimpl
        def flashplug_routes():
            return [Route(prefix="/p", handler=plain)]
    """)
    proc = flashplug("serve", site, "--port", "0", "--plugins-dir", plugdir.path,
                     "--plugins", "syncroute", timeout=10)
    assert proc.returncode == 2
    assert proc.stderr == ("flashplug: error: plugin 'syncroute': flashplug_routes: Route "
                           "handler plain is not an async function; define it with "
                           "'async def'\n")
    assert "Serving" not in proc.stdout               # refused before the port was bound


# -- routes: whole path segments, exact paths -------------------------------------------------

def test_prefix_and_exact_routes(site, plugdir, server_factory):
    plugdir("paths", """
        from flashplug import Response, Route, hookimpl

        async def hello(request):
            return Response(200, [("Content-Type", "text/plain")], b"hello route")

        async def status(request):
            return Response(200, [("Content-Type", "text/plain")], b"status route")

        @hookimpl
        def flashplug_routes():
            return [Route(prefix="/hello", handler=hello),
                    Route(path="/status", handler=status)]
    """)
    (site / "helloworld").write_bytes(b"static helloworld\n")
    (site / "status").mkdir()
    (site / "status" / "x").write_bytes(b"static status/x\n")
    server = server_factory(site, "--plugins-dir", plugdir.path, "--plugins", "paths")
    for path in ("/hello", "/hello/", "/hello/x"):
        assert requests.get(server.url + path).text == "hello route", path
    assert requests.get(server.url + "/helloworld").text == "static helloworld\n"
    assert requests.get(server.url + "/status").text == "status route"
    assert requests.get(server.url + "/status/x").text == "static status/x\n"
    assert requests.get(server.url + "/statusx").status_code == 404


# -- flashplug_directory ------------------------------------------------------------------------

LISTER = """
    import os
    from flashplug import Response, hookimpl

    async def listing(request, fspath):
        names = await request.server.helpers.run(os.listdir, fspath)
        return Response(200, [("Content-Type", "text/plain")],
                        "\\n".join(sorted(names)).encode() + b"\\n")

    @hookimpl
    def flashplug_directory(request, fspath):
        if request.path == "/sub/":
            return listing(request, fspath)
        return None
"""


def test_directory_hook(site, plugdir, server_factory):
    """flashplug_directory answers a folder without index; None passes."""
    plugdir("lister", LISTER)
    (site / "other").mkdir()
    server = server_factory(site, "--plugins-dir", plugdir.path, "--plugins", "lister")
    r = requests.get(server.url + "/sub/")
    assert (r.status_code, r.text) == (200, "b.txt\n")
    assert requests.get(server.url + "/other/").status_code == 404
    assert requests.get(server.url + "/sub", allow_redirects=False).status_code == 301
    plain = server_factory(site, "--plugins-dir", plugdir.path, "--plugins", "none")
    assert requests.get(plain.url + "/sub/").status_code == 404


# -- in-process: counting hook calls -------------------------------------------------------------

class InProcessServer:
    """A Worker on this thread, a client on another, hook calls recorded.

    Every call that goes through the plugin manager while ``recording`` is
    set is kept as ``(hook name, number of implementations)``.
    """

    def __init__(self, argv, recording=False):
        self.config = build_serve([*map(str, argv), "--port", "0", "--access-log", "off"])
        self.calls = []
        self.recording = recording
        pm = self.config.plugin_manager
        self._undo = pm.add_hookcall_monitoring(self._before, lambda *args: None)
        # What server.run() does before it starts a worker.
        pm.hook.flashplug_configure.call_historic(kwargs={"config": self.config})
        self.listener = bind_listener("127.0.0.1", 0)
        self.port = self.listener.getsockname()[1]
        self.worker = Worker(self.config, self.listener)

    def _before(self, hook_name, hook_impls, kwargs):
        if self.recording:
            self.calls.append((hook_name, len(hook_impls)))

    def run(self, client):
        """Serve until ``client(self)``, run on a thread, returns; return its result."""
        outcome = {}

        def drive():
            try:
                outcome["value"] = client(self)
            except BaseException as e:  # noqa: BLE001 - re-raised on the test's thread
                outcome["error"] = e
            finally:
                if wait_for(lambda: self.worker.stopped is not None):
                    self.worker.loop.call_soon_threadsafe(self.worker.stop)

        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        thread = threading.Thread(target=drive, daemon=True)
        thread.start()
        try:
            self.worker.run()
        finally:
            thread.join(30)
            self._undo()
            for sig, handler in saved.items():
                signal.signal(sig, handler)
            asyncio.set_event_loop(None)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    @property
    def app(self):
        return self.worker.app


def get(conn, path, headers=None, method="GET"):
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.read(), r


def static_requests(server):
    """Static traffic of every kind on one keep-alive connection."""
    conn = server.connection()
    assert get(conn, "/warm.txt")[0] == 200    # the worker's start-up is over
    server.recording = True
    statuses = []
    for _ in range(50):
        status, body, _ = get(conn, "/a.txt")
        assert body == b"a" * 1024
        statuses.append(status)
    status, _, r = get(conn, "/a.txt")
    statuses.append(status)
    etag = r.getheader("ETag")
    statuses.append(get(conn, "/a.txt", method="HEAD")[0])
    statuses.append(get(conn, "/a.txt", {"If-None-Match": etag})[0])
    statuses.append(get(conn, "/a.txt", {"Range": "bytes=0-9"})[0])
    statuses.append(get(conn, "/sub/")[0])          # no index: the directory hook's case
    statuses.append(get(conn, "/missing")[0])       # the error page hook's case
    statuses.append(get(conn, "/sub/b.txt")[0])     # a cache miss
    server.recording = False
    conn.close()
    return statuses


def test_cached_static_request_calls_no_hook(site):
    """The fast path: with no plugin enabled, static traffic calls no hook at all."""
    server = InProcessServer([site, "--plugins", "none"])
    statuses = server.run(static_requests)
    assert statuses == [200] * 52 + [304, 206, 404, 404, 200]
    assert server.app.hooks_in_use == frozenset()
    assert server.calls == []
    assert server.app.stats.cache_hits >= 49     # it was the cached path


def test_default_plugin_set_calls_no_hook_for_files(site):
    """autoindex, on by default, costs static files nothing: only the folder
    without an index calls its hook."""
    server = InProcessServer([site])
    statuses = server.run(static_requests)
    assert statuses == [200] * 52 + [304, 206, 200, 404, 200]
    assert server.calls == [("flashplug_directory", 1)]
    assert server.app.stats.cache_hits >= 49


def test_static_request_calls_only_implemented_hooks(site, plugdir):
    """One plugin with flashplug_response_headers: that hook and no other runs."""
    plugdir("hdr", """
        from flashplug import hookimpl

        @hookimpl
        def flashplug_response_headers(response):
            response.headers.append(("X-Test", "1"))
    """)
    server = InProcessServer([site, "--plugins-dir", plugdir.path, "--plugins", "hdr"])
    statuses = server.run(static_requests)
    assert server.app.hooks_in_use == {"flashplug_response_headers"}
    # once per response sent while recording, always with its implementation
    assert statuses == [200] * 52 + [304, 206, 404, 404, 200]
    assert server.calls == [("flashplug_response_headers", 1)] * len(statuses)


def test_route_request_runs_once_per_request(site, plugdir):
    plugdir("pred", """
        from flashplug import Response, hookimpl

        async def claimed(request):
            return Response(200, [], b"claimed")

        @hookimpl
        def flashplug_route_request(request):
            return claimed if request.path.endswith(".claim") else None
    """)
    server = InProcessServer([site, "--plugins-dir", plugdir.path, "--plugins", "pred"])

    def client(server):
        conn = server.connection()
        get(conn, "/warm.txt")
        server.recording = True
        results = [get(conn, path)[:2] for path in ("/x.claim", "/a.txt", "/a.txt")]
        server.recording = False
        return results

    results = server.run(client)
    assert results[0] == (200, b"claimed")
    assert server.calls == [("flashplug_route_request", 1)] * 3


def test_every_hook_is_called(hello, site, plugdir):
    """Every hook of hookspecs.py runs in one session of the example plugin.

    flashplug_addoption is called before a manager exists to watch (its
    effect is the parsed option), and the kernel reads flashplug_routes'
    implementations directly (its effect is the /hello/ route), and so it
    reads flashplug_tls_certificates' (the acme plugin's, which
    tests/integration/test_acme.py drives against a real CA); every other
    hook is seen going through the plugin manager.
    """
    plugdir("lister", LISTER)
    server = InProcessServer([site, "--plugins", "hello,lister,status",
                              "--plugins-dir", plugdir.path, "--hello-greeting", "Yo"],
                             recording=True)

    def client(server):
        conn = server.connection()
        results = [get(conn, path)[:2] for path in
                   ("/hello/", "/hello/stream?n=1", "/x.hello", "/sub/", "/missing", "/a.txt",
                    "/server-status")]   # the status page calls flashplug_status
        conn.close()
        return results

    results = server.run(client)
    assert results[0] == (200, b"Yo, world!\n")            # addoption, configure, routes
    assert results[1] == (200, b"Yo, number 1!\n")
    assert results[2] == (200, b"Yo, x!\n")                 # route_request
    assert results[3] == (200, b"b.txt\n")                  # directory
    assert results[4][0] == 404 and results[4][1].startswith(b"Yo! There is nothing")
    called = {name for name, impls in server.calls if impls}
    assert called | {"flashplug_addoption", "flashplug_routes",
                     "flashplug_tls_certificates"} == set(HOOKS)
    assert {"flashplug_startup", "flashplug_shutdown"} <= called

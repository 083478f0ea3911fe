"""Faults found in the eleventh session by a fresh pair of eyes: a new
user and a third-party plugin author following the docs, then hostile
input against a real ``flashplug serve``.  Each test failed before its
fix."""
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import start_server


def _plugin_server(tmp_path, source, *args):
    """A server with the plugin ``source`` (a module's text) as plugin
    ``mine``, from a --plugins-dir, and a small file ``index.html``."""
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "mine.py").write_text(textwrap.dedent(source))
    root = tmp_path / "www"
    root.mkdir(exist_ok=True)
    (root / "index.html").write_text("hi\n")
    return start_server(root, "--plugins-dir", plugins, "--plugins", "mine", *args,
                        tmp_path=tmp_path)


def _exchange(server, data, timeout=1):
    """Everything the server sends for ``data`` until it closes the
    connection (or goes quiet for ``timeout`` seconds: then b"<open>" ends it)."""
    with server.connect(timeout=timeout) as s:
        s.sendall(data)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except socket.timeout:
            return got + b"<open>"
        return got


def _pipelined(*targets, extra=""):
    return "".join(f"GET {t} HTTP/1.1\r\nHost: x\r\n{extra}\r\n" for t in targets).encode()


# -- A plugin's stream that says Content-Length: N and then gives more
#    than N bytes had them all sent: the client reads the extra bytes as
#    the start of the next response, and what the stream sends (a request's
#    own data, echoed) can be a whole forged response for the request after
#    it.  One that gives fewer left the connection open, with the next
#    response read as the rest of this one's body.  nginx cuts at the
#    length and closes the connection either way. ------------------------------------

STREAMS = """
import urllib.parse

from flashplug import Response, Route, hookimpl

async def handler(request):
    text = urllib.parse.unquote_to_bytes(request.query)
    async def body():
        yield text
    return Response(200, [("Content-Type", "text/plain"), ("Content-Length", "5")],
                    stream=body())

@hookimpl
def flashplug_routes():
    return [Route(prefix="/s", handler=handler)]
"""

FORGED = b"HTTP/1.1%20200%20OK%0D%0AContent-Length:%204%0D%0A%0D%0Aevil"


@pytest.mark.parametrize("query, body", [(b"hello" + FORGED, b"hello"), (b"hi", b"hi")])
def test_a_stream_is_cut_at_its_content_length_and_the_connection_closed(
        tmp_path, query, body):
    server = _plugin_server(tmp_path, STREAMS)
    try:
        got = _exchange(server, _pipelined(f"/s?{query.decode()}", "/index.html"))
        head, _, rest = got.partition(b"\r\n\r\n")
        assert b"\r\nContent-Length: 5" in head
        assert rest == body, got          # nothing more: the connection closed
        assert "Content-Length of 5 bytes" in server.log()
    finally:
        server.stop()


# -- What a flashplug_response_headers hook leaves was checked for its
#    fields alone: a hook that set a Content-Length the body does not have
#    (a banner added to pages, the length of the old body kept) sent the
#    body's extra bytes as the start of the next response; a status it set
#    (1000) went out as the status line, and a str body dropped the
#    connection with no answer.  The whole response is checked again. -----------------

HOOK = """
from flashplug import Response, Route, hookimpl

async def handler(request):
    return Response(200, [("Content-Type", "text/plain")], b"dynamic\\n")

@hookimpl
def flashplug_routes():
    return [Route(prefix="/d", handler=handler)]

@hookimpl
def flashplug_response_headers(request, response):
    if request.query == "length":
        response.set_header("Content-Length", "1")
    elif request.query == "status":
        response.status = 1000
    elif request.query == "body":
        response.body = "text"
"""


@pytest.mark.parametrize("target", ["/index.html", "/d"])
@pytest.mark.parametrize("query, problem", [
    ("length", "Content-Length 1 but the body has"),
    ("status", "status 1000 is not an int from 200 to 599"),
    ("body", "body is a str, not bytes"),
])
def test_what_a_response_headers_hook_leaves_is_checked_whole(tmp_path, target, query, problem):
    server = _plugin_server(tmp_path, HOOK)
    try:
        got = _exchange(server, _pipelined(f"{target}?{query}", "/index.html"))
        assert got.startswith(b"HTTP/1.1 500 "), got
        # The 500 and then the next answer, whole: nothing in between.
        first, _, rest = got.partition(b"</html>\n")
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"\r\n\r\nhi\n<open>")
        assert f"plugin 'mine' (flashplug_response_headers) gave an invalid response to " \
               f"GET {target}?{query}: {problem}" in server.log()
    finally:
        server.stop()


# -- An HTTPError a handler raised was sent with whatever status and fields
#    it held: HTTPError(100) went out as "100 Continue" with no final
#    answer after it, HTTPError(0) as "HTTP/1.1 0", a str status dropped
#    the connection, and a Content-Length among its headers framed the
#    error page wrong (the page then read as the next response).  They are
#    checked as a Response's are: a mistake is a logged 500. ---------------------------

RAISING = """
from flashplug import HTTPError, Route, hookimpl

async def handler(request):
    if request.query == "length":
        raise HTTPError(405, "no", headers=[("Allow", "GET"), ("Content-Length", "0")])
    if request.query == "field":
        raise HTTPError(405, "no", headers=[("Allow", "GET\\r\\nSet-Cookie: a=b")])
    if request.query == "redirect":
        raise HTTPError(303, "see", headers=[("Location", "/index.html")])
    status = int(request.query) if request.query.isdigit() else request.query
    raise HTTPError(status, "refused")

@hookimpl
def flashplug_routes():
    return [Route(prefix="/e", handler=handler)]
"""


@pytest.mark.parametrize("query, problem", [
    ("100", "status 100, not an int"), ("0", "status 0, not an int"),
    ("1000", "status 1000, not an int"), ("teapot", "status 'teapot', not an int"),
    ("length", "with a Content-Length field"), ("field", "has a control character (CR"),
])
def test_an_http_error_is_checked_before_it_is_sent(tmp_path, query, problem):
    server = _plugin_server(tmp_path, RAISING)
    try:
        got = _exchange(server, _pipelined(f"/e?{query}", "/index.html"))
        assert got.startswith(b"HTTP/1.1 500 "), got
        first, _, rest = got.partition(b"</html>\n")
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"\r\n\r\nhi\n<open>")
        assert f"plugin 'mine' gave an invalid response to GET /e?{query}: " in server.log()
        assert problem in server.log()
    finally:
        server.stop()


def test_a_fit_http_error_is_sent_as_raised(tmp_path):
    server = _plugin_server(tmp_path, RAISING)
    try:
        got = _exchange(server, _pipelined("/e?303", "/e?redirect"))
        assert got.startswith(b"HTTP/1.1 303 See Other\r\n")
        assert b"\r\nLocation: /index.html\r\n" in got.partition(b"</html>\n")[2]
    finally:
        server.stop()


# -- A handler (or its stream) that called sys.exit() ended the whole
#    server: SystemExit is no Exception, and out of a task it stops the
#    event loop.  No log line said why.  It now fails its request alone. --------------

EXITING = """
import sys

from flashplug import Response, Route, hookimpl

async def handler(request):
    if request.query == "stream":
        async def body():
            yield b"part"
            sys.exit(3)
        return Response(200, [("Content-Type", "text/plain")], stream=body())
    sys.exit(3)

@hookimpl
def flashplug_routes():
    return [Route(prefix="/x", handler=handler)]
"""


@pytest.mark.parametrize("query, answer", [("handler", b"HTTP/1.1 500 "),
                                           ("stream", b"HTTP/1.1 200 ")])
def test_sys_exit_in_a_plugin_fails_its_request_not_the_server(tmp_path, query, answer):
    server = _plugin_server(tmp_path, EXITING)
    try:
        got = _exchange(server, _pipelined(f"/x?{query}"))
        assert got.startswith(answer), got
        assert server.proc.poll() is None
        assert _exchange(server, _pipelined("/index.html")).endswith(b"\r\n\r\nhi\n<open>")
        assert "plugin 'mine' f" in server.log() and "SystemExit: 3" in server.log()
    finally:
        server.stop()


# -- An `async def flashplug_response_headers` (or error_page, or
#    request_done), as anyone writing for an asyncio server would write it,
#    gave a coroutine nobody awaited: its headers never came, its error
#    page was refused as "not a Response" on every error, with no word of
#    why.  The server now refuses to start, naming the hook. --------------------------

@pytest.mark.parametrize("hook, args", [
    ("flashplug_response_headers", "request, response"),
    ("flashplug_error_page", "request, status, message"),
    ("flashplug_request_done", "request, status, bytes_sent, duration"),
])
def test_an_async_hook_that_is_not_awaited_is_refused_at_start(tmp_path, hook, args):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "mine.py").write_text(
        f"from flashplug import hookimpl\n\n@hookimpl\nasync def {hook}({args}):\n    pass\n")
    result = subprocess.run([sys.executable, "-m", "flashplug", "check", str(tmp_path),
                             "--plugins-dir", "plugins", "--plugins", "mine"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert result.stderr == (f"flashplug: error: plugin 'mine': {hook} is an async def, but "
                             f"the server calls it without await, so its body would never "
                             f"run; define it with def\n")


def test_an_async_startup_hook_is_still_fine(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "mine.py").write_text(
        "from flashplug import hookimpl\n\n@hookimpl\nasync def flashplug_startup(app):\n"
        "    pass\n\n@hookimpl\nasync def flashplug_directory(request, fspath):\n    pass\n")
    result = subprocess.run([sys.executable, "-m", "flashplug", "check", str(tmp_path),
                             "--plugins-dir", "plugins", "--plugins", "mine"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert result.returncode == 0, result.stderr


# -- A [[site]] that names the top level's certificate again (the usual
#    way to give the first site its own tls_cert) had each warning about
#    the pair (a key others can read) printed twice. ----------------------------------

def test_a_warning_about_a_certificate_pair_is_given_once(tmp_path):
    trustme = pytest.importorskip("trustme")
    cert = trustme.CA().issue_cert("a.test")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "a.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "a.key"))
    (tmp_path / "a.key").chmod(0o644)
    (tmp_path / "www").mkdir()
    (tmp_path / "site.toml").write_text(
        'docroot = "www"\nplugins = []\ntls_cert = "a.pem"\ntls_key = "a.key"\n\n'
        '[[site]]\nnames = ["a.test"]\nroot = "www"\ntls_cert = "a.pem"\ntls_key = "a.key"\n')
    result = subprocess.run([sys.executable, "-m", "flashplug", "check", "--config", "site.toml"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("let group or others read the private key") == 1, result.stderr


# -- A flashplug_route_request that returned its handler's call,
#    handler(request), rather than the handler was told "handler
#    '...<locals>.h' is not an async function; define it with 'async def'"
#    of a handler that was one, from "a plugin": the fix was elsewhere. -------------

CALLING = """
from flashplug import Response, hookimpl

async def page(request):
    return Response(200, [("Content-Type", "text/plain")], b"page")

@hookimpl
def flashplug_route_request(request):
    if request.path == "/called":
        return page(request)
"""


def test_a_route_request_that_calls_its_handler_is_told_so(tmp_path):
    server = _plugin_server(tmp_path, CALLING)
    try:
        got = _exchange(server, _pipelined("/called"))
        assert got.startswith(b"HTTP/1.1 500 "), got
        assert ("plugin 'mine' gave an invalid response to GET /called: gave the coroutine "
                "of 'page' where a handler was due; return the async def itself, not its "
                "call") in server.log()
        assert "never awaited" not in server.log()
    finally:
        server.stop()

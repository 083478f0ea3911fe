"""Error pages from the config file (issue 15, item 3), against a real server.

``error_pages = {404 = "/404.html"}``: the page is served with the error's
status (never 200, never a redirect), for errors of the static handler, of
plugins (an HTTPError from a handler) and of CGI (502, 504); HEAD gets the
head alone with the page's length; preconditions and ranges do not apply;
keep-alive holds; a missing page falls back to the default page, logged once.
"""
import socket
import textwrap
import time

import pytest
import requests

from tests.h2_client import H2Client

PAGE_404 = b"<!doctype html><title>Lost</title><h1>Nothing here</h1>\n"
PAGE_5XX = b"<!doctype html><title>Oops</title><h1>Our fault</h1>\n"


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    (root / "errors").mkdir(parents=True)
    (root / "cgi-bin").mkdir()
    (root / "index.html").write_bytes(b"home\n")
    (root / "errors" / "404.html").write_bytes(PAGE_404)
    (root / "errors" / "5xx.html").write_bytes(PAGE_5XX)
    bad = root / "cgi-bin" / "bad.sh"
    bad.write_text("#!/bin/sh\necho 'no header block'\n")
    bad.chmod(0o755)
    own = root / "cgi-bin" / "own404.sh"
    own.write_text("#!/bin/sh\nprintf 'Status: 404 Not Found\\r\\n"
                   "Content-Type: text/plain\\r\\n\\r\\nno such user'\n")
    own.chmod(0o755)
    hang = root / "cgi-bin" / "hang.sh"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    plugs = tmp_path / "plugs"
    plugs.mkdir()
    (plugs / "teapot.py").write_text(textwrap.dedent("""
        from flashplug import HTTPError, Route, hookimpl

        async def refuse(request):
            raise HTTPError(403, "Forbidden")

        async def crash(request):
            raise RuntimeError("a bug")

        @hookimpl
        def flashplug_routes():
            return [Route(refuse, path="/refuse"), Route(crash, path="/crash")]
    """))
    return root


def config(tmp_path, body):
    path = tmp_path / "site.toml"
    path.write_text('docroot = "site"\n' + textwrap.dedent(body))
    return path


@pytest.fixture
def server(site, tmp_path, server_factory):
    conf = config(tmp_path, """
        [error_pages]
        404 = "/errors/404.html"
        403 = "/errors/404.html"
        500 = "/errors/5xx.html"
        502 = "/errors/5xx.html"
        504 = "/errors/5xx.html"
    """)
    return server_factory(site, "--config", conf, "--plugins", "cgi,teapot",
                          "--plugins-dir", tmp_path / "plugs", "--cgi-timeout", "0.5")


def exchange(sock, request):
    """Send one request on ``sock``; read one response (head and body)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    head_only = request.startswith(b"HEAD ")
    while not head_only and len(body) < length:
        body += sock.recv(65536)
    return head.decode("latin-1"), body


def test_custom_404_keeps_the_status(server):
    r = requests.get(server.url + "/missing", allow_redirects=False)
    assert r.status_code == 404 and r.content == PAGE_404
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["Content-Length"] == str(len(PAGE_404))
    # An error page is no document: no validators, no ranges.
    assert "ETag" not in r.headers and "Last-Modified" not in r.headers
    assert "Accept-Ranges" not in r.headers


def test_the_page_itself_is_still_a_200(server):
    r = requests.get(server.url + "/errors/404.html")
    assert r.status_code == 200 and r.content == PAGE_404


def test_head_gets_the_page_length_and_no_body(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        head, body = exchange(s, b"HEAD /missing HTTP/1.1\r\nHost: t\r\n\r\n")
        assert head.startswith("HTTP/1.1 404 ")
        assert f"Content-Length: {len(PAGE_404)}" in head
        assert body == b""
        # The connection stays usable: the next answer is the next request's.
        head, body = exchange(s, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert head.startswith("HTTP/1.1 200 ") and body == b"home\n"


def test_keep_alive_across_error_pages(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        for _ in range(3):
            head, body = exchange(s, b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n")
            assert head.startswith("HTTP/1.1 404 ") and body == PAGE_404
            assert "Connection: close" not in head


def test_range_and_conditionals_do_not_apply(server):
    page = requests.get(server.url + "/errors/404.html")
    r = requests.get(server.url + "/missing", headers={
        "Range": "bytes=0-3", "If-None-Match": page.headers["ETag"],
        "If-Modified-Since": page.headers["Last-Modified"]})
    assert r.status_code == 404 and r.content == PAGE_404


def test_plugin_http_error_uses_the_page(server):
    r = requests.get(server.url + "/refuse")
    assert r.status_code == 403 and r.content == PAGE_404


def test_plugin_exception_is_a_500_with_the_page(server):
    r = requests.get(server.url + "/crash")
    assert r.status_code == 500 and r.content == PAGE_5XX
    assert "a bug" not in r.text


def test_cgi_failures_use_the_pages(server):
    r = requests.get(server.url + "/cgi-bin/bad.sh")
    assert r.status_code == 502 and r.content == PAGE_5XX
    r = requests.get(server.url + "/cgi-bin/hang.sh")
    assert r.status_code == 504 and r.content == PAGE_5XX
    # A script folder's missing file is the cgi plugin's 404.
    r = requests.get(server.url + "/cgi-bin/nothing.sh")
    assert r.status_code == 404 and r.content == PAGE_404


def test_a_scripts_own_error_is_sent_as_it_is(server):
    r = requests.get(server.url + "/cgi-bin/own404.sh")
    assert (r.status_code, r.text) == (404, "no such user")


def test_fastcgi_failure_uses_the_page(site, tmp_path, server_factory):
    conf = config(tmp_path, 'error_pages = { 502 = "/errors/5xx.html" }\n')
    server = server_factory(site, "--config", conf,
                            "--fastcgi", f"/app=unix:{tmp_path}/nobody.sock")
    r = requests.get(server.url + "/app/x")
    assert r.status_code == 502 and r.content == PAGE_5XX
    assert "nobody.sock" not in r.text


def test_statuses_without_a_page_get_the_clean_default(server):
    r = requests.delete(server.url + "/index.html")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert r.text.startswith("<!doctype html>") and "<h1>405 Method Not Allowed</h1>" in r.text
    assert len(r.content) < 300 and "flashplug" not in r.text and "Traceback" not in r.text


def test_a_parse_error_gets_the_page_and_closes(site, tmp_path, server_factory):
    conf = config(tmp_path, 'error_pages = { 400 = "/errors/5xx.html" }\n')
    server = server_factory(site, "--config", conf)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 ") and data.endswith(PAGE_5XX)


def test_missing_page_falls_back_to_the_default_logged_once(site, tmp_path, server_factory):
    conf = config(tmp_path, 'error_pages = { 404 = "/errors/gone.html", '
                            '403 = "/errors" }\n')
    server = server_factory(site, "--config", conf)
    for _ in range(3):
        r = requests.get(server.url + "/missing")
        assert r.status_code == 404 and "<h1>404 Not Found</h1>" in r.text
        r = requests.head(server.url + "/missing")
        assert r.status_code == 404 and int(r.headers["Content-Length"]) > 0
    time.sleep(0.3)
    log = server.log()
    assert log.count("error page /errors/gone.html for status 404 cannot be served") == 1, log
    # Said at start too, as a warning: the site may be deployed later.
    assert "error_pages.404 = '/errors/gone.html': no such file in" in log, log
    # The page appears: it is used from then on, without a restart.
    (site / "errors" / "gone.html").write_bytes(b"found now\n")
    time.sleep(1.2)    # --cache-valid: the failed lookup is not cached anyway
    r = requests.get(server.url + "/missing")
    assert r.status_code == 404 and r.content == b"found now\n"


def test_bad_error_pages_are_one_line_errors(site, tmp_path):
    import subprocess
    import sys
    for body, words in [
        ('error_pages = { 200 = "/x.html" }', "error_pages.200"),
        ('error_pages = { 404 = "x.html" }', "error_pages.404"),
        ('error_pages = { 404 = "/../etc/passwd" }', "error_pages.404"),
        ('error_pages = "/404.html"', "error_pages must be a table"),
    ]:
        conf = config(tmp_path, body + "\n")
        proc = subprocess.run([sys.executable, "-m", "flashplug", "serve", "--config", conf,
                               "--port", "0"], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr
        assert str(conf) in proc.stderr


def test_a_cached_files_416_gets_its_page(site, tmp_path, server_factory):
    """A precondition or range error of a cached file (answered without a
    task while no page is configured) looks its page up too."""
    conf = config(tmp_path, 'error_pages = { 416 = "/errors/5xx.html" }\n')
    server = server_factory(site, "--config", conf)
    for _ in range(2):
        assert requests.get(server.url + "/index.html").content == b"home\n"
        r = requests.get(server.url + "/index.html", headers={"Range": "bytes=100-200"})
        assert r.status_code == 416 and r.content == PAGE_5XX
        assert r.headers["Content-Range"] == "bytes */5"


def test_a_page_in_a_dot_folder_is_not_requestable_itself(site, tmp_path, server_factory):
    (site / ".errors").mkdir()
    (site / ".errors" / "404.html").write_bytes(PAGE_404)
    conf = config(tmp_path, 'error_pages = { 404 = "/.errors/404.html" }\n')
    server = server_factory(site, "--config", conf)
    for path in ("/missing", "/.errors/404.html"):
        r = requests.get(server.url + path)
        assert (r.status_code, r.content) == (404, PAGE_404), path


def test_error_pages_per_site_for_plugin_errors_too(site, tmp_path, server_factory):
    """A site's own ``error_pages`` replaces the top level's (no merge: a
    status it does not name gets the built-in page); a site without the
    key has the top level's, read from its own root.  Errors a plugin
    raises (HTTPError, a crash) use the pages of the site the request
    chose, over HTTP/1.1 and HTTP/2 alike."""
    own = tmp_path / "own"
    (own / "mine").mkdir(parents=True)
    (own / "errors").mkdir()
    (own / "mine" / "403.html").write_bytes(b"own 403\n")
    (own / "errors" / "404.html").write_bytes(b"own root's 404\n")
    (own / "errors" / "5xx.html").write_bytes(b"own root's 5xx\n")
    conf = config(tmp_path, """
        error_pages = { 404 = "/errors/404.html", 403 = "/errors/404.html", 500 = "/errors/5xx.html" }
        [[site]]
        names = ["own.test"]
        root = "own"
        error_pages = { 403 = "/mine/403.html" }
        [[site]]
        names = ["inherit.test"]
        root = "own"
        """)
    s = server_factory(site, "--config", conf, "--plugins", "teapot", "--h2c",
                       "--plugins-dir", tmp_path / "plugs")
    expected = {
        ("own.test", "/refuse"): (403, b"own 403\n"),
        ("own.test", "/crash"): (500, None),
        ("own.test", "/missing"): (404, None),
        ("inherit.test", "/refuse"): (403, b"own root's 404\n"),
        ("inherit.test", "/crash"): (500, b"own root's 5xx\n"),
        ("inherit.test", "/missing"): (404, b"own root's 404\n"),
        ("top.test", "/refuse"): (403, PAGE_404),
        ("top.test", "/crash"): (500, PAGE_5XX),
        ("top.test", "/missing"): (404, PAGE_404),
    }
    client = H2Client(s.port)
    try:
        for _ in range(2):
            for (host, path), (status, page) in expected.items():
                r = requests.get(s.url + path, headers={"Host": host})
                h2_status, _, h2_body = client.get(path, authority=host)
                for got_status, body in ((r.status_code, r.content), (h2_status, h2_body)):
                    assert got_status == status, (host, path)
                    if page is None:     # the built-in page
                        assert f"<h1>{status} ".encode() in body, (host, path, body)
                    else:
                        assert body == page, (host, path)
    finally:
        client.sock.close()

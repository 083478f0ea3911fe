"""Other servers' bug reports, replayed against flashplug.

Each test takes a public bug report, CVE or advisory about nginx, Apache,
lighttpd, Caddy, CPython's http.server, gunicorn, h2o or another gateway,
turns it into the request that showed the bug, and checks flashplug's
answer against the RFC (and what the fixed server does).  The source is in
each docstring.  Most are regression tests of what flashplug already did
right; the retry tests (proxy and FastCGI: a POST sent twice) and the
HTTP/2 graceful-stop test (no GOAWAY) failed before the fixes they came
with.

Servers are module-scoped (one static + CGI + h2c server, one proxy, one
FastCGI) so the file stays cheap.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

import h2.errors
import pytest
import requests

from conftest import start_server
from flashplug_plugins.fastcgi import protocol as fcgi
from h2_client import H2Client
from proxy_upstreams import RecordingUpstream, ThreadedUpstream
from test_review_s5 import head_fields, raw

CGI_ENV = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv\n"
CGI_SLOW = ("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nstart\\n'\n"
            "echo $$ > \"$DOCUMENT_ROOT/../slow.pid\"\nexec sleep 30\n")
CGI_LOOP = "#!/bin/sh\nprintf 'Location: /cgi-bin/loop.cgi\\r\\n\\r\\n'\n"
CGI_ESC = ("#!/bin/sh\nprintf 'evil\\033[31mred\\r\\n' >&2\n"
           "printf 'Content-Type: text/plain\\r\\n\\r\\nok'\n")
CGI_SHORT_LENGTH = ("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nContent-Length: 2\\r\\n\\r\\n"
                    "okHTTP/1.1 200 OK\\r\\nX-Injected: 1\\r\\n\\r\\n'\n")
LISTED = ["a b.txt", "hash#1.txt", "q?x.txt", "<script>x.txt", "pct%41.txt", "amp&.txt",
          "javascript:alert(1)"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bugs-site")
    root = tmp / "www"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "index.html").write_text("<h1>idx</h1>\n")
    (root / "t.txt").write_text("hello\n")
    (root / "big.bin").write_bytes(b"0123456789" * 100)
    (root / "p.html").write_text("".join(f"<p>line {i}</p>\n" for i in range(3000)))
    subprocess.run(["gzip", "-k", str(root / "p.html")], check=True)
    listing = root / "list"
    listing.mkdir()
    for name in LISTED:
        (listing / name).write_text("x")
    (listing / os.fsdecode(b"bad\xff.txt")).write_text("x")
    cgi = root / "cgi-bin"
    cgi.mkdir()
    for name, text in (("env.cgi", CGI_ENV), ("slow.cgi", CGI_SLOW), ("loop.cgi", CGI_LOOP),
                       ("esc.cgi", CGI_ESC), ("short.cgi", CGI_SHORT_LENGTH)):
        (cgi / name).write_text(text)
        (cgi / name).chmod(0o755)
    log = tmp / "access.log"
    s = start_server(root, "--plugins", "cgi,autoindex", "--h2c", "--access-log", log,
                     tmp_path=tmp)
    s.access_log = log
    yield s
    s.stop()


def get(server, target, *fields, method="GET"):
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    return raw(server.port, (head + "".join(f + "\r\n" for f in fields) + "\r\n").encode())


def cgi_env(server, target, *fields):
    body = get(server, target, *fields).partition(b"\r\n\r\n")[2].decode("latin-1")
    return dict(line.split("=", 1) for line in body.splitlines() if "=" in line)


# -- static files ---------------------------------------------------------------------------

def test_a_directory_redirect_keeps_the_query(site):
    """https://github.com/senchalabs/connect/issues/792,
    https://github.com/cloudhead/node-static/issues/186,
    https://github.com/static-web-server/static-web-server/pull/523: the
    trailing-slash redirect of a directory dropped ``?query``."""
    status, fields = head_fields(get(site, "/dir?a=1&b=%20"))
    assert (status, fields["location"]) == (301, "/dir/?a=1&b=%20")


@pytest.mark.parametrize("target", ["//evil.example/..%2f..%2fdir", "//dir",
                                    "/\\evil.example/%2e%2e%2fdir"])
def test_a_directory_redirect_is_no_open_redirect(site, target):
    """CPython gh-87389 (https://github.com/python/cpython/pull/93879),
    https://github.com/python/cpython/issues/76265 and
    https://github.com/python/cpython/issues/132826: http.server answered
    ``//evil.example/..%2f..%2fdir`` with ``Location: //evil.example/...``,
    which a browser follows to another host."""
    status, fields = head_fields(get(site, target))
    location = fields.get("location", "")
    assert not location.startswith(("//", "/\\")), (status, location)


def test_cve_2017_7529_a_huge_suffix_range_reads_nothing_before_the_file(site):
    """nginx CVE-2017-7529
    (https://github.com/projectdiscovery/nuclei-templates/pull/17265): the
    sum of ``bytes=-N,-9223372036854...`` overflowed and the range filter
    sent bytes from before the file (a cache header)."""
    response = get(site, "/big.bin", "Range: bytes=-1623,-9223372036854774485")
    status, fields = head_fields(response)
    body = response.partition(b"\r\n\r\n")[2]
    assert status in (200, 206, 416)
    if status == 206:
        assert fields.get("content-range") == "bytes 0-999/1000"
        assert body == b"0123456789" * 100


def test_cve_2011_3192_hundreds_of_overlapping_ranges_get_the_file_once(site):
    """Apache CVE-2011-3192 ("Apache Killer",
    https://cwiki.apache.org/confluence/display/httpd/CVE-2011-3192): each
    of hundreds of overlapping ranges was built in memory."""
    ranges = ",".join(["0-999"] * 200)
    response = get(site, "/big.bin", f"Range: bytes={ranges}")
    status, _ = head_fields(response)
    assert status in (200, 206)
    assert len(response.partition(b"\r\n\r\n")[2]) <= 1000


def test_a_gzip_etag_still_validates(site):
    """Apache bug 45023 (https://scarff.id.au/blog/tag/rfc2616): mod_deflate's
    ``-gzip`` ETag never matched If-None-Match again, so no 304 ever came;
    bug 39727 was the reverse (one ETag for both codings)."""
    gz = requests.get(site.url + "/p.html", headers={"Accept-Encoding": "gzip"}, stream=True)
    plain = requests.get(site.url + "/p.html", headers={"Accept-Encoding": "identity"})
    assert gz.headers["Content-Encoding"] == "gzip"
    assert gz.headers["ETag"] != plain.headers["ETag"]
    again = requests.get(site.url + "/p.html", headers={
        "Accept-Encoding": "gzip", "If-None-Match": gz.headers["ETag"]})
    assert again.status_code == 304
    other = requests.get(site.url + "/p.html", headers={
        "Accept-Encoding": "identity", "If-None-Match": gz.headers["ETag"]})
    assert other.status_code == 200


def test_a_file_cut_short_while_sent_closes_the_connection(site):
    """nginx's "file was truncated" (lighttpd and Apache likewise): a file
    that shrinks under a sendfile must end the connection, not leave the
    client waiting for the Content-Length it was promised."""
    path = os.path.join(site.docroot, "shrinks.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(16 << 20))
    time.sleep(1.1)   # past the open-file cache's revalidation
    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /shrinks.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        total = len(s.recv(65536))
        os.truncate(path, 1 << 20)
        while chunk := s.recv(1 << 20):
            total += len(chunk)
    assert total < 16 << 20


# -- directory listings ---------------------------------------------------------------------

def test_listed_names_are_escaped_and_their_links_encoded(site):
    """https://github.com/cherokee/webserver/issues/536 (``#`` not encoded in
    the link), CPython http.server's listing (names as HTML), and the
    ``javascript:`` name that a bare relative link turns into a scheme."""
    page = requests.get(site.url + "/list/").text
    assert "<script>x" not in page
    assert "&lt;script&gt;x.txt" in page
    for href in ("a%20b.txt", "hash%231.txt", "q%3Fx.txt", "%3Cscript%3Ex.txt",
                 "pct%2541.txt", "amp%26.txt"):
        assert f'href="{href}"' in page
        assert requests.get(site.url + "/list/" + href).status_code == 200
    assert 'href="javascript:' not in page


def test_a_name_that_is_not_utf8_is_listed_and_served(site):
    """https://github.com/python/cpython/issues/133889 and
    https://github.com/mgedmin/restview/issues/17: one undecodable file name
    broke the whole listing (UnicodeEncodeError)."""
    page = requests.get(site.url + "/list/")
    assert page.status_code == 200
    assert 'href="bad%FF.txt"' in page.text
    assert requests.get(site.url + "/list/bad%FF.txt").text == "x"


# -- CGI --------------------------------------------------------------------------------------

def test_httpoxy_the_proxy_header_never_becomes_http_proxy(site):
    """httpoxy, CVE-2016-5385 and kin (https://github.com/nginx-proxy/nginx-proxy/pull/511,
    https://github.com/caddyserver/caddy/pull/7928): RFC 3875 turns a
    ``Proxy:`` field into ``HTTP_PROXY``, the outbound proxy of most HTTP
    client libraries."""
    env = cgi_env(site, "/cgi-bin/env.cgi", "Proxy: http://evil.example:1")
    assert "HTTP_PROXY" not in env


def test_a_field_with_an_underscore_cannot_pose_as_one_with_a_dash(site):
    """https://github.com/benoitc/gunicorn/issues/2799: ``X-Auth_User`` and
    ``X-Auth-User`` both became ``HTTP_X_AUTH_USER`` (Apache 2.4 and nginx
    drop the underscored one)."""
    env = cgi_env(site, "/cgi-bin/env.cgi", "X-Auth_User: forged", "X-Auth-User: real")
    assert env["HTTP_X_AUTH_USER"] == "real"


def test_a_bracketed_ipv6_host_keeps_its_address_in_server_name(site):
    """https://github.com/jorisvink/kore/issues/164,
    https://github.com/dlundquist/sniproxy/issues/279: splitting ``Host`` at
    a colon cut ``[::1]:8080`` to ``[``."""
    for host in (f"[::1]:{site.port}", "[::1]"):
        answer = raw(site.port, f"GET /cgi-bin/env.cgi HTTP/1.1\r\nHost: {host}\r\n"
                                "Connection: close\r\n\r\n".encode()).decode()
        assert "SERVER_NAME=[::1]\n" in answer
        assert f"SERVER_PORT={site.port}\n" in answer
        assert f"HTTP_HOST={host}\n" in answer


def test_a_local_redirect_loop_ends(site):
    """RFC 3875 §6.2.2 local redirects (lighttpd's ``cgi.local-redir``,
    https://redmine.lighttpd.net/projects/lighttpd/wiki/Mod_cgi): a script
    that redirects to itself must not loop for ever."""
    status, _ = head_fields(get(site, "/cgi-bin/loop.cgi"))
    assert status == 500


def test_output_past_the_scripts_content_length_is_not_sent(site):
    """Response splitting through a script's own framing: bytes after the
    ``Content-Length`` a script gave must not reach the connection, where
    the client would read them as the next response (what h2o #427 and
    RFC 9112 §6.3 guard against)."""
    answer = raw(site.port, b"GET /cgi-bin/short.cgi HTTP/1.1\r\nHost: x\r\n\r\n"
                            b"GET /t.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"X-Injected" not in answer
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert answer.endswith(b"hello\n")


def test_stderr_and_request_lines_are_escaped_in_the_logs(site):
    """nginx CVE-2009-4487 and https://trac.nginx.org/nginx/ticket/2340: an
    escape sequence from a request (or a script's stderr) written raw into a
    log runs in the terminal of whoever reads it."""
    get(site, "/cgi-bin/esc.cgi")
    get(site, "/fake", 'User-Agent: a"b\xe9')
    deadline = time.monotonic() + 10
    while True:
        log = site.log()
        access = site.access_log.read_bytes().decode("latin-1").split("\n")[:-1] \
            if site.access_log.exists() else []
        if "evil" in log and any("fake" in line for line in access):
            break
        assert time.monotonic() < deadline, "log lines did not come"
        time.sleep(0.2)
    assert "\x1b" not in log and "evil\\x1b[31mred" in log
    line = next(line for line in access if "fake" in line)
    assert 'a\\"b\\xc3\\xa9' in line


def test_a_body_the_handler_refused_is_not_read_as_the_next_request(site):
    """https://github.com/ringabout/httpx/pull/17: a request body that the
    server did not read (a 405 here) was parsed as the next request; it
    must be skipped, or the connection closed."""
    answer = raw(site.port, b"POST /t.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 32\r\n\r\n"
                            b"GET /smuggled HTTP/1.1\r\nHost: x\r\n"
                            b"GET /t.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 405")
    assert b"404" not in answer
    assert answer.endswith(b"hello\n")


# -- HTTP/2 -----------------------------------------------------------------------------------

def test_h2_cookie_fields_reach_a_script_joined_with_semicolons(site):
    """RFC 9113 §8.2.3; https://github.com/h2o/h2o/pull/161,
    https://github.com/varnishcache/varnish-cache/issues/2291,
    https://github.com/emmett-framework/granian/issues/678: browsers split
    Cookie into one field per cookie over HTTP/2; a gateway must join them
    with ``; `` (not ``, ``) before CGI or HTTP/1.1."""
    client = H2Client(site.port)
    status, _, body = client.get("/cgi-bin/env.cgi",
                                 headers=[("cookie", "a=1"), ("cookie", "b=2")])
    assert status == 200
    assert "HTTP_COOKIE=a=1; b=2\n" in body.decode()


def test_h2_a_cancelled_stream_stops_its_script(site):
    """nginx's 499 and lighttpd's h2 RST_STREAM handling: a client that
    cancels a stream (RST_STREAM CANCEL) must not leave its CGI process
    running until the script's own end."""
    pidfile = os.path.join(os.path.dirname(site.docroot), "slow.pid")
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    client = H2Client(site.port)
    sid = client.request("/cgi-bin/slow.cgi")
    while not any(getattr(e, "data", b"") for e in client.events):
        client.pump()
    client.h2.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    client.flush()
    pid = int(open(pidfile).read())
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and \
            open(f"/proc/{pid}/stat").read().split()[2] != "Z":
        assert time.monotonic() < deadline, "the script outlived its cancelled stream"
        time.sleep(0.1)


def test_h2_a_graceful_stop_refuses_new_streams_and_sends_goaway(server_factory, tmp_path):
    """https://github.com/reactor/reactor-netty/issues/3828 (SIGTERM sent a
    FIN where a GOAWAY was due), https://github.com/cloudflare/pingora/issues/388,
    https://github.com/golang/go/issues/15386; RFC 9113 §6.8.  HTTP/2 has no
    ``Connection: close``: on a graceful stop an h2 connection took new
    streams and was then closed bare, so a client could not tell which of
    its requests ran.  Now a new stream is refused (REFUSED_STREAM, safe to
    retry), the open one finishes, and GOAWAY names it."""
    root = tmp_path / "www"
    (root / "cgi-bin").mkdir(parents=True)
    (root / "t.txt").write_text("hello\n")
    script = root / "cgi-bin" / "second.cgi"
    script.write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nbegin\\n'\n"
                      "sleep 1\necho end\n")
    script.chmod(0o755)
    s = server_factory(root, "--h2c", "--plugins", "cgi", "--access-log", "off")
    busy, idle = H2Client(s.port), H2Client(s.port)
    assert idle.get("/t.txt")[0] == 200
    sid = busy.request("/cgi-bin/second.cgi")
    while not any(getattr(e, "data", b"") for e in busy.events):
        busy.pump()
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    late = busy.request("/t.txt")
    assert busy.response(late)[0] == ("reset", h2.errors.ErrorCodes.REFUSED_STREAM)
    assert busy.response(sid)[2] == b"begin\nend\n"
    assert busy.goaway() == (h2.errors.ErrorCodes.NO_ERROR, sid)
    assert idle.goaway() == (h2.errors.ErrorCodes.NO_ERROR, 1)
    assert s.proc.wait(10) == 0


# -- the proxy --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bugs-proxy")
    (tmp / "www").mkdir()
    upstream = RecordingUpstream()
    s = start_server(tmp / "www", "--proxy", f"/={upstream.address}", "--access-log", "off",
                     tmp_path=tmp)
    s.upstream = upstream
    yield s
    s.stop()
    upstream.stop()


def sent_upstream(upstream, method, target):
    return sum(1 for r in upstream.requests
               if not isinstance(r, tuple) and r.method == method and r.target == target)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_non_idempotent_request_is_not_sent_twice(proxied, method):
    """RFC 9110 §9.2.2 ("A proxy MUST NOT automatically retry non-idempotent
    requests"); nginx 1.9.13's change, quoted in
    https://github.com/openresty/openresty/issues/200.  The upstream closes a
    kept-alive connection after reading the request: a closed connection
    cannot say whether the request ran, so a bodiless POST or PATCH gets
    the 502 instead of a second run (it was sent twice before)."""
    target = f"/once-{method}".encode()
    with requests.Session() as session:
        assert session.get(proxied.url + "/drop-next").text == "index\n"
        response = session.request(method, proxied.url + target.decode())
    assert response.status_code == 502
    assert sent_upstream(proxied.upstream, method, target) == 1


def test_an_idempotent_request_is_sent_again_on_a_closed_connection(proxied):
    """https://github.com/caddyserver/caddy/issues/6452,
    https://github.com/sozu-proxy/sozu/issues/1442,
    https://github.com/envoyproxy/envoy/issues/1979: an upstream that closes
    an idle keep-alive connection as the proxy reuses it must not turn a GET
    into a 502."""
    with requests.Session() as session:
        assert session.get(proxied.url + "/drop-next").text == "index\n"
        assert session.get(proxied.url + "/again").text == "index\n"
        assert session.get(proxied.url + "/drop-next").text == "index\n"
        assert session.delete(proxied.url + "/again-delete").status_code == 200
    assert sent_upstream(proxied.upstream, "GET", b"/again") == 2


def test_connection_cannot_strip_the_forwarded_fields(proxied):
    """Hop-by-hop abuse (https://github.com/GrrrDog/weird_proxies/pull/6,
    https://github.com/aether-lang-dev/aether/issues/1837,
    https://github.com/caddyserver/caddy/issues/4503): a client names
    ``X-Forwarded-For`` in ``Connection`` to have the proxy delete it, or
    sends its own to be believed."""
    raw(proxied.port, b"GET /hbh HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close, X-Forwarded-For, X-Real-IP, X-Custom\r\n"
                      b"X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Custom: 1\r\n"
                      b"Forwarded: for=6.6.6.6\r\n\r\n")
    got = next(r for r in proxied.upstream.requests
               if not isinstance(r, tuple) and r.target == b"/hbh")
    assert got.header("x-forwarded-for") == "127.0.0.1"
    assert got.header("x-real-ip") == "127.0.0.1"
    assert got.header("forwarded").startswith("for=127.0.0.1;")
    assert got.header("x-custom") is None


def test_an_h2c_upgrade_is_never_passed_upstream(proxied):
    """h2c smuggling (https://github.com/dotnet/yarp/issues/877,
    https://github.com/traefik/traefik/issues/9341, Bishop Fox's
    h2csmuggler): a proxy that passes ``Upgrade: h2c`` on lets an h2c
    upstream switch, and the tunnel then carries requests the proxy never
    sees, past its routes and rules."""
    raw(proxied.port, b"GET /h2c HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n"
                      b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
                      b"Connection: Upgrade, HTTP2-Settings, close\r\n\r\n")
    got = next(r for r in proxied.upstream.requests
               if not isinstance(r, tuple) and r.target == b"/h2c")
    assert got.header("upgrade") is None
    assert got.header("http2-settings") is None


def test_bytes_after_an_upgrade_that_was_refused_never_reach_the_upstream(proxied):
    """Pingora's premature Upgrade passthrough (CVE-2026-2833, in
    https://github.com/HackTricks-wiki/hacktricks/pull/2063): bytes sent
    after a WebSocket handshake were piped to the upstream before it said
    101, so a request hidden there skipped the proxy.  The upstream answers
    200 here; what follows must not reach it raw."""
    raw(proxied.port, b"GET /ws-refused HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 13\r\n\r\n"
                      b"GET /hidden HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    for sent in proxied.upstream.raw:
        if b"/ws-refused" in sent:
            assert b"/hidden HTTP/1.1\r\nHost: x\r\nConnection: close" not in bytes(sent)


# -- FastCGI ----------------------------------------------------------------------------------

class DropsSecondRequest(ThreadedUpstream):
    """A FastCGI backend that answers the first request on each connection
    and closes the connection, unanswered, once it has read the second:
    ``seen`` lists (REQUEST_METHOD, REQUEST_URI) of every request read."""

    def __init__(self, path):
        self.seen = []
        super().__init__(unix_path=path)

    def _serve(self, conn):
        reader, params, served = fcgi.RecordReader(), b"", 0
        with conn:
            while data := conn.recv(65536):
                for rec in reader.feed(data):
                    if rec.type == fcgi.GET_VALUES:
                        conn.sendall(fcgi.encode_record(fcgi.GET_VALUES_RESULT, 0, b""))
                    elif rec.type == fcgi.PARAMS:
                        params += rec.content
                    elif rec.type == fcgi.STDIN and not rec.content:
                        env = dict(fcgi.decode_pairs(params))
                        params = b""
                        self.seen.append((env[b"REQUEST_METHOD"], env[b"REQUEST_URI"]))
                        served += 1
                        if served == 2:
                            return
                        conn.sendall(fcgi.encode_stream(
                            fcgi.STDOUT, rec.request_id, b"Content-Type: text/plain\r\n\r\nok")
                            + fcgi.encode_record(fcgi.STDOUT, rec.request_id)
                            + fcgi.encode_end_request(rec.request_id))

    def close(self):
        self.sock.close()


needs_php_cgi = pytest.mark.skipif(shutil.which("php-cgi") is None,
                                   reason="php-cgi is not installed (apt-get install php-cgi)")


@pytest.fixture(scope="module")
def fastcgi(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bugs-fastcgi")
    root = tmp / "www"
    (root / "uploads").mkdir(parents=True)
    (root / "uploads" / "avatar.jpg").write_text('<?php echo "RAN-AS-PHP"; ?>')
    (root / "i.php").write_text('<?php echo "php ", $_SERVER["PATH_INFO"] ?? "-";')
    backend = DropsSecondRequest(str(tmp / "drop.sock"))
    args = ["--fastcgi", f"/app=unix:{tmp / 'drop.sock'}", "--access-log", "off"]
    if shutil.which("php-cgi"):
        args += ["--fastcgi", f".php=spawn:{shutil.which('php-cgi')}", "--fastcgi-procs", "1"]
    s = start_server(root, *args, tmp_path=tmp)
    s.backend = backend
    yield s
    s.stop()
    backend.close()


@pytest.mark.parametrize("method, length", [("POST", ""), ("POST", "Content-Length: 0\r\n"),
                                            ("PATCH", "")])
def test_fastcgi_does_not_run_a_non_idempotent_request_twice(fastcgi, method, length):
    """The same rule for a FastCGI gateway (nginx's ``fastcgi_next_upstream``
    without ``non_idempotent``, https://github.com/openresty/openresty/issues/200;
    RFC 9110 §9.2.2): the backend read the POST and closed the kept-alive
    connection; it may have run it, so it is not sent again.  (With no
    framing field and with ``Content-Length: 0``: two ways through the
    handler.)"""
    target = f"/app/once-{method}-{len(length)}"
    with socket.create_connection(("127.0.0.1", fastcgi.port), timeout=10) as s:
        s.sendall(b"GET /app/first HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b"ok"):
            first += s.recv(65536)
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: x\r\n{length}"
                  "Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 502")
    assert fastcgi.backend.seen.count((method.encode(), target.encode())) == 1


def test_fastcgi_sends_a_get_again_after_a_closed_connection(fastcgi):
    """The stale keep-alive retry, kept for what may be sent twice
    (https://github.com/caddyserver/caddy/issues/6452)."""
    with requests.Session() as session:
        assert session.get(fastcgi.url + "/app/first").text == "ok"
        assert session.get(fastcgi.url + "/app/twice").text == "ok"
    assert fastcgi.backend.seen.count((b"GET", b"/app/twice")) == 2


@needs_php_cgi
@pytest.mark.parametrize("target", ["/uploads/avatar.jpg/x.php", "/uploads/avatar.jpg%00.php",
                                    "/uploads/avatar.jpg%0a.php", "/uploads/avatar.jpg/.php"])
def test_an_upload_is_never_run_as_php(fastcgi, target):
    """``cgi.fix_pathinfo`` (https://github.com/BenoitCattie/puppet-nginx/issues/11,
    https://github.com/yevgenko/cookbook-php-fpm/issues/46): nginx passed
    ``/avatar.jpg/x.php`` to PHP, which walked back to ``avatar.jpg`` and
    ran the uploaded file."""
    response = requests.get(fastcgi.url + target)
    assert response.status_code in (400, 403, 404)
    assert "RAN-AS-PHP" not in response.text


@needs_php_cgi
def test_cve_2019_11043_a_newline_in_path_info(fastcgi):
    """CVE-2019-11043 (https://github.com/neex/phuip-fpizdam/issues/8,
    https://github.com/cloudfoundry/php-buildpack/issues/325): nginx's
    ``fastcgi_split_path_info`` regex stopped at ``%0a``, giving php-fpm an
    empty PATH_INFO that it underflowed.  A script's PATH_INFO is split by
    the file system here, newline or not."""
    response = requests.get(fastcgi.url + "/i.php/a%0Ab.php?" + "Q" * 1500)
    assert response.status_code == 200
    assert response.text == "php /a\nb.php"

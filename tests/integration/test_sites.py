"""Virtual hosts ([[site]] tables) against a real server: the site chosen by
Host or by an absolute-form target's authority, wildcards, the default site,
plugins on and off per site with their own options, the cached paths kept
apart per site, the vhost_combined log, a certificate per site by SNI, and
bad site tables refused in one line."""
import gzip
import os
import random
import re
import socket
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from tests.h2_client import H2Client
from tests.tls_certs import ca, write_pair  # noqa: F401 - fixture

SCRIPT = """#!/bin/sh
printf 'Content-Type: text/plain\\n\\n'
printf '%s %s %s %s' "$SERVER_NAME" "$HTTP_HOST" "$DOCUMENT_ROOT" "$SITE_WORD"
"""

CONFIG = """
access_log = "access.log"
log_format = "vhost_combined"

[plugins]
enable = ["autoindex"]

[[site]]
names = ["a.test", "www.a.test"]
root = "a"
plugins = ["cgi"]

[[site]]
names = ["b.test", "*.b.test"]
root = "b"
[site.plugins]
enable = ["cgi", "autoindex"]
[site.plugins.cgi]
pass_env = ["SITE_WORD=bee"]

[[site]]
names = ["c.test"]
root = "a"
plugins = "none"
"""


def make_tree(tmp_path, config=CONFIG):
    for name, text in (("top", "top"), ("a", "site a"), ("b", "site b")):
        root = tmp_path / name
        (root / "files").mkdir(parents=True)
        (root / "files" / "x.txt").write_text("x\n")
        (root / "index.html").write_text(text + "\n")
        (root / "cgi-bin").mkdir()
        (root / "cgi-bin" / "env.sh").write_text(SCRIPT)
        os.chmod(root / "cgi-bin" / "env.sh", 0o755)
    conf = tmp_path / "sites.toml"
    conf.write_text(textwrap.dedent(config))
    return tmp_path / "top", conf


def exchange(port, *requests_bytes):
    """Send each request on one connection; return [(status, body)]."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        data = b""
        for raw in requests_bytes:
            sock.sendall(raw)
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, data = data.partition(b"\r\n\r\n")
            status = int(head.split(b" ")[1])
            length = 0
            chunked = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                chunked |= name.lower() == b"transfer-encoding"
            if chunked:   # a CGI answer still running when its head went out
                while b"\r\n0\r\n\r\n" not in b"\r\n" + data:
                    data += sock.recv(65536)
                body = b""
                while True:
                    size_line, _, data = data.partition(b"\r\n")
                    size = int(size_line, 16)
                    if not size:
                        data = data[2:]
                        break
                    body, data = body + data[:size], data[size + 2:]
                answers.append((status, body))
                continue
            while len(data) < length:
                data += sock.recv(65536)
            body, data = data[:length], data[length:]
            answers.append((status, body))
    return answers


def get(port, host, target="/", version=b"HTTP/1.1"):
    host_line = b"" if host is None else b"Host: " + host.encode() + b"\r\n"
    raw = b"GET " + target.encode() + b" " + version + b"\r\n" + host_line + b"\r\n"
    return exchange(port, raw)[0]


@pytest.fixture
def server(server_factory, tmp_path):
    top, conf = make_tree(tmp_path)
    return server_factory(top, "--config", conf)


@pytest.mark.parametrize("host, body", [
    ("a.test", b"site a\n"), ("WWW.A.Test:8080", b"site a\n"), ("a.test.", b"site a\n"),
    ("b.test", b"site b\n"), ("x.b.test", b"site b\n"),
    ("x.y.b.test", b"top\n"),          # a wildcard covers one label, as certificates do
    ("unknown.test", b"top\n"), ("127.0.0.1", b"top\n"),
])
def test_the_host_chooses_the_site(server, host, body):
    assert get(server.port, host) == (200, body)


def test_http10_without_host_gets_the_default_site(server):
    assert get(server.port, None, version=b"HTTP/1.0") == (200, b"top\n")


def test_absolute_form_authority_chooses_the_site_over_host(server):
    assert get(server.port, "a.test", "http://b.test/") == (200, b"site b\n")
    status, body = get(server.port, "other.test", "http://A.test:80/cgi-bin/env.sh")
    assert status == 200 and body.startswith(b"a.test A.test:80 ")


def test_cached_paths_stay_per_site(server):
    """The same target on one connection, alternating sites, many times:
    the remembered heads and targets (the quickest paths) of one site never
    answer for another."""
    a = b"GET /index.html HTTP/1.1\r\nHost: a.test\r\n\r\n"
    b = b"GET /index.html HTTP/1.1\r\nHost: b.test\r\n\r\n"
    top = b"GET /index.html HTTP/1.1\r\nHost: elsewhere\r\n\r\n"
    answers = exchange(server.port, *([a, b, top] * 6))
    assert [body for _, body in answers] == [b"site a\n", b"site b\n", b"top\n"] * 6


def test_plugins_and_their_options_per_site(server, tmp_path):
    # cgi: on in a and b, each running its own root's scripts with its own
    # options; off at the top level (the folder is then refused) and in c.
    status, body = get(server.port, "a.test", "/cgi-bin/env.sh")
    assert (status, body) == (200, f"a.test a.test {tmp_path / 'a'} ".encode())
    status, body = get(server.port, "x.b.test", "/cgi-bin/env.sh")
    assert (status, body) == (200, f"x.b.test x.b.test {tmp_path / 'b'} bee".encode())
    assert get(server.port, "top.test", "/cgi-bin/env.sh")[0] == 403
    assert get(server.port, "c.test", "/cgi-bin/env.sh")[0] == 403
    # autoindex: on at the top level and in b, off in a and c.
    assert get(server.port, "b.test", "/files/")[0] == 200
    assert get(server.port, "top.test", "/files/")[0] == 200
    assert get(server.port, "a.test", "/files/")[0] == 404
    assert get(server.port, "c.test", "/files/")[0] == 404
    # c shares a's root: its files, none of a's plugins.
    assert get(server.port, "c.test", "/index.html") == (200, b"site a\n")


def test_access_log_names_the_site(server, tmp_path):
    get(server.port, "www.a.test", "/index.html")
    get(server.port, "nowhere.test", "/index.html")
    server.stop()
    lines = (tmp_path / "access.log").read_text().splitlines()
    assert lines[0].startswith(f"a.test:{server.port} 127.0.0.1 - - [")
    assert lines[1].startswith(f"-:{server.port} 127.0.0.1 - - [")


def test_a_site_marked_default_answers_unknown_names(server_factory, tmp_path):
    top, conf = make_tree(tmp_path, CONFIG.replace('root = "b"\n', 'root = "b"\ndefault = true\n'))
    s = server_factory(top, "--config", conf)
    assert get(s.port, "unknown.test") == (200, b"site b\n")
    assert get(s.port, "a.test") == (200, b"site a\n")


def test_a_certificate_per_site_chosen_by_sni(server_factory, tmp_path, ca):
    certs = tmp_path / "certs"
    certs.mkdir()
    write_pair(ca, certs, "a.test", "www.a.test", stem="a")
    write_pair(ca, certs, "b.test", "*.b.test", stem="b")
    config = CONFIG.replace('root = "a"\nplugins = ["cgi"]',
                            'root = "a"\nplugins = ["cgi"]\n'
                            'tls_cert = "certs/a.pem"\ntls_key = "certs/a.key"')
    config = config.replace('root = "b"\n', 'root = "b"\ntls_cert = "certs/b.pem"\n'
                            'tls_key = "certs/b.key"\n')
    top, conf = make_tree(tmp_path, config)
    s = server_factory(top, "--config", conf)
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    for name, body in (("a.test", b"site a\n"), ("www.a.test", b"site a\n"),
                       ("b.test", b"site b\n"), ("x.b.test", b"site b\n")):
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:   # verifies the name
                tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
                            .encode())
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\n" + body), name


@pytest.mark.parametrize("site, message", [
    ('names = ["a.test"]', '[[site]] a.test: root: missing'),
    ('names = ["a.test"]\nroot = "nope"', '[[site]] a.test: root = \'nope\':'),
    ('root = "a"', '[[site]] #1: names: missing'),
    ('names = ["a.*.test"]\nroot = "a"', "names: 'a.*.test': '*' may only stand as the first"),
    ('names = ["*.a..test"]\nroot = "a"', "names: '*.a..test': a wildcard is"),
    ('names = ["a.test:80"]\nroot = "a"', "names: 'a.test:80': expected a host name"),
    ('names = ["a.test"]\nroot = "a"\nport = 80', "[[site]] a.test: port: unknown key; allowed: "),
    ('names = ["a.test"]\nroot = "a"\n[[site]]\nnames = ["A.test"]\nroot = "b"',
     "[[site]] A.test: names: 'a.test' is also a name of [[site]] a.test"),
    ('names = ["a.test"]\nroot = "a"\nplugins = ["nope"]', "plugins: unknown plugin 'nope'"),
    ('names = ["a.test"]\nroot = "a"\n[site.plugins.cgi]\ntimout = 3',
     "[[site]] a.test: [site.plugins.cgi] timout: unknown setting; allowed: "),
    ('names = ["a.test"]\nroot = "a"\ntls_cert = "x.pem"', "tls_key: missing"),
    ('names = ["a.test"]\nroot = "a"\ndefault = true\n[[site]]\nnames = ["b.test"]\n'
     'root = "b"\ndefault = true', "[[site]] b.test: default: only one site"),
])
def test_bad_site_tables_are_one_line(tmp_path, site, message):
    top, conf = make_tree(tmp_path, "[[site]]\n" + site + "\n")
    proc = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(top), "--port", "0",
                           "--config", str(conf)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    # FILE:LINE of the key (of the [[site]] header when it is missing).
    assert re.match(rf"flashplug: error: {re.escape(str(conf))}:\d+: ", proc.stderr) \
        and message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1


def test_the_example_in_the_docs_runs(server_factory, tmp_path):
    page = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    section = page.split("## Virtual hosts", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "sites.toml").write_text(example.replace("port = 8080\n", ""))
    for name in ("default", "example", "blog"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "index.html").write_text(name + "\n")
    s = server_factory(tmp_path / "default", "--config", tmp_path / "sites.toml")
    for host, body in (("www.example.org", b"example\n"), ("x.blog.example.net", b"blog\n"),
                       ("example.net", b"default\n")):
        assert get(s.port, host) == (200, body)


def test_plugin_options_per_site_reach_status_and_autoindex(server_factory, tmp_path):
    top, conf = make_tree(tmp_path, """
        [plugins]
        enable = ["autoindex"]
        [[site]]
        names = ["a.test"]
        root = "a"
        [site.plugins]
        enable = ["status", "autoindex"]
        [site.plugins.status]
        path = "/a-status"
        [site.plugins.autoindex]
        ignore = ["x.*"]
        [[site]]
        names = ["b.test"]
        root = "b"
        plugins = ["status", "autoindex"]
        """)
    s = server_factory(top, "--config", conf)
    assert get(s.port, "a.test", "/a-status")[0] == 200
    assert get(s.port, "a.test", "/server-status")[0] == 404
    assert get(s.port, "b.test", "/server-status")[0] == 200
    assert get(s.port, "b.test", "/a-status")[0] == 404
    assert get(s.port, "top.test", "/server-status")[0] == 404     # not enabled there
    assert b"x.txt" not in get(s.port, "a.test", "/files/")[1]
    assert b"x.txt" in get(s.port, "b.test", "/files/")[1]
    assert b"x.txt" in get(s.port, "top.test", "/files/")[1]


def test_sites_need_an_event_loop(tmp_path):
    top, conf = make_tree(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(top), "--port", "0",
                           "--config", str(conf), "--arch", "mt", "--plugins", "none"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr == (f"flashplug: error: {conf}: [[site]] needs --arch amped or sped "
                           f"(--arch mt serves one document root)\n")


def test_proxy_mappings_per_site(server_factory, tmp_path):
    for prefix in ("up", "other"):     # the upstream gets the whole path
        (tmp_path / "up" / prefix).mkdir(parents=True)
        (tmp_path / "up" / prefix / "index.html").write_text("upstream\n")
    upstream = server_factory(tmp_path / "up", "--plugins", "none")
    top, conf = make_tree(tmp_path, f"""
        [plugins]
        enable = []
        [[site]]
        names = ["a.test"]
        root = "a"
        [site.plugins]
        enable = ["proxy"]
        [site.plugins.proxy]
        pass = ["/up=http://127.0.0.1:{upstream.port}"]
        [[site]]
        names = ["b.test"]
        root = "b"
        [site.plugins]
        enable = ["proxy"]
        [site.plugins.proxy]
        pass = ["/other=http://127.0.0.1:{upstream.port}"]
        """)
    s = server_factory(top, "--config", conf)
    assert get(s.port, "a.test", "/up/index.html") == (200, b"upstream\n")
    assert get(s.port, "a.test", "/other/index.html")[0] == 404
    assert get(s.port, "b.test", "/other/index.html") == (200, b"upstream\n")
    assert get(s.port, "b.test", "/up/index.html")[0] == 404
    assert get(s.port, "top.test", "/up/index.html")[0] == 404


# -- a policy per site: error pages, header and redirect rules, compress ---------------

POLICY_CONFIG = """
error_pages = { 404 = "/top404.html", 403 = "/top403.html" }
[[header]]
match = "/*"
set = { "X-Top" = "1" }
[[redirect]]
from = "/old"
to = "/top-new"

[[site]]
names = ["a.test"]
root = "shared"
security_headers = true
compress = true
spa_fallback = "/index.html"
error_pages = { 404 = "/a404.html" }
[[site.header]]
match = "*.html"
cache_control = "max-age=60"
[[site.redirect]]
from = "/old"
to = "/a-new"
status = 301

[[site]]
names = ["b.test"]
root = "shared"
compress = true
error_pages = { 404 = "/b404.html" }
[site.security_headers]
frame_options = "DENY"
[[site.header]]
match = "*.html"
cache_control = "no-store"
[[site.redirect]]
from = "/old"
to = "/b-new"
status = 308

[[site]]
names = ["c.test"]
root = "shared"
"""
PAGE = b"".join(b"<p>line %d of a page that compresses well</p>\n" % i for i in range(300))
SECURITY_A = {"x-content-type-options": "nosniff", "x-frame-options": "SAMEORIGIN",
              "referrer-policy": "strict-origin-when-cross-origin"}
SECURITY_B = dict(SECURITY_A, **{"x-frame-options": "DENY"})
# The fields a policy decides, compared on every answer (absent: None).
WATCHED = ("cache-control", "content-encoding", "vary", "location", "x-top",
           *SECURITY_A)


def policy_tree(tmp_path):
    shared = tmp_path / "shared"
    (shared / "cgi-bin").mkdir(parents=True)
    (shared / "cgi-bin" / "x.sh").write_text("#!/bin/sh\n")   # a script folder: 403
    (shared / "index.html").write_bytes(b"home\n")
    (shared / "page.html").write_bytes(PAGE)
    for name in ("a404", "b404", "top404", "top403"):
        (shared / f"{name}.html").write_bytes(f"page {name}\n".encode())
    (tmp_path / "top").mkdir()
    conf = tmp_path / "policy.toml"
    conf.write_text(POLICY_CONFIG)
    return tmp_path / "top", conf


def expected_answer(host, path, gzip_ok):
    """(status, body, {watched field: value or None}) that ``host`` must
    answer a GET of ``path`` with: a's own policy, b's own, c the top
    level's (it sets nothing), each key replaced whole, never merged."""
    site = host[0]
    fields = dict.fromkeys(WATCHED)
    security = {"a": SECURITY_A, "b": SECURITY_B}.get(site, {})
    fields.update(security)
    if site == "c":
        fields["x-top"] = "1"          # the top level's [[header]] (2xx/3xx only)
    pages = {"a": {404: "a404"}, "b": {404: "b404"}, "c": {404: "top404", 403: "top403"}}
    if path == "/old":
        status, location = {"a": (301, "/a-new"), "b": (308, "/b-new"),
                            "c": (302, "/top-new")}[site]
        fields["location"] = location
        return status, f"Moved to {location}\n".encode(), fields
    if path in ("/missing.txt", "/users/42") and not (site == "a" and path == "/users/42"):
        fields["x-top"] = None
        return 404, f"page {pages[site][404]}\n".encode(), fields
    if path == "/cgi-bin/x.sh":
        fields["x-top"] = None
        page = pages[site].get(403)
        return 403, (f"page {page}\n".encode() if page else None), fields
    if path.endswith(".html"):
        fields["cache-control"] = {"a": "max-age=60", "b": "no-store"}.get(site)
    if path == "/page.html":
        if site in ("a", "b"):      # each its own compressed copy, its own fields
            fields["vary"] = "Accept-Encoding"
            fields["content-encoding"] = "gzip" if gzip_ok else None
        return 200, PAGE, fields
    return 200, b"home\n", fields     # "/index.html", and a's SPA fallback


def read_answer(sock, buffered):
    """One response from ``sock`` (Content-Length framed): (status,
    {lowercase name: value}, body, the bytes read past it)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, data = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.lower()] = value.strip()
    length = int(fields.get("content-length", 0))
    while len(data) < length:
        data += sock.recv(65536)
    return int(lines[0].split()[1]), fields, data[:length], data[length:]


def check_answer(host, path, gzip_ok, status, fields, body):
    want_status, want_body, want_fields = expected_answer(host, path, gzip_ok)
    got = {name: fields.get(name) for name in WATCHED}
    if fields.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    assert (status, got) == (want_status, want_fields), (host, path, gzip_ok)
    if want_body is not None:
        assert body == want_body, (host, path)
    else:   # no page for the status: the built-in one
        assert b"<h1>403 Forbidden</h1>" in body, (host, path)


def test_two_sites_on_one_root_keep_their_own_policy(server_factory, tmp_path):
    """a, b and c share one document root (so one file cache) but not a
    policy: many interleaved requests, on one connection and on several,
    on HTTP/1.1 and HTTP/2, cached paths (remembered heads and targets,
    prebuilt lines, a compressed variant) and full ones, each answer
    exactly its site's: Cache-Control, security fields, redirects, error
    pages, compression, and the top level's for the site that sets none."""
    top, conf = policy_tree(tmp_path)
    s = server_factory(top, "--config", conf, "--h2c", "--plugins", "none")
    paths = ["/index.html", "/page.html", "/missing.txt", "/old", "/cgi-bin/x.sh", "/users/42"]
    plan = [(host, path, gzip_ok) for host in ("a.test", "b.test", "c.test")
            for path in paths for gzip_ok in (False, True)] * 4
    random.Random(15).shuffle(plan)
    buffered = b""
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        for host, path, gzip_ok in plan:
            accept = b"Accept-Encoding: gzip\r\n" if gzip_ok else b""
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n"
                         % (path.encode(), host.encode(), accept))
            status, fields, body, buffered = read_answer(sock, buffered)
            check_answer(host, path, gzip_ok, status, fields, body)
    for host, path, gzip_ok in plan[:40]:    # a connection each: no remembered state
        accept = b"Accept-Encoding: gzip\r\n" if gzip_ok else b""
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n"
                         % (path.encode(), host.encode(), accept))
            status, fields, body, _ = read_answer(sock, b"")
        check_answer(host, path, gzip_ok, status, fields, body)
    client = H2Client(s.port)
    try:
        for host, path, gzip_ok in plan:
            headers = [("accept-encoding", "gzip")] if gzip_ok else []
            status, raw, body = client.get(path, authority=host, headers=headers)
            fields = {n.decode().lower(): v.decode() for n, v in raw.items()}
            check_answer(host, path, gzip_ok, status, fields, body)
    finally:
        client.sock.close()


def docs_example(page, heading):
    text = (Path(__file__).parents[2] / "docs" / page).read_text()
    return text.split(heading, 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_per_site_policy_example_in_the_docs_runs(server_factory, tmp_path):
    (tmp_path / "policy.toml").write_text(docs_example("configuration.md", "### Per site"))
    for name in ("public", "shop/assets", "docs"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "shop" / "assets" / "app.css").write_bytes(b"body{color:red}\n" * 200)
    (tmp_path / "shop" / "not-found.html").write_bytes(b"shop: not found\n")
    (tmp_path / "docs" / "404.html").write_bytes(b"docs: not found\n")
    (tmp_path / "docs" / "a.css").write_bytes(b"a{}\n")
    proc = subprocess.run([sys.executable, "-m", "flashplug", "check", "--config",
                           str(tmp_path / "policy.toml")], capture_output=True, text=True,
                          timeout=30, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    s = server_factory(tmp_path / "public", "--config", tmp_path / "policy.toml")
    url = f"http://127.0.0.1:{s.port}"
    for _ in range(2):
        shop = requests.get(url + "/assets/app.css", headers={"Host": "shop.example.org"})
        assert shop.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert shop.headers["Content-Encoding"] in ("br", "zstd", "gzip")
        assert shop.headers["Content-Security-Policy"] == "default-src 'self'"
        staff = requests.get(url + "/assets/app.css", headers={"Host": "staff.example.org"})
        assert staff.headers["Cache-Control"] == "no-store"
        assert "Content-Encoding" not in staff.headers
        assert staff.headers["X-Content-Type-Options"] == "nosniff"     # inherited
        assert shop.content == staff.content
        docs = requests.get(url + "/a.css", headers={"Host": "docs.example.org"})
        assert docs.headers["Cache-Control"] == "public, max-age=86400"
    r = requests.get(url + "/cart.php", headers={"Host": "shop.example.org"},
                     allow_redirects=False)
    assert (r.status_code, r.headers["Location"]) == (301, "/cart/")
    r = requests.get(url + "/nope.txt", headers={"Host": "shop.example.org"})
    assert (r.status_code, r.content) == (404, b"shop: not found\n")
    r = requests.get(url + "/nope.txt", headers={"Host": "docs.example.org"})
    assert (r.status_code, r.content) == (404, b"docs: not found\n")


def test_the_per_site_compress_example_in_the_docs_checks(tmp_path):
    (tmp_path / "sites.toml").write_text(docs_example("compression.md", "per [`[[site]]`]"))
    for name in ("default", "example"):
        (tmp_path / name).mkdir()
    proc = subprocess.run([sys.executable, "-m", "flashplug", "check", "--config",
                           str(tmp_path / "sites.toml")], capture_output=True, text=True,
                          timeout=30, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr

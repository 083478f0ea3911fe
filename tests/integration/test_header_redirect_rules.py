"""Header and redirect rules from the config file (issue 15, item 4), against
a real server: the security preset, Cache-Control/Expires and custom fields
by glob (on the cached paths too), redirects, the SPA fallback and
www-to-apex, and bad rules refused at start with one line.
"""
import email.utils
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import requests

PRESET = {"X-Content-Type-Options": "nosniff",
          "Referrer-Policy": "strict-origin-when-cross-origin",
          "X-Frame-Options": "SAMEORIGIN"}


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    for folder in ("assets", "app", "cgi-bin", "docs"):
        (root / folder).mkdir(parents=True)
    (root / "index.html").write_bytes(b"home\n")
    (root / "assets" / "app.css").write_bytes(b"body{}\n")
    (root / "assets" / "big.js").write_bytes(b"x" * 200_000)   # sent by sendfile
    (root / "app" / "index.html").write_bytes(b"<div id=app></div>\n")
    (root / "docs" / "page.html").write_bytes(b"doc\n")
    script = root / "cgi-bin" / "hi.sh"
    script.write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n"
                      "Cache-Control: no-cache\\r\\nX-Frame-Options: DENY\\r\\n\\r\\nhi'\n")
    script.chmod(0o755)
    return root


def config(tmp_path, body):
    path = tmp_path / "site.toml"
    path.write_text('docroot = "site"\n' + textwrap.dedent(body))
    return path


RULES = """
    security_headers = { content_security_policy = "default-src 'self'" }

    [[header]]
    match = "/*"
    set = { "X-Robots-Tag" = "noindex" }

    [[header]]
    match = ["*.css", "*.js"]
    cache_control = "public, max-age=31536000, immutable"
    set = { "X-Robots-Tag" = "all" }

    [[header]]
    match = "/docs/*"
    expires = "1h"

    [[header]]
    match = "/cgi-bin/*"
    cache_control = "private"
"""


@pytest.fixture
def server(site, tmp_path, server_factory):
    return server_factory(site, "--config", config(tmp_path, RULES), "--plugins", "cgi")


def head_of(server, path, extra=b""):
    """The raw response head for a GET of ``path`` on a fresh connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra +
                  b"Connection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[0].decode("latin-1")


def test_security_preset_on_files_errors_and_scripts(server):
    for path, status in (("/", 200), ("/missing", 404), ("/cgi-bin/hi.sh", 200)):
        r = requests.get(server.url + path)
        assert r.status_code == status
        assert r.headers["Content-Security-Policy"] == "default-src 'self'"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == PRESET["Referrer-Policy"]
    # A response's own field wins over the preset: the script says DENY.
    r = requests.get(server.url + "/cgi-bin/hi.sh")
    assert r.headers["X-Frame-Options"] == "DENY"
    assert requests.get(server.url + "/").headers["X-Frame-Options"] == "SAMEORIGIN"


def test_cache_control_by_glob_later_rules_win(server):
    for _ in range(3):    # a miss, then the cached paths (remembered target, head)
        head = head_of(server, "/assets/app.css")
        assert head.count("Cache-Control:") == 1
        assert "Cache-Control: public, max-age=31536000, immutable" in head
        assert head.count("X-Robots-Tag:") == 1 and "X-Robots-Tag: all" in head
    r = requests.get(server.url + "/assets/big.js")
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert len(r.content) == 200_000
    assert requests.get(server.url + "/").headers["X-Robots-Tag"] == "noindex"
    assert "Cache-Control" not in requests.get(server.url + "/").headers


def test_rule_fields_replace_a_scripts_own(server):
    r = requests.get(server.url + "/cgi-bin/hi.sh")
    assert r.text == "hi" and r.headers["Cache-Control"] == "private"


def test_rules_skip_errors(server):
    r = requests.get(server.url + "/assets/missing.css")
    assert r.status_code == 404 and "Cache-Control" not in r.headers
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_expires_and_max_age(server):
    for _ in range(3):
        r = requests.get(server.url + "/docs/page.html")
        assert r.headers["Cache-Control"] == "max-age=3600"
        expires = email.utils.parsedate_to_datetime(r.headers["Expires"]).timestamp()
        date = email.utils.parsedate_to_datetime(r.headers["Date"]).timestamp()
        # Baked into the cache entry, refreshed with each --cache-valid check.
        assert 3600 - 2 <= expires - date <= 3600, (r.headers["Expires"], r.headers["Date"])
        time.sleep(0.6)


def test_not_modified_carries_the_rule_fields(server):
    first = requests.get(server.url + "/assets/app.css")
    for _ in range(2):
        r = requests.get(server.url + "/assets/app.css",
                         headers={"If-None-Match": first.headers["ETag"]})
        assert r.status_code == 304
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    # The quickest path: a bare revalidation of a remembered target.
    head_of(server, "/assets/app.css")     # a plain GET: its target is remembered
    for _ in range(3):
        head = head_of(server, "/assets/app.css",
                       b"If-None-Match: " + first.headers["ETag"].encode() + b"\r\n")
        assert head.startswith("HTTP/1.1 304 ")
        assert "Cache-Control: public, max-age=31536000, immutable\r\n" in head
        assert "X-Content-Type-Options: nosniff\r\n" in head


def test_range_response_carries_the_rule_fields(server):
    r = requests.get(server.url + "/assets/app.css", headers={"Range": "bytes=0-3"})
    assert r.status_code == 206 and r.content == b"body"
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"


REDIRECTS = """
    www_to_apex = true

    [[redirect]]
    from = "/old.html"
    to = "/"
    status = 301

    [[redirect]]
    from = "/blog/*"
    to = "/posts/*"
    status = 308

    [[redirect]]
    from = "/away/*"
    to = "https://example.org/?from=flashplug"

    [[redirect]]
    from = "/index.html"
    to = "/"
    status = 307
"""


@pytest.fixture
def redirecting(site, tmp_path, server_factory):
    return server_factory(site, "--config", config(tmp_path, REDIRECTS))


def test_exact_redirect_keeps_the_query(redirecting):
    r = requests.get(redirecting.url + "/old.html?a=1&b=2", allow_redirects=False)
    assert r.status_code == 301 and r.headers["Location"] == "/?a=1&b=2"
    # Exact: nothing below it.
    assert requests.get(redirecting.url + "/old.html/x", allow_redirects=False).status_code == 404


def test_prefix_redirect_carries_the_rest(redirecting):
    r = requests.post(redirecting.url + "/blog/2024/hello%20world?x=1", allow_redirects=False)
    assert r.status_code == 308
    assert r.headers["Location"] == "/posts/2024/hello%20world?x=1"
    r = requests.get(redirecting.url + "/blog", allow_redirects=False)
    assert (r.status_code, r.headers["Location"]) == (308, "/posts/")
    r = requests.head(redirecting.url + "/blogger", allow_redirects=False)
    assert r.status_code == 404


def test_redirect_to_another_site_joins_queries(redirecting):
    r = requests.get(redirecting.url + "/away/x?y=2", allow_redirects=False)
    assert r.status_code == 302    # no status given: temporary
    assert r.headers["Location"] == "https://example.org/?from=flashplug&y=2"


def test_redirect_beats_a_cached_file(redirecting):
    for _ in range(3):
        r = requests.get(redirecting.url + "/index.html", allow_redirects=False)
        assert (r.status_code, r.headers["Location"]) == (307, "/")
    assert requests.get(redirecting.url + "/").content == b"home\n"


def test_www_to_apex(redirecting):
    for _ in range(3):   # the apex's file gets cached and remembered by its target
        r = requests.get(redirecting.url + "/docs/page.html?q=1", allow_redirects=False,
                         headers={"Host": f"www.example.org:{redirecting.port}"})
        assert r.status_code == 308
        assert r.headers["Location"] == f"http://example.org:{redirecting.port}/docs/page.html?q=1"
        # The same target under the apex name is the file, cached or not.
        r = requests.get(redirecting.url + "/docs/page.html", headers={"Host": "example.org"})
        assert (r.status_code, r.content) == (200, b"doc\n")


def test_spa_fallback(site, tmp_path, server_factory):
    server = server_factory(site, "--config",
                            config(tmp_path, 'spa_fallback = "/app/index.html"\n'))
    for path in ("/users/42", "/app/settings", "/deep/link/"):
        r = requests.get(server.url + path)
        assert (r.status_code, r.content) == (200, b"<div id=app></div>\n"), path
        r = requests.head(server.url + path)
        assert r.status_code == 200 and r.headers["Content-Length"] == "19"
    # A path that looks like a file stays a 404: HTML in place of a script
    # only breaks it.
    assert requests.get(server.url + "/assets/gone.js").status_code == 404
    assert requests.post(server.url + "/users/42").status_code == 405
    # Real files are served as they are.
    assert requests.get(server.url + "/assets/app.css").content == b"body{}\n"


@pytest.mark.parametrize("body,words", [
    ('security_headers = { content_security_policy = "a\\r\\nSet-Cookie: x=1" }',
     "security_headers.content_security_policy"),
    ('security_headers = { frame = "DENY" }', "security_headers.frame: unknown setting"),
    ('[[header]]\nmatch = "/*"\nset = { "X-A" = "v\\u0000" }', "set.X-A"),
    ('[[header]]\nmatch = "/*"\nset = { "Content-Length" = "1" }', "Content-Length cannot"),
    ('[[header]]\nmatch = "assets/*"\ncache_control = "no-cache"', "glob starts with"),
    ('[[header]]\nmatch = "/*"\nexpires = "soon"', "expires"),
    ('[[redirect]]\nfrom = "/a"\nto = "/b"\nstatus = 303', "status = 303"),
    ('[[redirect]]\nfrom = "/a"\nto = "//evil.example/"', "to = '//evil.example/'"),
    ('[[redirect]]\nfrom = "/a*"\nto = "/b"', "from = '/a*'"),
    ('[[redirect]]\nfrom = "/a"\nto = "/b/*"', "a '*' may only end"),
    ('spa_fallback = "index.html"', "spa_fallback"),
    ('www_to_apex = "yes"', "www_to_apex"),
])
def test_bad_rules_are_one_line_errors(site, tmp_path, body, words):
    conf = config(tmp_path, body + "\n")
    proc = subprocess.run([sys.executable, "-m", "flashplug", "serve", "--config", conf,
                           "--port", "0"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert words in proc.stderr and str(conf) in proc.stderr, proc.stderr


def test_a_bad_rule_names_its_own_line(site, tmp_path):
    """The line is the failing table's own: the second [[header]], not the first."""
    conf = config(tmp_path, '[[header]]\nmatch = "/*"\ncache_control = "no-cache"\n'
                            '[[header]]\nmatch = "/*"\nexpires = "soon"\n')
    proc = subprocess.run([sys.executable, "-m", "flashplug", "check", "--config", conf],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"flashplug: error: {conf}:5: [[header]] #2: expires = "
                                  f"'soon': expected seconds"), proc.stderr


def test_cached_and_full_paths_give_the_same_fields(server):
    """The fields baked into a cache entry are those ``Rules.apply`` adds to
    a Response built on the full path (a conditional GET that is a 200)."""
    def fields(extra=b""):
        lines = head_of(server, "/docs/page.html", extra).split("\r\n")[1:]
        return sorted(line.split(":")[0] for line in lines)

    fields()                                  # a miss: the entry is loaded
    cached = fields()                         # the cached path, prebuilt lines
    full = fields(b'If-None-Match: "other"\r\n')
    assert cached == full
    assert "Expires" in cached and "X-Robots-Tag" in cached and "Referrer-Policy" in cached


def test_a_site_inherits_the_top_level_rules_it_does_not_set(server_factory, site, tmp_path):
    """A site without rule keys has the top level's rules and error pages,
    each page read from that site's root; a site that sets a key has its
    own value of that key instead (replaced, not merged) and the top
    level's for the keys it does not set."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "index.html").write_bytes(b"other home\n")
    (other / "404.html").write_bytes(b"other's missing page\n")
    (site / "404.html").write_bytes(b"site's missing page\n")
    conf = config(tmp_path, """
        error_pages = { 404 = "/404.html" }
        security_headers = true
        [[redirect]]
        from = "/old"
        to = "/"
        status = 301
        [[header]]
        match = "/*"
        set = { "X-Robots-Tag" = "noindex" }

        [[site]]
        names = ["other.test"]
        root = "other"

        [[site]]
        names = ["own.test"]
        root = "other"
        [[site.header]]
        match = "/index.html"
        set = { "X-Own" = "yes" }
        """)
    srv = server_factory(site, "--config", conf)
    for host, page in (("other.test", b"other's missing page\n"),
                       ("top.test", b"site's missing page\n"),
                       ("own.test", b"other's missing page\n")):
        r = requests.get(srv.url + "/old", headers={"Host": host}, allow_redirects=False)
        assert r.status_code == 301 and r.headers["Location"] == "/"
        for _ in range(3):    # the miss, then the cached paths
            r = requests.get(srv.url + "/index.html", headers={"Host": host})
            assert r.headers.get("X-Robots-Tag") == (None if host == "own.test" else "noindex")
            assert r.headers.get("X-Own") == ("yes" if host == "own.test" else None)
            assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
        r = requests.get(srv.url + "/missing", headers={"Host": host})
        assert (r.status_code, r.content) == (404, page)


@pytest.mark.parametrize("body,line,words", [
    ('security_headers = "yes"\n', 4, "[[site]] b.test: security_headers = 'yes': expected"),
    ('[[site.header]]\nmatch = "/*"\nset = { "Date" = "x" }\n', 4,
     "[[site]] b.test: [[header]] #1: set: Date cannot be set"),
    ('[[site.redirect]]\nfrom = "/a"\nto = "/b"\nstatus = 303\n', 4,
     "[[site]] b.test: [[redirect]] #1: status = 303"),
    ('www_to_apex = 1\n', 4, "[[site]] b.test: www_to_apex = 1"),
    ('error_pages = { 200 = "/x.html" }\n', 4, "[[site]] b.test: error_pages.200: expected"),
    ('compress = "on"\n', 4, "[[site]] b.test: compress = 'on': expected true or false"),
])
def test_bad_rules_in_a_site_are_one_line_with_file_and_line(tmp_path, body, line, words):
    """``flashplug check`` names the file, the line of the key in its
    [[site]] table (the second site here: the first has the same key
    right), the site and the key."""
    (tmp_path / "b").mkdir(parents=True)
    conf = tmp_path / "sites.toml"
    good = body.replace('"yes"', "true").replace('"Date"', '"X-A"').replace("303", "301") \
        .replace("= 1", "= true").replace("200 =", "404 =").replace('"on"', "true")
    conf.write_text('[[site]]\nnames = ["a.test"]\nroot = "b"\n' + good
                    + '[[site]]\nnames = ["b.test"]\nroot = "b"\n' + body)
    first = 3 + good.count("\n")
    proc = subprocess.run([sys.executable, "-m", "flashplug", "check", "--config", str(conf)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"flashplug: error: {conf}:{first + line}: {words}"), \
        proc.stderr


def test_rule_fields_go_out_with_compressed_variants_too(server_factory, site, tmp_path):
    """A .br sidecar, and a gzip copy made by --compress, are sent with
    the rule fields of the path they answer, on the full path and on the
    cached ones (their prebuilt lines)."""
    import gzip
    (site / "page.html").write_bytes(b"<p>" + b"hello " * 1000)
    (site / "page.html.br").write_bytes(b"not really brotli, but the owner's sidecar")
    conf = config(tmp_path, """
        compress = true
        security_headers = true
        [[header]]
        match = "/*.html"
        cache_control = "max-age=60"
        """)
    srv = server_factory(site, "--config", conf)
    for coding in ("br", "gzip"):
        for _ in range(3):       # the full path, then the cached ones
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(b"GET /page.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                          b"Accept-Encoding: " + coding.encode() + b"\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            fields = head.decode("latin-1").lower()
            assert f"content-encoding: {coding}" in fields
            assert "cache-control: max-age=60" in fields
            assert "x-content-type-options: nosniff" in fields
            if coding == "gzip":
                assert gzip.decompress(body).startswith(b"<p>hello")
            time.sleep(0.05)


def test_www_to_apex_and_spa_fallback_per_site(server_factory, site, tmp_path):
    """``www_to_apex`` and ``spa_fallback`` set in one site only: its www
    name redirects and its unknown paths load the app; the other site,
    on the same root, serves both names and 404s, however the requests
    interleave on one connection (the quickest cached paths included)."""
    conf = config(tmp_path, """
        [[site]]
        names = ["x.test", "www.x.test"]
        root = "site"
        www_to_apex = true
        spa_fallback = "/app/index.html"
        [[site]]
        names = ["y.test", "www.y.test"]
        root = "site"
        """)
    srv = server_factory(site, "--config", conf)
    answers = {("www.x.test", "/index.html"): (308, "http://x.test/index.html"),
               ("x.test", "/index.html"): (200, b"home\n"),
               ("www.y.test", "/index.html"): (200, b"home\n"),
               ("x.test", "/users/7"): (200, b"<div id=app></div>\n"),
               ("y.test", "/users/7"): (404, None)}
    with requests.Session() as s:
        for _ in range(4):
            for (host, path), (status, want) in answers.items():
                r = s.get(srv.url + path, headers={"Host": host}, allow_redirects=False)
                assert r.status_code == status, (host, path)
                if status == 308:
                    assert r.headers["Location"] == want
                elif want is not None:
                    assert r.content == want, (host, path)

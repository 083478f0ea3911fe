"""The compilers of error pages and header/redirect rules (flashplug.errorpages,
flashplug.rules): what a TOML table becomes, and the one-line errors."""
import time
import types

import pytest

from flashplug.cache import FileEntry
from flashplug.errorpages import compile_error_pages, default_page
from flashplug.errors import UsageError
from flashplug.http.message import Response
from flashplug.rules import SECURITY_PRESET, compile_rules

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def rules(text):
    return compile_rules(tomllib.loads(text), "site.toml")


def request(path, query="", method="GET", host="example.org", target=None):
    from flashplug.http.message import Headers
    return types.SimpleNamespace(path=path, raw_path=path, query=query, method=method,
                                 host=host.partition(":")[0].lower(),
                                 headers=Headers([("host", host)]), scheme="http",
                                 target=target or (path + ("?" + query if query else "")))


# -- error pages ---------------------------------------------------------------------

def test_error_pages_compile_to_status_and_path():
    pages = compile_error_pages(tomllib.loads(
        'error_pages = { 404 = "/404.html", 503 = "/e/busy.html" }'), "s.toml")
    assert pages.page_for(404) == "/404.html" and pages.page_for(503) == "/e/busy.html"
    assert pages.page_for(500) is None
    with pytest.raises(TypeError):
        pages.pages[500] = "/x"       # immutable
    assert compile_error_pages({}, "s.toml") is None
    assert compile_error_pages({"error_pages": {}}, "s.toml") is None


@pytest.mark.parametrize("value,words", [
    ({"404": "404.html"}, "error_pages.404 = '404.html'"),
    ({"302": "/x.html"}, "error_pages.302: expected an error status"),
    ({"abc": "/x.html"}, "error_pages.abc"),
    ({"404": "/a/../b.html"}, "without '..'"),
    ({"404": "/x.html?v=1"}, "without '..', query"),
    ({"404": "/errors/"}, "the path of a file"),
    ({"404": 404}, "error_pages.404 = 404"),
    ("/404.html", "must be a table"),
])
def test_bad_error_pages(value, words):
    with pytest.raises(UsageError) as info:
        compile_error_pages({"error_pages": value}, "s.toml")
    message = str(info.value)
    assert message.startswith("s.toml: ") and words in message and "\n" not in message


def test_default_page_is_small_and_escapes():
    ctype, body = default_page(404, "Not Found")
    assert ctype == "text/html; charset=utf-8"
    assert body == (b"<!doctype html>\n<html><head><title>404 Not Found</title></head>"
                    b"<body><h1>404 Not Found</h1></body></html>\n")
    _, body = default_page(403, "<script> & more")
    assert b"<p>&lt;script&gt; &amp; more</p>" in body


# -- header rules ---------------------------------------------------------------------

def test_no_rule_keys_no_policy():
    assert compile_rules({"port": 8080}, "s.toml") is None
    assert rules("security_headers = false\nwww_to_apex = false\n") is None


def test_security_preset_and_overrides():
    r = rules("security_headers = true")
    assert r.security == SECURITY_PRESET
    r = rules('[security_headers]\nframe_options = "DENY"\n'
              'content_security_policy = "default-src \'self\'"\n')
    assert dict(r.security) == {"X-Content-Type-Options": "nosniff",
                                "Referrer-Policy": "strict-origin-when-cross-origin",
                                "X-Frame-Options": "DENY",
                                "Content-Security-Policy": "default-src 'self'"}


@pytest.mark.parametrize("pattern,yes,no", [
    ("*.css", ["/a.css", "/x/y/b.css"], ["/a.css/", "/a.cssx", "/a.js"]),
    ("/assets/*", ["/assets/", "/assets/a/b.js"], ["/assets", "/x/assets/a"]),
    ("/a?c.txt", ["/abc.txt"], ["/a/c.txt", "/ac.txt"]),
    ("*.{css,js}", ["/a.css", "/b/c.js"], ["/a.json"]),
    ("/exact.html", ["/exact.html"], ["/exact.html.bak", "/x/exact.html"]),
    ("/", ["/"], ["/a"]),
    ("/a+b(1).txt", ["/a+b(1).txt"], ["/aab(1).txt"]),
])
def test_globs(pattern, yes, no):
    r = rules(f'[[header]]\nmatch = "{pattern}"\nset = {{ "X-M" = "1" }}\n')
    for path in yes:
        assert r._rule_fields(path)[0] == (("X-M", "1"),), path
    for path in no:
        assert r._rule_fields(path)[0] == (), path


def test_all_matching_rules_apply_later_wins():
    r = rules('[[header]]\nmatch = "/*"\ncache_control = "no-cache"\nset = { "X-A" = "1" }\n'
              '[[header]]\nmatch = "*.css"\nexpires = "2d"\n')
    fields, expires = r._rule_fields("/s.css")
    assert dict(fields) == {"Cache-Control": "max-age=172800", "X-A": "1"}
    assert expires == 172800
    assert dict(r._rule_fields("/a.html")[0]) == {"Cache-Control": "no-cache", "X-A": "1"}


@pytest.mark.parametrize("value,seconds", [
    (3600, 3600), ('"90s"', 90), ('"15m"', 900), ('"12h"', 43200), ('"30d"', 2592000),
    ('"45"', 45), (0, 0)])
def test_expires_durations(value, seconds):
    r = rules(f'[[header]]\nmatch = "/*"\nexpires = {value}\n')
    fields, expires = r._rule_fields("/x")
    assert expires == seconds and ("Cache-Control", f"max-age={seconds}") in fields


def test_expires_with_its_own_cache_control():
    r = rules('[[header]]\nmatch = "/*"\nexpires = "1h"\ncache_control = "public"\n')
    assert r._rule_fields("/x") == ((("Cache-Control", "public"),), 3600)


def test_entry_headers_bake_fields_expires_and_preset():
    r = rules('security_headers = true\n[[header]]\nmatch = "*.js"\nexpires = 60\n'
              'set = { "X-Frame-Options" = "DENY" }\n')
    fields, expires = r.entry_headers("/a.js")
    names = [n for n, _ in fields]
    assert expires == 60
    assert names == ["Cache-Control", "X-Frame-Options", "Expires",
                     "X-Content-Type-Options", "Referrer-Policy"]   # the rule's XFO wins
    assert r.entry_headers("/a.html") == (list(SECURITY_PRESET), None)


def test_entry_lines_and_expires_refresh(tmp_path):
    """A cache entry bakes the fields into its 200 and 304 heads; ``trust``
    moves its Expires on."""
    (tmp_path / "a.css").write_bytes(b"hello")
    st = (tmp_path / "a.css").stat()
    entry = FileEntry(str(tmp_path / "a.css"), (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns),
                      "text/css", b"hello", None)
    plain = entry.head_tail
    r = rules('[[header]]\nmatch = "*.css"\nexpires = 60\n')
    entry.set_rule_fields(*r.entry_headers("/a.css"))
    assert entry.head_tail.startswith(plain)
    assert b"Cache-Control: max-age=60\r\n" in entry.head_tail
    assert b"Cache-Control: max-age=60\r\n" in entry.validator_lines
    before = entry.head_tail
    real_time = time.time
    try:
        time.time = lambda: real_time() + 7200
        entry.trust(time.monotonic())
    finally:
        time.time = real_time
    assert entry.head_tail != before and entry.head_tail.count(b"Expires:") == 1


def test_apply_replaces_rule_fields_and_fills_in_the_preset():
    r = rules('security_headers = true\n[[header]]\nmatch = "/cgi/*"\n'
              'cache_control = "private"\n')
    resp = Response(200, [("Cache-Control", "public"), ("X-Frame-Options", "DENY"),
                          ("Content-Type", "text/plain")], b"x")
    r.apply("/cgi/a", resp)
    assert resp.headers == [("X-Frame-Options", "DENY"), ("Content-Type", "text/plain"),
                            ("Cache-Control", "private"),
                            ("X-Content-Type-Options", "nosniff"),
                            ("Referrer-Policy", "strict-origin-when-cross-origin")]
    # An error gets the preset only; a request that did not parse too.
    for path in ("/cgi/a", None):
        err = Response(404, [("Content-Type", "text/html")], b"")
        r.apply(path, err)
        assert dict(err.headers) == {"Content-Type": "text/html", **dict(SECURITY_PRESET)}


@pytest.mark.parametrize("text,words", [
    ('[[header]]\ncache_control = "x"', "match: expected a path glob"),
    ('[[header]]\nmatch = "*.css"', "sets nothing"),
    ('[[header]]\nmatch = "*.css"\ncolour = "red"', "colour: unknown setting"),
    ('[[header]]\nmatch = "*.{css"\nexpires = 1', "unbalanced {"),
    ('[[header]]\nmatch = "/*"\ncache_control = " public"', "leading or trailing"),
    ('[[header]]\nmatch = "/*"\ncache_control = "a\\nb"', "one-line header value"),
    ('[[header]]\nmatch = "/*"\nset = { "Bad Name" = "1" }', "not a valid field name"),
    ('[[header]]\nmatch = "/*"\nset = { "Expires" = "0" }', "use cache_control / expires"),
    ('[[header]]\nmatch = "/*"\nexpires = -5', "expires = -5"),
    ('header = "x"', "write [[header]] sections"),
    ('security_headers = "on"', "expected true, false or a table"),
    ('[[redirect]]\nfrom = "/a"', "[[redirect]] #1: to: missing: expected a path"),
    ('[[redirect]]\nto = "/b"', "[[redirect]] #1: from: missing: expected an exact URL path"),
    ('[[redirect]]\nfrom = "a"\nto = "/b"', "from = 'a'"),
    ('[[redirect]]\nfrom = "/a/*/b"\nto = "/b"', "from = '/a/*/b'"),
    ('[[redirect]]\nfrom = "/a"\nto = "ftp://x/"', "to = 'ftp://x/'"),
    ('[[redirect]]\nfrom = "/a"\nto = "/b c"', "to = '/b c'"),
    ('[[redirect]]\nfrom = "/a"\nto = "/€"', "non-ASCII percent-encoded"),
    ('[[redirect]]\nfrom = "/a"\nto = "/b"\nstatus = true', "status = True"),
    ('[[redirect]]\nfrom = "/a"\nto = "/b"\n[[redirect]]\nfrom = "/a"\nto = "/c"',
     "given twice"),
    ('spa_fallback = "/app/"', "spa_fallback = '/app/'"),
])
def test_bad_rules(text, words):
    with pytest.raises(UsageError) as info:
        rules(text)
    message = str(info.value)
    assert message.startswith("site.toml: ") and words in message and "\n" not in message


# -- redirects, SPA, www -----------------------------------------------------------------

def test_redirect_locations():
    r = rules('[[redirect]]\nfrom = "/blog/*"\nto = "/posts/*"\n'
              '[[redirect]]\nfrom = "/*"\nto = "https://new.example/*"\nstatus = 301\n'
              '[[redirect]]\nfrom = "/x"\nto = "/y?k=v"\n')
    blog, everything, exact = r.redirects
    assert (blog.prefix, blog.source, blog.status) == (True, "/blog", 302)
    assert blog.location(request("/blog/a b/ü", "q=1")) == "/posts/a%20b/%C3%BC?q=1"
    assert blog.location(request("/blog")) == "/posts/"
    assert everything.location(request("/a/b")) == "https://new.example/a/b"
    assert exact.location(request("/x", "z=1")) == "/y?k=v&z=1"
    routes = r.routes()
    assert (routes[0].prefix, routes[1].prefix, routes[2].path) == ("/blog", "/", "/x")


def test_spa_path_only_for_get_head_of_extensionless_paths():
    r = rules('spa_fallback = "/index.html"')
    assert r.spa_path_for(request("/users/1")) == "/index.html"
    assert r.spa_path_for(request("/users/", method="HEAD")) == "/index.html"
    assert r.spa_path_for(request("/v1.2/users")) == "/index.html"   # a dot, but not last
    assert r.spa_path_for(request("/app.js")) is None
    assert r.spa_path_for(request("/users/1", method="POST")) is None


def test_www_to_apex_location():
    from flashplug.rules import host_redirect_location
    assert host_redirect_location(request("/a", "b=1", host="www.example.org:8080")) == \
        "http://example.org:8080/a?b=1"
    assert host_redirect_location(request("/a", host="WWW.Example.org")) == \
        "http://Example.org/a"
    assert host_redirect_location(request("/a", host="example.org")) is None
    assert host_redirect_location(request("/a", host="www.localhost")) is None


def test_the_examples_in_the_docs_compile():
    import os
    import re
    page = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "configuration.md")
    with open(page) as f:
        examples = re.findall(r"```toml\n(# site\.toml.*?)```", f.read(), re.S)
    assert len(examples) == 2
    pages = compile_error_pages(tomllib.loads(examples[0]), "site.toml")
    assert pages.page_for(503) == "/errors/busy.html"
    r = compile_rules(tomllib.loads(examples[1]), "site.toml")
    assert len(r.header_rules) == 4 and len(r.redirects) == 3 and r.www_to_apex
    assert dict(r._rule_fields("/assets/app.js")[0])["Cache-Control"].endswith("immutable")

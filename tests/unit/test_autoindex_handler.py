"""autoindex request handling: settings, caching, conditional GET (no sockets).

The handler only awaits helpers; with inline helpers its coroutine never
suspends, so ``run_sync`` drives it without an event loop.
"""
import builtins
import json
import os

import pytest

from flashplug import Headers, HTTPError, Request, UsageError
from flashplug.helpers import InlineHelpers, run_sync
from flashplug.http.dates import format_http_date

from flashplug_plugins import autoindex as plugin
from flashplug_plugins.autoindex import handler as H
from flashplug_plugins.autoindex.cache import BoundedLRU


class FakeConfig:
    def __init__(self, docroot, plugins=("autoindex",), script_dirs=(), **settings):
        self.docroot = str(docroot)
        self.plugins = list(plugins)
        self.script_dirs = dict.fromkeys(script_dirs)
        self._settings = {"cache_valid": 60.0, **settings}

    def get(self, name, default=None):
        return self._settings.get(name, default)


class CountingHelpers(InlineHelpers):
    """Inline helpers that note each call and whether one is running."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.inside = False

    def run(self, fn, *args):
        self.calls.append(fn.__name__)

        def marked(*a):
            self.inside = True
            try:
                return fn(*a)
            finally:
                self.inside = False
        return super().run(marked, *args)


def request(path, query="", method="GET", **headers):
    hdrs = Headers([(k.replace("_", "-"), v) for k, v in headers.items()])
    target = path + ("?" + query if query else "")
    return Request(method, target, path, path, query, "1.1", hdrs)


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "a.txt").write_text("a")
    (root / "dir" / "b.txt").write_text("bb")
    return root


def make(root, **settings):
    helpers = CountingHelpers()
    ai = H.Autoindex(H.Settings.from_config(FakeConfig(root, **settings)), helpers)
    return ai, helpers


def get(ai, root, path="/dir/", **kw):
    return run_sync(ai.handle(request(path, **kw), str(root) + path))


def test_listing_then_cache_hit_then_rescan_after_change(root):
    ai, helpers = make(root)
    r = get(ai, root)
    assert r.status == 200
    assert r.get_header("Content-Type") == "text/html; charset=utf-8"
    assert helpers.calls == ["scan", "_render"]
    helpers.calls.clear()
    assert get(ai, root).body == r.body
    assert helpers.calls == ["dir_mtime_ns"]       # one stat, no scan, no render
    helpers.calls.clear()
    (root / "dir" / "new.txt").write_text("new")
    os.utime(root / "dir", ns=(1, os.stat(root / "dir").st_mtime_ns + 10**9))
    r2 = get(ai, root)
    assert helpers.calls == ["dir_mtime_ns", "scan", "_render"]
    assert b"new.txt" in r2.body
    assert r2.get_header("ETag") != r.get_header("ETag")


def test_file_system_calls_happen_only_in_helpers(root, monkeypatch):
    (root / "dir" / "README.txt").write_text("notice")
    os.symlink(root / "dir" / "a.txt", root / "dir" / "link")
    ai, helpers = make(root, cache_valid=0.000001)
    seen = []
    for name in ("stat", "lstat", "scandir", "listdir", "open"):
        real = getattr(os, name)

        def guarded(*a, _real=real, _name=name, **kw):
            seen.append(_name)
            assert helpers.inside, f"os.{_name} called outside a helper"
            return _real(*a, **kw)
        monkeypatch.setattr(os, name, guarded)
    real_open = builtins.open

    def guarded_open(*a, **kw):
        seen.append("open")
        assert helpers.inside, "open() called outside a helper"
        return real_open(*a, **kw)
    monkeypatch.setattr(builtins, "open", guarded_open)
    get(ai, root)
    get(ai, root, if_none_match='"x"', query="format=json")
    assert {"scandir", "stat", "lstat", "open"} <= set(seen)


def test_old_cache_entry_is_rescanned_but_not_rerendered(root):
    ai, helpers = make(root, cache_valid=0.000001)
    get(ai, root)
    helpers.calls.clear()
    get(ai, root)
    # Too old to trust: scanned again; same digest, so the body is reused.
    assert helpers.calls == ["scan"]


def test_conditional_get(root):
    ai, helpers = make(root)
    r = get(ai, root)
    etag, lm = r.get_header("ETag"), r.get_header("Last-Modified")
    assert etag.startswith('"') and not etag.startswith('W/')
    d = root / "dir"
    newest = max(os.stat(p).st_mtime_ns for p in (d, d / "a.txt", d / "b.txt"))
    assert lm == format_http_date(newest // 10**9)
    helpers.calls.clear()
    r304 = get(ai, root, if_none_match=etag)
    assert r304.status == 304 and r304.body == b""
    assert r304.get_header("ETag") == etag
    assert "_render" not in helpers.calls
    assert get(ai, root, if_modified_since=lm).status == 304
    assert get(ai, root, if_none_match='"other"').status == 200
    with pytest.raises(HTTPError) as e:
        get(ai, root, if_match='"other"')
    assert e.value.status == 412


def test_etag_differs_per_view_and_head_gets_the_same_response(root):
    ai, _ = make(root)
    tags = {get(ai, root, query=q).get_header("ETag")
            for q in ("", "C=S;O=D", "format=json", "format=xml")}
    assert len(tags) == 4
    head = get(ai, root, method="HEAD")
    assert head.status == 200 and head.get_header("ETag") == get(ai, root).get_header("ETag")


def test_formats_by_query_and_accept(root):
    ai, _ = make(root)
    r = get(ai, root, query="format=json")
    assert r.get_header("Content-Type") == "application/json; charset=utf-8"
    assert [i["name"] for i in json.loads(r.body)] == ["a.txt", "b.txt"]
    r = get(ai, root, accept="application/xml")
    assert r.get_header("Content-Type") == "application/xml; charset=utf-8"
    assert r.get_header("Vary") == "Accept"
    r = get(ai, root, query="format=html", accept="application/json")
    assert r.get_header("Content-Type").startswith("text/html")


@pytest.mark.parametrize("kw, status", [
    ({"query": "format=yaml"}, 400),
    ({"method": "POST"}, 405),
])
def test_bad_requests(root, kw, status):
    ai, _ = make(root)
    with pytest.raises(HTTPError) as e:
        get(ai, root, **kw)
    assert e.value.status == status


def test_missing_directory_is_404(root):
    ai, _ = make(root)
    with pytest.raises(HTTPError) as e:
        get(ai, root, path="/gone/")
    assert e.value.status == 404


def test_script_folders_are_never_listed(root):
    # The kernel refuses them first; autoindex refuses them too.
    (root / "cgi-bin" / "deeper").mkdir(parents=True)
    (root / "scripts").mkdir()
    ai, _ = make(root, script_dirs=[f"{root}/cgi-bin", f"{root}/scripts"])
    for path in ("/cgi-bin/", "/cgi-bin/deeper/", "/scripts/"):
        with pytest.raises(HTTPError) as e:
            get(ai, root, path=path)
        assert e.value.status == 403
    assert get(ai, root).status == 200
    os.symlink(root / "scripts", root / "dir" / "alias")     # by another name: refused too
    with pytest.raises(HTTPError) as e:
        get(ai, root, path="/dir/alias/")
    assert e.value.status == 403


def test_settings_errors(root, tmp_path):
    with pytest.raises(UsageError, match=r"^--autoindex-template .*nope.html: No such file"):
        H.Settings.from_config(FakeConfig(root, autoindex_template=str(tmp_path / "nope.html")))
    bad = tmp_path / "bad.html"
    bad.write_text("line one\n{% for x in %}")
    with pytest.raises(UsageError, match=r"^--autoindex-template .*bad.html: does not compile: line 2"):
        H.Settings.from_config(FakeConfig(root, autoindex_template=str(bad)))
    typo = tmp_path / "typo.html"
    typo.write_text("{{ entriez }}")
    with pytest.raises(UsageError, match=r"fails to render: 'entriez' is undefined"):
        H.Settings.from_config(FakeConfig(root, autoindex_template=str(typo)))
    with pytest.raises(UsageError, match=r"^--autoindex-ignore 'a/b'"):
        H.Settings.from_config(FakeConfig(root, autoindex_ignore=["*.bak,a/b"]))


def test_ignore_patterns_from_flags_and_config():
    assert H.split_patterns(None) == ()
    assert H.split_patterns("*.bak, *~") == ("*.bak", "*~")
    assert H.split_patterns(["*.bak", "tmp,,x*"]) == ("*.bak", "tmp", "x*")


def test_user_template_is_used(root, tmp_path):
    t = tmp_path / "mine.html"
    t.write_text("MINE {{ path }} {% for e in entries %}[{{ e.name }} {{ e.size_text }}]{% endfor %}")
    ai, _ = make(root, autoindex_template=str(t), autoindex_exact_size=True)
    assert get(ai, root).body == b"MINE /dir/ [a.txt 1][b.txt 2]"


def test_hooks_end_to_end(root):
    """The module's hooks, as the kernel calls them."""
    import argparse
    parser = argparse.ArgumentParser()
    plugin.flashplug_addoption(parser)
    ns = parser.parse_args(["--autoindex-ignore", "b*", "--no-autoindex-dirs-first"])
    assert ns.autoindex_ignore == ["b*"] and ns.autoindex_dirs_first is False
    assert parser.parse_args([]).autoindex_dirs_first is True
    cfg = FakeConfig(root, **vars(ns))
    plugin.flashplug_configure(cfg)

    class App:
        helpers = InlineHelpers()
        config = cfg
    plugin.flashplug_startup(App())
    req = request("/dir/")
    req.server = App()     # as the kernel sets it: the site's config is there
    r = run_sync(plugin.flashplug_directory(req, str(root / "dir")))
    assert b"a.txt" in r.body and b"b.txt" not in r.body


def test_bounded_lru():
    c = BoundedLRU(max_items=2, max_weight=10)
    c.put("a", 1, 4)
    c.put("b", 2, 4)
    assert c.get("a") == 1          # a is now the most recent
    c.put("c", 3, 4)                # over both bounds: b goes
    assert "b" not in c and c.get("a") == 1 and c.get("c") == 3
    c.put("huge", 4, 11)            # heavier than the budget: not kept
    assert "huge" not in c and len(c) == 2
    c.put("a", 5, 9)                # replacing re-weighs; c must go
    assert c.get("a") == 5 and "c" not in c and c.weight == 9

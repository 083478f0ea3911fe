"""Sites without a network: names, the choice of a site, and what a worker
builds for them (one file cache keyed by root + path; script folders
refused alike by the sites that share a root)."""
import asyncio
import textwrap

import pytest

from flashplug.app import App
from flashplug.cli import build_serve
from flashplug.sites import SiteTable, check_name, configure_plugins


class Named:
    def __init__(self, *names):
        self.names = names


@pytest.mark.parametrize("name, checked", [
    ("Example.ORG", "example.org"), ("example.org.", "example.org"), ("*.Example.org", "*.example.org"),
    ("192.0.2.7", "192.0.2.7"), ("[2001:DB8::1]", "[2001:db8::1]"), ("localhost", "localhost"),
])
def test_names_are_checked_and_lowercased(name, checked):
    assert check_name(name) == checked


@pytest.mark.parametrize("name", ["", "*", "*.", "a.*.org", "*.*.org", "ex ample.org",
                                  "example.org:80", "exa/mple.org", 7])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError):
        check_name(name)


def test_a_bare_ipv6_name_is_refused_with_the_bracketed_form():
    with pytest.raises(ValueError, match=r"in brackets, \[2001:db8::1\]"):
        check_name("2001:DB8::1")
    with pytest.raises(ValueError, match="without a port"):
        check_name("a:b")


def test_exact_then_one_label_wildcard_then_default():
    table = SiteTable([(Named("example.org", "*.example.org"), "apex"),
                       (Named("www.example.org"), "www"),
                       (Named("*.dev.example.org"), "dev")], "default")
    assert table.choose("example.org") == "apex"
    assert table.choose("www.example.org") == "www"          # exact beats wildcard
    assert table.choose("shop.example.org") == "apex"
    assert table.choose("x.dev.example.org") == "dev"
    assert table.choose("a.b.example.org") == "default"      # one label only
    assert table.choose(".example.org") == "default"         # an empty label is none
    assert table.choose("example.net") == "default"
    assert table.choose("") == "default"
    assert sorted(table.all()) == ["apex", "default", "dev", "www"]


def test_raw_host_values_are_remembered_bounded():
    table = SiteTable([(Named("example.org"), "site")], "default")
    assert table.for_value(b"Example.org:8080") == "site"
    assert table.for_value(b"bad host") == "default"
    assert table.for_value(None) == "default"
    assert table.by_value.data[b"Example.org:8080"] == "site"
    for i in range(5000):
        table.for_value(b"h%d" % i)
    assert len(table.by_value) <= 1024


def test_sites_sharing_a_root_share_cache_entries_and_refusals(tmp_path):
    for name in ("top", "a", "b"):
        (tmp_path / name / "scripts").mkdir(parents=True)
    conf = tmp_path / "sites.toml"
    conf.write_text(textwrap.dedent("""\
        [[site]]
        names = ["a.test"]
        root = "a"
        [site.plugins]
        enable = ["cgi"]
        [site.plugins.cgi]
        dir = ["/scripts/"]
        [[site]]
        names = ["c.test"]
        root = "a"
        plugins = []
        [[site]]
        names = ["b.test"]
        root = "b"
        plugins = []
        """))
    config = build_serve([str(tmp_path / "top"), "--config", str(conf), "--arch", "sped",
                          "--access-log", "off", "--plugins", "none"])
    configure_plugins(config)
    loop = asyncio.new_event_loop()
    try:
        app = App(config, loop)
        a, c, b = (app.sites.choose(name) for name in ("a.test", "c.test", "b.test"))
        assert a.static.cache is c.static.cache is b.static.cache is app.static.cache
        assert a.static.key_prefix == c.static.key_prefix == str(tmp_path / "a")
        assert b.static.key_prefix == str(tmp_path / "b")
        # a runs /scripts/ with cgi; c shares the root, so it refuses them too
        # (else c could cache a script's source that a's cache then serves).
        script = str(tmp_path / "a" / "scripts" / "x.sh")
        assert a.static.scripts.holds(script) and c.static.scripts.holds(script)
        assert not b.static.scripts.holds(str(tmp_path / "b" / "scripts" / "x.sh"))
        assert a.router.prefixes and not c.router.prefixes
        assert app.default_site is app.sites.default and app.default_site.name == "-"
    finally:
        app.helpers.close()
        loop.close()


def test_each_site_has_its_policy_and_equal_policies_share_a_cache_tag(tmp_path):
    """A site inherits each policy key it does not set (c: all of them),
    replaces the ones it sets (a: its own [[header]] list, the top level's
    redirects kept), and sites whose rules and compress are the same share
    one compiled Rules and one cache-key tag (d: its own table, equal to
    the top level's); the top level's tag is "" (keys as without sites)."""
    for name in ("top", "shared"):
        (tmp_path / name).mkdir()
    conf = tmp_path / "sites.toml"
    conf.write_text(textwrap.dedent("""\
        error_pages = { 404 = "/404.html", 500 = "/500.html" }
        [[header]]
        match = "/*"
        cache_control = "no-cache"
        [[redirect]]
        from = "/old"
        to = "/new"
        [[site]]
        names = ["a.test"]
        root = "shared"
        compress = true
        error_pages = { 404 = "/a404.html" }
        [[site.header]]
        match = "*.css"
        cache_control = "max-age=60"
        [[site]]
        names = ["c.test"]
        root = "shared"
        [[site]]
        names = ["d.test"]
        root = "shared"
        [[site.header]]
        match = "/*"
        cache_control = "no-cache"
        [[site]]
        names = ["e.test"]
        root = "shared"
        compress = true
        """))
    config = build_serve([str(tmp_path / "top"), "--config", str(conf), "--arch", "sped",
                          "--access-log", "off", "--plugins", "none"])
    loop = asyncio.new_event_loop()
    try:
        app = App(config, loop)
        top = app.default_site
        a, c, d, e = (app.sites.choose(f"{n}.test") for n in "acde")
        assert dict(a.error_pages.pages) == {404: "/a404.html"}          # replaced, not merged
        assert dict(c.error_pages.pages) == dict(top.error_pages.pages) == {
            404: "/404.html", 500: "/500.html"}
        assert [r.source for r in a.rules.redirects] == ["/old"]        # inherited
        assert a.rules.entry_headers("/x.css")[0] == [("Cache-Control", "max-age=60")]
        assert a.rules.entry_headers("/x.html")[0] == []                 # not the top's
        assert c.rules is d.rules is top.rules
        assert a.config.compress and e.config.compress and not c.config.compress
        assert c.static.key_prefix == d.static.key_prefix == str(tmp_path / "shared")
        assert top.static.key_prefix == str(tmp_path / "top")
        assert a.static.key_prefix.endswith(str(tmp_path / "shared"))
        prefixes = {v.static.key_prefix for v in (a, c, e)}
        assert len(prefixes) == 3                                        # three policies
        assert a.static.compression.tag != e.static.compression.tag
    finally:
        app.helpers.close()
        loop.close()


def test_a_site_turns_an_inherited_key_off_by_setting_it_empty(tmp_path):
    (tmp_path / "top").mkdir()
    conf = tmp_path / "sites.toml"
    conf.write_text(textwrap.dedent("""\
        security_headers = true
        error_pages = { 404 = "/404.html" }
        compress = true
        [[header]]
        match = "/*"
        cache_control = "no-cache"
        [[site]]
        names = ["off.test"]
        root = "top"
        security_headers = false
        error_pages = {}
        header = []
        compress = false
        """))
    config = build_serve([str(tmp_path / "top"), "--config", str(conf), "--arch", "sped",
                          "--access-log", "off", "--plugins", "none"])
    (site,) = config.sites
    assert config.rules is not None and config.error_pages is not None and config.compress
    assert site.config.rules is None and site.config.error_pages is None
    assert not site.config.compress

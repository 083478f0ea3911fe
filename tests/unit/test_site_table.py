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
    assert table.by_value[b"Example.org:8080"] == "site"
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

"""status: the snapshot table, format choice and the three formats (pure)."""
import json
import os
import re
from types import SimpleNamespace

import pytest

from flashplug import UsageError
from flashplug.stats import Stats
from flashplug_plugins.status import render
from flashplug_plugins.status.handler import check_path
from flashplug_plugins.status.snapshot import FIELDS, Started, snapshot

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FakeConfig(dict):
    def get(self, name, default=None):
        return super().get(name, default)


def fake_server(stats=None, plugin_status=None):
    """A stand-in with the surface of flashplug.facade.Server the snapshot reads."""
    if stats is None:
        stats = Stats()
        stats.count_response(200, 100)
        stats.count_response(404, 10)
        stats.count_response(200, 5)
        stats.cache_hits, stats.cache_misses = 7, 2
    return SimpleNamespace(
        config=FakeConfig(arch="amped", workers=2), stats=stats,
        helpers=SimpleNamespace(size=32),
        connection_counts=lambda: (4, 1, 2, 1),
        cache_info=lambda: {"entries": 3, "max_entries": 100, "bytes": 4096,
                            "max_bytes": 1 << 20, "open_files": 1, "max_open_files": 4096},
        plugin_status=lambda: dict(plugin_status or {}))


STARTED = Started(wall=1_700_000_000.5, mono=0.0)


def test_snapshot_reads_stats_cache_and_connections():
    values = snapshot(fake_server(), STARTED)
    assert list(values)[:len(FIELDS)] == [f.name for f in FIELDS]
    assert values["pid"] == os.getpid()
    assert values["arch"] == "amped" and values["workers"] == 2 and values["helpers"] == 32
    assert values["start_time_seconds"] == 1_700_000_000
    assert values["requests"] == 3 and values["bytes_sent"] == 115
    assert values["status_counts"] == {200: 2, 404: 1}
    assert (values["cache_hits"], values["cache_misses"]) == (7, 2)
    assert (values["cache_entries"], values["cache_bytes"], values["cache_max_bytes"],
            values["cache_open_files"]) == (3, 4096, 1 << 20, 1)
    assert values["connections_active"] == 4
    assert (values["connections_reading"], values["connections_writing"],
            values["connections_waiting"]) == (1, 2, 1)


def test_a_new_stats_counter_shows_up_by_itself():
    server = fake_server(SimpleNamespace(as_dict=lambda: {"requests": 5, "widgets_made": 9,
                                                          "status_counts": {}}))
    values = snapshot(server, STARTED)
    assert values["requests"] == 5
    assert list(values)[-1] == "widgets_made" and values["widgets_made"] == 9
    assert "flashplug_widgets_made_total 9" in render.render_prometheus(values).decode()


@pytest.mark.parametrize("query, accept, fmt", [
    ("", None, "text"),
    ("", "*/*", "text"),
    ("", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text"),
    ("", "application/json", "json"),
    ("", "application/json, text/plain;q=0.5", "json"),
    ("", "text/plain, application/json", "text"),          # a tie goes to text
    ("", "application/*", "json"),
    ("", "application/json;q=0", "text"),
    ("format=json", "text/plain", "json"),                 # the query wins
    ("format=text", "application/json", "text"),
    ("format=prometheus", None, "prometheus"),
    ("auto", "application/json", "text"),                  # Apache's ?auto
    ("_=123", "application/json", "json"),                 # other keys are ignored
])
def test_choose_format(query, accept, fmt):
    assert render.choose_format(query, accept) == fmt


def test_unknown_format_is_refused_without_echoing_it():
    with pytest.raises(render.QueryError) as info:
        render.choose_format("format=<script>", None)
    assert "<script>" not in str(info.value)
    assert "text, json, prometheus" in str(info.value)


def test_text_is_one_name_value_per_line():
    values = snapshot(fake_server(), STARTED)
    lines = render.render_text(values).decode().splitlines()
    assert all(re.fullmatch(r"[a-z0-9_]+: \S+", line) for line in lines), lines
    assert "requests: 3" in lines and "status_200: 2" in lines and "status_404: 1" in lines
    assert "cache_max_bytes: 1048576" in lines


def test_json_has_the_same_names():
    values = snapshot(fake_server(), STARTED)
    data = json.loads(render.render_json(values))
    assert list(data) == list(values)
    assert data["status_counts"] == {"200": 2, "404": 1}
    assert data["pid"] == os.getpid()


def test_prometheus_exposition():
    text = render.render_prometheus(snapshot(fake_server(), STARTED)).decode()
    assert f'flashplug_info{{version="0.1.0",pid="{os.getpid()}",arch="amped"}} 1' in text
    assert "# TYPE flashplug_requests_total counter\nflashplug_requests_total 3" in text
    assert "# TYPE flashplug_connections_total counter" in text      # no _total_total
    assert 'flashplug_responses_total{code="404"} 1' in text
    assert "# TYPE flashplug_cache_bytes gauge\nflashplug_cache_bytes 4096" in text
    # Every sample line is NAME{LABELS} VALUE, every metric has HELP and TYPE once.
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert all(re.fullmatch(r'[a-z_]+(\{[^}]*\})? \d+', line) for line in samples), samples
    names = {re.match(r"[a-z_]+", line).group() for line in samples}
    for name in names:
        assert text.count(f"# TYPE {name} ") == 1 and text.count(f"# HELP {name} ") == 1


@pytest.mark.parametrize("given, path", [
    ("/server-status", "/server-status"),
    ("/server-status/", "/server-status"),
    ("/admin/status", "/admin/status"),
])
def test_good_paths(given, path):
    assert check_path(given) == path


@pytest.mark.parametrize("given", ["/", "", "server-status", "/a//b", "/a/../b", "/./s",
                                   "/a b", "/a%20b", "/s?x", "/s#x"])
def test_bad_paths(given):
    with pytest.raises(UsageError, match="--status-path"):
        check_path(given)


def test_every_field_is_documented():
    page = open(os.path.join(REPO, "docs", "status.md"), encoding="utf-8").read()
    for field in FIELDS:
        assert f"`{field.name}`" in page, f"docs/status.md does not describe {field.name}"


def test_plugin_tables_from_flashplug_status_in_every_format():
    rows = [{"backend": "fastcgi .php", "pid": "41", "state": "running", "requests": 7},
            {"backend": "fastcgi .php", "pid": "42", "state": "draining", "requests": 9}]
    server = fake_server(plugin_status={"fastcgi_processes": rows, "fastcgi_restarts": 2})
    values = snapshot(server, STARTED)
    assert list(values)[-2:] == ["fastcgi_processes", "fastcgi_restarts"]
    text = render.render_text(values).decode().splitlines()
    assert ("fastcgi_processes: backend=fastcgi .php pid=41 state=running requests=7"
            in text)
    assert json.loads(render.render_json(values))["fastcgi_processes"][1]["pid"] == "42"
    prom = render.render_prometheus(values).decode()
    assert ('flashplug_fastcgi_processes_requests{backend="fastcgi .php",pid="42",'
            'state="draining"} 9') in prom
    assert "# TYPE flashplug_fastcgi_processes_requests gauge" in prom
    assert "flashplug_fastcgi_restarts_total 2" in prom

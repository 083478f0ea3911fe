"""status against a real `flashplug serve --plugins status` process."""
import re
import subprocess
import sys

import pytest
import requests

BODY = b"twelve bytes"


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(BODY)
    (root / "server-status.html").write_text("a page of the site")
    return root


@pytest.fixture
def server(server_factory, site):
    return server_factory(site, "--plugins", "status")


def status(server, path="/server-status"):
    r = requests.get(server.url + path + "?format=json")
    assert r.status_code == 200, r.text
    return r.json()


def raw(server, head):
    """Send ``head`` as is on a fresh connection; the whole answer, split."""
    with server.connect() as s:
        s.sendall(head)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def test_counters_move_with_requests(server):
    before = status(server)
    for _ in range(2):
        assert requests.get(server.url + "/a.txt").content == BODY
    after = status(server)
    # The first fetch looks the file up on disk, the second is a cache hit.
    assert after["cache_misses"] - before["cache_misses"] == 1
    assert after["cache_hits"] - before["cache_hits"] == 1
    assert after["cache_entries"] >= 1 and after["cache_bytes"] >= len(BODY)
    # Two files and the first status page itself.
    assert after["requests"] - before["requests"] >= 2
    assert after["status_counts"]["200"] - before["status_counts"].get("200", 0) >= 2
    assert after["bytes_sent"] - before["bytes_sent"] >= 2 * len(BODY)
    assert after["connections_total"] - before["connections_total"] == 3


def test_json_describes_the_worker(server):
    data = status(server)
    # One worker: it is the process we started.
    assert data["pid"] == server.proc.pid
    assert data["workers"] == 1 and data["arch"] == "amped" and data["helpers"] == 32
    assert data["uptime_seconds"] >= 0 and data["start_time_seconds"] > 1_600_000_000
    assert data["cache_max_bytes"] == 64 << 20 and data["cache_max_entries"] == 10000
    # This request's connection is open and being answered.
    assert data["connections_active"] >= 1 and data["connections_writing"] >= 1


def test_text_is_the_default(server):
    r = requests.get(server.url + "/server-status")
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Vary"] == "Accept"
    lines = r.text.splitlines()
    assert all(re.fullmatch(r"[a-z0-9_]+: \S+", line) for line in lines), lines
    assert f"pid: {server.proc.pid}" in lines
    assert any(line.startswith("requests: ") for line in lines)


def test_accept_json(server):
    r = requests.get(server.url + "/server-status", headers={"Accept": "application/json"})
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["pid"] == server.proc.pid
    # A browser's Accept gets text.
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    r = requests.get(server.url + "/server-status", headers={"Accept": browser})
    assert r.headers["Content-Type"].startswith("text/plain")


def test_prometheus(server):
    r = requests.get(server.url + "/server-status?format=prometheus")
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE flashplug_requests_total counter" in r.text
    assert f'pid="{server.proc.pid}"' in r.text


def test_bad_format_is_400(server):
    assert requests.get(server.url + "/server-status?format=xml").status_code == 400


def test_idle_keepalive_connection_is_waiting(server):
    with server.connect() as idle:
        idle.sendall(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        got = b""
        while not got.endswith(BODY):
            got += idle.recv(65536)
        data = status(server)
        assert data["connections_active"] >= 2 and data["connections_waiting"] >= 1


def test_head(server):
    head, body = raw(server, b"HEAD /server-status HTTP/1.1\r\nHost: t\r\n"
                             b"Connection: close\r\n\r\n")
    assert head.startswith("HTTP/1.1 200 ")
    assert "Content-Type: text/plain; charset=utf-8" in head
    assert int(re.search(r"Content-Length: (\d+)", head).group(1)) > 0
    assert body == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_405(server, method):
    r = requests.request(method, server.url + "/server-status")
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"


def test_only_the_page_itself(server):
    assert requests.get(server.url + "/server-status/").status_code == 200
    assert requests.get(server.url + "/server-status/x").status_code == 404
    # A longer name is not the page: the site's own file is served.
    assert requests.get(server.url + "/server-status.html").text == "a page of the site"


def test_custom_path(server_factory, site):
    s = server_factory(site, "--plugins", "status", "--status-path", "/admin/stats/")
    assert requests.get(s.url + "/admin/stats?format=json").json()["pid"] == s.proc.pid
    assert requests.get(s.url + "/server-status").status_code == 404


def test_client_not_in_the_allow_list_is_403(server_factory, site):
    s = server_factory(site, "--plugins", "status", "--status-allow", "10.0.0.1")
    r = requests.get(s.url + "/server-status")
    assert r.status_code == 403
    assert "pid" not in r.text
    # Before any other answer: a stranger learns nothing about the page.
    assert requests.post(s.url + "/server-status").status_code == 403
    assert requests.get(s.url + "/server-status/x").status_code == 403
    # The rest of the site is not affected.
    assert requests.get(s.url + "/a.txt").content == BODY


def test_allow_list_naming_loopback(server_factory, site):
    s = server_factory(site, "--plugins", "status", "--status-allow", "10.0.0.0/8",
                       "--status-allow", "127.0.0.1")
    assert requests.get(s.url + "/server-status").status_code == 200


def test_config_file(server_factory, site, tmp_path):
    cfg = tmp_path / "flashplug.toml"
    cfg.write_text('[plugins]\nenable = ["status"]\n\n'
                   '[plugins.status]\npath = "/st"\nallow = ["local", "10.0.0.0/8"]\n')
    s = server_factory(site, "--config", cfg)
    assert requests.get(s.url + "/st").status_code == 200


def test_each_worker_answers_for_itself(server_factory, site):
    s = server_factory(site, "--plugins", "status", "--workers", "2")
    data = status(s)
    assert data["workers"] == 2
    # The master only supervises; a worker (its child) answers.
    assert data["pid"] != s.proc.pid


def test_not_enabled_means_no_page(server_factory, site):
    s = server_factory(site)
    assert requests.get(s.url + "/server-status").status_code == 404


@pytest.mark.parametrize("args, message", [
    (["--status-allow", "bogus"], "--status-allow 'bogus'"),
    (["--status-allow", "10.0.0.1/8"], "the network is 10.0.0.0/8"),
    (["--status-allow", ""], "--status-allow (allow in [plugins.status]) is empty"),
    (["--status-path", "/"], "--status-path '/'"),
    (["--status-path", ""], "--status-path ''"),
])
def test_bad_options_fail_fast(site, tmp_path, args, message):
    p = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(site), "--port", "0",
                        "--plugins", "status", *args],
                       capture_output=True, text=True, timeout=30, cwd=str(tmp_path))
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1

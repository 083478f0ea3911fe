"""SIGHUP reloads the configuration without losing a request (issue 15, item 5).

Under a master, SIGHUP loads the whole configuration again and replaces the
workers by a new generation on the same listening socket; the old ones stop
gracefully.  wrk (Debian's ``wrk``) keeps 16 keep-alive connections busy
while the configuration is changed and reloaded 20 times: not one request
may fail.  A configuration that does not load keeps the old workers, with
one line naming the file and the key; settings bound at start warn and keep.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest
import requests
from tests.waiting import wait_for

RELOADS = 20


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.txt").write_text("a" * 512)
    (root / "one.html").write_text("one\n")
    (root / "two.html").write_text("two\n")
    config = tmp_path / "site.toml"
    config.write_text('index = "one.html"\n')
    return root, config


def reloads_done(server):
    return server.log().count("configuration reloaded: ")


def reload(server, expect=None):
    """Send SIGHUP and wait for the master's line saying it is done."""
    before = reloads_done(server) if expect is None else expect - 1
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads_done(server) > before, timeout=30)


def worker_pids(master):
    with open(f"/proc/{master}/task/{master}/children") as f:
        return {int(p) for p in f.read().split()}


def test_reload_applies_the_new_configuration(site, server_factory):
    root, config = site
    server = server_factory(root, "--config", config, "--workers", "2", "--plugins", "none")
    assert requests.get(server.url + "/").text == "one\n"
    old = wait_for(lambda: (lambda p: p if len(p) == 2 else None)(worker_pids(server.proc.pid)))
    config.write_text('index = "two.html"\n')
    reload(server)
    for _ in range(6):                      # every new worker has it
        assert requests.get(server.url + "/").text == "two\n"
    wait_for(lambda: not worker_pids(server.proc.pid) & old)   # the old ones left
    assert len(worker_pids(server.proc.pid)) == 2


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_reload_under_load_loses_no_request(site, server_factory, tmp_path, scheme):
    """The figure in docs/deployment.md: wrk during 20 reloads, 0 errors
    (over HTTPS too: the new workers' certificates are loaded by the master)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    root, config = site
    tls, verify = [], True
    if scheme == "https":
        trustme = pytest.importorskip("trustme")
        from tests.tls_certs import write_pair
        (tmp_path / "certs").mkdir()
        ca = trustme.CA()
        cert, key = write_pair(ca, tmp_path / "certs", "localhost", "127.0.0.1")
        tls = ["--tls-cert", cert, "--tls-key", key]
        verify = str(tmp_path / "ca.pem")
        ca.cert_pem.write_to_path(verify)
    server = server_factory(root, "--config", config, "--workers", "2", "--plugins", "none",
                            "--access-log", "off", *tls)
    url = f"{scheme}://127.0.0.1:{server.port}/a.txt"
    assert requests.get(url, verify=verify).status_code == 200
    # wrk runs until interrupted, then prints its summary.
    load = subprocess.Popen([wrk, "-t2", "-c16", "-d120s", url],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1)
        for i in range(1, RELOADS + 1):
            config.write_text(f'index = "{"two" if i % 2 else "one"}.html"\n')
            reload(server, expect=i)
        time.sleep(0.5)
    finally:
        load.send_signal(signal.SIGINT)
        report = load.communicate(timeout=30)[0]
    assert reloads_done(server) == RELOADS
    requests_done = int(re.search(r"(\d+) requests in", report).group(1))
    assert requests_done > 0, report
    assert "Socket errors" not in report, report        # connect, read, write, timeout
    assert "Non-2xx" not in report, report
    assert requests.get(url.replace("a.txt", ""), verify=verify).text == "one\n"  # the 20th
    print(f"\n{RELOADS} reloads under wrk -t2 -c16 ({scheme}): {requests_done} requests, "
          f"0 errors")


def test_a_configuration_that_fails_keeps_the_old_workers(site, server_factory):
    root, config = site
    server = server_factory(root, "--config", config, "--workers", "2", "--plugins", "none")
    old = wait_for(lambda: (lambda p: p if len(p) == 2 else None)(worker_pids(server.proc.pid)))
    config.write_text('index = "two.html"\nkeepalive_timeout = "soon"\n')
    server.proc.send_signal(signal.SIGHUP)
    line = wait_for(lambda: [ln for ln in server.log().splitlines()
                             if "configuration not reloaded" in ln])
    assert line == [line[0]] and line[0].endswith(
        f"[ERROR] flashplug.supervisor: SIGHUP: configuration not reloaded, still serving "
        f"the old one: {config}:2: keepalive_timeout = 'soon': not a number of seconds: "
        f"'soon' (--keepalive-timeout)")
    assert requests.get(server.url + "/").text == "one\n"
    assert worker_pids(server.proc.pid) == old
    # Fixed, it loads.
    config.write_text('index = "two.html"\n')
    reload(server)
    assert requests.get(server.url + "/").text == "two\n"
    assert "Traceback" not in server.log()


def test_a_new_worker_that_cannot_start_keeps_the_old_ones(site, server_factory, tmp_path):
    """A plugin's start-up hook that fails in the new generation (say, its
    database is down): the reload is abandoned, the old workers serve on."""
    root, config = site
    plugs = tmp_path / "plugs"
    plugs.mkdir()
    started = tmp_path / "started"
    started.mkdir()
    (plugs / "gate.py").write_text(
        "import os\nfrom flashplug import hookimpl\n\n\n@hookimpl\n"
        "def flashplug_startup(app):\n"
        f"    if os.path.exists({str(tmp_path / 'closed')!r}):\n"
        "        raise RuntimeError('the database is down')\n"
        f"    open(os.path.join({str(started)!r}, str(os.getpid())), 'w').close()\n")
    server = server_factory(root, "--config", config, "--workers", "2",
                            "--plugins-dir", plugs, "--plugins", "gate")
    wait_for(lambda: len(os.listdir(started)) == 2)      # both started before the database went
    old = worker_pids(server.proc.pid)
    (tmp_path / "closed").touch()
    config.write_text('index = "two.html"\n')
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration not reloaded" in server.log())
    assert "a worker of the new configuration exited (plugin 'gate': RuntimeError: " \
           "the database is down" in server.log()
    assert requests.get(server.url + "/").text == "one\n"
    wait_for(lambda: worker_pids(server.proc.pid) == old)
    assert server.proc.poll() is None


def test_settings_bound_at_start_warn_and_keep(site, server_factory):
    root, config = site
    server = server_factory(root, "--config", config, "--master", "--plugins", "none")
    config.write_text('index = "two.html"\nbind = "127.0.0.2"\n')
    reload(server)
    assert "SIGHUP: --bind cannot change without a restart; keeping 127.0.0.1 " \
           "(asked for 127.0.0.2)" in server.log()
    assert requests.get(server.url + "/").text == "two\n"


def test_one_process_reloads_certificates_only_and_says_how(site, server_factory):
    root, config = site
    server = server_factory(root, "--config", config, "--plugins", "none")
    config.write_text('index = "two.html"\n')
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: configuration not reloaded: without a master process "
                     "(--master, or --workers 2 or more)" in server.log())
    assert requests.get(server.url + "/").text == "one\n"
    assert server.proc.poll() is None


def test_idle_keepalive_connection_is_closed_by_the_old_worker(site, server_factory):
    """An idle keep-alive connection of an old worker is closed, not kept
    until --keepalive-timeout."""
    root, config = site
    server = server_factory(root, "--config", config, "--master", "--plugins", "none",
                            "--keepalive-timeout", "60")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
        idle.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in idle.recv(65536)
        reload(server)
        idle.settimeout(5)
        assert idle.recv(100) == b""              # closed well before 60 s
    assert requests.get(server.url + "/").status_code == 200


@pytest.mark.parametrize("how", ["reload", "sigquit"])
def test_a_long_download_outlives_the_reload(site, server_factory, how):
    """The old worker finishes a response however long it takes (SIGQUIT,
    not --grace: that is for stopping the server), as nginx's old workers
    do; SIGQUIT to the master is the same stop for every worker."""
    root, config = site
    size = 24 << 20
    with open(root / "big.bin", "wb") as f:
        f.truncate(size)
    server = server_factory(root, "--config", config, "--workers", "2", "--plugins", "none",
                            "--grace", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        received = sock.recv(65536)
        if how == "reload":
            reload(server)
        else:
            server.proc.send_signal(signal.SIGQUIT)
        slow_until = time.monotonic() + 2.5        # well past --grace
        while chunk := sock.recv(65536):
            received += chunk
            if time.monotonic() < slow_until:
                time.sleep(0.02)
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"Connection: close" not in head      # it began before the reload
    assert len(body) == size
    if how == "sigquit":
        assert server.proc.wait(15) == 0

"""A real HAProxy in front of two flashplug servers (issue 15, item 6).

The haproxy.cfg and the flashplug command line are taken from
docs/deployment.md ("Behind a load balancer"), with loopback addresses and
free ports put in, so the page shows what this test runs.  HAProxy sends
PROXY protocol v2 and checks --health-path; the client connects from
127.0.0.2 and HAProxy from 127.0.0.1, so the access logs tell the two
apart.  Then both servers are restarted in turn (SIGTERM, wait for the
exit, start again, wait until HAProxy sends it traffic) under a steady
load, and not one request may fail.
"""
import http.client
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CLIENT = "127.0.0.2"          # the client's own address, as the servers must log it
BODY = b"served through haproxy\n"

pytestmark = pytest.mark.skipif(not os.path.exists(HAPROXY),
                                reason="needs haproxy (apt-get install haproxy)")


def doc_section():
    with open(os.path.join(REPO, "docs", "deployment.md"), encoding="utf-8") as f:
        page = f.read()
    return page.split("## Behind a load balancer", 1)[1].split("\n## ", 1)[0]


def haproxy_cfg(front, ports):
    """The page's haproxy.cfg, listening on 127.0.0.1:``front``, its two
    servers moved to ``ports``, and without its safety net (``retries``,
    ``option redispatch``): a request sent to a server that has already
    closed its listener would be a failure, so the drain alone must do."""
    cfg = re.search(r"```haproxy\n(.*?)```", doc_section(), re.S).group(1)
    for old, new in (("bind :80", f"bind 127.0.0.1:{front}"),
                     ("127.0.0.1:8081", f"127.0.0.1:{ports[0]}"),
                     ("127.0.0.1:8082", f"127.0.0.1:{ports[1]}"),
                     ("    retries 3\n", "    retries 0\n"),
                     ("    option redispatch\n", "")):
        assert cfg.count(old) == 1, old
        cfg = cfg.replace(old, new)
    return cfg


def serve_argv(docroot, port, access_log):
    """The page's flashplug command line for a server on ``port``."""
    line = re.search(r"```sh\n(flashplug serve .*?)\n```", doc_section(), re.S).group(1)
    argv = shlex.split(line)
    assert argv[2] == "/srv/www" and argv[argv.index("--port") + 1] == "8081"
    argv[argv.index("--port") + 1] = str(port)
    return [sys.executable, "-m", "flashplug", "serve", str(docroot), *argv[3:],
            "--access-log", str(access_log)]


class Server:
    """One flashplug server, restartable on its port."""

    def __init__(self, docroot, port, tmp_path, name):
        self.docroot, self.port, self.tmp_path, self.name = docroot, port, tmp_path, name
        self.runs = 0
        self.proc = None

    def start(self):
        self.runs += 1
        self.access_log = self.tmp_path / f"{self.name}-{self.runs}.access.log"
        out = open(self.tmp_path / f"{self.name}-{self.runs}.out", "wb")
        self.proc = subprocess.Popen(serve_argv(self.docroot, self.port, self.access_log),
                                     stdout=out, stderr=subprocess.STDOUT,
                                     cwd=str(self.tmp_path))
        out.close()
        deadline = time.monotonic() + 15
        while True:
            assert self.proc.poll() is None, self.output()
            try:
                # Connected and closed without a PROXY header: dropped quietly.
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert time.monotonic() < deadline, self.output()
                time.sleep(0.05)

    def output(self):
        return (self.tmp_path / f"{self.name}-{self.runs}.out").read_text(errors="replace")

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def clients(self):
        """(client, target) of each whole line of this run's access log.

        The server may be writing as we read, and a reader can see a write
        cut at a page boundary: a last line without its newline is not
        complete yet, so it is left for the next look."""
        if not self.access_log.exists():
            return []
        whole = self.access_log.read_text().split("\n")[:-1]
        return [(line.split()[0], line.split('"')[1].split()[1]) for line in whole]


def wait_until(predicate, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def _accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Load:
    """Client threads sending GETs through HAProxy on keep-alive
    connections from CLIENT, counting answers and failures."""

    def __init__(self, port, threads=3):
        self.port = port
        self.ok = 0
        self.failures = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join(30)

    def _run(self):
        conn = None
        while not self.stopping.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                                  source_address=(CLIENT, 0))
            try:
                conn.request("GET", "/a.txt")
                response = conn.getresponse()
                body = response.read()
                good = response.status == 200 and body == BODY
                why = f"{response.status} {body[:60]!r}"
            except (OSError, http.client.HTTPException) as e:
                good, why = False, repr(e)
                conn.close()
                conn = None
            with self.lock:
                if good:
                    self.ok += 1
                else:
                    self.failures.append(why)


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.txt").write_bytes(BODY)
    return root


def test_rolling_restart_behind_haproxy(site, tmp_path):
    front, p1, p2 = free_port(), free_port(), free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy_cfg(front, (p1, p2)))
    check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    servers = [Server(site, p1, tmp_path, "web1"), Server(site, p2, tmp_path, "web2")]
    haproxy = None
    try:
        for s in servers:
            s.start()
        haproxy_out = open(tmp_path / "haproxy.out", "wb")
        haproxy = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=haproxy_out,
                                   stderr=subprocess.STDOUT)
        haproxy_out.close()
        wait_until(lambda: _accepts(front), "haproxy listens")
        with Load(front) as load:
            # Both servers up and getting the client's requests.
            for s in servers:
                wait_until(lambda s=s: {t for _, t in s.clients()} >= {"/a.txt", "/healthz"},
                           f"{s.name} is checked and serves requests through haproxy")
            # The PROXY header named the client: HAProxy (127.0.0.1) appears
            # only for its own health checks, which name no client (LOCAL).
            for s in servers:
                lines = s.clients()
                assert {c for c, t in lines if t != "/healthz"} == {CLIENT}
                assert {c for c, t in lines if t == "/healthz"} == {"127.0.0.1"}
            for s in servers:
                assert s.stop() == 0, s.output()
                assert "--shutdown-delay" in s.output()
                s.start()
                wait_until(lambda s=s: any(c == CLIENT for c, _ in s.clients()),
                           f"{s.name} is back in haproxy's rotation")
        served = load.ok + len(load.failures)
        print(f"\nrolling restart behind haproxy: {served} requests, "
              f"{len(load.failures)} failed {load.failures[:3]}")
        # Each server left the rotation by its failing health check (the
        # drain), not by a refused connection.
        for s in servers:
            assert f"Server flashplug/{s.name} is DOWN, reason: Layer7 wrong status, " \
                f"code: 503" in (tmp_path / "haproxy.out").read_text()
        assert served > 100
        assert load.failures == []
    finally:
        if haproxy is not None:
            haproxy.terminate()
            haproxy.wait(10)
        for s in servers:
            if s.proc is not None and s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()

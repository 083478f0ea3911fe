"""--workers: a master with worker processes sharing the port."""
import os
import signal

import requests
from tests.waiting import wait_for


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


def test_workers_share_the_port_and_a_dead_worker_is_replaced(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("hello")
    server = server_factory(root, "--workers", "2")
    workers = wait_for(lambda: children(server.proc.pid) if len(children(server.proc.pid)) == 2 else None)
    for _ in range(10):
        assert requests.get(server.url + "/a.txt").text == "hello"

    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(lambda: (lambda now: now if len(now) == 2 and victim not in now else None)(
        children(server.proc.pid)))
    assert victim not in replaced
    for _ in range(10):
        assert requests.get(server.url + "/a.txt").text == "hello"
    assert "starting a new one" in server.log()


def test_workers_stop_gracefully_on_sigterm(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    server = server_factory(root, "--workers", "2")
    workers = wait_for(lambda: children(server.proc.pid) if len(children(server.proc.pid)) == 2 else None)
    assert server.stop(signal.SIGTERM) == 0
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}/status") or "zombie" in open(f"/proc/{pid}/status").read()


def test_workers_die_with_a_killed_master(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    server = server_factory(root, "--workers", "2")
    workers = wait_for(lambda: children(server.proc.pid) if len(children(server.proc.pid)) == 2 else None)
    server.proc.kill()
    server.proc.wait()

    def gone(pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                return "(zombie)" in f.read()
        except FileNotFoundError:
            return True
    assert wait_for(lambda: all(gone(pid) for pid in workers))


def test_a_stop_during_start_up_stops_every_worker(tmp_path):
    """SIGTERM while the master is still forking: no child runs the
    master's handler, no child is started after the stop, the master exits 0."""
    import subprocess
    import sys
    from conftest import free_port
    root = tmp_path / "root"
    root.mkdir()
    for attempt in range(5):
        log = tmp_path / f"serve-{attempt}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "flashplug", "serve", str(root), "--port",
                                     str(free_port()), "--workers", "16"], stdout=out, stderr=out)
        try:
            # "Serving" is printed just before the master starts forking;
            # a child seen after it is a worker (not some library's helper).
            wait_for(lambda: b"Serving" in log.read_bytes() and children(proc.pid), timeout=15)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

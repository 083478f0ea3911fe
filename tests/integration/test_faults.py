"""Fault injection (issue #13, "the suite", part 5): each fault, what the
client sees, and that the server keeps serving and leaks nothing.

Covered elsewhere and listed in docs/reliability.md: EMFILE at accept
(test_connection_defects.py), a worker killed with SIGKILL
(test_workers.py), a file truncated while it is sent (test_truncation.py).
"""
import hashlib
import os
import socket
import struct
import time

import requests

from procfs import zombies_of
from test_amped_discipline import get, serve_in_process
from test_cgi import pid_alive, script, wait_dead, wait_file


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_a_helper_that_raises_is_a_500_and_the_server_goes_on(tmp_path, monkeypatch):
    import flashplug.static as static
    root = tmp_path / "root"
    root.mkdir()
    (root / "boom.txt").write_text("never")
    (root / "fine.txt").write_text("fine")
    real = static.resolve

    def failing(docroot, real_root, path, *rest):
        if path == "/boom.txt":
            raise RuntimeError("the disk caught fire")
        return real(docroot, real_root, path, *rest)
    monkeypatch.setattr(static, "resolve", failing)

    def client(port, app):
        return [get(port, b"/boom.txt")[0], get(port, b"/fine.txt")[0], get(port, b"/boom.txt")[0]]

    assert serve_in_process(root, client) == [500, 200, 500]


def read_response_slowly(port, target, first_wait):
    """GET ``target``; read a little, wait ``first_wait`` s (the test acts
    then), then read the rest.  The body's bytes."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    s.connect(("127.0.0.1", port))
    s.settimeout(10)
    s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = s.recv(4096)
    first_wait()
    while chunk := s.recv(1 << 16):
        data += chunk
    s.close()
    return data.split(b"\r\n\r\n", 1)[1]


def test_a_file_deleted_or_replaced_while_it_is_sent(server_factory, tmp_path):
    """The response that began goes on with the file it began with (its
    descriptor is open); the next request, after --cache-valid, sees the
    change: 404 for a deleted file, the new bytes for a replaced one."""
    root = tmp_path / "root"
    root.mkdir()
    old = os.urandom(6 * 1024 * 1024)
    (root / "gone.bin").write_bytes(old)
    (root / "swap.bin").write_bytes(old)
    srv = server_factory(root, "--cache-valid", "0.2", "--access-log", "off")

    body = read_response_slowly(srv.port, b"/gone.bin", lambda: os.unlink(root / "gone.bin"))
    assert hashlib.sha256(body).digest() == hashlib.sha256(old).digest()
    time.sleep(0.5)
    assert requests.get(srv.url + "/gone.bin").status_code == 404

    new = os.urandom(1000)

    def replace():
        (root / "swap.tmp").write_bytes(new)
        os.replace(root / "swap.tmp", root / "swap.bin")
    body = read_response_slowly(srv.port, b"/swap.bin", replace)
    assert hashlib.sha256(body).digest() == hashlib.sha256(old).digest()
    time.sleep(0.5)
    assert requests.get(srv.url + "/swap.bin").content == new


def test_200_resets_in_the_middle_of_a_response_leak_nothing(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(20 * 1024 * 1024))
    (root / "small.txt").write_text("ok")
    srv = server_factory(root, "--access-log", "off")
    pid = srv.proc.pid

    def reset_mid_download():
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        assert s.recv(65536)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()                                     # a reset, mid-body

    for _ in range(20):                               # warm-up: caches, helpers
        reset_mid_download()
    time.sleep(0.5)
    fds, rss = open_fds(pid), rss_kib(pid)
    for _ in range(200):
        reset_mid_download()
    deadline = time.monotonic() + 5
    while open_fds(pid) > fds and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_fds(pid) <= fds, "descriptors leaked by reset connections"
    assert rss_kib(pid) < rss + 8 * 1024, "memory grew by more than 8 MiB over 200 resets"
    assert requests.get(srv.url + "/small.txt").text == "ok"


def test_a_grandchild_holding_stdout_open_does_not_hold_the_response(server_factory, tmp_path):
    """The script answers and exits, but a background child keeps its
    stdout, so no EOF comes.  The script's exit ends the response (whole,
    long before --cgi-timeout would) and the group, grandchild included,
    is killed."""
    root = tmp_path / "root"
    (root / "cgi-bin").mkdir(parents=True)
    pids = tmp_path / "pids"
    script(root / "cgi-bin", "linger.sh", f"""
        #!/bin/sh
        printf 'Content-Type: text/plain\\n\\nanswered\\n'
        sleep 60 &
        echo $! > {pids}
        exit 0
        """)
    srv = server_factory(root, "--plugins", "cgi", "--cgi-timeout", "30", "--access-log", "off")
    started = time.monotonic()
    r = requests.get(srv.url + "/cgi-bin/linger.sh", timeout=20)
    assert r.status_code == 200 and r.text == "answered\n"
    assert time.monotonic() - started < 15
    assert wait_dead([int(p) for p in wait_file(pids)])
    assert zombies_of(srv.proc.pid) == []


def test_a_forking_script_is_bounded_by_the_timeout_and_the_group(server_factory, tmp_path):
    """A script that forks 40 children that fork again (80 processes): at the timeout
    every process of its group is gone, and other requests were answered
    meanwhile.  (A hard bound on processes is the service manager's: see
    TasksMax= in docs/deployment.md.)"""
    root = tmp_path / "root"
    (root / "cgi-bin").mkdir(parents=True)
    (root / "ok.txt").write_text("ok")
    pids = tmp_path / "pids"
    script(root / "cgi-bin", "forks.sh", f"""
        #!/bin/sh
        i=0
        while [ $i -lt 40 ]; do
            (sleep 60 & echo $! >> {pids}; sleep 60) &
            echo $! >> {pids}
            i=$((i + 1))
        done
        wait
        """)
    srv = server_factory(root, "--plugins", "cgi", "--cgi-timeout", "1.5", "--access-log", "off")
    started = time.monotonic()
    r = requests.get(srv.url + "/cgi-bin/forks.sh", timeout=15)
    assert r.status_code == 504 and time.monotonic() - started < 10
    assert requests.get(srv.url + "/ok.txt").text == "ok"
    children = [int(p) for p in wait_file(pids)]
    assert len(children) >= 40
    assert wait_dead(children)
    assert not any(pid_alive(p) for p in children)
    assert zombies_of(srv.proc.pid) == []

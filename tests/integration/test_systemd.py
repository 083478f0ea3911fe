"""systemd socket activation and sd_notify (issue 15, item 5).

A fake systemd (tests/fake_systemd.py) passes a listening socket at
descriptor 3 with LISTEN_FDS and reads the NOTIFY_SOCKET datagrams, with the
pid of each sender: READY=1 once the workers accept, RELOADING=1 with
MONOTONIC_USEC around a SIGHUP reload and READY=1 after it, STOPPING=1 on
SIGTERM, all from the main process (NotifyAccess=main).
"""
import os
import signal
import socket
import sys
import time

import pytest
import requests

from tests.fake_systemd import Notifications, listening_socket, start


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.txt").write_text("aaa\n")
    return root


@pytest.fixture
def run(tmp_path):
    """Start flashplug as systemd would; stop it at the end."""
    started = []

    def run_(*args, sockets=(), names=None, notify=None, env=None):
        log = open(tmp_path / f"server-{len(started)}.log", "wb")
        proc = start([sys.executable, "-m", "flashplug", "serve", *map(str, args)],
                     sockets, names, notify, stdout=log, env=env)
        log.close()
        proc.log = lambda: open(log.name, errors="replace").read()
        started.append(proc)
        return proc
    yield run_
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except Exception:  # noqa: BLE001
                proc.kill()


def url(sock, path="/a.txt"):
    return f"http://127.0.0.1:{sock.getsockname()[1]}{path}"


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
@pytest.mark.parametrize("workers", ["2", "1"])
def test_socket_activation_and_notify(root, tmp_path, run, workers, abstract):
    sock = listening_socket()
    notify = Notifications(tmp_path, abstract=abstract)
    # --port 1 would need root and is in use by nobody: the inherited socket
    # is served, not --bind/--port.
    proc = run(root, "--workers", workers, "--port", "1", "--plugins", "none",
               sockets=[sock], notify=notify)
    pid, fields = notify.wait_for("READY=1")
    assert pid == proc.pid
    assert fields["STATUS"].startswith("serving")
    assert requests.get(url(sock)).text == "aaa\n"

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    proc.send_signal(signal.SIGHUP)
    pid, fields = notify.wait_for("RELOADING=1")
    assert pid == proc.pid
    assert before <= int(fields["MONOTONIC_USEC"]) <= \
        time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    pid, fields = notify.wait_for("READY=1")
    assert pid == proc.pid
    assert requests.get(url(sock)).text == "aaa\n"

    proc.send_signal(signal.SIGTERM)
    pid, fields = notify.wait_for("STOPPING=1")
    assert pid == proc.pid
    assert proc.wait(15) == 0
    # Only the main process spoke (systemd drops the others' messages).
    assert all(sender == proc.pid for sender, _ in notify.received)
    assert "serving on the socket systemd passed (LISTEN_FDS)" in proc.log()
    notify.close()


def test_a_failed_reload_is_still_ready(root, tmp_path, run):
    """systemctl reload waits for READY=1 after RELOADING=1, also when the
    new configuration does not load; STATUS says why."""
    config = tmp_path / "site.toml"
    config.write_text('index = "a.txt"\n')
    sock = listening_socket()
    notify = Notifications(tmp_path)
    proc = run(root, "--config", config, "--master", "--plugins", "none",
               sockets=[sock], notify=notify)
    notify.wait_for("READY=1")
    config.write_text('index = "a.txt"\ngrace = -1\n')
    proc.send_signal(signal.SIGHUP)
    notify.wait_for("RELOADING=1")
    _, fields = notify.wait_for("READY=1")
    assert fields["STATUS"].startswith(f"reload failed, serving the old configuration: "
                                       f"{config}:2: grace = -1:")
    assert requests.get(url(sock, "/")).text == "aaa\n"


def test_the_socket_survives_a_restart(root, tmp_path, run):
    """The point of socket activation: the socket is systemd's, so a
    connection made while the service restarts waits in the backlog."""
    sock = listening_socket()
    first = run(root, "--plugins", "none", sockets=[sock])
    assert requests.get(url(sock)).text == "aaa\n"
    first.send_signal(signal.SIGTERM)
    assert first.wait(15) == 0
    waiting = socket.create_connection(sock.getsockname(), timeout=20)   # nobody serves yet
    waiting.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    run(root, "--plugins", "none", sockets=[sock])
    answer = b""
    while chunk := waiting.recv(4096):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"aaa\n")


def test_named_redirect_socket(root, tmp_path, run):
    """LISTEN_FDNAMES: the socket named 'redirect' is --redirect-http's."""
    trustme = pytest.importorskip("trustme")
    from tests.tls_certs import write_pair
    (tmp_path / "certs").mkdir()
    cert, key = write_pair(trustme.CA(), tmp_path / "certs", "localhost", "127.0.0.1")
    https, plain = listening_socket(), listening_socket()
    proc = run(root, "--plugins", "none", "--tls-cert", cert, "--tls-key", key,
               "--redirect-http", "1", sockets=[plain, https], names=["redirect", "https"])
    deadline = time.monotonic() + 15
    while True:
        try:
            r = requests.get(url(plain), allow_redirects=False, timeout=5)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline and proc.poll() is None, proc.log()
            time.sleep(0.1)
    assert r.status_code == 308
    assert proc.poll() is None


def one_line_exit(proc):
    assert proc.wait(15) == 2
    out = proc.log()
    assert out.count("\n") == 1 and "Traceback" not in out, out
    return out


def test_a_datagram_socket_is_refused_in_one_line(root, run):
    dgram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dgram.bind(("127.0.0.1", 0))
    out = one_line_exit(run(root, sockets=[dgram]))
    assert out == ("flashplug: error: LISTEN_FDS: descriptor 3 (unknown) is not a listening "
                   "stream socket; use ListenStream= and Accept=no in the .socket unit\n")


def test_two_sockets_without_names_are_refused_in_one_line(root, run):
    out = one_line_exit(run(root, sockets=[listening_socket(), listening_socket()],
                            names=["web", "other"]))
    assert out.startswith("flashplug: error: LISTEN_FDS: 2 sockets passed (web, other); "
                          "flashplug serves on one")


def test_listen_fds_for_another_process_is_ignored(root, run, server_factory):
    """LISTEN_PID names another process (a shell that did not exec): the
    variables are not ours, so the server binds --port as usual, and does
    not pass them on."""
    server = server_factory(root, "--plugins", "none",
                            env=dict(os.environ, LISTEN_FDS="1", LISTEN_PID="1"))
    assert requests.get(server.url + "/a.txt").text == "aaa\n"

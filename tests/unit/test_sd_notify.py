"""flashplug.systemd in-process: the environment is taken once and removed,
RELOADING=1 waits for READY=1, and nothing is sent outside systemd."""
import logging
import os
import socket
import time

import pytest

from flashplug import systemd


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    for name in ("_notify_address", "_ready"):
        monkeypatch.setattr(systemd, name, getattr(systemd, name))
    monkeypatch.setattr(systemd, "_inherited", [])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(0.2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))    # another process's
    systemd.take_environment()
    yield sock
    sock.close()


def messages(sock):
    got = []
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except socket.timeout:
            return got


def test_the_variables_are_taken_and_removed(notify_socket):
    assert not {"NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID"} & set(os.environ)
    assert systemd.inherited_listeners() == (None, None)   # LISTEN_PID was not ours


def test_reloading_is_sent_only_after_ready(notify_socket):
    systemd.reloading()                      # a SIGHUP during start-up
    assert messages(notify_socket) == []
    systemd.ready("serving")
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    systemd.reloading()
    ready, reloading = messages(notify_socket)
    assert ready == "READY=1\nSTATUS=serving"
    fields = dict(line.split("=", 1) for line in reloading.splitlines())
    assert fields["RELOADING"] == "1" and int(fields["MONOTONIC_USEC"]) >= before


def test_a_forked_worker_says_nothing(notify_socket):
    systemd.forget()
    systemd.notify("STOPPING=1")
    assert messages(notify_socket) == []


def test_a_vanished_socket_is_a_warning_not_a_failure(notify_socket, tmp_path, caplog):
    os.unlink(tmp_path / "notify")
    # The flashplug tree may not propagate (setup_error_log): listen on it.
    logging.getLogger("flashplug.systemd").addHandler(caplog.handler)
    try:
        systemd.notify("STOPPING=1")
    finally:
        logging.getLogger("flashplug.systemd").removeHandler(caplog.handler)
    assert "cannot notify systemd at NOTIFY_SOCKET" in caplog.text

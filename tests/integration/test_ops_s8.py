"""Operating a small public site (session 8): signals, reloads and the
status page under the kinds of traffic nginx/lighttpd/Caddy operators run.

Each test here is a defect found by driving a real server the way an
operator does (SIGHUP after editing the file, SIGUSR1 after logrotate,
SIGKILL of a worker) and failed before its fix.
"""
import datetime
import os
import shutil
import signal
import socket
import ssl

import pytest
import requests
from tests.waiting import wait_for

trustme = pytest.importorskip("trustme", reason="pip install trustme (the test extra)")

needs_php_cgi = pytest.mark.skipif(shutil.which("php-cgi") is None,
                                   reason="php-cgi is not installed (apt-get install php-cgi)")


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {int(p) for p in f.read().split()}
    except OSError:
        return set()


def program(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return os.path.basename(f.read().split(b"\0")[0]).decode()
    except OSError:
        return ""


def reload(server):
    """SIGHUP, then wait for the master's line saying the reload is done."""
    before = server.log().count("configuration reloaded: ")
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: server.log().count("configuration reloaded: ") > before,
             what="the reload")


@needs_php_cgi
def test_reloads_do_not_multiply_backends_and_upstreams(server_factory, tmp_path):
    """Each SIGHUP re-ran the plugins' configure hooks in the master, whose
    module state kept the last configuration's backends: after 3 reloads
    every new worker spawned 4 sets of php-cgi processes and the status
    page listed each upstream 4 times.  nginx and lighttpd start each
    reload from the new file alone."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.php").write_text('<?php echo "php ok";')
    server = server_factory(
        root, "--workers", "2", "--plugins", "status",
        "--fastcgi", f".php=spawn:{shutil.which('php-cgi')}", "--fastcgi-procs", "1",
        "--proxy", "/up/=http://127.0.0.1:9")
    for _ in range(3):
        reload(server)
    workers = wait_for(lambda: (lambda now: now if len(now) == 2 else None)(
        children(server.proc.pid)), what="two workers")
    for _ in range(4):       # each worker answers for itself: ask a few times
        assert requests.get(server.url + "/a.php").text == "php ok"
        page = requests.get(server.url + "/server-status?format=json").json()
        assert len(page["fastcgi_backends"]) == 1, page["fastcgi_backends"]
        assert len(page["fastcgi_processes"]) == 1, page["fastcgi_processes"]
        assert len(page["proxy_upstreams"]) == 1, page["proxy_upstreams"]
    php = [pid for w in workers for pid in children(w) if program(pid) == "php-cgi"]
    assert len(php) == 2, php


def served_by(server):
    """The pid of the worker that answered a new connection (the status
    page is each worker's own)."""
    return requests.get(server.url + "/server-status?format=json",
                        headers={"Connection": "close"}).json()["pid"]


def test_workers_killed_after_they_served_are_always_replaced(server_factory, tmp_path):
    """Six workers SIGKILLed within 10 s, each after it had served (the OOM
    killer, an operator): the master took them for start-up failures and
    stopped the whole site ("workers keep dying at start-up ... giving
    up").  nginx's master respawns a worker that dies however often; only
    a worker that never accepts is a start-up failure."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.txt").write_text("hello")
    server = server_factory(root, "--workers", "2", "--plugins", "status")
    for _ in range(6):
        old = wait_for(lambda: (lambda now: now if len(now) == 2 else None)(
            children(server.proc.pid)), what="two workers")
        victim = served_by(server)
        os.kill(victim, signal.SIGKILL)
        # The replacement serves (it accepted) before the next kill.
        wait_for(lambda: served_by(server) not in old, what="the replacement serving")
    assert server.proc.poll() is None, server.log()
    assert "giving up" not in server.log()
    assert server.log().count("killed by SIGKILL); starting a new one") == 6


def test_an_expired_certificate_is_served_with_a_warning(server_factory, tmp_path):
    """An expired certificate was served without a word: every browser
    refused the site while the log said nothing.  Now one warning line at
    start and at each reload (nginx says nothing; Caddy renews)."""
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", not_before=datetime.datetime(2020, 1, 1),
                         not_after=datetime.datetime(2021, 1, 1))
    cert, key = tmp_path / "old.pem", tmp_path / "old.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    os.chmod(key, 0o600)
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.txt").write_text("hello")
    server = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    line = f"--tls-cert {cert}: the certificate expired on Jan  1 00:00:00 2021 GMT"
    assert line in server.log()
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        ctx = ssl.create_default_context()     # what a browser does with it aside
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert tls.recv(100).startswith(b"HTTP/1.1 200")
    server.proc.send_signal(signal.SIGHUP)    # one process: the certificates reload
    wait_for(lambda: server.log().count(line) == 2, what="the warning at reload")

"""The paper's four architectures serve the same bytes from the same code."""
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "small.txt").write_text("small file\n")
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    (root / "dir" / "index.html").write_text("<p>index</p>")
    return root


@pytest.mark.parametrize("arch", ["amped", "sped", "mt", "mp"])
def test_every_architecture_serves_the_same(site, server_factory, arch):
    server = server_factory(site, "--arch", arch, "--procs", "4", "--access-log", "off")
    big = (site / "big.bin").read_bytes()

    def fetch(i):
        r = requests.get(server.url + "/big.bin", headers={"Range": f"bytes={i}-{i + 99999}"}
                         if i % 2 else {})
        want = big[i:i + 100000] if i % 2 else big
        return r.status_code in (200, 206) and hashlib.sha256(r.content).digest() == \
            hashlib.sha256(want).digest()

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(fetch, range(32)))
    r = requests.get(server.url + "/small.txt")
    assert r.text == "small file\n" and r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert requests.get(server.url + "/small.txt",
                        headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    assert requests.get(server.url + "/dir/").text == "<p>index</p>"
    r = requests.get(server.url + "/dir", allow_redirects=False)
    assert r.status_code == 301 and r.headers["Location"] == "/dir/"
    assert requests.get(server.url + "/nope").status_code == 404
    # A graceful stop may take up to --grace (10 s) on a loaded machine.
    assert server.stop(signal.SIGTERM, timeout=30) == 0


@pytest.mark.parametrize("arch", ["mt", "mp"])
def test_blocking_architectures_refuse_plugins(site, arch):
    result = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(site), "--port", "0",
                             "--arch", arch, "--plugins", "autoindex"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "static files only" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("arch", ["mt", "mp"])
def test_blocking_architectures_wait_for_a_slow_reader(site, server_factory, arch):
    # Their sockets have a timeout, which makes them non-blocking underneath:
    # a full socket must be waited for, not taken for a failure.
    big = os.urandom(24 << 20)                        # more than the socket buffers hold
    (site / "huge.bin").write_bytes(big)
    server = server_factory(site, "--arch", arch, "--procs", "2", "--access-log", "off")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    time.sleep(0.5)                                   # the server's socket fills up
    data = b""
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    sock.close()
    body = data.partition(b"\r\n\r\n")[2]
    assert hashlib.sha256(body).digest() == hashlib.sha256(big).digest()

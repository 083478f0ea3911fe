"""AMPED behaviour of a real `flashplug serve` (issue 2 part 6, issue 6 point 8).

A helper stuck in the kernel (a hung NFS mount in real life) is played by
a small test plugin whose handler makes a helper open a FIFO outside the
document root: that open() blocks until the test opens the FIFO for
writing, which is how we prove the event loop keeps answering other
clients meanwhile.  (The static handler itself never blocks on a FIFO: it
opens with O_NONBLOCK and refuses it, see test_special_files.py.)  Then a soak under
concurrency checks every body's sha256, the cache notices edits, deletes and
renames, and `--arch sped` serves the same bytes.
"""
import errno
import hashlib
import os
import random
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from test_kernel_http import Wire, one, req, wire

SIZES = {"empty.bin": 0, "one.bin": 1, "k.bin": 1000, "100k.bin": 100 * 1024,
         "300k.bin": 300 * 1024, "2m.bin": 2 * 1024 * 1024 + 7}


def make_files(root):
    rnd = random.Random(42)
    files = {}
    for name, size in SIZES.items():
        data = rnd.randbytes(size)
        (root / name).write_bytes(data)
        files[name] = data
    return files


def sha(data):
    return hashlib.sha256(data).hexdigest()


def release_fifo(path, within=3.0):
    """Open the FIFO for writing once a reader (the server's helper) is
    blocked in open(); returns the fd, or None if no reader ever came."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO:        # ENXIO: no reader yet
                raise
            time.sleep(0.02)
    return None


# Its handler parks a helper in open() of the FIFO named after /block/ in
# the folder FLASHPLUG_TEST_FIFOS, until someone opens it for writing.
BLOCKER = """
import os
from flashplug import Response, Route, hookimpl

def _wait(path):
    os.close(os.open(path, os.O_RDONLY))
    return b"released\\n"

async def _blocked(request):
    path = os.path.join(os.environ["FLASHPLUG_TEST_FIFOS"], request.path[len("/block/"):])
    body = await request.server.helpers.run(_wait, path)
    return Response(200, [("Content-Type", "text/plain")], body)

@hookimpl
def flashplug_routes(config):
    return [Route(prefix="/block/", handler=_blocked)]
"""


def blocker_server(server_factory, tmp_path, root, *args, fifos=1):
    """A server with the blocker plugin; returns it and the FIFOs' paths."""
    plugdir = tmp_path / "blockplug"
    plugdir.mkdir()
    (plugdir / "blocker.py").write_text(BLOCKER)
    fifodir = tmp_path / "fifos"
    fifodir.mkdir()
    paths = []
    for i in range(fifos):
        os.mkfifo(fifodir / f"pipe{i}")
        paths.append(fifodir / f"pipe{i}")
    env = dict(os.environ, FLASHPLUG_TEST_FIFOS=str(fifodir))
    srv = server_factory(root, "--plugins-dir", plugdir, "--plugins", "blocker",
                         *args, env=env)
    return srv, paths


def timed_get(srv, path):
    t0 = time.monotonic()
    status, _, body = one(srv, req(path))
    return status, body, time.monotonic() - t0


# -- the loop never waits on a helper ---------------------------------------------------

def test_loop_answers_while_helper_blocks_on_fifo(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    files = make_files(root)
    srv, (pipe,) = blocker_server(server_factory, tmp_path, root, "--access-log", "off")
    stuck = wire(srv, timeout=10)
    stuck.send(req("/block/pipe0"))
    time.sleep(0.3)
    stuck.sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        stuck.sock.recv(1)            # still waiting: the helper is parked in open()
    stuck.sock.setblocking(True)
    stuck.sock.settimeout(10)

    # Other clients, cached and uncached paths alike, are answered at once.
    worst = 0.0
    for i, (name, data) in enumerate(list(files.items()) * 3):
        status, body, took = timed_get(srv, f"/{name}?{i}")
        assert status == 200 and body == data
        worst = max(worst, took)
        assert timed_get(srv, f"/missing{i}")[0] == 404
    assert worst < 1.0, f"a request took {worst:.2f}s while a helper was blocked"

    fd = release_fifo(pipe)
    assert fd is not None, "the server never opened the FIFO"
    try:
        t0 = time.monotonic()
        status, _, _ = stuck.response()
        assert status == 200, status
        assert time.monotonic() - t0 < 3
    finally:
        os.close(fd)
        stuck.close()
    # And the connection count etc. are fine afterwards.
    assert timed_get(srv, "/k.bin")[:2] == (200, files["k.bin"])


def test_all_helpers_blocked_cached_files_still_served(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    files = make_files(root)
    srv, pipes = blocker_server(server_factory, tmp_path, root, "--helpers", "2",
                                "--cache-valid", "60", "--access-log", "off", fifos=2)
    assert timed_get(srv, "/k.bin")[:2] == (200, files["k.bin"])        # now cached
    stuck = []
    for i in range(2):
        w = wire(srv, timeout=10)
        w.send(req(f"/block/pipe{i}"))
        stuck.append(w)
    time.sleep(0.3)
    # Both helpers are parked; a fresh cached file needs none.
    for _ in range(10):
        status, body, took = timed_get(srv, "/k.bin")
        assert (status, body) == (200, files["k.bin"]) and took < 1.0
    fds = [release_fifo(p) for p in pipes]
    assert None not in fds
    try:
        for w in stuck:
            assert w.response()[0] == 200
    finally:
        for fd in fds:
            os.close(fd)
        for w in stuck:
            w.close()
    # The helpers are free again: an uncached file is served.
    assert timed_get(srv, "/2m.bin")[:2] == (200, files["2m.bin"])


def test_sigterm_with_helper_stuck_on_fifo_exits(server_factory, tmp_path):
    # A helper thread blocked in open() must not keep the process alive
    # past the grace period.
    root = tmp_path / "root"
    root.mkdir()
    srv, (pipe,) = blocker_server(server_factory, tmp_path, root, "--grace", "1",
                                  "--access-log", "off")
    w = wire(srv)
    w.send(req("/block/pipe0"))
    time.sleep(0.3)
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    try:
        rc = srv.proc.wait(5)
    except subprocess.TimeoutExpired:
        fd = release_fifo(pipe, within=1)   # let it go so the test can clean up
        if fd is not None:
            os.close(fd)
        pytest.fail("server still running 5 s after SIGTERM (helper stuck on a FIFO)")
    finally:
        w.close()
    assert time.monotonic() - t0 < 4
    assert rc == 0


# -- soak -------------------------------------------------------------------------------

def soak(srv, files, threads=8, per_thread=50):
    errors = []
    names = sorted(files)

    def worker(seed):
        rnd = random.Random(seed)
        with requests.Session() as s:
            for _ in range(per_thread):
                name = rnd.choice(names)
                data = files[name]
                headers = {}
                want, status = data, 200
                if data and rnd.random() < 0.5:
                    a = rnd.randrange(len(data))
                    b = rnd.randrange(a, len(data))
                    kind = rnd.randrange(3)
                    if kind == 0:
                        headers["Range"], want = f"bytes={a}-{b}", data[a:b + 1]
                    elif kind == 1:
                        headers["Range"], want = f"bytes={a}-", data[a:]
                    else:
                        n = b - a + 1
                        headers["Range"], want = f"bytes=-{n}", data[-n:]
                    status = 206
                try:
                    r = s.get(f"{srv.url}/{name}", headers=headers, timeout=20)
                except requests.RequestException as e:
                    errors.append((name, headers, repr(e)))
                    continue
                if r.status_code != status or sha(r.content) != sha(want):
                    errors.append((name, headers, r.status_code, len(r.content), len(want)))

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return errors


def test_soak_concurrent_sizes_and_ranges(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    files = make_files(root)
    srv = server_factory(root, "--access-log", "off")
    errors = soak(srv, files)
    assert errors == [], errors[:5]


def test_soak_with_tiny_cache(server_factory, tmp_path):
    # Evictions all the time: every body must still be right.
    root = tmp_path / "root"
    root.mkdir()
    files = make_files(root)
    srv = server_factory(root, "--cache-size", "150k", "--cache-entries", "2", "--cache-valid", "0.05",
                         "--access-log", "off")
    errors = soak(srv, files, threads=6, per_thread=30)
    assert errors == [], errors[:5]


def test_soak_pipelined_raw(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    files = make_files(root)
    srv = server_factory(root, "--access-log", "off")
    names = sorted(files) * 4
    random.Random(1).shuffle(names)
    errors = []

    def worker():
        w = wire(srv, timeout=20)
        w.send(b"".join(req("/" + n) for n in names))
        for n in names:
            status, _, body = w.response()
            if status != 200 or sha(body) != sha(files[n]):
                errors.append((n, status, len(body)))
        w.close()

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert errors == []


# -- cache invalidation -----------------------------------------------------------------

@pytest.fixture
def cached(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for name in ("small.txt", "other.txt"):
        (root / name).write_bytes(b"version 1\n")
    (root / "big.bin").write_bytes(b"A" * (400 * 1024))     # over cache-file-max: fd cached
    srv = server_factory(root, "--cache-valid", "0.2", "--access-log", "off")
    for _ in range(3):        # make sure every path is cached
        for name in ("small.txt", "other.txt", "big.bin"):
            assert requests.get(f"{srv.url}/{name}", timeout=5).status_code == 200
    return srv, root


def fetch(srv, name, **headers):
    return requests.get(f"{srv.url}/{name}", headers=headers, timeout=5)


def test_cache_sees_edit_same_size(cached):
    srv, root = cached
    etag = fetch(srv, "small.txt").headers["ETag"]
    (root / "small.txt").write_bytes(b"version 2\n")
    time.sleep(0.4)
    r = fetch(srv, "small.txt")
    assert r.content == b"version 2\n"
    assert r.headers["ETag"] != etag
    assert fetch(srv, "small.txt", **{"If-None-Match": etag}).status_code == 200


def test_cache_sees_edit_new_size(cached):
    srv, root = cached
    (root / "small.txt").write_bytes(b"a longer version 3\n")
    time.sleep(0.4)
    r = fetch(srv, "small.txt")
    assert r.content == b"a longer version 3\n" and r.headers["Content-Length"] == "19"


def test_cache_sees_big_file_rewritten(cached):
    srv, root = cached
    (root / "big.bin").write_bytes(b"B" * (500 * 1024))
    time.sleep(0.4)
    assert fetch(srv, "big.bin").content == b"B" * (500 * 1024)
    r = fetch(srv, "big.bin", Range="bytes=-3")
    assert r.status_code == 206 and r.content == b"BBB"


def test_cache_sees_atomic_replace(cached):
    srv, root = cached
    (root / "tmp").write_bytes(b"replaced\n")
    os.replace(root / "tmp", root / "small.txt")
    time.sleep(0.4)
    assert fetch(srv, "small.txt").content == b"replaced\n"


def test_cache_sees_delete(cached):
    srv, root = cached
    os.unlink(root / "small.txt")
    os.unlink(root / "big.bin")
    time.sleep(0.4)
    assert fetch(srv, "small.txt").status_code == 404
    assert fetch(srv, "big.bin").status_code == 404
    assert fetch(srv, "other.txt").content == b"version 1\n"


def test_cache_sees_rename(cached):
    srv, root = cached
    os.rename(root / "small.txt", root / "moved.txt")
    os.rename(root / "big.bin", root / "moved.bin")
    time.sleep(0.4)
    assert fetch(srv, "small.txt").status_code == 404
    assert fetch(srv, "moved.txt").content == b"version 1\n"
    assert fetch(srv, "big.bin").status_code == 404
    assert fetch(srv, "moved.bin").content == b"A" * (400 * 1024)


def test_cache_sees_file_replaced_by_directory(cached):
    srv, root = cached
    os.unlink(root / "small.txt")
    (root / "small.txt").mkdir()
    (root / "small.txt" / "index.html").write_bytes(b"now a folder")
    time.sleep(0.4)
    r = requests.get(f"{srv.url}/small.txt", allow_redirects=False, timeout=5)
    assert r.status_code == 301 and r.headers["Location"] == "/small.txt/"
    assert fetch(srv, "small.txt/").content == b"now a folder"


def test_cache_edit_seen_by_pipelined_and_head(cached):
    srv, root = cached
    (root / "other.txt").write_bytes(b"version two!\n")
    time.sleep(0.4)
    w = wire(srv)
    w.send(req("/other.txt", method="HEAD") + req("/other.txt"))
    status, headers, _ = w.response(head=True)
    assert headers["content-length"] == ["13"]
    assert w.response()[2] == b"version two!\n"
    w.close()


# -- --arch sped ------------------------------------------------------------------------

def test_arch_sped_serves(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    files = make_files(root)
    (root / "d").mkdir()
    (root / "d" / "index.html").write_bytes(b"<p>d</p>")
    srv = server_factory(root, "--arch", "sped", "--access-log", "off")
    for name, data in files.items():
        r = fetch(srv, name)
        assert r.status_code == 200 and sha(r.content) == sha(data), name
    r = fetch(srv, "2m.bin", Range="bytes=1000-1999")
    assert r.status_code == 206 and r.content == files["2m.bin"][1000:2000]
    assert fetch(srv, "nope").status_code == 404
    assert requests.get(srv.url + "/d", allow_redirects=False, timeout=5).headers["Location"] == "/d/"
    assert fetch(srv, "d/").content == b"<p>d</p>"
    status, _, body = one(srv, req("/%2e%2e/x"))
    assert status in (400, 404)
    w = wire(srv)
    w.send(req("/k.bin") + req("/k.bin", method="HEAD") + req("/one.bin"))
    assert w.response()[2] == files["k.bin"]
    assert w.response(head=True)[0] == 200
    assert w.response()[2] == files["one.bin"]
    w.close()
    assert soak(srv, files, threads=4, per_thread=25) == []


def test_many_open_connections(server_factory, tmp_path):
    # Hundreds of connections at once, each answered on the one loop.
    root = tmp_path / "root"
    root.mkdir()
    files = make_files(root)
    srv = server_factory(root, "--access-log", "off")
    conns = [wire(srv, timeout=10) for _ in range(400)]
    for i, w in enumerate(conns):
        w.send(req("/k.bin" if i % 2 else "/100k.bin"))
    for i, w in enumerate(conns):
        status, _, body = w.response()
        assert status == 200 and body == files["k.bin" if i % 2 else "100k.bin"]
    for w in conns:
        w.close()


def test_a_reader_that_stalls_gets_every_byte(server_factory, tmp_path):
    # A small receive window makes the first sendfile stop short: the rest
    # is queued and sent as the client reads, on a connection that stays
    # usable; a second client meanwhile is answered at once.
    root = tmp_path / "root"
    root.mkdir()
    files = make_files(root)
    srv = server_factory(root, "--access-log", "off")
    for name in ("100k.bin", "300k.bin", "2m.bin"):
        sock = srv.connect()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        w = Wire(sock)
        for _ in range(2):
            w.send(req("/" + name))
            time.sleep(0.2)                       # not reading: the server must wait
            status, _, quick = one(srv, req("/k.bin"))
            assert status == 200 and quick == files["k.bin"]
            status, headers, body = w.response()
            assert status == 200 and sha(body) == sha(files[name])
        w.close()


def test_a_download_may_outlast_the_keepalive_timeout(server_factory, tmp_path):
    # The keep-alive timeout is for idle connections: a response still
    # being sent is watched by --send-timeout instead, and the idle wait
    # starts when it is all sent.
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(24 * 1024 * 1024)
    (root / "big.bin").write_bytes(data)
    srv = server_factory(root, "--access-log", "off", "--keepalive-timeout", "1")
    sock = srv.connect(timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.sendall(req("/big.bin"))
    head, body, started = b"", b"", time.monotonic()
    while b"\r\n\r\n" not in head:
        head += sock.recv(65536)
    head, _, body = head.partition(b"\r\n\r\n")
    chunks = [body]
    got = len(body)
    while got < len(data):
        chunk = sock.recv(65536)
        assert chunk, f"cut off after {got} of {len(data)} bytes"
        chunks.append(chunk)
        got += len(chunk)
        time.sleep(0.005)                         # a slow reader: about 3 s in all
    assert time.monotonic() - started > 2, "the download was not slow enough to test this"
    assert sha(b"".join(chunks)) == sha(data)
    w = Wire(sock)                                # and the connection is still usable
    w.send(req("/big.bin", method="HEAD"))
    assert w.response(head=True)[0] == 200
    w.close()

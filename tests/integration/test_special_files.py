"""FIFOs, Unix sockets and devices in the document root (issue 10 item 2).

open() of a FIFO blocks until a writer appears.  The static handler opens
with O_NONBLOCK and checks the type on the open descriptor, so such a file
is refused with 403 at once, under every architecture, and the server keeps
answering afterwards: no helper, thread or process is left parked.
"""
import os
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

ARCHS = ["amped", "sped", "mt", "mp"]


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "fifodir").mkdir()
    (root / "a.txt").write_text("public a\n")
    os.mkfifo(root / "p")
    os.mkfifo(root / "fifodir" / "index.html")   # an index file that is a FIFO
    return root


def get(url, **kw):
    # A FIFO that blocked the server would show up as this timeout.
    return requests.get(url, timeout=10, **kw)


@pytest.mark.parametrize("arch", ARCHS)
def test_fifo_is_refused_and_blocks_nothing(site, server_factory, arch):
    plugins = ["--plugins", "autoindex"] if arch in ("amped", "sped") else ["--plugins", "none"]
    srv = server_factory(site, "--arch", arch, "--procs", "8", "--access-log", "off", *plugins)
    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(lambda i: get(f"{srv.url}/p?{i}").status_code, range(40)))
    assert statuses == [403] * 40
    assert requests.head(srv.url + "/p", timeout=10).status_code == 403
    assert get(srv.url + "/p", headers={"Range": "bytes=0-0"}).status_code == 403
    # A FIFO named like an index file is no index: the folder is listed
    # (or, without listings, not a document).
    assert get(srv.url + "/fifodir/").status_code == (404 if arch in ("mt", "mp") else 200)
    # Still answering: a file, and (where plugins run) a listing.
    r = get(srv.url + "/a.txt")
    assert (r.status_code, r.text) == (200, "public a\n")
    if arch in ("amped", "sped"):
        r = get(srv.url + "/dir/")
        assert r.status_code == 200 and "Index of /dir/" in r.text


@pytest.mark.parametrize("arch", ARCHS)
def test_unix_socket_is_refused(site, server_factory, arch):
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(site / "sock"))
    unix.listen()
    try:
        srv = server_factory(site, "--arch", arch, "--plugins", "none", "--access-log", "off")
        assert get(srv.url + "/sock").status_code == 403
        assert get(srv.url + "/a.txt").text == "public a\n"
    finally:
        unix.close()


def test_char_device_is_refused(tmp_path, server_factory):
    # A symlink stands in for a device node (mknod needs privileges the
    # test may not have); followed, it reaches /dev/null, a character device.
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/dev/null", root / "null")
    srv = server_factory(root, "--follow-symlinks", "--plugins", "none", "--access-log", "off")
    assert get(srv.url + "/null").status_code == 403


def test_file_under_a_lease_is_503_not_a_parked_helper(tmp_path, server_factory):
    # A write lease (fcntl F_SETLEASE) makes another process's open() wait
    # until the holder lets go; the non-blocking open gets EWOULDBLOCK.
    import fcntl
    import signal
    root = tmp_path / "root"
    root.mkdir()
    (root / "leased.txt").write_text("leased\n")
    (root / "a.txt").write_text("public a\n")
    srv = server_factory(root, "--plugins", "none", "--access-log", "off")
    old = signal.signal(signal.SIGIO, signal.SIG_IGN)   # the lease-break signal
    fd = os.open(root / "leased.txt", os.O_RDONLY)
    try:
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        except OSError as e:
            pytest.skip(f"no file leases here: {e}")
        r = get(srv.url + "/leased.txt")
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert get(srv.url + "/a.txt").text == "public a\n"
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        assert get(srv.url + "/leased.txt").text == "leased\n"
    finally:
        os.close(fd)
        signal.signal(signal.SIGIO, old)

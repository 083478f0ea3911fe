"""AMPED discipline: the event loop itself never makes a call that can wait
on the disk.  A Worker runs on this thread (the loop thread); a client on
another thread makes every kind of static request; every file-system call
the loop thread makes is recorded, and there must be none.
"""
import asyncio
import os
import os.path
import signal
import socket
import threading
import time

import pytest

from flashplug.cli import build_serve
from flashplug.server import bind_listener
from flashplug.worker import Worker

# The calls that may wait on the disk.  preadv with RWF_NOWAIT is the
# residency probe (it never waits) and sendfile runs only after it said the
# pages are resident, so both are allowed on the loop.
DISK_CALLS = ("stat", "lstat", "fstat", "open", "read", "pread", "listdir", "scandir",
              "readlink", "access")


def get(port, target, extra=b""):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + extra + b"\r\n")
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def serve_in_process(root, client, *args):
    """Run a Worker on this thread while ``client(port, app)`` runs on another."""
    config = build_serve([str(root), "--port", "0", "--access-log", "off", "--plugins", "none",
                          *args])
    listener = bind_listener("127.0.0.1", 0)
    worker = Worker(config, listener)
    outcome = {}

    def drive():
        try:
            outcome["value"] = client(listener.getsockname()[1], worker.app)
        except BaseException as e:  # noqa: BLE001 - re-raised on the test's thread
            outcome["error"] = e
        finally:
            worker.loop.call_soon_threadsafe(worker.stop)

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    worker.loop.call_later(0.1, lambda: threading.Thread(target=drive, daemon=True).start())
    try:
        worker.run()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        asyncio.set_event_loop(None)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# sped does all its disk work on the loop: it shows the spies do catch it.
@pytest.mark.parametrize("arch, loop_may_touch_disk", [("amped", False), ("sped", True)])
def test_the_loop_thread_never_touches_the_disk(tmp_path, monkeypatch, arch,
                                                loop_may_touch_disk):
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "small.txt").write_text("small")
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    (root / "dir" / "index.html").write_text("index")
    (root / "plain").mkdir()
    loop_thread = threading.get_ident()  # serve_in_process runs the loop here
    on_loop = []

    def spy_on_the_loop():
        for name in DISK_CALLS:
            real = getattr(os, name)

            def spy(*args, _real=real, _name=name, **kw):
                if threading.get_ident() == loop_thread:
                    on_loop.append((_name, args[:1]))
                return _real(*args, **kw)
            monkeypatch.setattr(os, name, spy)

    def client(port, app):
        spy_on_the_loop()   # from here on: start-up may stat, serving may not
        results = {}
        for _ in range(2):  # a miss, then a hit
            results["small"] = get(port, b"/small.txt")[0]
            results["big"] = get(port, b"/big.bin")[0]
            results["range"] = get(port, b"/big.bin", b"Range: bytes=100-200,5000-6000\r\n")[0]
            results["index"] = get(port, b"/dir/")[0]
            results["redirect"] = get(port, b"/dir")[0]
            results["missing"] = get(port, b"/nope")[0]
            results["no index"] = get(port, b"/plain/")[0]
        time.sleep(0.1)  # past --cache-valid: the next ones revalidate
        results["revalidated"] = get(port, b"/small.txt")[0]
        return results

    results = serve_in_process(root, client, "--arch", arch, "--cache-valid", "0.05")
    assert results == {"small": 200, "big": 200, "range": 206, "index": 200,
                       "redirect": 301, "missing": 404, "no index": 404, "revalidated": 200}
    if loop_may_touch_disk:
        assert {"open", "fstat"} <= {name for name, _ in on_loop}
    else:
        assert on_loop == [], f"the loop thread touched the disk: {on_loop}"


def test_pages_not_in_memory_are_read_in_by_a_helper_then_sent(tmp_path):
    import hashlib
    root = tmp_path / "root"
    root.mkdir()
    payload = os.urandom(2 << 20)
    (root / "cold.bin").write_bytes(payload)

    def evict():
        # Pages still referenced (by socket buffers of the first send) are
        # not dropped at once: retry until mincore sees the start gone.
        from flashplug.residency import MINCORE
        fd = os.open(root / "cold.bin", os.O_RDONLY)
        addr = MINCORE.map_file(fd, len(payload))
        try:
            for _ in range(100):
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                if MINCORE.resident_prefix(addr, 0, 65536) == 0:
                    return
                time.sleep(0.02)
            pytest.skip("the kernel would not drop this file's pages")
        finally:
            MINCORE.unmap(addr, len(payload))
            os.close(fd)

    def client(port, app):
        evict()   # freshly written pages: write them back and drop them first
        first = get(port, b"/cold.bin")[1]
        evict()
        before = app.stats.residency_offloads
        second = get(port, b"/cold.bin")[1]
        return first, second, app.stats.residency_offloads - before, app.stats.residency_hits

    first, second, offloads, hits = serve_in_process(root, client)
    for data in (first, second):
        body = data.split(b"\r\n\r\n", 1)[1]
        assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()
    assert offloads >= 1, "an evicted file must be read in by a helper, not on the loop"
    assert hits >= 1


def test_hot_files_are_revalidated_ahead_and_edits_still_seen(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "hot.txt").write_text("old")

    def client(port, app):
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:       # keep the entry hot for a while
            assert get(port, b"/hot.txt")[1].endswith(b"old")
            time.sleep(0.02)
        batched = app.stats.cache_revalidations
        (root / "hot.txt").write_text("new!")
        seen_at = None
        start = time.monotonic()
        while time.monotonic() - start < 5:
            if get(port, b"/hot.txt")[1].endswith(b"new!"):
                seen_at = time.monotonic() - start
                break
            time.sleep(0.02)
        return batched, seen_at

    batched, seen_at = serve_in_process(root, client, "--cache-valid", "1")
    assert batched >= 1, "a hot entry is stat'ed ahead by the once-a-second batch"
    assert seen_at is not None and seen_at < 2.5, "an edit shows within about --cache-valid"


def test_a_hot_file_never_waits_for_a_stat_on_its_requests_path(tmp_path):
    """With the sweeps ahead of the trust window, no request of a file
    served all the time is sent to a helper for its stat: the sweep's batch
    does every stat.  (When the sweep ran once a second with a one-second
    window, a file first loaded late in a second went stale before every
    sweep, and each of its requests after that paid a helper trip.)"""
    from flashplug.cache import still_fresh
    root = tmp_path / "root"
    root.mkdir()
    (root / "hot.txt").write_text("hot")

    def client(port, app):
        one_by_one = []
        call = app.helpers.call

        def spy(fn, args, callback):
            if fn is still_fresh:
                one_by_one.append(args)
            return call(fn, args, callback)
        app.helpers.call = spy
        # First load late in a wall-clock second (the once-a-second tick's
        # phase), then keep the file hot for three windows.
        time.sleep((0.7 - time.time() % 1.0) % 1.0)
        deadline = time.monotonic() + 3.2
        while time.monotonic() < deadline:
            assert get(port, b"/hot.txt")[1].endswith(b"hot")
            time.sleep(0.01)
        return one_by_one, app.stats.cache_revalidations

    one_by_one, swept = serve_in_process(root, client, "--cache-valid", "1")
    assert swept >= 3, "the sweeps stat the hot file"
    assert one_by_one == [], "a hot file's request waited for a stat of its own"


def test_an_entry_dropped_while_its_stat_runs_is_loaded_again(tmp_path):
    """A stale entry goes to a helper for its stat; if the cache evicts it
    (and closes its file) meanwhile, the request must not be answered from
    the closed entry: it loads the file again.  (It used to send the head
    and then cut the connection, found by the tiny-cache soak test.)"""
    import hashlib
    from flashplug.cache import still_fresh
    root = tmp_path / "root"
    root.mkdir()
    big = os.urandom(300_000)                       # sent from its open fd
    (root / "a.bin").write_bytes(big)
    (root / "b.bin").write_bytes(os.urandom(300_000))
    evicted = threading.Event()

    def client(port, app):
        run = app.helpers.run

        def slow_stat(entry):
            evicted.wait(5)                         # hold the stat until b evicted a
            return still_fresh(entry)

        def spy(fn, *args):
            return run(slow_stat if fn is still_fresh else fn, *args)
        assert get(port, b"/a.bin")[0] == 200       # cached, open
        time.sleep(0.2)                             # past --cache-valid: stale
        app.helpers.run = spy
        answer = {}
        t = threading.Thread(target=lambda: answer.update(a=get(port, b"/a.bin")))
        t.start()
        time.sleep(0.3)                             # a's stat is waiting on its helper
        assert get(port, b"/b.bin")[0] == 200       # one entry only: a is dropped
        evicted.set()
        t.join(10)
        return answer["a"]

    status, raw = serve_in_process(root, client, "--cache-valid", "0.1", "--cache-entries", "1",
                                   "--cache-size", "150k")
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert status == 200
    assert hashlib.sha256(body).digest() == hashlib.sha256(big).digest()


def test_a_full_content_budget_sends_bigger_files_by_sendfile(tmp_path):
    import hashlib
    root = tmp_path / "root"
    root.mkdir()
    files = {f"f{i}.bin": os.urandom(100_000 + i) for i in range(8)}
    for name, data in files.items():
        (root / name).write_bytes(data)

    def client(port, app):
        for _ in range(2):
            for name, data in files.items():
                body = get(port, b"/" + name.encode())[1].split(b"\r\n\r\n", 1)[1]
                assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
        cache = app.static.cache
        return cache.bytes, cache.max_bytes, cache.open_files

    used, budget, open_files = serve_in_process(root, client, "--cache-size", "300k")
    assert used <= budget
    assert open_files >= 5, "files beyond the budget are kept open for sendfile"

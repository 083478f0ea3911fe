"""How long autoindex takes to list a folder of 10,000 entries.

Usage:  python bench/autoindex_bench.py [--entries N] [--rounds R] [--no-http]

Two measurements, each reported as the median of R rounds:

* in process: the plugin's handler driven with inline helpers, so the
  numbers are the plugin's own work without HTTP.  "cold" is a cache miss
  (a fresh handler: scan, stat of every entry, sort, render); "cached" is
  the same request again (one stat of the folder, then bytes from the
  cache).  The parts of a cold listing are shown too, and tracemalloc's
  peak says how much memory one cold listing of N entries needs.
* over HTTP: a real ``flashplug serve --plugins autoindex`` on loopback,
  timed from request to last byte with a raw socket.  "cold" restarts
  nothing but changes the folder's mtime before each request, so every
  round is a cache miss; "cached" repeats the request unchanged.

"Cold" means cold for the plugin's caches; the kernel's page cache holds
the folder's inodes either way (dropping it needs root and a quiet disk,
and would measure the disk, not the server).
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from flashplug import Headers, Request  # noqa: E402
from flashplug.helpers import InlineHelpers, run_sync  # noqa: E402
from flashplug_plugins.autoindex import handler as H, listing as L, render as R  # noqa: E402


class Config:
    def __init__(self, docroot):
        self.docroot = docroot
        self.plugins = ["autoindex"]
        self.script_dirs = {}

    def get(self, name, default=None):
        return {"cache_valid": 3600.0}.get(name, default)


def make_folder(root, n):
    folder = os.path.join(root, "big")
    os.makedirs(folder)
    for i in range(n):
        if i % 50 == 0:
            os.mkdir(os.path.join(folder, f"dir-{i:05d}"))
        else:
            with open(os.path.join(folder, f"file-{i:05d} name.txt"), "wb") as f:
                f.write(b"x" * (i % 4096))
    return folder


def median_ms(fn, rounds):
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times), max(times)


def in_process(root, folder, rounds):
    settings = H.Settings.from_config(Config(root))
    req = lambda q="": Request("GET", "/big/", "/big/", "/big/", q, "1.1", Headers())  # noqa: E731
    results = {}
    for fmt in ("html", "json"):
        q = "format=" + fmt

        def cold():
            ai = H.Autoindex(settings, InlineHelpers())
            assert run_sync(ai.handle(req(q), folder)).status == 200
        results[f"cold {fmt}"] = median_ms(cold, rounds)

        warm = H.Autoindex(settings, InlineHelpers())
        run_sync(warm.handle(req(q), folder))
        results[f"cached {fmt}"] = median_ms(lambda: run_sync(warm.handle(req(q), folder)), rounds)

    listing = L.scan(folder, settings.policy)
    results["  part: scan (scandir + stat)"] = median_ms(
        lambda: L.scan(folder, settings.policy), rounds)
    view = R.View("html", "name", "asc")
    results["  part: sort + render html"] = median_ms(
        lambda: R.render(settings.template, listing, "/big/", view), rounds)

    tracemalloc.start()
    ai = H.Autoindex(settings, InlineHelpers())
    body = run_sync(ai.handle(req(), folder)).body
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return results, peak, len(body), len(listing.entries)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port, target):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n" % target)
        data = b""
        while chunk := s.recv(1 << 20):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    return data


def over_http(root, folder, rounds):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flashplug", "serve", root, "--port", str(port),
         "--plugins", "autoindex", "--access-log", "off", "--cache-valid", "3600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    return None
                time.sleep(0.05)
        results = {}
        for fmt in ("html", "json"):
            target = b"/big/?format=" + fmt.encode()

            def cold():
                st = os.stat(folder)
                os.utime(folder, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
                fetch(port, target)
            results[f"cold {fmt}"] = median_ms(cold, rounds)
            fetch(port, target)
            results[f"cached {fmt}"] = median_ms(lambda: fetch(port, target), rounds)
        return results
    finally:
        proc.terminate()
        proc.wait(10)


def show(title, results):
    print(title)
    for name, (med, lo, hi) in results.items():
        print(f"  {name:<32} {med:8.2f} ms  (min {lo:.2f}, max {hi:.2f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--no-http", action="store_true", help="skip the real-server run")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="autoindex-bench-")
    try:
        folder = make_folder(root, args.entries)
        results, peak, size, count = in_process(root, folder, args.rounds)
        print(f"autoindex, {count} entries, median of {args.rounds} rounds, "
              f"Python {sys.version.split()[0]}")
        show("in process (inline helpers):", results)
        print(f"  HTML page {size / 1024:.0f} KiB; peak memory of one cold listing "
              f"{peak / 1024 / 1024:.1f} MiB")
        if not args.no_http:
            http = over_http(root, folder, args.rounds)
            if http is None:
                print("over HTTP: the server did not start; skipped")
            else:
                show("over HTTP (flashplug serve, loopback, request to last byte):", http)
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()

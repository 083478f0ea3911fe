"""HTTP/2 over TLS beside nginx (``http2`` on the same certificate): issue 17, item 6.

    python bench/h2_bench.py [--requests 16000]

One nginx worker and one flashplug worker (``--plugins none``), each under
``taskset -c 0``, h2load under ``taskset -c 1``, TLS 1.3 and ALPN h2:

* ``1k``: a 1 KiB file, ``h2load -c 16 -m 10``;
* ``page``: a page of 50 small assets (1-8 KiB), each of 16 clients
  asking for all 50 in turn with up to 50 streams at once (``-m 50``).

Each point is ``--requests`` requests (at most 1000 per connection:
flashplug's streams per connection, as nginx's ``keepalive_requests``),
three interleaved rounds, the median kept.  Prints a Markdown table of
requests/s, the server's CPU time per request (user plus system of its
process tree) and the ratios to nginx.  Needs nginx, h2load, openssl and
taskset.  Quote figures from a shared machine as "busy machine".
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from https_bench import flashplug_command, free_port, make_cert, nginx_command, wait_ready  # noqa: E402
from proctree import cpu_seconds  # noqa: E402


def h2load(port, urls, clients, streams, requests, pid):
    """(requests/s, server CPU microseconds per request, failures)."""
    cpu = cpu_seconds(pid)
    out = subprocess.run(["taskset", "-c", "1", "h2load", "-c", str(clients), "-m",
                          str(streams), "-n", str(requests),
                          *[f"https://127.0.0.1:{port}{u}" for u in urls]],
                         capture_output=True, text=True, timeout=300).stdout
    cpu = cpu_seconds(pid) - cpu
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    done = re.search(r"(\d+) succeeded, (\d+) failed", out)
    ok = int(done.group(1)) if done else 0
    return (float(rate.group(1)) if rate else 0.0, 1e6 * cpu / ok if ok else 0.0,
            int(done.group(2)) if done else requests)


def run_point(cmd, port, urls, clients, streams, requests):
    proc = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        h2load(port, urls, clients, streams, min(requests, 2000), proc.pid)   # warm-up
        return h2load(port, urls, clients, streams, requests, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=16000, help="requests per point")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hypercorn", metavar="PYTHON", default=None,
                    help="also measure hypercorn (the best Python HTTP/2 server) run by "
                         "this interpreter, which has hypercorn and uvloop installed")
    args = ap.parse_args()
    os.environ["PATH"] += ":/usr/sbin"
    for tool in ("nginx", "h2load", "openssl", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        root = tmp / "root"
        (root / "page").mkdir(parents=True)
        (root / "1k.bin").write_bytes(os.urandom(1024))
        assets = []
        for i in range(50):
            (root / "page" / f"a{i}.css").write_bytes(os.urandom(1024 * (1 + i % 8)))
            assets.append(f"/page/a{i}.css")
        cert, key = make_cert(tmp)
        points = {"1k": (["/1k.bin"], 16, 10), "page": (assets, 16, 50)}
        results = {}
        servers = ("nginx", "flashplug") + (("hypercorn",) if args.hypercorn else ())
        os.environ["DOCROOT"] = str(root)      # for hypercorn_static.py, found on
        os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parent)   # this path
        for _ in range(args.rounds):
            for name, (urls, clients, streams) in points.items():
                for server in servers:
                    port = free_port()
                    if server == "nginx":
                        cmd = nginx_command(tmp, root, port, cert, key, http2=True)
                    elif server == "flashplug":
                        cmd = flashplug_command(root, port, cert, key)
                    else:
                        cmd = [args.hypercorn, "-m", "hypercorn", "-k", "uvloop", "--certfile",
                               str(cert), "--keyfile", str(key), "-b", f"127.0.0.1:{port}",
                               "--keep-alive", "300", "hypercorn_static:app"]
                    got = run_point(cmd, port, urls, clients, streams, args.requests)
                    print(f"{server} {name}: {got[0]:,.0f} req/s, {got[1]:.1f} us CPU/request, "
                          f"{got[2]} failed", file=sys.stderr)
                    results.setdefault((server, name), []).append(got)
    print("| point | server | req/s | CPU us/req | req/s vs nginx | CPU vs flashplug |")
    print("|---|---|---|---|---|---|")
    for name in points:
        rate = {s: statistics.median(r[0] for r in results[(s, name)]) for s in servers}
        cpu = {s: statistics.median(r[1] for r in results[(s, name)]) for s in servers}
        for server in servers:
            print(f"| {name} | {server} | {rate[server]:,.0f} | {cpu[server]:.1f} "
                  f"| {rate[server] / rate['nginx'] if rate['nginx'] else 0:.2f}x "
                  f"| {cpu[server] / cpu['flashplug'] if cpu['flashplug'] else 0:.2f}x |")


if __name__ == "__main__":
    main()

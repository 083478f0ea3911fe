"""System calls a server makes per request on workload (r-zipf), by strace.

Theory of operation: like ``bench/instructions.py``'s ``zipf`` and
``miss`` workloads (the same heads and files, ``bench/heads_client.py``),
but the server runs natively and ``strace -c -f`` is attached to every
thread of its worker (flashplug's helpers included, nginx's worker for
nginx) after the warm-up and detached after the measured requests; its
summary, divided by the requests, is the calls per request by name::

    python bench/syscalls.py --exe base=/work/wt/base11/.venv/bin/flashplug \\
        --exe head=.venv/bin/flashplug --nginx --only zipf,miss

The measured run's length is printed too: with ``--cache-valid 1`` the
sweeps' stats (per second) are in the counts, so compare runs of like
length.

A count of calls, unlike their time, does not move with the machine's load
(a helper's wake-ups and the loop's epoll waits do, a little: how many
finished jobs one wake-up collects depends on timing).
"""
from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import heads_client  # noqa: E402
import servers  # noqa: E402
from instructions import free_port, wait_port, zipf_docroot  # noqa: E402

CONNECTIONS = 64


def threads_of(pid):
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))


def nginx_worker(master, seconds=10):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with open(f"/proc/{master}/task/{master}/children") as f:
            kids = f.read().split()
        if kids:
            return int(kids[0])
        time.sleep(0.1)
    raise SystemExit("nginx started no worker")


def parse_summary(text):
    """strace -c's table: {syscall: calls}."""
    calls = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 5 and cols[0][0].isdigit() and not cols[-1].startswith("total"):
            # % time, seconds, usecs/call, calls, [errors,] syscall
            calls[cols[-1]] = int(cols[3])
    return calls


def measure(kind, workload, exe, base, n, tmp, valid):
    port = free_port()
    if kind == "nginx":
        argv = servers._nginx_conf(tmp, base / "root", port, aio=False)
        # Like its own workers, strace runs it where nobody owns it.
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        server = subprocess.Popen(
            [exe, "serve", str(base / "root"), "--port", str(port), "--access-log", "off",
             "--arch", "amped", "--workers", "1", "--keepalive-timeout", "300",
             "--cache-valid", str(valid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 30)
        worker = nginx_worker(server.pid) if kind == "nginx" else server.pid
        warm, measured = heads_client.zipf_plan(workload, port, base / "zipf-paths.txt", n)
        heads_client.send(port, warm, CONNECTIONS)
        out = tmp / "strace.txt"
        attach = []
        for tid in threads_of(worker):
            attach += ["-p", str(tid)]
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(out), *attach],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)           # strace attaches to each thread in turn
        started = time.monotonic()
        codes = heads_client.send(port, measured, CONNECTIONS)
        took = time.monotonic() - started
        time.sleep(0.5)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        if codes != {"200": n}:
            raise SystemExit(f"{workload}: answered {dict(codes)}, expected {n} x 200")
        calls = parse_summary(out.read_text())
        calls["(seconds)"] = took
        return calls
    finally:
        server.terminate()
        server.wait(30)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exe", action="append", metavar="NAME=PATH", default=[],
                   help="a flashplug executable (repeat)")
    p.add_argument("--nginx", action="store_true", help="nginx too (bench/servers.py's config)")
    p.add_argument("--only", default="zipf,miss")
    p.add_argument("-n", type=int, default=2000, help="measured requests")
    p.add_argument("--cache-valid", default="3600", help="flashplug's --cache-valid: the default "
                   "3600 leaves out the sweeps, whose stats are per second, not per request; "
                   "1 (flashplug's own default) has them in, at the rate strace allows")
    p.add_argument("--by-name", action="store_true", help="every system call, not only the total")
    args = p.parse_args()
    runs = [("flashplug", *e.split("=", 1)) for e in args.exe]
    if args.nginx:
        runs.append(("nginx", "nginx", None))
    with tempfile.TemporaryDirectory(prefix="flashplug-sys-zipf-") as d:
        base = zipf_docroot(Path(d))
        for workload in args.only.split(","):
            table = {}
            for kind, name, exe in runs:
                with tempfile.TemporaryDirectory(prefix="flashplug-sys-") as t:
                    tmp = Path(t)
                    tmp.chmod(0o755)
                    table[name] = measure(kind, workload, exe, base, args.n, tmp, args.cache_valid)
            took = {name: calls.pop("(seconds)") for name, calls in table.items()}
            names = collections.Counter()
            for calls in table.values():
                names.update(calls)
            print(f"{workload}: system calls per request ({args.n} requests)")
            print(f"  {'':16}" + "".join(f"{name:>12}" for name in table))
            rows = [c for c, _ in names.most_common()] if args.by_name else []
            for call in rows:
                print(f"  {call:16}" + "".join(f"{t.get(call, 0) / args.n:>12.2f}"
                                             for t in table.values()))
            print(f"  {'total':16}" + "".join(f"{sum(t.values()) / args.n:>12.2f}"
                                             for t in table.values()))
            print(f"  {'seconds':16}" + "".join(f"{took[name]:>12.2f}" for name in table), flush=True)


if __name__ == "__main__":
    main()

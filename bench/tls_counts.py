"""HTTPS per request, counted: instructions by object and system calls.

    python bench/tls_counts.py [--servers nginx,flashplug,floor,floor-uvloop]
        [--exe NAME=PATH ...] [--only 1k,new] [--mode callgrind,strace] [-n 2000]

Counts, not times, so it can run on a machine shared with other work.
Each server serves the same 1 KiB file over TLS 1.3 with the same ECDSA
P-256 certificate, one process each (nginx with ``master_process off``,
flashplug ``--arch amped --workers 1 --cache-valid 60`` (nginx's
``open_file_cache_valid``: under callgrind a request takes 50 times as
long, and a file checked every second would cost more per request than
it does at full speed), the floors of
``bench/floor_https_bio.py`` and ``bench/floor_https.py``):

* ``1k``: ``h2load --h1 -n N -c 4``, keep-alive: one 1 KiB response per
  request;
* ``new``: batches of 50 connections at once, one request each, every one
  a full TLS 1.3 handshake (h2load does not resume).

``callgrind``: the server runs under ``valgrind --tool=callgrind``; after
300 warm-up requests its counters are zeroed, the N requests run, and the
dump's instructions (self cost) are summed by object and divided by N
(for ``1k``, the difference of two runs: see ``callgrind``).  ``strace``: ``strace -c -f -p`` on the running server
during the N requests, each system call's count divided by N.
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# bench/ is not a package: its scripts import each other from their folder.
from https_bench import make_cert  # noqa: E402
from instructions import free_port, wait_port  # noqa: E402
WARMUP = 300
NEW_BATCH = 50
OBJECTS = (  # (label, a pattern of the object's file name), the first match counts
    ("uvloop", r"uvloop"),
    ("httptools", r"httptools"),
    ("libcrypto", r"libcrypto"),
    ("libssl", r"libssl"),
    ("libc", r"libc\.so|libc-|ld-linux|libm\.so"),
    ("python", r"python3|libpython"),
    ("nginx", r"/nginx$"),
)


def server_command(kind, exe, tmp, port, cert, key):
    root = tmp / "root"
    if kind == "nginx":
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = tmp / "nginx.conf"
        conf.write_text(f"""{user}daemon off; master_process off; worker_processes 1;
pid {tmp}/nginx.pid; error_log stderr warn;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; tcp_nopush on; keepalive_timeout 300s;
  keepalive_requests 1000000; open_file_cache max=1000;
  default_type application/octet-stream;
  client_body_temp_path {tmp}/b; proxy_temp_path {tmp}/p; fastcgi_temp_path {tmp}/f;
  uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets on;
  server {{ listen 127.0.0.1:{port} ssl backlog=4096;
    ssl_certificate {cert}; ssl_certificate_key {key}; root {root}; }} }}
""")
        return ["nginx", "-e", "stderr", "-p", str(tmp), "-c", str(conf)]
    if kind.startswith("floor"):
        script = "floor_https.py" if kind == "floor-uvloop" else "floor_https_bio.py"
        return [exe or sys.executable, str(HERE / script), str(port), str(cert), str(key),
                str(root / "1k.bin")]
    return [exe, "serve", str(root), "--port", str(port), "--access-log", "off",
            "--arch", "amped", "--workers", "1", "--plugins", "none",
            "--keepalive-timeout", "300", "--cache-valid", "60",
            "--tls-cert", str(cert), "--tls-key", str(key)]


def load(port, workload, n):
    """Send ``n`` requests; SystemExit unless all succeed."""
    url = f"https://127.0.0.1:{port}/1k.bin"
    batch, conns = (NEW_BATCH, NEW_BATCH) if workload == "new" else (n, 4)
    ok = 0
    for done in range(0, n, batch):
        size = min(batch, n - done)
        run = subprocess.run(["h2load", "--h1", "-n", str(size), "-c", str(min(conns, size)),
                              url], capture_output=True, text=True, check=True)
        ok += int(re.search(r"(\d+) succeeded", run.stdout).group(1))
    if ok != n:
        raise SystemExit(f"{workload}: {n - ok} of {n} requests failed")


def by_object(dump):
    """Instructions of a callgrind dump (self cost, the calls' inclusive
    lines skipped) summed by object label, and by function (``(object
    label, function)``)."""
    names, events = {}, []
    objects, functions = collections.Counter(), collections.Counter()
    obj = fn = None
    skip = False
    with open(dump) as f:
        for line in f:
            if skip:
                skip = False
                continue
            c = line[:1]
            if c.isdigit() or c in "+-*":
                if fn is not None:
                    cost = int(line.split()[1])
                    objects[obj] += cost
                    functions[obj, fn] += cost
                continue
            if line.startswith("events:"):
                events = line.split()[1:]
                continue
            if line.startswith("summary:"):
                objects["all"] = int(line.split()[1])
                # With --cache-sim, the simulated cache misses too
                # (I1mr: first-level instruction misses, DLmr: last-level
                # data read misses...).
                for event, value in list(zip(events, line.split()[1:]))[1:]:
                    objects[event] = int(value)
                continue
            key, eq, value = line.rstrip("\n").partition("=")
            if not eq:
                continue
            if key in ("ob", "fn"):
                m = re.match(r"\((\d+)\)(?: (.*))?", value)
                if m:
                    ident = key + m.group(1)
                    if m.group(2) is not None:
                        names[ident] = m.group(2)
                    value = names.get(ident, value)
                if key == "ob":
                    obj = next((lab for lab, pat in OBJECTS if re.search(pat, value)), "other")
                else:
                    fn = value
            elif key in ("cob", "cfn"):
                m = re.match(r"\((\d+)\) (.*)", value)
                if m:
                    names[key[1:] + m.group(1)] = m.group(2)
            elif key == "calls":
                skip = True
    return objects, functions


def callgrind(cmd, tmp, port, workload, n, keep=None, cache_sim=False):
    """Instructions per request by object.  For ``1k`` the counters are
    taken over n/4 requests, then over n, and the difference divided by
    3n/4: what a request costs without the handshakes of h2load's
    connections (four per run)."""
    out = tmp / "callgrind.out"
    sim = ["--cache-sim=yes"] if cache_sim else []
    server = subprocess.Popen(["valgrind", "--tool=callgrind", *sim,
                               f"--callgrind-out-file={out}", *cmd],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def counted(requests):
        subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True,
                       check=True)
        load(port, workload, requests)
        subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True,
                       check=True)
        time.sleep(1)
        return max(glob.glob(f"{out}*"), key=os.path.getmtime)
    try:
        wait_port(port, 300)
        load(port, workload, WARMUP)
        base, small = collections.Counter(), 0
        if workload == "1k":
            small = n // 4
            base = by_object(counted(small))[0]
        dump = counted(n)
        if keep:
            subprocess.run(["cp", dump, keep], check=True)
        total = by_object(dump)[0]
        return {k: (total[k] - base[k]) / (n - small) for k in total}
    finally:
        server.terminate()
        server.wait(30)


def strace(cmd, tmp, port, workload, n):
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 30)
        load(port, workload, WARMUP)
        log = tmp / "strace.txt"
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(log), "-p", str(server.pid)],
                                  stderr=subprocess.DEVNULL)
        time.sleep(1)
        load(port, workload, n)
        time.sleep(0.2)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        calls = {}
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3]) / n
        return calls
    finally:
        server.terminate()
        server.wait(30)


def _user_system(pid):
    """The process's user and system CPU seconds so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu(commands, workload, rounds, seconds=3):
    """Times, not counts, for a quiet machine or for ratios within one run:
    each server pinned to CPU 0 and its clients to CPU 1 (wrk, 64
    keep-alive connections, for ``1k``; six ``openssl s_time -new`` for
    ``new``), the servers taking turns for ``rounds`` rounds; the median
    user and system microseconds per request of each."""
    def run(port, duration):
        if workload == "new":
            clients = [subprocess.Popen(
                ["taskset", "-c", "1", "openssl", "s_time", "-connect", f"127.0.0.1:{port}",
                 "-new", "-www", "/1k.bin", "-time", str(duration)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                for _ in range(6)]
            return sum(int(m.group(1)) for c in clients
                       for m in [re.search(r"(\d+) connections in", c.communicate()[0])] if m)
        out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{duration}s",
                              f"https://127.0.0.1:{port}/1k.bin"],
                             capture_output=True, text=True).stdout
        return int(re.search(r"(\d+) requests in", out).group(1))
    servers = {}
    try:
        for name, (cmd, port) in commands.items():
            servers[name] = (subprocess.Popen(["taskset", "-c", "0", *cmd],
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL), port)
        for _, port in servers.values():
            wait_port(port, 30)
        runs = {name: [] for name in servers}
        for _ in range(rounds):
            for name, (proc, port) in servers.items():
                run(port, 1)
                user, system = _user_system(proc.pid)
                done = run(port, seconds)
                user2, system2 = _user_system(proc.pid)
                runs[name].append((1e6 * (user2 - user) / done, 1e6 * (system2 - system) / done))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    median = lambda values: sorted(values)[len(values) // 2]   # noqa: E731
    return {name: {"user us": median([r[0] for r in rs]), "system us": median([r[1] for r in rs]),
                   "total us": median([r[0] + r[1] for r in rs])}
            for name, rs in runs.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--servers", default="nginx,flashplug,floor")
    p.add_argument("--exe", action="append", default=[], metavar="NAME=PATH",
                   help="a flashplug executable to count as server NAME (repeat); "
                        "'flashplug' is this checkout's")
    p.add_argument("--only", default="1k,new")
    p.add_argument("--mode", default="callgrind,strace",
                   help="callgrind, strace, and cpu (times: see ``cpu``)")
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3, help="turns of the servers (--mode cpu)")
    p.add_argument("--cache-sim", action="store_true",
                   help="callgrind simulates the caches too: misses per request")
    p.add_argument("--keep", metavar="DIR", help="keep each callgrind dump in DIR "
                   "(as callgrind.SERVER.WORKLOAD) for callgrind_annotate")
    args = p.parse_args()
    exes = {"flashplug": str(Path(sys.executable).parent / "flashplug")}
    exes.update(e.split("=", 1) for e in args.exe)
    names = args.servers.split(",")
    with tempfile.TemporaryDirectory(prefix="flashplug-tlscounts-") as d:
        tmp = Path(d)
        tmp.chmod(0o755)
        root = tmp / "root"
        root.mkdir()
        (root / "1k.bin").write_bytes(b"x" * 1024)
        cert, key = make_cert(tmp)
        for workload in args.only.split(","):
            for mode in args.mode.split(","):
                rows = {}
                if mode == "cpu":
                    commands = {}
                    for name in names:
                        kind = name if name in ("nginx", "floor", "floor-uvloop") else "flashplug"
                        port = free_port()
                        commands[name] = (server_command(kind, exes.get(name), tmp, port, cert,
                                                         key), port)
                    rows = cpu(commands, workload, args.rounds)
                for name in names if mode != "cpu" else ():
                    kind = name if name in ("nginx", "floor", "floor-uvloop") else "flashplug"
                    port = free_port()
                    cmd = server_command(kind, exes.get(name), tmp, port, cert, key)
                    keep = args.keep and f"{args.keep}/callgrind.{name}.{workload}"
                    if mode == "callgrind":
                        rows[name] = callgrind(cmd, tmp, port, workload, args.n, keep,
                                               args.cache_sim)
                    else:
                        rows[name] = strace(cmd, tmp, port, workload, args.n)
                keys = sorted({k for r in rows.values() for k in r},
                              key=lambda k: -max(r.get(k, 0) for r in rows.values()))
                size = f"rounds={args.rounds}" if mode == "cpu" else f"n={args.n}"
                print(f"\n{workload}, {mode}, per request ({size})")
                print(f"| {'':14} | " + " | ".join(f"{n:>12}" for n in names) + " |")
                print("|" + "---|" * (len(names) + 1))
                for k in keys:
                    digits = {"strace": 2, "cpu": 1}.get(mode, 0)
                    cells = " | ".join(f"{rows[n].get(k, 0):>12,.{digits}f}"
                                       for n in names)
                    print(f"| {k:14} | {cells} |")
                sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Side-by-side benchmark: flashplug against nginx, lighttpd, http.server, aiohttp.

Theory of operation: one command installs what is missing, generates one
document root in a temporary directory, and then runs every workload
against every server in turn, each server freshly started on CPU 0 with wrk
(and every other client-side helper, this harness included) on CPU 1. The
results go to bench/last-run.json and are rendered into docs/benchmarks.md
with plots in docs/img/. `--only` re-runs some workloads and merges them
into the previous results, so every table still compares servers measured
in one invocation.

    python bench/run.py                  # everything, about 20 minutes
    python bench/run.py --quick          # 2 s points, fewer servers, ~3 minutes
    python bench/run.py --only real      # real traffic (r): browser-like heads
    python bench/run.py --only a,d --duration 3 --arch amped,sped
    python bench/run.py --only https     # HTTPS (h) beside nginx, same certificate
    python bench/run.py --only multicore # two workers each on both cores (m), beside nginx
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import deps  # noqa: E402

REPO = HERE.parent
RESULTS = HERE / "last-run.json"
# (r), (a), (b) and (h) compare servers within a few percent of each other,
# less than the machine's noise between two runs (one build's Zipf runs spread
# from 42k to 59k req/s here): their servers take turns for several rounds,
# and each keeps its median run.
ROUNDED = ("r", "a", "b", "h", "m")
GROUPS = {"r": "r", "real": "r", "a": "a", "filesize": "a", "b": "b", "zipf": "b", "c": "c", "disk": "c",
          "d": "d", "idle": "d", "e": "e", "cgi": "e", "h": "h", "https": "h",
          "m": "m", "multicore": "m"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="flashplug side-by-side benchmark (issue 6)")
    p.add_argument("--quick", action="store_true", help="2 s per point, fewer servers and points")
    p.add_argument("--only", default="", help="comma list of workloads: r|real, a|filesize, b|zipf, c|disk, d|idle, e|cgi, h|https, m|multicore")
    p.add_argument("--duration", type=float, help="seconds per measured point (default 5, quick 2)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per (r) and (a) point, median kept (default 3, quick 1)")
    p.add_argument("--warmup", type=float, help="seconds of unmeasured load before each point (default 2, quick 1)")
    p.add_argument("--arch", help="flashplug architectures (default amped,sped,mt,mp; quick amped,sped)")
    p.add_argument("--servers", help="comma list restricting server names, e.g. nginx,flashplug-amped")
    p.add_argument("--idle-connections", type=int, default=10_000)
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each run, wait up to S seconds for both CPUs to be under 10%% busy")
    p.add_argument("--baseline", metavar="EXE",
                   help="also measure this flashplug executable (another checkout's venv) as flashplug-before, "
                        "in (r), (a), (b), (d) and (h): the before/after of a change in one run")
    p.add_argument("--no-install", action="store_true", help="do not apt-get / pip install")
    p.add_argument("--keep", action="store_true", help="keep the temporary document root")
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"), help="the Markdown report")
    p.add_argument("--results", default=str(RESULTS), help="raw results (JSON), merged into by --only")
    args = p.parse_args(argv)
    try:
        args.groups = sorted({GROUPS[w.strip()] for w in args.only.split(",") if w.strip()}) or list("rabcdehm")
    except KeyError as e:
        p.error(f"unknown workload {e}")
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    return args


def plan(args) -> list[dict]:
    """The ordered list of (workload, server) points this invocation measures."""
    import servers as S
    import traffic as T
    archs = args.arch.split(",") if args.arch else (["amped", "sped"] if args.quick else list(S.FLASHPLUG_ARCHS))
    flash = [S.flashplug(a) for a in archs]
    before = [S.flashplug_baseline(args.baseline)] if args.baseline else []
    quick = args.quick
    pts: list[dict] = []

    def add(key, title, group, specs, **kw):
        if args.servers:
            keep = set(args.servers.split(","))
            specs = [s for s in specs if s.name in keep]
        pts.append(dict(key=key, title=title, group=group, specs=specs, **kw))

    if "r" in args.groups:
        # Real traffic leads: browser-like heads, beside nginx and lighttpd.
        for w in T.WORKLOADS:
            add(w.key, w.title, "r", [S.NGINX, S.LIGHTTPD, *before, *flash[:1]],
                connections=w.connections, workload=w)
    if "a" in args.groups:
        for size, label in (("1k", "1 KiB"), ("100k", "100 KiB"), ("1m", "1 MiB")):
            slow = [S.HTTP_SERVER, S.AIOHTTP] if size == "1k" or not quick else []
            add(f"a-{size}", f"(a) one cached file of {label}, the same request head each time, 64 connections", "a",
                [S.NGINX, S.LIGHTTPD, *slow, *before, *(flash[:1] if quick else flash)],
                path=f"/{size}.bin", connections=64, size=size)
        # Issue 12: 1 MiB over 16 connections too, where its rounds once swung most.
        add("a-1m-16", "(a) one cached file of 1 MiB, the same request head each time, 16 connections", "a",
            [S.NGINX, S.LIGHTTPD, *before, *flash[:1]], path="/1m.bin", connections=16)
    if "b" in args.groups:
        add("b-zipf", "(b) 10,000 files, Zipf-distributed requests, cached, 64 connections", "b",
            [S.NGINX, S.LIGHTTPD, *([] if quick else [S.HTTP_SERVER, S.AIOHTTP]), *before, *(flash[:1] if quick else flash)],
            connections=64)
    if "c" in args.groups:
        for pct in ((0, 100) if quick else (0, 50, 100)):
            title = ("(c) disk-bound: 4,000 files of 256 KiB, all evicted every 50 ms, 64 connections" if pct == 100
                     else f"cache curve: {pct}% of the 4,000-file set evicted every 50 ms")
            add(f"c-evict-{pct}", title, "c",
                [S.NGINX, S.NGINX_AIO, *([] if quick else [S.LIGHTTPD]), *flash], connections=64, evict=pct)
    if "d" in args.groups:
        add("d-idle", f"(d) {args.idle_connections:,} idle keep-alive connections + 64 active on /1k.bin", "d",
            [S.NGINX, S.LIGHTTPD, *([] if quick else [S.AIOHTTP]), *before, *(flash[:1] if quick else flash)],
            connections=64, count=args.idle_connections)
    if "e" in args.groups:
        for script in ("sh", "py"):
            add(f"e-cgi-{script}", f"(e) CGI hello.{script}, 16 connections", "e",
                [S.LIGHTTPD_CGI, S.flashplug("amped", cgi=True)], path=f"/cgi-bin/hello.{script}",
                connections=16, probe="/cgi-bin/hello.sh", expect=b"hello from sh")
    if "m" in args.groups:
        # Issue 12, item 5: both cores, two workers each; wrk (two threads)
        # shares the cores with the server, so the figures are the pair's.
        two = [S.NGINX_2, S.FLASHPLUG_2]
        add("m-1k", "(m) two workers on both cores, wrk -t2 beside them: one cached file of 1 KiB, "
            "the same request head each time, 64 connections", "m", two, path="/1k.bin", connections=64, size="1k")
        browser = next(w for w in T.WORKLOADS if w.key == "r-browser")
        add("m-browser", "(m) two workers on both cores, wrk -t2 beside them: " + browser.title.split(") ", 1)[-1],
            "m", two, connections=browser.connections, workload=browser)
        add("m-zipf", "(m) two workers on both cores, wrk -t2 beside them: 10,000 files, Zipf-distributed "
            "requests, 64 connections", "m", two, connections=64, zipf=True)
    if "h" in args.groups:
        # Issue 14, item 6: one worker each, the same ECDSA certificate, TLS 1.3.
        https = [S.NGINX_TLS, *([S.flashplug_baseline(args.baseline, tls=True)] if args.baseline else []),
                 S.flashplug_tls()]
        add("h-1k", "(h) HTTPS: one cached file of 1 KiB, keep-alive, 64 connections", "h", https,
            path="/1k.bin", connections=64)
        # wrk keeps its TLS session across reconnects: after each connection's
        # first handshake it resumes (bench/https_bench.py measures full ones).
        add("h-new-conn", "(h) HTTPS: a new connection per request (1 KiB), TLS session resumed "
            "(wrk), 16 connections", "h", https, path="/1k.bin", connections=16, close=True)
        add("h-1m", "(h) HTTPS: one cached file of 1 MiB, keep-alive, 8 connections", "h", https,
            path="/1m.bin", connections=8)
    return [p for p in pts if p["specs"]]


def machine() -> dict:
    def first(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout + out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = next((ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), "0")
    import aiohttp
    return {
        "nproc": os.cpu_count(), "kernel": platform.release(), "cpu": cpu,
        "mem_gib": round(int(mem) / 2**20, 1), "python": platform.python_version(),
        "nginx": first([deps.program("nginx"), "-v"]), "lighttpd": first([deps.program("lighttpd"), "-v"]),
        "wrk": first(["wrk", "-v"]), "aiohttp": aiohttp.__version__,
        "flashplug_commit": first(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "nofile_hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
    }


def median_run(rows: list[dict]) -> dict:
    """The run with the median req/s among those that worked (the first
    run if none did); it notes every round's req/s."""
    from report import ok
    good = sorted((r for r in rows if ok(r)), key=lambda r: r["rps"])
    if not good:
        return rows[0]
    row = dict(good[(len(good) - 1) // 2])
    if len(rows) > 1:
        row["rounds_rps"] = [r.get("rps", 0.0) for r in rows]
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    if not args.no_install:
        deps.ensure(log)
    import docroot
    import report
    import servers
    import workloads
    import wrk

    if (os.cpu_count() or 1) < 2:
        log("warning: fewer than 2 CPUs; server and client will share a core")
        servers.SERVER_CPU = servers.CLIENT_CPU = "0"
    else:
        os.sched_setaffinity(0, {int(servers.CLIENT_CPU)})   # keep this harness off the server's core
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    points = plan(args)
    n_runs = sum(len(p["specs"]) * (args.rounds if p["group"] in ROUNDED else 1) for p in points)
    log(f"{n_runs} runs of {args.duration:g} s across {len(points)} workloads")
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="flashplug-bench-"))
    try:
        t0 = time.monotonic()
        root = docroot.generate(tmp)
        log(f"document root {root.root}: generated in {time.monotonic() - t0:.1f} s")
        setup = workloads.Setup(tmp, root.root, args.duration, log, wait_quiet=args.wait_quiet,
                                warmup=args.warmup)
        zipf_lua = wrk.script(tmp, "zipf", root.zipf_list)
        disk_lua = wrk.script(tmp, "disk", root.disk_list)
        plain_lua = wrk.script(tmp, "plain")
        close_lua = wrk.script(tmp, "close", close=True)
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        cmdline = "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
        done: dict[str, dict] = {}
        for pt in points:
            log(pt["title"])
            if pt["group"] == "c" and pt["evict"] == 0:
                workloads.warm(root.disk_files)
            rounds = args.rounds if pt["group"] in ROUNDED else 1
            runs: dict[str, list] = {spec.name: [] for spec in pt["specs"]}
            for spec in [s for _ in range(rounds) for s in pt["specs"]]:
                if pt.get("workload"):
                    row = workloads.real(setup, spec, pt["workload"], root.zipf_list)
                elif pt.get("zipf"):
                    row = workloads.throughput(setup, spec, "/", zipf_lua, pt["connections"])
                elif pt["group"] in ("a", "e", "h", "m"):
                    lua = close_lua if pt.get("close") else plain_lua
                    row = workloads.throughput(setup, spec, pt["path"], lua, pt["connections"],
                                               probe=pt.get("probe", "/1k.bin"), expect=pt.get("expect", b""))
                elif pt["group"] == "b":
                    row = workloads.throughput(setup, spec, "/", zipf_lua, pt["connections"])
                elif pt["group"] == "c":
                    evicted = root.disk_files[:round(len(root.disk_files) * pt["evict"] / 100)]
                    row = workloads.disk(setup, spec, disk_lua, pt["connections"], evicted)
                else:
                    row = workloads.idle(setup, spec, plain_lua, pt["count"], pt["connections"])
                runs[spec.name].append(row)
                log("  " + report.one_line(spec.name, row))
            rows = {name: median_run(rs) for name, rs in runs.items()}
            done[pt["key"]] = {"title": pt["title"], "group": pt["group"], "time": now, "command": cmdline,
                               "duration": args.duration, "warmup": args.warmup, "rounds": rounds,
                               "connections": pt["connections"],
                               "labels": {s.name: s.label for s in pt["specs"]},
                               "size": pt.get("size"), "evict": pt.get("evict"), "rows": rows}
        results = {"workloads": {}}
        store = Path(args.results)
        if args.only and store.exists():
            results = json.loads(store.read_text())
        results["workloads"].update(done)
        results["machine"] = machine()
        results["date"] = now
        results["command"] = cmdline
        if args.baseline:
            # The before of a before/after: the commit of the tree its venv sits in.
            tree = Path(args.baseline).resolve().parents[2]
            commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip() or "?"
            results["baseline"] = {"exe": args.baseline, "commit": commit}
        results["sets"] = {"set_mib": round(root.set_bytes / 2**20, 1), "disk_mib": round(root.disk_bytes / 2**20)}
        store.write_text(json.dumps(results, indent=1))
        report.write(results, Path(args.out))
        log(f"wrote {store} and {args.out} in {time.monotonic() - started:.0f} s")
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

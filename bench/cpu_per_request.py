"""A server's CPU time per request, for several flashplug installs, interleaved.

Theory of operation: on a shared machine wrk's requests per second swing
by 2x between rounds, while the CPU time a server spends on each request
moves much less: other tasks take the server's core away, they do not make
its work per request larger.  So this starts each install (one worker,
``--arch amped``, on CPU 0 as ``bench/run.py`` does, wrk on CPU 1), loads
it for ``--warmup`` seconds with other heads (as run.py's warm-up), then
reads the tree's utime + stime (and its threads' context switches) from
/proc before and after a measured wrk run, and divides by the requests wrk
counted.  Installs take turns within each round, so all of them share the
machine's moods; the median of the rounds is printed.

    python bench/cpu_per_request.py --exe HEAD=.venv/bin/flashplug \\
        --exe before=/work/wt/base6/.venv/bin/flashplug --only b-zipf,r-zipf
    python bench/cpu_per_request.py --baseline /work/wt/base7/.venv/bin/flashplug \\
        --only p-1k,a-1k,r-browser

Workloads: ``a-1k`` (one head repeated), ``b-zipf`` (wrk's short head over
the Zipf sample of 10,000 files), ``p-1k`` (a plugin handler answering
1 KiB from memory, ``bench/plugins/trivial.py``, 16 connections: the
kernel's dynamic path) and the (r) workloads of ``bench/traffic.py``.
``--exe`` defaults to this checkout's flashplug; ``--baseline EXE`` adds
another as ``before``.  Each cell is user + system µs per request.  Every (r) run's statuses are checked as run.py
checks them; a run with wrong answers is reported, not counted.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import docroot  # noqa: E402
import servers  # noqa: E402
import traffic  # noqa: E402
import workloads  # noqa: E402
import wrk  # noqa: E402
from proctree import cpu_split, tree  # noqa: E402

WORKLOADS = ("a-1k", "b-zipf", "p-1k", "r-browser", "r-clients", "r-reval", "r-zipf")


def scripts(tmp: Path, root: docroot.Docroot, key: str, port: int):
    """(url path, measured script, warm-up script, connections, 304 share) for ``key``."""
    if key == "a-1k":
        lua = wrk.script(tmp, "plain")
        return "/1k.bin", lua, lua, 64, None
    if key == "p-1k":
        lua = wrk.script(tmp, "plain")
        return "/mem", lua, lua, 16, None
    if key == "b-zipf":
        lua = wrk.script(tmp, "zipf", root.zipf_list)
        return "/", lua, lua, 64, None
    w = next(w for w in traffic.WORKLOADS if w.key == key)
    made = traffic.templates(w, f"127.0.0.1:{port}")
    kw = dict(path=w.path, paths_file=root.zipf_list if w.zipf else None,
              conditions=traffic.conditions(*workloads.validators(port, w.path))
              if w.revalidate else None)
    name = f"{key}-{port}"
    lua = wrk.real_script(tmp, name, made, **kw)
    warm = wrk.real_script(tmp, name + "-warm", made, seed=traffic.SEED + 1, start=10**9, **kw)
    return w.path, lua, warm, w.connections, (traffic.REVALIDATED_SHARE if w.revalidate else 0.0)


def switches(root: int) -> int:
    """Context switches (voluntary and not) of every thread of the tree so far."""
    total = 0
    for pid in tree(root):
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    total += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
            except (OSError, ValueError):
                pass
    return total


def one(tmp: Path, root: docroot.Docroot, exe: str, key: str, duration: float, warmup: float):
    extra = ("trivial",) if key == "p-1k" else ()
    spec = servers.Spec("flashplug", "flashplug", ("arch", "amped", "exe", exe, *extra))
    run = servers.start(spec, tmp, root.root)
    try:
        path, lua, warm, conns, share = scripts(tmp, root, key, run.port)
        if warmup:
            wrk.run(run.port, path, warm, warmup, conns)
        before, cs = cpu_split(run.pid), switches(run.pid)
        row = wrk.run(run.port, path, lua, duration, conns)
        user, system = (b - a for a, b in zip(before, cpu_split(run.pid)))
        cs = switches(run.pid) - cs
        if share is not None:
            problem = wrk.status_problem(row["codes"], share)
            if problem:
                return {"error": problem}
        if row["errors"] or not row["requests"]:
            return {"error": f"wrk errors {row['errors']}"}
        n = row["requests"]
        return {"us": (user + system) * 1e6 / n, "user": user * 1e6 / n, "sys": system * 1e6 / n,
                "rps": row["rps"], "cs": cs / n}
    finally:
        run.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exe", action="append", metavar="NAME=PATH",
                   help="a flashplug executable to measure (repeat; default: this checkout's)")
    p.add_argument("--baseline", metavar="EXE", help="another flashplug, measured as 'before'")
    p.add_argument("--only", default=",".join(WORKLOADS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--warmup", type=float, default=2.0)
    args = p.parse_args(argv)
    exes = [e.split("=", 1) for e in args.exe or [f"HEAD={Path(sys.executable).parent / 'flashplug'}"]]
    if args.baseline:
        exes.append(("before", args.baseline))
    keys = [k for k in args.only.split(",") if k]
    for k in keys:
        if k not in WORKLOADS:
            p.error(f"unknown workload {k}; one of {', '.join(WORKLOADS)}")
    os.sched_setaffinity(0, {int(servers.CLIENT_CPU)})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = Path(tempfile.mkdtemp(prefix="flashplug-cpu-"))
    try:
        root = docroot.generate(tmp, n_disk=0)   # no disk-bound set: not measured here
        got = {(k, name): [] for k in keys for name, _ in exes}
        for r in range(args.rounds):
            for k in keys:
                for name, exe in exes:
                    row = one(tmp, root, exe, k, args.duration, args.warmup)
                    got[k, name].append(row)
                    shown = row.get("error") or (f"{row['us']:.1f} us/req ({row['user']:.1f} user + "
                                                 f"{row['sys']:.1f} sys)  {row['cs']:.3f} switches/req  "
                                                 f"{row['rps']:,.0f} req/s")
                    print(f"round {r + 1} {k:10} {name:10} {shown}", flush=True)
        print("\nmedian CPU us per request = user + system (range of the rounds), "
              "median context switches per request")
        print(f"{'workload':10} " + " ".join(f"{name:>43}" for name, _ in exes))
        for k in keys:
            cells = []
            for name, _ in exes:
                good = sorted((row for row in got[k, name] if "us" in row), key=lambda row: row["us"])
                if not good:
                    cells.append(f"{'failed':>43}")
                    continue
                spread = f"{good[0]['us']:.1f}-{good[-1]['us']:.1f}"
                split = (f"{statistics.median(g['user'] for g in good):.1f}+"
                         f"{statistics.median(g['sys'] for g in good):.1f}")
                cells.append(f"{statistics.median(g['us'] for g in good):6.1f} = {split:>11} "
                             f"({spread:>11}) {statistics.median(g['cs'] for g in good):5.2f}cs")
            print(f"{k:10} " + " ".join(cells))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

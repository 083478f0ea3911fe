"""The measurements: one function per kind of run, each returning a result row.

Theory of operation: a run starts one server, measures it, and stops it, so
every figure comes from a freshly started process and a failure of one server
never spoils the next. Three kinds of run exist:

- throughput: wrk against one path or a list of paths, with the server tree's
  memory sampled while it runs (workloads a, b, e); for real traffic (r) the
  same, with request heads as browsers send them, built for the server's
  port (and, for revalidation, its own validators), and every response's
  status checked;
- disk: the same, while `evict.py` keeps a chosen share of the disk set out
  of the page cache; the share of evicted files that were resident just
  before the load is recorded, so a run whose eviction did not work says so
  (workload c and the cache curve);
- idle: hold 10,000 idle keep-alive connections from `idle_clients.py`,
  take the tree's RSS growth per connection, then measure an active wrk
  client meanwhile (workload d).

A row is a dict: the figures, or {"failed": why} when the server did not
start, or {"error": why} when the measurement itself went wrong (in (r),
beside the figures, when the server's answers were not the ones due).
"""

from __future__ import annotations

import os
import random
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import servers
import traffic
import wrk
from proctree import PeakSampler, cpu_busy, rss_bytes
from report import BUSY

HERE = Path(__file__).parent


@dataclass
class Setup:
    tmp: Path
    root: Path
    duration: float
    log: callable
    busy: tuple = ()   # busy share of (server CPU, client CPU) just before the current run
    wait_quiet: float = 0.0   # seconds to wait, per run, for both CPUs to fall quiet
    warmup: float = 0.0       # seconds of the same load, not measured, before each run


def _measure(setup: Setup, run: servers.Running, path: str, lua: Path, connections: int,
             warm_lua: Path | None = None) -> dict:
    # One wrk thread on its own core; for several workers (m), as many
    # threads on both cores, beside the server.
    client = dict(scheme=run.scheme, threads=run.spec.workers,
                  cpus=servers.CLIENT_CPU if run.spec.workers == 1 else servers.BOTH_CPUS)
    if setup.warmup:
        # Steady state, as every server reaches it: caches filled, files
        # opened.  The same for all servers, and not part of the figures.
        wrk.run(run.port, path, warm_lua or lua, setup.warmup, connections, **client)
    # Each worker counts on its own, and a status request reaches any one of
    # them: the shortcut's share is read for one worker only.
    counted = servers.status_counters(run) if run.spec.kind == "flashplug" and run.spec.workers == 1 else None
    sampler = PeakSampler(run.pid)
    sampler.start()
    try:
        row = wrk.run(run.port, path, lua, setup.duration, connections, **client)
    finally:
        row_peak = sampler.stop()
        sampler.measure_core(int(servers.SERVER_CPU))
        # wrk's own core: when it is saturated, the client set the pace.
        client_busy = sampler.busy_share(int(servers.CLIENT_CPU))
    if counted:
        row.update(shortcut_share(counted, servers.status_counters(run)))
    row["peak_rss"] = row_peak
    row["server_cpu"] = sampler.cpu_share
    if run.spec.workers == 1:
        row["client_core_busy"] = client_busy
        # What ran on the server's core besides the server: someone else's load.
        row["other_on_core"] = max(0.0, sampler.core_busy - sampler.cpu_share)
    row["busy_before"] = setup.busy
    if run.proc.poll() is not None:
        row["note"] = f"server exited during the run (status {run.proc.returncode})"
    if run.proc.poll() is not None or not row["requests"] or row["errors"]:
        # Something went wrong: the server's own last word usually says what.
        row["note"] = "; ".join(filter(None, [row.get("note"), "stderr: " + servers.last_line(run.stderr_path)]))
    return row


def shortcut_share(before: dict, after: dict | None) -> dict:
    """The share of the measured run's requests that flashplug answered
    without parsing their heads: from remembered bytes (``heads_known``)
    and from a remembered shape (``heads_shaped``).  Empty for a build
    that does not count them."""
    names = ("requests", "heads_known", "heads_shaped")
    if not after or any(n not in before or n not in after for n in names):
        return {}
    done = {n: after[n] - before[n] for n in names}
    if done["requests"] <= 0:
        return {}
    return {"heads_known_share": done["heads_known"] / done["requests"],
            "heads_shaped_share": done["heads_shaped"] / done["requests"]}


def _start(setup: Setup, spec: servers.Spec, probe: str, expect: bytes = b""):
    # Nothing of ours runs now: whatever keeps the CPUs busy is someone else's.
    deadline = time.monotonic() + setup.wait_quiet
    while True:
        setup.busy = cpu_busy((int(servers.SERVER_CPU), int(servers.CLIENT_CPU)), 0.2)
        if max(setup.busy) <= BUSY or time.monotonic() >= deadline:
            break
    try:
        return servers.start(spec, setup.tmp, setup.root, probe=probe, expect=expect), None
    except servers.StartFailed as e:
        return None, {"failed": f"failed to start: {e}"}


def throughput(setup: Setup, spec: servers.Spec, path: str, lua: Path, connections: int,
               probe: str = "/1k.bin", expect: bytes = b"") -> dict:
    run, failed = _start(setup, spec, probe, expect)
    if failed:
        return failed
    try:
        return _measure(setup, run, path, lua, connections)
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    finally:
        run.stop()
        if run.leftovers:
            setup.log(f"  warning: {spec.name} left processes {run.leftovers}")


def validators(port: int, path: str) -> tuple[str, str]:
    """The ETag and Last-Modified a server gives for path, from one GET:
    each server computes its own, and r-reval must send back the real ones."""
    status, fields, _ = servers.fetch(port, path)
    etag, modified = fields.get("etag"), fields.get("last-modified")
    if status != 200 or not etag or not modified:
        raise ValueError(f"GET {path} answered {status} with ETag {etag!r}, Last-Modified {modified!r}: "
                         "nothing to revalidate against")
    return etag, modified


def real(setup: Setup, spec: servers.Spec, w: traffic.Workload, zipf_list: Path) -> dict:
    """One run of a workload of (r): heads built for this server's port, every
    response's status counted, and the run marked as an error unless each
    request got the answer it calls for (200, or 304 for a conditional one)."""
    run, failed = _start(setup, spec, "/1k.bin")
    if failed:
        return failed
    try:
        made = traffic.templates(w, f"127.0.0.1:{run.port}")
        kw = dict(path=w.path, paths_file=zipf_list if w.zipf else None,
                  conditions=traffic.conditions(*validators(run.port, w.path)) if w.revalidate else None)
        name = f"{w.key}-{run.port}"
        lua = wrk.real_script(setup.tmp, name, made, **kw)
        # Other picks and other request numbers for the warm-up, or the
        # measured run would send again, byte for byte, the heads it sent.
        warm_lua = wrk.real_script(setup.tmp, name + "-warm", made, seed=traffic.SEED + 1, start=10**9, **kw)
        row = _measure(setup, run, w.path, lua, w.connections, warm_lua)
        problem = wrk.status_problem(row["codes"], traffic.REVALIDATED_SHARE if w.revalidate else 0.0)
        if problem:
            row["error"] = problem
        return row
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    finally:
        run.stop()
        if run.leftovers:
            setup.log(f"  warning: {spec.name} left processes {run.leftovers}")


def warm(files: list[Path]) -> None:
    """Read every file once so it is in the page cache."""
    for p in files:
        with open(p, "rb", buffering=0) as f:
            while f.read(1 << 20):
                pass


def resident_share(files: list[Path], sample: int = 200) -> float:
    """Share of files whose first page is in the page cache, probed without blocking."""
    if not files:
        return 0.0
    picked = random.Random(0).sample(files, min(sample, len(files)))
    resident, buf = 0, bytearray(4096)
    for p in picked:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.preadv(fd, [buf], 0, os.RWF_NOWAIT)
            resident += 1
        except BlockingIOError:
            pass
        finally:
            os.close(fd)
    return resident / len(picked)


def disk(setup: Setup, spec: servers.Spec, lua: Path, connections: int, evicted: list[Path],
         interval: float = 0.05) -> dict:
    run, failed = _start(setup, spec, "/1k.bin")
    if failed:
        return failed
    evictor, row = None, {}
    try:
        if evicted:
            lst = setup.tmp / "evict-list.txt"
            lst.write_text("".join(f"{p}\n" for p in evicted))
            evictor = subprocess.Popen(["taskset", "-c", servers.CLIENT_CPU, sys.executable,
                                        str(HERE / "evict.py"), str(lst), str(interval)],
                                       stdout=subprocess.PIPE, text=True, start_new_session=True)
            if _readline(evictor, 30) != "ready":
                return {"error": "eviction helper did not start"}
            time.sleep(2 * interval)
            row["evicted_resident_before"] = resident_share(evicted)
        row.update(_measure(setup, run, "/", lua, connections))
        if evictor:
            # The evictor shares wrk's core: its busy share says nothing
            # about the client alone.
            row.pop("client_core_busy", None)
        return row
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    finally:
        if evictor:
            evictor.terminate()
            out, _ = evictor.communicate(timeout=30)
            # "sweeps N mean_ms M": whether one sweep fit in the interval.
            words = out.split()
            if "mean_ms" in words:
                row["evict_sweep_ms"] = float(words[words.index("mean_ms") + 1])
        run.stop()


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else ""


def idle(setup: Setup, spec: servers.Spec, lua: Path, count: int, connections: int) -> dict:
    run, failed = _start(setup, spec, "/1k.bin")
    if failed:
        return failed
    client = None
    try:
        time.sleep(0.5)
        before = rss_bytes(run.pid)
        client = subprocess.Popen(["taskset", "-c", servers.CLIENT_CPU, sys.executable,
                                   str(HERE / "idle_clients.py"), str(run.port), str(count), "/1k.bin"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  start_new_session=True)
        line = _readline(client, 120).split()
        if not line or line[0] != "ready":
            return {"error": "idle client did not report"}
        held, refused = int(line[1]), int(line[2])
        time.sleep(1.0)
        after = rss_bytes(run.pid)
        row = _measure(setup, run, "/1k.bin", lua, connections)
        client.stdin.write("check\n")
        client.stdin.flush()
        alive = _readline(client, 30).split()
        row.update(held=held, refused=refused, rss_before=before, rss_after=after,
                   alive=int(alive[1]) if len(alive) == 2 else None,
                   rss_per_conn=(after - before) / held if held else None)
        return row
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    finally:
        if client:
            client.stdin.close()
            try:
                client.wait(timeout=10)
            except subprocess.TimeoutExpired:
                client.kill()
                client.wait()
        run.stop()

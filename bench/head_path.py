"""The HTTP/1.1 path alone, in process: µs of CPU per request for (r)'s heads.

Theory of operation: wrk's figures on a shared 2-core machine swing by 2x
between rounds, and they mix the server's Python with the kernel's TCP work.
This drives the event-loop driver (``flashplug.connection.Connection``)
directly over a socket stand-in that takes every byte and keeps none, with
the heads ``bench/traffic.py`` writes for wrk (a fresh number in each
changing head, the server's own validators for r-reval), one whole head per
read, as wrk's requests arrive.  So a figure here is what one request costs
the loop in Python and C extensions, with no system call.

    python bench/head_path.py                   # every workload, 3 rounds
    python bench/head_path.py --profile r-browser   # cProfile of one workload
    python bench/head_path.py --against main,HEAD~2  # interleaved with commits

Each round times every workload ``--repeat`` times over ``--requests``
heads and keeps the fastest; the median of the rounds is printed.  With
``--against``, each commit named is checked out (``git archive``) into a
temporary folder, and child processes of this interpreter measure the
working tree and each commit in turn, round by round, so all columns share
the machine's moods.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import traffic  # noqa: E402

WORKLOADS = ("r-browser", "r-reval", "r-clients", "repeated")


class Sink:
    """A connected socket that takes all it is given, at once."""

    zero_copy = True
    scheme = "http"
    backlog = 0

    def __init__(self):
        self.inbound = b""
        self.sent = 0

    def fileno(self):
        return 12345

    def local_address(self):
        return ("127.0.0.1", 8080)

    def recv_into(self, buf):
        data, self.inbound = self.inbound, b""
        n = len(data)
        buf[:n] = data
        return n

    def send(self, data, flags=0):
        self.sent += len(data)
        return len(data)

    def sendmsg(self, buffers):
        return self.send(b"".join(buffers))

    def unsent(self):
        return 0

    def close(self):
        pass


class Loop:
    """The loop calls the driver makes on this path, doing nothing."""

    def add_reader(self, fd, callback):
        pass

    def remove_reader(self, fd):
        pass

    def add_writer(self, fd, callback):
        raise AssertionError("the sink never fills")

    def remove_writer(self, fd):
        pass

    def call_later(self, delay, callback):
        pass

    def create_task(self, coro):
        """Run a handler that does not suspend (a sped server's) to its end."""
        try:
            coro.send(None)
        except StopIteration:
            return None
        raise AssertionError("a handler suspended")


def make_server(root: Path):
    from flashplug.app import App
    from flashplug.cli import build_serve
    config = build_serve([str(root), "--arch", "sped", "--access-log", "off",
                          "--cache-valid", "3600", "--plugins", "none"])
    return App(config, Loop())


def heads(workload: str, n: int, start: int, etag: str, modified: str) -> list[bytes]:
    """``n`` request heads of ``workload`` as wrk's script builds them."""
    import random
    rng = random.Random(start)
    host = "127.0.0.1:8080"
    if workload == "repeated":
        return [b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"] * n
    w = {x.key: x for x in traffic.WORKLOADS}[workload]
    made = traffic.templates(w, host)
    conds = [c + "\r\n" for c in traffic.conditions(etag, modified)] if w.revalidate else [""] * 4
    out = []
    for i in range(start, start + n):
        t = made[rng.randrange(len(made))]
        if t.rest is None:
            out.append((t.before + w.path + t.after).encode())
        else:
            out.append((t.before + w.path + t.after + str(i) + t.rest + conds[i % 4]).encode())
    return out


def measure(requests: int, repeat: int, only=WORKLOADS, profile: bool = False) -> dict:
    from flashplug.connection import Connection
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "1k.bin").write_bytes(os.urandom(1024))
        app = make_server(root)
        sink = Sink()
        conn = Connection(app, sink, ("127.0.0.1", 40000))

        def serve(data):
            sink.inbound = data
            conn._on_readable()

        # Fill the cache through the full path (a helper-free sped server).
        serve(b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        answer = app.static.cache.get("/1k.bin")
        if answer is None:
            raise SystemExit("the first request did not cache /1k.bin")
        etag, modified = answer.etag, answer.last_modified
        results = {}
        for name in only:
            # A warm-up of other heads, as the bench's: caches and remembered
            # heads in their steady state.
            for data in heads(name, max(requests, 8 * traffic.N_CLIENTS), 1, etag, modified):
                serve(data)
            best = None
            for r in range(repeat):
                batch = heads(name, requests, 10_000_000 * (r + 1), etag, modified)
                before = sink.sent
                if profile:
                    import cProfile
                    import pstats
                    prof = cProfile.Profile()
                    prof.enable()
                    for data in batch:
                        serve(data)
                    prof.disable()
                    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
                    return {}
                t0 = time.process_time_ns()
                for data in batch:
                    serve(data)
                spent = (time.process_time_ns() - t0) / 1000 / requests
                if sink.sent == before or conn.closed:
                    raise SystemExit(f"{name}: nothing answered, or the connection closed")
                best = spent if best is None else min(best, spent)
            results[name] = best
        return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", default=",".join(WORKLOADS))
    p.add_argument("--profile", metavar="WORKLOAD")
    p.add_argument("--against", metavar="REVS", default="",
                   help="commits (comma-separated) to measure in turn with the working tree")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)   # one round, for --compare
    args = p.parse_args()
    only = tuple(args.only.split(","))
    if args.profile:
        measure(args.requests, 1, (args.profile,), profile=True)
        return
    if args.json:
        import flashplug
        print(json.dumps({"_from": flashplug.__file__, **measure(args.requests, args.repeat, only)}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        trees = [("work", HERE.parent)]
        for rev in filter(None, args.against.split(",")):
            tree = Path(tmp) / rev.replace("/", "_")
            tree.mkdir()
            archive = subprocess.run(["git", "archive", rev, "flashplug"], cwd=HERE.parent,
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
            trees.append((rev, tree))
        rounds = {label: [] for label, _ in trees}
        for r in range(args.rounds):
            # Each round in another order, so no tree is always measured first.
            for label, tree in trees[r % len(trees):] + trees[:r % len(trees)]:
                out = subprocess.run([sys.executable, str(HERE / "head_path.py"), "--json",
                                      "--requests", str(args.requests), "--repeat", str(args.repeat),
                                      "--only", args.only], capture_output=True, text=True, check=True,
                                     env={**os.environ, "PYTHONPATH": str(tree)}).stdout
                row = json.loads(out)
                if not row.pop("_from").startswith(str(tree)):
                    raise SystemExit(f"{label}: flashplug was not imported from {tree}")
                rounds[label].append(row)
    print("µs of CPU per request, median of", args.rounds, "rounds (best of", args.repeat, "each)")
    print("workload    " + "".join(f"{label:>12}" for label, _ in trees))
    for name in only:
        row = [statistics.median(r[name] for r in rounds[label]) for label, _ in trees]
        print(f"{name:<12}" + "".join(f"{v:>12.2f}" for v in row))


if __name__ == "__main__":
    main()

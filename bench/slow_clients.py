"""Slow-client attacks beside nginx: what an active client keeps.

Theory of operation: for each server (nginx, flashplug), on the same
document root, `wrk` measures an active client alone (1 KiB file, 16
connections, on CPU 1), then again while `slowhttptest` holds thousands of
slow sockets in one mode:

    slowloris  -H   request heads that never end (a header line every 10 s)
    slowbody   -B   request bodies sent a few bytes every 10 s
    slowread   -X   a large response read 32 bytes every 3 s, small window

It reports the active client's req/s during the attack over before, the
server's RSS at the end of the attack, and how many of the attacker's
sockets were still open when it ended (slowhttptest's own count).  Issue
#13 asks for >= 0.90 of the throughput kept, bounded memory, and the
attacker's sockets closed by the timeouts.

    python bench/slow_clients.py                      # all modes, both servers
    python bench/slow_clients.py --modes slowread --seconds 30 --sockets 2000
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers  # noqa: E402
import wrk  # noqa: E402

MODES = {
    "slowloris": ["-H", "-i", "10"],
    "slowbody": ["-B", "-i", "10", "-s", "100000"],
    "slowread": ["-X", "-k", "3", "-n", "3", "-w", "32", "-y", "64", "-z", "32"],
}


def rss_kib(pid: int) -> int:
    """Resident KiB of a process and its children (nginx: master + worker)."""
    total = 0
    out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid), "-p", str(pid)],
                         capture_output=True, text=True).stdout
    for line in out.split():
        total += int(line)
    return total


def attack(mode: str, port: int, sockets: int, seconds: int, target: str, log) -> subprocess.Popen:
    # The attacker shares CPU 1 with wrk.  slowhttptest polls its sockets in a
    # busy loop (70% of a core); at normal priority it takes that CPU from
    # wrk, and the active client's figure then measures the load generator,
    # not the server (nginx "kept" 0.41-0.46 that way).  At nice 19 it gets
    # what wrk leaves; its sockets stay open and slow all the same, which
    # is the attack (`attacker_open_at_end` shows it held).
    cmd = ["nice", "-n", "19", "taskset", "-c", servers.CLIENT_CPU, "slowhttptest", *MODES[mode], "-c", str(sockets),
           "-r", str(max(200, sockets // 5)), "-l", str(seconds), "-g", "-o", "/tmp/slowhttptest-flashplug",
           "-u", f"http://127.0.0.1:{port}{target}", "-p", "5"]
    if mode == "slowbody":
        cmd[cmd.index("-u") + 1] = f"http://127.0.0.1:{port}/1k.bin"
        cmd += ["-t", "POST"]
    log("  " + " ".join(cmd))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def still_open(output: str) -> int:
    """Connected sockets in slowhttptest's last status block."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)      # its status lines are coloured
    found = re.findall(r"connected:\s+(\d+)", plain)
    return int(found[-1]) if found else -1


def measure(spec: servers.Spec, root: Path, tmp: Path, modes, sockets, seconds, log) -> dict:
    plain = wrk.script(tmp, "plain")
    run = servers.start(spec, tmp, root)
    rows = {}
    try:
        before = wrk.run(run.port, "/1k.bin", plain, duration=10, connections=16)["rps"]
        rows["alone"] = round(before)
        for mode in modes:
            a = attack(mode, run.port, sockets, seconds, "/big.bin", log)
            time.sleep(min(15, seconds / 3))      # let the attacker fill its sockets
            during = wrk.run(run.port, "/1k.bin", plain, duration=10, connections=16)["rps"]
            rss = rss_kib(run.pid)
            out, _ = a.communicate(timeout=seconds + 120)
            rows[mode] = {"req_s": round(during), "kept": round(during / before, 2),
                          "rss_mib": round(rss / 1024, 1), "attacker_open_at_end": still_open(out)}
            log(f"  {spec.name} {mode}: {rows[mode]}")
            time.sleep(3)
    finally:
        run.stop()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default="slowloris,slowbody,slowread")
    p.add_argument("--sockets", type=int, default=3000)
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--servers", default="nginx,flashplug")
    args = p.parse_args(argv)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    tmp = Path(tempfile.mkdtemp(prefix="flashplug-slow-"))
    root = tmp / "root"
    root.mkdir()
    (root / "1k.bin").write_bytes(b"x" * 1024)
    (root / "big.bin").write_bytes(b"y" * (8 << 20))
    specs = {"nginx": servers.NGINX, "flashplug": servers.flashplug("amped")}
    results = {}
    for name in args.servers.split(","):
        log(name)
        results[name] = measure(specs[name], root, tmp, args.modes.split(","), args.sockets,
                                args.seconds, log)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

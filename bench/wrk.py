"""Drive wrk and read back exact numbers.

Theory of operation: every run gets a generated Lua script whose `done`
callback prints one machine-readable line (requests, bytes, duration, error
counts, latency percentiles in microseconds), so nothing is scraped from
wrk's human output. A script with no `request` function keeps wrk on its
fast static-request path; workloads over many files add a `request`
function that picks a path at random from a list written beforehand (for
the Zipf workload the list itself is a Zipf-distributed sample, so a uniform
pick from it is a Zipf-distributed request). wrk runs under `taskset -c 1`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from servers import CLIENT_CPU

_DONE = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKRESULT {"requests":%d,"bytes":%d,"duration_us":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
'''

_PICK = '''
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
local n = #paths
math.randomseed(6)
request = function()
  return wrk.format(nil, paths[math.random(n)])
end
'''


def script(tmp: Path, name: str, paths_file: Path | None = None) -> Path:
    lua = tmp / f"wrk-{name}.lua"
    lua.write_text((_PICK % paths_file if paths_file else "") + _DONE)
    return lua


def parse(stdout: str) -> dict:
    for line in stdout.splitlines():
        if line.startswith("WRKRESULT "):
            raw = json.loads(line[len("WRKRESULT "):])
            secs = raw["duration_us"] / 1e6
            errors = {k: raw[k] for k in ("connect", "read", "write", "status", "timeout") if raw[k]}
            return {
                "requests": raw["requests"],
                "rps": raw["requests"] / secs if secs else 0.0,
                "mbps": raw["bytes"] / secs / 1e6 if secs else 0.0,
                "p50_ms": raw["p50_us"] / 1000,
                "p99_ms": raw["p99_us"] / 1000,
                "errors": errors,
            }
    raise ValueError("no result line in wrk output: " + stdout.strip()[-200:])


def run(port: int, path: str, lua: Path, duration: float, connections: int, timeout_s: int = 10) -> dict:
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
           "--latency", f"--timeout={timeout_s}s", "-s", str(lua), f"http://127.0.0.1:{port}{path}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + timeout_s + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip()[-200:]}")
    return parse(done.stdout)

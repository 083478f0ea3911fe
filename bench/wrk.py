"""Drive wrk and read back exact numbers.

Theory of operation: every run gets a generated Lua script whose `done`
callback prints one machine-readable line (requests, bytes, duration, error
counts, latency percentiles in microseconds), so nothing is scraped from
wrk's human output. A script with no `request` function keeps wrk on its
fast static-request path; workloads over many files add a `request`
function that picks a path at random from a list written beforehand (for
the Zipf workload the list itself is a Zipf-distributed sample, so a uniform
pick from it is a Zipf-distributed request). Real traffic (r) gets a script
written for each run (`real_script`): it joins every request head from
`traffic.Template`s, counts each response's status through wrk's `response`
callback, and reports the counts in the same result line (`status_problem`
judges them). wrk runs under `taskset -c 1`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from servers import CLIENT_CPU

_RESULT = r'''
local function result(summary, latency, extra)
  local e = summary.errors
  io.write(string.format(
    'WRKRESULT {"requests":%d,"bytes":%d,"duration_us":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d%s}\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max, extra))
end
'''

_DONE = _RESULT + '''
done = function(summary, latency, requests) result(summary, latency, "") end
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


def script(tmp: Path, name: str, paths_file: Path | None = None, close: bool = False) -> Path:
    """A script that reports the result line; with ``paths_file``, picks
    each request's path from it; with ``close``, every request asks for
    ``Connection: close`` (a new connection, and handshake, each)."""
    lua = tmp / f"wrk-{name}.lua"
    lua.write_text(('wrk.headers["Connection"] = "close"\n' if close else "")
                   + (_PICK % paths_file if paths_file else "") + _DONE)
    return lua


# Workload (r): every request head is built by the script, each response's
# status is counted, and, for heads that do not change on each request, so
# is the share of heads already sent byte for byte earlier in the run (the
# most a server that remembers whole heads could answer without parsing).
# Counts live in each wrk thread's Lua state; `done` runs in the main state
# and collects them through the thread objects `setup` kept.
_REAL = r'''
local threads = {}
setup = function(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads - 1)
end
codes, sent, repeats = {}, 0, 0
response = function(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end
done = function(summary, latency, requests)
  local all, parts = {}, {}
  local n_sent, n_repeats = 0, 0
  for _, t in ipairs(threads) do
    for code, k in pairs(t:get("codes")) do all[code] = (all[code] or 0) + k end
    n_sent = n_sent + t:get("sent")
    n_repeats = n_repeats + t:get("repeats")
  end
  for code, k in pairs(all) do parts[#parts + 1] = string.format('"%%d":%%d', code, k) end
  result(summary, latency, string.format(',"codes":{%%s},"sent":%%d,"repeats":%%d',
                                         table.concat(parts, ","), n_sent, n_repeats))
end
math.randomseed(%(seed)d)
-- With more than one wrk thread (-t), each has its own picks and numbers:
-- setup() has given it ``tid`` by the time init() runs.
init = function(args) math.randomseed(%(seed)d + tid) end
local heads = {
%(heads)s
}
local nh = #heads
'''

_ONE_PATH = '''
local paths, ids = {%s}, {0}
'''

# A path list with repeats (the Zipf sample): ids number its distinct paths.
_PATH_LIST = '''
local paths, ids, id_of = {}, {}, {}
for line in io.lines(%s) do
  if not id_of[line] then id_of[line] = #paths end
  paths[#paths + 1] = line
  ids[#ids + 1] = id_of[line]
end
'''

# Each head carries the request's number, so none repeats.
_VARYING = '''
local np = #paths
local conds = {%(conds)s}
local n = %(start)d
request = function()
  n = n + 1
  sent = sent + 1
  local h = heads[math.random(nh)]
  local k = tid * 100000000 + n
  return h[1] .. paths[math.random(np)] .. h[2] .. k .. h[3] .. conds[k %% 4 + 1]
end
'''

_FIXED = '''
local np = #paths
local seen = {}
request = function()
  sent = sent + 1
  local hi, pi = math.random(nh), math.random(np)
  local key = ids[pi] * nh + hi
  if seen[key] then repeats = repeats + 1 else seen[key] = true end
  local h = heads[hi]
  return h[1] .. paths[pi] .. h[2]
end
'''


def lua_string(s: str) -> str:
    """s as a Lua string literal; only printable ASCII, CR and LF may be in it."""
    body = s.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\n", "\\n")
    if not all(" " <= c <= "~" for c in body):
        raise ValueError(f"not printable ASCII: {s[:60]!r}")
    return f'"{body}"'


def real_script(tmp: Path, name: str, templates: list, path: str = "/1k.bin", paths_file: Path | None = None,
                conditions: list[str] | None = None, seed: int = 12, start: int = 0) -> Path:
    """A script for workload (r) over ``traffic.Template``s.

    Templates with a ``rest`` number every request from ``start`` (give the
    warm-up another start, or the measured run would repeat its heads);
    ``conditions`` (four strings, see ``traffic.conditions``) are then added
    by that number.  Templates without one are fixed heads, picked at random
    like the paths.  ``seed`` fixes every random pick.
    """
    varying = {t.rest is not None for t in templates}
    if len(varying) != 1:
        raise ValueError("templates must all vary, or none")
    if conditions and varying != {True}:
        raise ValueError("conditions need varying templates")
    rows = ",\n".join("  {" + ", ".join(lua_string(p) for p in (t.before, t.after, t.rest) if p is not None) + "}"
                       for t in templates)
    text = _RESULT + _REAL % {"seed": seed, "heads": rows}
    text += _PATH_LIST % lua_string(str(paths_file)) if paths_file else _ONE_PATH % lua_string(path)
    if varying == {True}:
        # Open-ended templates (traffic.open_end) leave the blank line to this.
        ends = [c + "\r\n" for c in conditions] if conditions else [""] * 4
        text += _VARYING % {"conds": ", ".join(map(lua_string, ends)), "start": start}
    else:
        text += _FIXED
    lua = tmp / f"wrk-{name}.lua"
    lua.write_text(text)
    return lua


def status_problem(codes: dict[str, int], revalidated: float = 0.0, tolerance: float = 0.02) -> str | None:
    """Why a run's status counts do not show the answers its requests call
    for, or None.  ``revalidated`` is the share of requests built to be
    answered 304; every other one must be a 200."""
    total = sum(codes.values())
    if not total:
        return "no responses counted"
    shown = ", ".join(f"{k} x{v:,}" for k, v in sorted(codes.items()))
    wrong = {k: v for k, v in codes.items() if k not in ("200", "304")}
    if wrong:
        return f"answered {shown}: expected only 200" + (" and 304" if revalidated else "")
    share = codes.get("304", 0) / total
    if abs(share - revalidated) > tolerance:
        return f"answered {shown}: {100 * share:.0f}% 304s where {100 * revalidated:.0f}% were due"
    return None


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
                **({"codes": raw["codes"], "sent": raw["sent"], "repeats": raw["repeats"]} if "codes" in raw else {}),
            }
    raise ValueError("no result line in wrk output: " + stdout.strip()[-200:])


def run(port: int, path: str, lua: Path, duration: float, connections: int, timeout_s: int = 10,
        scheme: str = "http", cpus: str = CLIENT_CPU, threads: int = 1) -> dict:
    cmd = ["taskset", "-c", cpus, "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
           "--latency", f"--timeout={timeout_s}s", "-s", str(lua), f"{scheme}://127.0.0.1:{port}{path}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + timeout_s + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip()[-200:]}")
    return parse(done.stdout)

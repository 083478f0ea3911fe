"""A server's process tree: who belongs to it, how much memory it holds,
and how to make sure all of it is gone.

Theory of operation: a server is the process we started plus every
descendant (nginx's worker, flashplug's helpers and workers, CGI children),
found by walking parent links in /proc. Following parents rather than the
process group matters because a server may put children into a session of
their own. Memory is the sum of VmRSS over the tree; a sampler thread reads
it ten times a second while the load runs and keeps the peak, and notes the
tree's CPU time, which says whether the server had its core to itself.
"""

from __future__ import annotations

import os
import signal
import threading
import time


def _ppids() -> dict[int, int]:
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = data[data.rindex(b")") + 2:].split()
        out[int(name)] = int(fields[1])
    return out


def tree(root: int) -> list[int]:
    """root and all its live descendants."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _ppids().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _status_kib(pid: int, field: bytes) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def cpu_seconds(root: int) -> float:
    """User + system CPU time of the tree's live processes (all their threads),
    plus that of the children they have reaped (CGI processes live briefly)."""
    return sum(cpu_split(root))


def cpu_split(root: int) -> tuple[float, float]:
    """``cpu_seconds`` as (user, system) seconds."""
    user = system = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            user += int(fields[11]) + int(fields[13])     # utime, cutime
            system += int(fields[12]) + int(fields[14])   # stime, cstime
        except (OSError, IndexError, ValueError):
            pass
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def cpu_times() -> dict[int, tuple[int, int]]:
    """Per CPU: (all ticks, ticks spent running tasks: user + nice + system)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                vals = [int(v) for v in vals]
                out[int(name[3:])] = (sum(vals), vals[0] + vals[1] + vals[2])
    return out


def busy_between(a: dict, b: dict, cpu: int) -> float:
    total = b[cpu][0] - a[cpu][0]
    return (b[cpu][1] - a[cpu][1]) / total if total else 0.0


def cpu_busy(cpus: tuple[int, ...], seconds: float) -> list[float]:
    """Share of each listed CPU spent running tasks over the next `seconds`."""
    a = cpu_times()
    time.sleep(seconds)
    b = cpu_times()
    return [busy_between(a, b, c) for c in cpus]


def rss_bytes(root: int) -> int:
    return 1024 * sum(_status_kib(pid, b"VmRSS:") for pid in tree(root))


class PeakSampler(threading.Thread):
    """Samples the tree's summed VmRSS until stop(); .peak is the largest seen."""

    def __init__(self, root: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak = 0
        self.samples = 0
        self.cpu_share = 0.0   # CPU seconds of the tree per wall second, over the run
        self._halt = threading.Event()
        self._t0, self._cpu0, self._times0 = time.monotonic(), cpu_seconds(root), cpu_times()
        self.core_busy = 0.0   # share of the server's core spent running any task, over the run

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, rss_bytes(self.root))
            self.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        self.peak = max(self.peak, rss_bytes(self.root))
        wall = time.monotonic() - self._t0
        self.cpu_share = (cpu_seconds(self.root) - self._cpu0) / wall if wall else 0.0
        return self.peak

    def measure_core(self, cpu: int) -> None:
        self.core_busy = busy_between(self._times0, cpu_times(), cpu)

    def busy_share(self, cpu: int) -> float:
        """Share of ``cpu`` spent running any task since the sampler started."""
        return busy_between(self._times0, cpu_times(), cpu)


def kill_tree(proc, grace: float = 5.0) -> list[int]:
    """Stop a server started with start_new_session=True; return pids that survived.

    SIGTERM goes to the process group first, for a graceful stop; whatever of
    the tree (as seen before the signal) is still there after `grace` seconds
    gets SIGKILL, so no leftover keeps a port or a file open.
    """
    members = tree(proc.pid) if proc.poll() is None else []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        _signal(proc.pid, sig, group=True)
        if sig == signal.SIGKILL:
            for pid in _alive(members):
                _signal(pid, sig, group=False)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _alive(members):
                return []
            time.sleep(0.05)
    return _alive(members)


def _signal(pid: int, sig: int, group: bool) -> None:
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            if state != b"Z":
                alive.append(pid)
        except OSError:
            pass
    return alive

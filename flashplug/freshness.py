"""Is a cached file still the file on disk?  One stat, or a sweep's many
in a process of their own.

Theory of operation: a file-cache entry remembers its file's identity,
``(st_ino, st_dev, st_size, st_mtime_ns)``, and that of each sidecar it
looked for (``flashplug.compress``); ``unchanged`` stats them again and
compares.  It blocks, so it runs in a helper.

A revalidation sweep (``StaticFiles.revalidate_ahead``) stats every entry
served lately before its trust runs out: on the benchmark's Zipf set that
is all of 10,000 files, about 15,000 stat() calls a second.  In a helper
thread each stat() lets go of the GIL and takes it back while the loop
runs Python on the same core, so each one costs thread switches and GIL
hand-overs to both threads, and the loop waits for the GIL after its own
system calls.  ``StatProcess`` gives the sweep's stats to a child process,
which has a GIL of its own: the helper thread that runs the sweep sends it
the batch through a pipe (``marshal``: paths and identities) and blocks,
without the GIL, until the child answers one byte per entry.  This file is
the child's program too (run by its path, it imports nothing of
flashplug), so the comparison is written once.

The child is started by the first sweep that has work (after the worker
gave up root, so it sees the files as the worker does), runs on the
worker's CPUs, holds no descriptor but its pipes, and ends when its input
closes: when the worker closes it (``close``) or dies.  Should it fail,
that batch is stat'ed in the helper thread, and a new child is started at
the next sweep, up to ``MAX_STARTS`` times; then the sweeps stay in the
helper thread.
"""
import marshal
import os
import signal
import subprocess
import sys
import threading

# Children started at most, per worker: a child that keeps failing (no
# interpreter to run it, a file system that kills it) is not restarted
# three times a second.
MAX_STARTS = 3


def ident_of(st):
    """The (st_ino, st_dev, st_size, st_mtime_ns) that says a file is unchanged."""
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


def unchanged(path, ident, sidecars):
    """Blocking: does the file at ``path`` (str or bytes) still have the
    identity ``ident``, and each sidecar of ``sidecars``, ``(path, ident or
    None)``, the one it had (None: it was absent)?"""
    try:
        if ident_of(os.stat(path)) != ident:
            return False
    except OSError:
        return False
    for side, was in sidecars:
        try:
            now = ident_of(os.stat(side))
        except OSError:
            now = None
        if now != was:
            return False
    return True


class StatProcess:
    """The sweep's stats, in a child process (one per worker)."""

    def __init__(self):
        self._lock = threading.Lock()   # one batch at a time on the pipe
        self._proc = None
        self._starts = 0
        self._closed = False

    def unchanged_all(self, entries):
        """Blocking (a helper): ``unchanged`` for each of ``entries`` (file-
        cache entries: their ``fspath``, ``ident`` and ``sidecars``, which
        never change), as bytes, 1 for unchanged and 0 for changed."""
        # Paths as bytes: the child's file-system encoding could differ.
        encode = os.fsencode
        items = [(encode(e.fspath), e.ident,
                  e.sidecars and tuple((encode(path), was) for path, was in e.sidecars))
                 for e in entries]
        with self._lock:
            proc = self._proc
            if proc is None and not self._closed and self._starts < MAX_STARTS:
                proc = self._start()
            if proc is not None:
                try:
                    data = marshal.dumps(items)
                    proc.stdin.write(len(data).to_bytes(8, "little") + data)
                    proc.stdin.flush()
                    answer = proc.stdout.read(len(items))
                    if len(answer) == len(items):
                        return answer
                except (OSError, ValueError):
                    pass
                self._stop()
        return bytes(unchanged(*item) for item in items)

    def _start(self):
        self._starts += 1
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError:
            self._proc = None
        return self._proc

    def _stop(self):
        proc, self._proc = self._proc, None
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass
            proc.kill()
            proc.wait()

    def close(self):
        """No more batches: the child reads the end of its input and exits
        (or is killed if a stat holds it past a second).  A batch still in
        a helper then fails over to the helper thread."""
        self._closed = True
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _serve(inp, out):
    """The child: answer batches until the input ends."""
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        items = marshal.loads(inp.read(int.from_bytes(head, "little")))
        out.write(bytes(unchanged(*item) for item in items))
        out.flush()


if __name__ == "__main__":
    # A Ctrl-C or a hang-up for the server's process group is the
    # worker's to handle; this child ends with its input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _serve(sys.stdin.buffer, sys.stdout.buffer)

"""Keep a file set out of the page cache while a load runs.

Theory of operation: this is the disk-bound regime of the Flash paper,
made reproducible on a machine whose RAM holds the whole set. Every file
is opened once; then, every INTERVAL seconds, `posix_fadvise(DONTNEED)` on
each descriptor drops its clean pages, so most requests find their file
cold and the server must wait for the disk. On SIGTERM it prints how many
sweeps it made and how long one took, so the report can say whether the
interval was kept.

Usage: python evict.py LISTFILE INTERVAL   (LISTFILE: one absolute path a line)
"""

import os
import signal
import sys
import time


def main() -> None:
    paths = [p for p in open(sys.argv[1]).read().splitlines() if p]
    interval = float(sys.argv[2])
    fds = [os.open(p, os.O_RDONLY) for p in paths]
    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    sweeps, busy = 0, 0.0
    print("ready", flush=True)
    while not stop:
        t0 = time.monotonic()
        for fd in fds:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        spent = time.monotonic() - t0
        sweeps, busy = sweeps + 1, busy + spent
        time.sleep(max(0.0, interval - spent))
    print(f"sweeps {sweeps} mean_ms {1000 * busy / max(sweeps, 1):.2f}", flush=True)


if __name__ == "__main__":
    main()

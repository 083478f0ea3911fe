"""Accepting connections when the process is out of descriptors.

Theory of operation: ``accept()`` fails with EMFILE or ENFILE while the
process (or the system) has no descriptor to spare, and the pending
connection stays in the backlog, so the listener is at once ready again:
retrying at once would spin a core and write a log line per try.  Like
nginx (which disables accept events for 500 ms), the server stops
accepting for ``ACCEPT_PAUSE`` seconds and logs at most one line per
``LOG_INTERVAL``; the connections already open keep being served, and
each one that closes frees a descriptor for the backlog.
"""
import errno
import logging
import time

log = logging.getLogger("flashplug.server")

# Long enough that a full process does not spin; short enough that the
# backlog is served soon after descriptors free up.
ACCEPT_PAUSE = 0.5
LOG_INTERVAL = 10.0
# Errors that mean "no resources now", not "this one connection failed".
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class AcceptPause:
    """When to log that accepting is paused (one line per interval)."""

    def __init__(self):
        self.next_log = 0.0
        self.skipped = 0

    def note(self, error):
        """Record an out-of-resources ``error``; log it if the interval passed."""
        now = time.monotonic()
        if now < self.next_log:
            self.skipped += 1
            return
        more = f" ({self.skipped} more since the last report)" if self.skipped else ""
        log.error("cannot accept connections: %s; pausing accepting for %.1f s%s",
                  error.strerror, ACCEPT_PAUSE, more)
        self.next_log = now + LOG_INTERVAL
        self.skipped = 0

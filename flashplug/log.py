"""Access log (Combined Log Format) and error log.

The access log is written by the loop; lines are buffered and flushed once a
second (and at exit) so logging costs a string format, not a write, per
request.  The error log is the standard ``logging`` tree under "flashplug",
one line per record.
"""
import logging
import sys
import time

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
           "Oct", "Nov", "Dec")


def clf_time(ts):
    """The bracketed time of Combined Log Format, in local time."""
    t = time.localtime(ts)
    off = t.tm_gmtoff
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    return (f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} "
            f"{sign}{off // 3600:02d}{off % 3600 // 60:02d}]")


def _quote(value):
    """Escape a field for the log: no raw quotes, backslashes or controls."""
    if value is None:
        return "-"
    out = []
    for ch in value:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


class AccessLog:
    """Collects Combined Log Format lines and writes them in batches."""

    def __init__(self, target):
        if target == "-":
            self._file = sys.stdout
            self._owned = False
        else:
            self._file = open(target, "a", buffering=1 << 16)
            self._owned = True
        self._lines = []
        self._cached_second = None
        self._cached_stamp = ""

    def log(self, remote_addr, user, method, target, version, status, size,
            referer, agent):
        """Queue one line; ``method`` None stands for an unparsable request."""
        now = int(time.time())
        if now != self._cached_second:
            self._cached_second = now
            self._cached_stamp = clf_time(now)
        line = f"{method} {target} HTTP/{version}" if method is not None else "-"
        self._lines.append(
            f'{remote_addr or "-"} - {_quote(user) if user else "-"} '
            f'{self._cached_stamp} "{_quote(line)}" {status} '
            f'{size if size else "-"} "{_quote(referer)}" "{_quote(agent)}"\n')
        if len(self._lines) >= 256:
            self.flush()

    def flush(self):
        if self._lines:
            try:
                self._file.write("".join(self._lines))
                self._file.flush()
            except (OSError, ValueError):
                pass  # a full disk or closed stdout must not take the server down
            self._lines.clear()

    def close(self):
        self.flush()
        if self._owned:
            self._file.close()


def setup_error_log(level):
    """One line per record on stderr: time, level, logger, message."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    root = logging.getLogger("flashplug")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False

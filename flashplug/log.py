"""Access log (Combined Log Format) and error log.

The access log is written by the loop; lines are buffered and flushed once a
second (and at exit) so logging costs a string format, not a write, per
request.  The error log is the standard ``logging`` tree under "flashplug",
one line per record, on stderr or in a file.

Log rotation works as with nginx: logrotate renames the files, then sends
SIGUSR1, and ``reopen_logs()`` opens new files at the configured paths
(every open log file of the process is registered for that).
"""
import logging
import sys
import time
import weakref

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
    """Escape a field for the log: no raw quotes, backslashes, controls or
    bytes past ASCII.  Request fields are str holding one character per
    byte as received (ISO-8859-1), so ``\\xNN`` is that byte, as nginx and
    Apache write it; written raw, a UTF-8 agent would come out re-encoded
    (``cafÃ©``) and a C1 control could reach the terminal that shows the log."""
    if value is None:
        return "-"
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    out = []
    for ch in value:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) >= 0x7F:
            # A str that is no byte string (a user name decoded as UTF-8)
            # is escaped by its UTF-8 bytes.
            data = ch.encode("latin-1") if ord(ch) <= 0xFF else \
                ch.encode("utf-8", "surrogateescape")
            out.extend(f"\\x{b:02x}" for b in data)
        else:
            out.append(ch)
    return "".join(out)


# Every log file this process has open, for reopen_logs().
_open_logs = weakref.WeakSet()


def reopen_logs():
    """Reopen every log file at its path (SIGUSR1, after a rotation).

    A file that cannot be opened (the folder vanished, permissions) keeps
    the old one and says so in the error log: losing the log must not stop
    the server.  Runs once per rotation; opening a log file is one metadata
    operation, done where the lines are written so the swap never races a
    flush.
    """
    for target in list(_open_logs):
        try:
            target.reopen()
        except OSError as e:
            logging.getLogger("flashplug.log").error(
                "cannot reopen %s: %s; still writing to the old file", target.path, e.strerror)


#: ``--log-format`` values: Combined Log Format, or Apache's
#: ``vhost_combined``, the same line after the site's name and the local
#: port (``example.org:443 ...``; ``-`` for the top-level settings' site).
LOG_FORMATS = ("combined", "vhost_combined")


class AccessLog:
    """Collects access-log lines (``LOG_FORMATS``) and writes them in batches."""

    def __init__(self, target, log_format="combined"):
        self.vhost = log_format == "vhost_combined"
        self.path = target
        if target == "-":
            self._file = sys.stdout
            self._owned = False
        else:
            self._file = open(target, "a", buffering=1 << 16)
            self._owned = True
            _open_logs.add(self)
        self._lines = []
        self._cached_second = None
        self._cached_stamp = ""

    def log(self, remote_addr, user, method, target, version, status, size,
            referer, agent, site="-", port=0):
        """Queue one line; ``method`` None stands for an unparsable request;
        ``site`` (its name) and ``port`` (the local one) for vhost_combined."""
        now = int(time.time())
        if now != self._cached_second:
            self._cached_second = now
            self._cached_stamp = clf_time(now)
        line = f"{method} {target} HTTP/{version}" if method is not None else "-"
        self._lines.append(
            (f"{site}:{port} " if self.vhost else "") +
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

    def reopen(self):
        new = open(self.path, "a", buffering=1 << 16)
        self.flush()
        old, self._file = self._file, new
        old.close()

    def close(self):
        self.flush()
        if self._owned:
            _open_logs.discard(self)
            self._file.close()


class _ErrorLogFile(logging.StreamHandler):
    """The error log in a file, reopened at its path by reopen_logs()."""

    def __init__(self, path):
        super().__init__(open(path, "a", buffering=1))
        self.path = path
        _open_logs.add(self)

    def reopen(self):
        new = open(self.path, "a", buffering=1)
        old = self.setStream(new)
        if old is not None:
            old.close()


def setup_error_log(level, path="-"):
    """One line per record: time, level, logger, message; on stderr for
    ``path`` "-", else appended to the file ``path`` (OSError if it cannot
    be opened)."""
    handler = logging.StreamHandler(sys.stderr) if path == "-" else _ErrorLogFile(path)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    root = logging.getLogger("flashplug")
    for old in root.handlers:
        if isinstance(old, _ErrorLogFile):
            _open_logs.discard(old)
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False

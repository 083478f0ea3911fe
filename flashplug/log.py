"""Access log (Combined Log Format) and error log.

The access log is written by the loop; lines are buffered and flushed once a
second (and at exit) so logging costs a string format, not a write, per
request.  The error log is the standard ``logging`` tree under "flashplug",
one line per record, on stderr or in a file.

Log rotation works as with nginx: logrotate renames the files, then sends
SIGUSR1, and ``reopen_logs()`` opens new files at the configured paths
(every open log file of the process is registered for that).
"""
import errno
import fcntl
import logging
import os
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


def _open_append(path, mode, buffering):
    """``open(path, mode, buffering=buffering)`` for appending that never
    waits: a FIFO no process reads is an OSError (ENXIO, open(2)) instead
    of an open that parks the event loop until a reader comes."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC,
                 0o666)
    # Writes block as before (a FIFO's reader sets the pace).
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return open(fd, mode, buffering=buffering)


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
            why = "a FIFO that no process reads" if e.errno == errno.ENXIO else e.strerror
            logging.getLogger("flashplug.log").error(
                "cannot reopen %s: %s; still writing to the old file", target.path, why)


#: ``--log-format`` values: Combined Log Format, or Apache's
#: ``vhost_combined``, the same line after the site's name and the local
#: port (``example.org:443 ...``; ``-`` for the top-level settings' site).
LOG_FORMATS = ("combined", "vhost_combined")


# Seconds between error-log lines while the access log cannot be written
# (a full disk): the first failure is said at once, then one line a minute,
# so a failing disk does not also flood the error log.
WRITE_ERROR_EVERY = 60.0


class AccessLog:
    """Collects access-log lines (``LOG_FORMATS``) and writes them in batches.

    A file is written unbuffered, a batch in one ``write``: the batch is
    our buffer, so a write that fails (a full disk, a FIFO whose reader
    left) loses that batch and nothing stays behind to fail again at the
    next flush or at exit.  The error log says so, and how many lines were
    lost once writing works again; the server serves on.
    """

    def __init__(self, target, log_format="combined"):
        self.vhost = log_format == "vhost_combined"
        self.path = target
        if target == "-":
            self._file = sys.stdout    # text: in order with what else is printed there
            self._owned = False
        else:
            self._file = _open_append(target, "ab", 0)
            self._owned = True
            _open_logs.add(self)
        self._lines = []
        self._cached_second = None
        self._cached_stamp = ""
        self._lost = 0             # lines lost since writing last failed
        self._said_at = None       # when the error log last said so

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
        if not self._lines:
            return
        data = "".join(self._lines)
        if self._owned:
            data = data.encode("utf-8", "backslashreplace")
        count = len(self._lines)
        self._lines.clear()
        try:
            self._file.write(data)
            if not self._owned:
                self._file.flush()
        except (OSError, ValueError) as e:
            # A full disk or a closed stdout must not take the server down.
            self._lost += count
            self._failed(e)
            return
        if self._lost:
            logging.getLogger("flashplug.log").warning(
                "access log %s: writing again; %d lines were lost", self.path, self._lost)
            self._lost = 0
            self._said_at = None

    def _failed(self, error):
        now = time.monotonic()
        if self._said_at is not None and now - self._said_at < WRITE_ERROR_EVERY:
            return
        self._said_at = now
        why = getattr(error, "strerror", None) or str(error)
        logging.getLogger("flashplug.log").error(
            "access log %s: cannot write: %s; its lines are lost until it can (%d so far)",
            self.path, why, self._lost)

    def reopen(self):
        new = _open_append(self.path, "ab", 0)
        self.flush()
        old, self._file = self._file, new
        old.close()

    def close(self):
        self.flush()
        if self._owned:
            _open_logs.discard(self)
            self._file.close()


class _ErrorLog(logging.StreamHandler):
    """The error log on stderr: a record that cannot be written (stderr
    closed, a full disk under it) is dropped, not answered with the
    ``logging`` module's "--- Logging error ---" traceback on the same
    stream."""

    def handleError(self, record):
        pass


class _ErrorLogFile(_ErrorLog):
    """The error log in a file, reopened at its path by reopen_logs().  A
    record that cannot be written is said on stderr instead, in one line
    (once a minute at most, as the access log's write errors)."""

    def __init__(self, path):
        super().__init__(_open_append(path, "a", 1))
        self.path = path
        self._said_at = None
        _open_logs.add(self)

    def handleError(self, record):
        error = sys.exc_info()[1]
        now = time.monotonic()
        if self._said_at is not None and now - self._said_at < WRITE_ERROR_EVERY:
            return
        self._said_at = now
        try:
            print(f"flashplug: cannot write the error log {self.path}: "
                  f"{getattr(error, 'strerror', None) or error}; dropped: {record.getMessage()}",
                  file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass

    def reopen(self):
        new = _open_append(self.path, "a", 1)
        old = self.setStream(new)
        if old is not None:
            try:
                old.close()
            except OSError:
                pass    # its last lines could not be written: the new file goes on


def setup_error_log(level, path="-"):
    """One line per record: time, level, logger, message; on stderr for
    ``path`` "-", else appended to the file ``path`` (OSError if it cannot
    be opened)."""
    handler = _ErrorLog(sys.stderr) if path == "-" else _ErrorLogFile(path)
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

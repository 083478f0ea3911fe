"""Flash's caches for static files, owned by the event loop.

Theory of operation: one ``FileEntry`` per URL path joins the paper's three
caches in one object:

* pathname translation: URL path -> file on disk, its stat and ETag;
* response header: the header lines that do not change between requests
  (type, length, validators) prebuilt as bytes; the kernel splices the Date
  line, which changes once a second, in front of them;
* content: the bytes of a small file, or an open descriptor for a large one
  (the open-fd cache), sent with ``sendfile``.

Entries are built by a helper (``load_entry`` is blocking) and used by the
loop without locks: the loop is the only owner.  An entry is trusted for
``valid`` seconds; after that the loop asks a helper to stat the file again
(``still_fresh``), so an edited, deleted or renamed file is served fresh
within that window.  The cache is bounded in entries and in content bytes,
evicting the least recently used entry first.
"""
import math
import os
import stat as stat_mod
import time
from collections import OrderedDict

from flashplug.http.conditionals import make_etag
from flashplug.http.dates import format_http_date
from flashplug.http.mime import content_type_for
from flashplug.residency import MINCORE, PROBE_NEEDS_MAPPING, WINDOW, read_in


class FileEntry:
    """A regular file as the static handler serves it."""

    __slots__ = ("fspath", "size", "mtime", "ident", "etag", "last_modified",
                 "content_type", "head_tail", "validator_lines", "data", "fd", "refs", "dead",
                 "checked", "nbytes", "map_addr", "used", "recent")

    def __init__(self, fspath, st, content_type, data, fd):
        self.fspath = fspath
        self.size = st.st_size
        # A modification time in the future is sent as "now": Last-Modified
        # must not be later than the response's Date (RFC 9110 §8.8.2.1).
        modified = min(st.st_mtime, time.time())
        self.mtime = int(modified)
        self.ident = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
        self.etag = make_etag(st.st_mtime_ns, st.st_size, st.st_ino)
        self.last_modified = format_http_date(modified)
        self.content_type = content_type
        self.data = data          # whole content, for small files
        self.fd = fd              # open descriptor, for large files
        self.map_addr = 0         # its mapping, for the residency probe (0: none)
        self.refs = 0             # sends in progress that use ``fd``
        self.dead = False         # evicted: close ``fd`` when ``refs`` drops to 0
        self.checked = time.monotonic()
        self.used = False         # served since the last sweep (set per hit: a store)
        self.recent = 0           # sweeps left before an unused entry stops being swept
        self.nbytes = len(data) if data is not None else 0
        # Prebuilt header lines of a 304 and of a full 200 response.
        self.validator_lines = (f"Last-Modified: {self.last_modified}\r\n"
                                f"ETag: {self.etag}\r\n").encode("latin-1")
        self.head_tail = (
            f"Content-Type: {content_type}\r\n"
            f"Last-Modified: {self.last_modified}\r\n"
            f"ETag: {self.etag}\r\n"
            f"Accept-Ranges: bytes\r\n"
            f"Content-Length: {self.size}\r\n").encode("latin-1")

    def retain(self):
        self.refs += 1

    def release(self):
        self.refs -= 1
        if self.dead and self.refs == 0:
            self._close()

    def discard(self):
        """Called when the cache drops the entry."""
        self.dead = True
        if self.refs == 0:
            self._close()

    def _close(self):
        if self.map_addr:
            MINCORE.unmap(self.map_addr, self.size)
            self.map_addr = 0
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class NotRegular(Exception):
    """The path names something other than a regular file (FIFO, device...)."""


def open_regular(fspath):
    """Open ``fspath`` for reading and check it is a regular file, without races.

    Opened with O_NONBLOCK, so a FIFO's open() returns at once instead of
    parking the helper until a writer appears, and with O_NOCTTY, so a
    terminal device never becomes our controlling terminal.  Then the open
    descriptor is fstat'ed (as nginx does), so the file checked is the file
    served: anything but a regular file (FIFO, socket, device) raises
    NotRegular.  O_NONBLOCK is cleared again, as ``sendfile`` from a file
    opened with it may report EAGAIN on some file systems.

    :raises NotRegular: the path names a FIFO, socket or device.
    :raises OSError: as ``os.open`` (ENXIO for a Unix socket).
    """
    fd = os.open(fspath, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            raise NotRegular(fspath)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def load_entry(fspath, small_max):
    """Blocking: build a FileEntry, reading the whole file if it is small."""
    fd, st = open_regular(fspath)
    ctype = content_type_for(fspath)
    if st.st_size <= small_max:
        try:
            chunks = []
            left = st.st_size
            while left > 0:
                chunk = os.read(fd, left)
                if not chunk:
                    break  # truncated under us: serve what the stat said, fresh next time
                chunks.append(chunk)
                left -= len(chunk)
            data = b"".join(chunks)
        finally:
            os.close(fd)
        if len(data) != st.st_size:
            st = os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid,
                                 st.st_gid, len(data), st.st_atime, st.st_mtime, st.st_ctime))
        return FileEntry(fspath, st, ctype, data, None)
    entry = FileEntry(fspath, st, ctype, None, fd)
    if PROBE_NEEDS_MAPPING:
        entry.map_addr = MINCORE.map_file(fd, st.st_size)
    # The loop is about to send it: bring its first window in now, in this
    # same helper call, rather than after a probe sends us back here.
    read_in(fd, 0, min(st.st_size, WINDOW))
    return entry


def still_fresh_all(entries):
    """Blocking: ``still_fresh`` for many entries, in one helper call."""
    return [still_fresh(entry) for entry in entries]


def still_fresh(entry):
    """Blocking: does the file on disk still match the entry?"""
    try:
        st = os.stat(entry.fspath)
    except OSError:
        return False
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns) == entry.ident


def sweep_period(valid):
    """Seconds between two revalidation sweeps for a ``--cache-valid`` of
    ``valid`` seconds: a third of the window, at most one second.

    A sweep must refresh an entry before its trust runs out, and a sweep
    takes a little while itself, so the period is well under the window
    (a period equal to the window leaves every hot entry stale for the
    length of each batch, and sends its requests to a helper one by one).
    """
    return min(1.0, valid / 3)


# How long (seconds) sweeps keep revalidating an entry after its last hit.
# A stat in a sweep's batch costs a helper a few microseconds; a stale entry
# costs its next request a helper trip of its own (tens of microseconds of
# loop time and a wait), so sweeping pays for an entry asked for at least
# once in this long: the long tail of a Zipf workload is.
RECENT_SECONDS = 5.0

# Large files kept open at once: each holds a descriptor and a mapping, so
# stay well under the descriptor limit that connections also draw on.
MAX_OPEN_FILES = 4096


class FileCache:
    """URL path -> FileEntry, LRU, bounded in entries, content bytes and
    open descriptors."""

    def __init__(self, max_entries, max_bytes, valid, stats, max_open=MAX_OPEN_FILES):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_open = max_open
        self.valid = valid
        self.period = sweep_period(valid)
        # Sweeps an entry stays in after its last hit (about RECENT_SECONDS).
        self.recent_sweeps = max(1, math.ceil(RECENT_SECONDS / self.period)) if valid > 0 else 0
        self.stats = stats
        self.bytes = 0
        self.open_files = 0
        self._entries = OrderedDict()

    def get(self, key):
        """The entry for ``key`` if cached (fresh or not), else None."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def retain(self, entry):
        """Count a send from ``entry``'s descriptor; False once it is closed."""
        if entry.fd is None:
            return False
        entry.refs += 1
        return True

    def release(self, entry):
        entry.release()

    def is_fresh(self, entry, now):
        return now - entry.checked < self.valid

    def put(self, key, entry):
        old = self._entries.pop(key, None)
        if old is not None:
            self._drop(old)
        if entry.nbytes > self.max_bytes:
            return  # too big for the content budget: serve it, do not keep it
        self._entries[key] = entry
        self.bytes += entry.nbytes
        if entry.fd is not None:
            self.open_files += 1
        while (len(self._entries) > self.max_entries or self.bytes > self.max_bytes
               or self.open_files > self.max_open):
            _, victim = self._entries.popitem(last=False)
            self._drop(victim)
            self.stats.cache_evictions += 1

    def due_for_check(self, now):
        """Entries served lately whose trust would run out before the next
        sweep has surely finished (half a period after it starts).

        "Lately" is within about RECENT_SECONDS of the last hit, not only
        since the previous sweep: a file asked for every few seconds would
        otherwise go stale between two requests and send each of them to a
        helper first.  Not much longer: each swept entry costs a stat on a
        helper, and a stale entry costs its next request only one helper
        trip.
        """
        soon = now + 1.5 * self.period - self.valid
        recent = self.recent_sweeps
        due = []
        for key, entry in self._entries.items():
            if entry.used:
                entry.used = False
                entry.recent = recent
            elif entry.recent:
                entry.recent -= 1
            else:
                continue
            if entry.checked <= soon:
                due.append((key, entry))
        return due

    def remove(self, key):
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._drop(entry)

    def _drop(self, entry):
        self.bytes -= entry.nbytes
        if entry.fd is not None:
            self.open_files -= 1
        entry.discard()

    def clear(self):
        for entry in self._entries.values():
            self._drop(entry)
        self._entries.clear()

    def __len__(self):
        return len(self._entries)

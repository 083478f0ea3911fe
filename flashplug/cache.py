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
from flashplug.http.dates import format_http_date, nameable
from flashplug.http.mime import content_type_for
from flashplug.residency import MINCORE, PROBE_NEEDS_MAPPING, WINDOW, read_in


class FileEntry:
    """A regular file as the static handler serves it, or one of its
    content-coded variants (``coding``: a sidecar such as ``page.html.br``,
    or bytes compressed on the fly, see ``flashplug.compress``)."""

    __slots__ = ("fspath", "size", "mtime", "ident", "etag", "last_modified",
                 "content_type", "head_tail", "validator_lines", "data", "fd", "refs", "dead",
                 "checked", "nbytes", "map_addr", "used", "recent", "coding", "vary",
                 "variants", "sidecars", "absent_in", "nfds", "rule_fields", "expires")

    def __init__(self, fspath, ident, content_type, data, fd, size=None, coding=None,
                 vary=False, weak=False):
        """``ident``: the file's (st_ino, st_dev, st_size, st_mtime_ns), what
        ``still_fresh`` compares; ``size``: the bytes served when they are
        not the file's (a compressed variant); ``coding``: the content-coding
        of those bytes (RFC 9110 §8.4), which also ends the ETag, so each
        variant has validators of its own; ``vary``: the file is negotiated
        on Accept-Encoding, so every answer says ``Vary: Accept-Encoding``;
        ``weak``: the bytes are not a stable function of the file (compressed
        on the fly, so another library version may make others), so the
        ETag is weak (RFC 9110 §8.8.1), as nginx's gzip filter makes it."""
        ino, _dev, file_size, mtime_ns = ident
        self.fspath = fspath
        self.size = file_size if size is None else size
        # Whole seconds, floored from the nanoseconds exactly: a float
        # rounds 12:26:40.999999999 up to :41, and int() rounds -1.5 s up to
        # -1 where the date sent shows -2 (so its own Last-Modified never
        # gave a 304).  A time in the future is sent as "now":
        # Last-Modified must not be later than the response's Date (RFC 9110
        # §8.8.2.1); one before year 1 as the first date an HTTP-date names.
        self.mtime = min(nameable(mtime_ns // 1_000_000_000), int(time.time()))
        self.ident = ident
        etag = make_etag(mtime_ns, file_size, ino)
        if coding is not None:
            etag = f'{etag[:-1]}-{coding}"'
        self.etag = "W/" + etag if weak else etag
        self.last_modified = format_http_date(self.mtime)
        self.content_type = content_type
        self.coding = coding
        self.vary = vary
        self.variants = None      # coding -> sidecar FileEntry or None (made on the fly)
        self.sidecars = ()        # (path, ident or None) of each sidecar looked for
        # The folder's settled (inode, dev, ctime) when the sidecars, all
        # absent, were last found so by a sweep (``still_fresh_all``), or None.
        self.absent_in = None
        self.data = data          # whole content, for small files
        self.fd = fd              # open descriptor, for large files
        self.nfds = 0 if fd is None else 1     # descriptors held, sidecars' included
        self.map_addr = 0         # its mapping, for the residency probe (0: none)
        self.refs = 0             # sends in progress that use ``fd``
        self.dead = False         # evicted: close ``fd`` when ``refs`` drops to 0
        self.checked = time.monotonic()
        self.used = False         # served since the last sweep (set per hit: a store)
        self.recent = 0           # sweeps left before an unused entry stops being swept
        self.nbytes = len(data) if data is not None else 0
        self.rule_fields = ()     # the config's header rules for its path (flashplug.rules)
        self.expires = None       # seconds of an Expires among them, or None
        self._build_lines(b"")

    def _build_lines(self, extra):
        """Prebuild the header lines of a 304 and of a full 200 response,
        ``extra`` (bytes: whole lines) included in both (RFC 9110 §15.4.5:
        a 304 carries the Cache-Control and Expires a 200 would)."""
        vary_line = "Vary: Accept-Encoding\r\n" if self.vary else ""
        coding_line = f"Content-Encoding: {self.coding}\r\n" if self.coding else ""
        validators = (f"Last-Modified: {self.last_modified}\r\n"
                      f"ETag: {self.etag}\r\n{vary_line}").encode("latin-1")
        self.validator_lines = validators + extra
        self.head_tail = b"".join((
            f"Content-Type: {self.content_type}\r\n{coding_line}".encode("latin-1"), validators,
            f"Accept-Ranges: bytes\r\nContent-Length: {self.size}\r\n".encode("latin-1"),
            extra))

    def set_rule_fields(self, fields, expires):
        """Bake the header rules' fields for this entry's path (``Rules.
        entry_headers``) into its prebuilt lines; ``expires``: the seconds
        its Expires field is refreshed with (``trust``), or None."""
        self.rule_fields = fields if type(fields) is tuple else tuple(fields)
        self.expires = expires
        self._build_lines(b"".join(f"{name}: {value}\r\n".encode("latin-1")
                                   for name, value in fields))

    def trust(self, since):
        """The file was found unchanged at ``since`` (time.monotonic):
        trust it for another --cache-valid window.  A baked Expires moves
        on with it, so it is never more than that window early."""
        self.checked = max(self.checked, since)
        if self.expires is not None:
            stamp = format_http_date(time.time() + self.expires)
            self.set_rule_fields([(n, stamp if n == "Expires" else v)
                                  for n, v in self.rule_fields], self.expires)

    def add_variants(self, variants):
        """Attach the variants negotiation picks from (``variants``, see
        ``flashplug.compress.Compression.find``); their bytes and
        descriptors count as ours."""
        self.variants = variants
        for variant in variants.values():
            if variant is not None:
                self.nbytes += variant.nbytes
                self.nfds += variant.nfds

    def retain(self):
        self.refs += 1

    def release(self):
        self.refs -= 1
        if self.dead and self.refs == 0:
            self._close()

    def discard(self):
        """Called when the cache drops the entry (and so its sidecars)."""
        self.dead = True
        if self.refs == 0:
            self._close()
        if self.variants is not None:
            for variant in self.variants.values():
                if variant is not None:
                    variant.discard()

    def _close(self):
        if self.map_addr:
            MINCORE.unmap(self.map_addr, self.size)
            self.map_addr = 0
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class NotRegular(Exception):
    """The path names something other than a regular file (FIFO, device...)."""


class IsDirectory(NotRegular):
    """The path names a directory (the static handler redirects or lists)."""


def open_regular(fspath):
    """Open ``fspath`` for reading and check it is a regular file, without races.

    Opened with O_NONBLOCK, so a FIFO's open() returns at once instead of
    parking the helper until a writer appears, and with O_NOCTTY, so a
    terminal device never becomes our controlling terminal.  Then the open
    descriptor is fstat'ed (as nginx does), so the file checked is the file
    served: anything but a regular file (FIFO, socket, device) raises
    NotRegular.  O_NONBLOCK is cleared again, as ``sendfile`` from a file
    opened with it may report EAGAIN on some file systems.

    :raises IsDirectory: the path names a directory.
    :raises NotRegular: the path names a FIFO, socket or device.
    :raises OSError: as ``os.open`` (ENXIO for a Unix socket).
    """
    fd = os.open(fspath, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            raise (IsDirectory if stat_mod.S_ISDIR(st.st_mode) else NotRegular)(fspath)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def ident_of(st):
    """The (st_ino, st_dev, st_size, st_mtime_ns) that says a file is unchanged."""
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


def load_entry(fspath, small_max, compression=None, content_type=None, coding=None):
    """Blocking: build a FileEntry, reading the whole file if it is small.

    ``compression`` (a ``flashplug.compress.Compression``) looks for the
    file's sidecars and says whether it is negotiated on Accept-Encoding;
    a sidecar itself is loaded with its original's ``content_type`` and
    its ``coding``.
    """
    fd, st = open_regular(fspath)
    ctype = content_type or content_type_for(fspath)
    variants, sidecars = None, ()
    if compression is not None:
        try:
            variants, sidecars = compression.find(fspath, st, ctype, small_max)
        except BaseException:
            os.close(fd)
            raise
    try:
        entry = _load(fspath, fd, st, ctype, small_max, coding,
                      variants is not None or coding is not None)
    except BaseException:
        for variant in (variants or {}).values():
            if variant is not None:
                variant.discard()       # close the sidecars already opened
        raise
    entry.sidecars = sidecars
    if variants is not None:
        entry.add_variants(variants)
    return entry


def _load(fspath, fd, st, ctype, small_max, coding, vary):
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
        # Truncated under us: the ident says the size served, so the next
        # check finds the file changed and loads it again.
        ident = (st.st_ino, st.st_dev, len(data), st.st_mtime_ns)
        return FileEntry(fspath, ident, ctype, data, None, coding=coding, vary=vary)
    entry = FileEntry(fspath, ident_of(st), ctype, None, fd, coding=coding, vary=vary)
    if PROBE_NEEDS_MAPPING:
        entry.map_addr = MINCORE.map_file(fd, st.st_size)
    # The loop is about to send it: bring its first window in now, in this
    # same helper call, rather than after a probe sends us back here.
    read_in(fd, 0, min(st.st_size, WINDOW))
    return entry


# How long ago (ns) a folder must have last changed for its unchanged
# (inode, ctime) to vouch that no name in it was added, removed or renamed
# since it was stat'ed: well above the kernel's timestamp tick (it stamps
# ctime from a coarse clock, a few ms behind), so a change made after the
# stat always shows as a newer ctime.
SETTLED_NS = 1_000_000_000


def still_fresh_all(entries):
    """Blocking: ``still_fresh`` for many entries, in one helper call: a
    list of ``(fresh, vouch)``, ``vouch`` being what the entry's
    ``absent_in`` is to be set to (on the loop, which owns the entry).
    Each folder is stat'ed at most once for the whole batch."""
    folders = {}
    return [_check(entry, folders) for entry in entries]


def still_fresh(entry):
    """Blocking: does the file on disk still match the entry, and each of
    its sidecars (present, absent, or changed) what it was when loaded?"""
    return _check(entry, {})[0]


def _check(entry, folders):
    """``(fresh, vouch)`` for ``entry``; ``folders`` caches ``_settled``
    for one batch.

    A sidecar is a name in the file's own folder (``page.html.gz``), so
    while that folder's (inode, ctime) is the one that was settled when
    the sidecars were last found absent, they still are: one stat of the
    folder per batch replaces three per file (the common case: a site
    without precompressed copies, where every file has three absent
    sidecars to watch).  A present sidecar is stat'ed every time, as its
    bytes may change in place without touching the folder.
    """
    try:
        st = os.stat(entry.fspath)
    except OSError:
        return False, None
    if ident_of(st) != entry.ident:
        return False, None
    sidecars = entry.sidecars
    vouch = None
    if sidecars and not any(ident for _, ident in sidecars):
        folder = os.path.dirname(entry.fspath)
        vouch = folders.get(folder, _UNSEEN)
        if vouch is _UNSEEN:
            vouch = folders[folder] = _settled(folder)
        if vouch is not None and vouch == entry.absent_in:
            return True, vouch
    for path, ident in sidecars:
        try:
            now = ident_of(os.stat(path))
        except OSError:
            now = None
        if now != ident:
            return False, None
    return True, vouch


_UNSEEN = object()


def _settled(folder):
    """Blocking: ``folder``'s (st_ino, st_dev, st_ctime_ns) if it last
    changed at least SETTLED_NS ago, else None (a change in the same clock
    tick as this stat might not move its ctime)."""
    now = time.time_ns()
    try:
        st = os.stat(folder)
    except OSError:
        return None
    if st.st_ctime_ns > now - SETTLED_NS:
        return None
    return st.st_ino, st.st_dev, st.st_ctime_ns


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
        self.open_files += entry.nfds
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
        self.open_files -= entry.nfds
        entry.discard()

    def clear(self):
        for entry in self._entries.values():
            self._drop(entry)
        self._entries.clear()

    def __len__(self):
        return len(self._entries)

"""Sending open files: residency probe, helper read-ahead, zero-copy sendfile.

Theory of operation: ``os.sendfile`` on a non-blocking socket never waits
for the socket, but it does wait for the disk when the file's pages are not
in memory, and that would stall every connection on the loop.  So before
each window of a file is sent, the loop probes whether its pages are
resident, as the Flash paper did with ``mincore``:

* ``cachestat(2)`` (Linux >= 6.5): how many pages of a range are in the
  page cache, asked of the descriptor itself.  Measured here: 2.3 us for a
  100 KiB window and 3.9 us for 256 KiB.  It gives a count, not a prefix,
  so a window only partly in memory goes to a helper whole.
* ``mincore(2)`` over a mapping of the file made once, in a helper, when
  the file entered the open-fd cache (only where cachestat is missing).
  Exact and copy-free, but it looks each page up: 3.4 us for 100 KiB and
  about 8 us for 256 KiB here.
* ``preadv(..., RWF_NOWAIT)`` (Linux >= 4.14) when neither works: it
  returns only what is already cached and never blocks, so the bytes it
  returns are the resident prefix.  It copies the window into a scratch
  buffer (about 21 us per 256 KiB here), which is why it is last.

Resident pages go out with ``sendfile`` straight from the loop.  A window
that is not resident is sent by a helper's own ``sendfile``, which may wait
for the disk but never for the (non-blocking) socket; the loop carries on
with the rest when it is done.  SPED mode skips the probe: its ``sendfile``
may block.

Some kernels (5.9 and 5.10; tokio#3803) return 0 from RWF_NOWAIT reads
before end of file.  RWF_NOWAIT is off there; elsewhere a 0 before the known
size is never trusted: a helper checks, and if it finds data there,
RWF_NOWAIT is switched off for good.

Size: over ~400 lines because both ways a file leaves (sendfile on a plain
socket, the copying path under TLS) share the probe, the window bookkeeping
and the kernel quirks above; one file keeps them in step.
"""
import ctypes
import ctypes.util
import errno
import logging
import mmap
import os
import platform
import threading

log = logging.getLogger("flashplug.residency")

# One probe and one sendfile cover this much; large enough that the probe
# cost is small per byte, small enough that one window's disk read in a
# helper is short.  Each sendfile call ends by pushing what it queued, so
# fewer, bigger calls also mean fewer short segments for the client: for a
# 1 MiB file, 2 MiB windows instead of 256 KiB ones took the server's CPU
# per request from 174 to 137 us and wrk's from 266 to 256 us here.
WINDOW = 2 * 1024 * 1024
# Scratch buffers that pages are read into (helpers reading a window in,
# and the RWF_NOWAIT probe) are this big; a window is read in steps of it.
READ_CHUNK = 256 * 1024
PAGE = mmap.PAGESIZE


def _kernel_has_nowait_bug():
    """tokio#3803: preadv2(RWF_NOWAIT) may return 0 early on 5.9 and 5.10."""
    try:
        major, minor = (int(x) for x in platform.release().split(".")[:2])
    except ValueError:
        return False
    return (major, minor) in ((5, 9), (5, 10))


class Mincore:
    """``mincore(2)`` through ctypes, over a mapping of the whole file.

    The mapping is made once, in a helper, when a large file enters the
    open-fd cache (``map_file``); a probe is then one ``mincore`` call and a
    table lookup, with no copy.
    """

    _FIRST_BIT = bytes(b & 1 for b in range(256))  # translate: page flag -> 0 or 1

    def __init__(self):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._mmap = libc.mmap
        self._mmap.restype = ctypes.c_void_p
        self._mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                               ctypes.c_int, ctypes.c_int, ctypes.c_long)
        self._munmap = libc.munmap
        self._munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        self._mincore = libc.mincore
        self._mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
        self._vec = ctypes.create_string_buffer(WINDOW // PAGE + 2)

    def map_file(self, fd, size):
        """Map ``size`` bytes of ``fd`` read-only; 0 when that fails."""
        if size <= 0:
            return 0
        addr = self._mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            return 0
        return addr

    def unmap(self, addr, size):
        self._munmap(addr, size)

    def resident_prefix(self, addr, offset, count):
        """Bytes from ``offset`` whose pages are all in memory (count <= WINDOW)."""
        start = offset - offset % PAGE
        length = offset + count - start
        if self._mincore(addr + start, length, self._vec) != 0:
            return -1
        pages = (length + PAGE - 1) // PAGE
        first_missing = self._vec.raw[:pages].translate(self._FIRST_BIT).find(0)
        if first_missing == -1:
            return count
        return max(0, first_missing * PAGE - (offset - start))


class _CachestatRange(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _CachestatResult(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


class Cachestat:
    """``cachestat(2)`` through ``syscall``: cached pages of a file range.

    The request and result structs are allocated once and reused, so a
    probe is one foreign call.  It runs on the loop only, one at a time.
    """

    # New system calls share one number on every architecture but alpha.
    NUMBER = 451

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long
        self._range = _CachestatRange()
        self._result = _CachestatResult()
        # Arguments built once and passed without argtypes: converting them
        # on every call cost more (0.7 us) than the system call's own work.
        # The descriptor and flags go as C ints, which is what the kernel
        # reads (both are unsigned int there).
        self._number = ctypes.c_long(self.NUMBER)
        self._range_ptr = ctypes.pointer(self._range)
        self._result_ptr = ctypes.pointer(self._result)

    def cached_pages(self, fd, offset, length):
        """Pages of ``fd`` between ``offset`` and ``offset + length`` that
        are in the page cache; -1 when the call fails."""
        rng = self._range
        rng.off = offset
        rng.len = length
        if self._syscall(self._number, fd, self._range_ptr, self._result_ptr, 0) != 0:
            return -1
        return self._result.nr_cache


def _load_cachestat():
    """A working Cachestat, or None (an older kernel says ENOSYS)."""
    if platform.system() != "Linux" or platform.machine().startswith("alpha"):
        return None
    try:
        probe = Cachestat()
        fd = os.open(__file__, os.O_RDONLY)
    except (OSError, AttributeError):
        return None
    try:
        return probe if probe.cached_pages(fd, 0, PAGE) >= 0 else None
    finally:
        os.close(fd)


def _load_mincore():
    try:
        return Mincore()
    except (OSError, AttributeError):
        return None


CACHESTAT = _load_cachestat()
MINCORE = _load_mincore()
# Files are mapped for mincore only where cachestat cannot be used.
PROBE_NEEDS_MAPPING = CACHESTAT is None and MINCORE is not None


def read_in(fd, offset, count):
    """Blocking, in a helper: bring a window of a file into the page cache.

    Returns the number of bytes actually there (less than ``count`` means
    the file was truncated).
    """
    try:
        os.posix_fadvise(fd, offset, count, os.POSIX_FADV_WILLNEED)
    except (AttributeError, OSError):
        pass
    buf = _read_buffer()
    got = 0
    while got < count:
        n = os.preadv(fd, [buf[:min(count - got, READ_CHUNK)]], offset + got)
        if not n:
            break
        got += n
    return got


_helper_local = threading.local()


def _read_buffer():
    """A scratch buffer per helper thread: reading pages in allocates nothing."""
    buf = getattr(_helper_local, "buf", None)
    if buf is None:
        buf = _helper_local.buf = memoryview(bytearray(READ_CHUNK))
    return buf


# What FileSender.send reports.
DONE, WOULD_BLOCK, OFFLOAD, FAILED = "done", "would block", "offload", "failed"


class FileRange:
    """Part of an open file still to be sent (an item of an output queue)."""

    __slots__ = ("entry", "offset", "left", "total")

    def __init__(self, entry, offset, count):
        self.entry = entry
        self.offset = offset
        self.left = count
        self.total = count


class FileSender:
    """Sends ``FileRange`` items; reports what happened, changes nothing else."""

    def __init__(self, app, probe):
        self.app = app
        self.stats = app.stats
        self.probe_enabled = probe
        # The fallback probe, for a file we could not map.
        self.nowait = probe and hasattr(os, "RWF_NOWAIT") and hasattr(os, "preadv") \
            and not _kernel_has_nowait_bug()
        self.scratch_view = memoryview(bytearray(READ_CHUNK))
        self.use_sendfile = hasattr(os, "sendfile")
        self.zero_read = False   # the last RWF_NOWAIT probe read 0 bytes (EOF or the bug)

    def resident_prefix(self, entry, offset, count):
        """How many bytes from ``offset`` are in memory; -1 when unknown."""
        self.stats.residency_probes += 1
        if CACHESTAT is not None:
            start = offset - offset % PAGE
            length = offset + count - start
            cached = CACHESTAT.cached_pages(entry.fd, start, length)
            if cached >= 0:
                return count if cached * PAGE >= length else 0
        if entry.map_addr:
            return MINCORE.resident_prefix(entry.map_addr, offset, count)
        if self.nowait:
            # The scratch buffer bounds the answer to READ_CHUNK bytes.
            try:
                got = os.preadv(entry.fd, [self.scratch_view[:count]], offset, os.RWF_NOWAIT)
            except BlockingIOError:
                return 0
            except OSError as e:
                if e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    log.info("RWF_NOWAIT unsupported here (%s); helpers read every window", e)
                    self.nowait = False
                    return -1
                raise
            self.zero_read = got == 0
            return got
        return -1

    def send_now(self, transport, entry):
        """The common case in one go: a whole file of at most one window,
        right after its header, on a connection with nothing queued.

        Returns the bytes sent from the loop (0 when its pages are not all
        in memory, the socket is full, or anything unusual happens); the
        caller queues the rest, and the general path deals with it.
        """
        size = entry.size
        if not (self.use_sendfile and transport.zero_copy):
            return 0
        if self.probe_enabled and self.resident_prefix(entry, 0, size) < size:
            return 0
        try:
            sent = os.sendfile(transport.fd, entry.fd, 0, size)
        except OSError:
            return 0
        self.stats.residency_hits += 1
        self.stats.sendfile_calls += 1
        return sent

    def send(self, transport, item):
        """Send what can go now from the loop; ``item`` (a FileRange) keeps
        the progress.  Returns DONE (all of it sent), WOULD_BLOCK (the socket
        is full), OFFLOAD (the next window is not in memory: ``offload`` it)
        or FAILED (the file shrank or the socket failed: give up on the
        connection).  Touches nothing of the connection itself."""
        if not transport.zero_copy:
            return self.copy(transport, item)
        entry = item.entry
        fd = entry.fd
        while item.left > 0:
            count = min(item.left, WINDOW)
            if self.probe_enabled:
                resident = self.resident_prefix(entry, item.offset, count)
                if resident == 0 or resident == -1:
                    return OFFLOAD
                self.stats.residency_hits += 1
                count = resident
            try:
                if self.use_sendfile:
                    sent = os.sendfile(transport.fd, fd, item.offset, count)
                    self.stats.sendfile_calls += 1
                else:
                    # Resident pages, copied: a file system without sendfile.
                    sent = transport.send(os.pread(fd, count, item.offset))
            except (BlockingIOError, InterruptedError):
                return WOULD_BLOCK
            except OSError as e:
                if e.errno in (errno.EINVAL, errno.ENOSYS) and self.use_sendfile:
                    self.use_sendfile = False  # e.g. a file system without sendfile
                    continue
                return FAILED
            if sent == 0:
                # End of file before Content-Length: the file shrank while we
                # sent it.  A short body must never pass for a whole one.
                log.warning("%s shrank while being sent; closing the connection",
                            entry.fspath)
                return FAILED
            item.offset += sent
            item.left -= sent
        return DONE

    def copy(self, transport, item):
        """``send`` for a copying transport (TLS), which must see the bytes.

        One READ_CHUNK at a time, read into the loop's scratch buffer only
        once the transport has sent everything it took before, so a slow
        reader costs one chunk of ciphertext, not the file.  Pages are read
        on the loop only when resident: ``preadv(RWF_NOWAIT)`` is the probe
        and the read in one call (it returns only cached bytes and never
        waits); without it, cachestat/mincore say whether a plain ``pread``
        will find the pages in memory.  Cold pages are read in by a helper
        (OFFLOAD), then sent from the loop."""
        entry = item.entry
        buf = self.scratch_view
        while item.left > 0:
            if transport.backlog and transport.flush():
                return WOULD_BLOCK
            count = min(item.left, READ_CHUNK)
            try:
                got = self.read_resident(entry, item.offset, count, buf)
            except OSError:
                return FAILED
            if got is OFFLOAD:
                return OFFLOAD
            if got == 0:
                log.warning("%s shrank while being sent; closing the connection",
                            entry.fspath)
                return FAILED
            try:
                sent = transport.send(buf[:got])
            except (BlockingIOError, InterruptedError):
                return WOULD_BLOCK
            except OSError:
                return FAILED
            item.offset += sent
            item.left -= sent
        return DONE

    def read_resident(self, entry, offset, count, buf):
        """Bytes of ``entry`` at ``offset`` copied into ``buf`` from memory;
        OFFLOAD when the first page is not resident; 0 at end of file."""
        if not self.probe_enabled:
            return os.preadv(entry.fd, [buf[:count]], offset)   # sped: may block
        if self.nowait:
            self.stats.residency_probes += 1
            try:
                got = os.preadv(entry.fd, [buf[:count]], offset, os.RWF_NOWAIT)
            except BlockingIOError:
                return OFFLOAD
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                log.info("RWF_NOWAIT unsupported here (%s); probing residency first", e)
                self.nowait = False
                return self.read_resident(entry, offset, count, buf)
            self.zero_read = got == 0
            if got == 0:
                return OFFLOAD   # end of file, or tokio#3803: a helper tells which
        else:
            resident = self.resident_prefix(entry, offset, count)
            if resident <= 0:
                return OFFLOAD
            got = os.preadv(entry.fd, [buf[:resident]], offset)
        self.stats.residency_hits += 1
        return got

    def offload(self, transport, item, on_done):
        """Pages not in memory: a helper does this window's sendfile.

        The helper blocks on the disk, never on the socket (it is
        non-blocking), and sends without a copy through user space, as
        nginx's ``aio threads`` does.  ``on_done(outcome)`` is called on the
        loop with DONE (go on sending) or FAILED.  The caller must keep the
        socket and the file open until then.
        """
        self.stats.residency_offloads += 1
        count = min(item.left, WINDOW)
        suspicious = self.nowait and self.zero_read

        def done(sent, error):
            if error is not None:
                on_done(FAILED)
                return
            if sent == 0:
                log.warning("%s shrank while being sent; closing the connection",
                            item.entry.fspath)
                on_done(FAILED)
                return
            if sent > 0:
                self.stats.sendfile_calls += 1
                item.offset += sent
                item.left -= sent
                if suspicious and self.nowait:
                    # RWF_NOWAIT said "end of file" where the file had data:
                    # the kernel bug of tokio#3803.  Stop trusting it.
                    log.warning("RWF_NOWAIT returned 0 before end of file (tokio#3803); "
                                "helpers read unmapped files from now on")
                    self.nowait = False
            on_done(DONE)
        sock_fd = transport.fd if transport.zero_copy and self.use_sendfile else None
        self.app.helpers.call(send_from_helper, (sock_fd, item.entry.fd, item.offset, count), done)


def send_from_helper(sock_fd, file_fd, offset, count):
    """Blocking, in a helper: sendfile pages that may have to come from disk.

    Returns the bytes sent, 0 at end of file (the file shrank), or -1 when
    the socket was full: then the window is read in, so that it is resident
    by the time the socket drains.  With no ``sock_fd`` (a copying
    transport), the window is only read in.
    """
    if sock_fd is None:
        return -1 if read_in(file_fd, offset, count) else 0
    try:
        # Ask for the whole window at once: sendfile alone reads ahead in
        # 128 KiB steps, each waiting for the one before.
        os.posix_fadvise(file_fd, offset, count, os.POSIX_FADV_WILLNEED)
    except (AttributeError, OSError):
        pass
    try:
        return os.sendfile(sock_fd, file_fd, offset, count)
    except (BlockingIOError, InterruptedError):
        read_in(file_fd, offset, count)
        return -1

"""Sending open files: residency probe, helper read-ahead, zero-copy sendfile.

Theory of operation: ``os.sendfile`` on a non-blocking socket never waits
for the socket, but it does wait for the disk when the file's pages are not
in memory, and that would stall every connection on the loop.  So before
each window of a file is sent, the loop probes whether its pages are
resident (the Flash paper used ``mincore``):

* ``preadv(..., RWF_NOWAIT)`` (Linux >= 4.14) reads what is already cached
  and never blocks: the bytes it returns are the resident prefix of the
  window.  It costs one copy into a scratch buffer, never a disk wait.
* ``mincore`` over a temporary mapping is the fallback where RWF_NOWAIT is
  missing or untrustworthy.

Resident pages go out with ``sendfile`` straight from the loop.  When the
probe says "not resident", a helper reads the window in
(``posix_fadvise(WILLNEED)`` plus a read) and the loop resumes sending when
it is done.  SPED mode skips the probe: its ``sendfile`` may block.

Some kernels (5.9 and 5.10; tokio#3803) return 0 from RWF_NOWAIT reads
before end of file.  We never trust a 0 before the known size: a helper
checks, and if it finds data there, RWF_NOWAIT is switched off for good.
"""
import ctypes
import ctypes.util
import errno
import logging
import mmap
import os
import platform
import time

log = logging.getLogger("flashplug.residency")

# One probe and one sendfile cover this much; large enough that the probe
# cost is small per byte, small enough that one window's disk read in a
# helper is short.
WINDOW = 256 * 1024
PAGE = mmap.PAGESIZE


def _kernel_has_nowait_bug():
    """tokio#3803: preadv2(RWF_NOWAIT) may return 0 early on 5.9 and 5.10."""
    try:
        major, minor = (int(x) for x in platform.release().split(".")[:2])
    except ValueError:
        return False
    return (major, minor) in ((5, 9), (5, 10))


class _Mincore:
    """``mincore(2)`` through ctypes, over a short-lived mapping."""

    def __init__(self):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.mmap = libc.mmap
        self.mmap.restype = ctypes.c_void_p
        self.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                              ctypes.c_int, ctypes.c_int, ctypes.c_long)
        self.munmap = libc.munmap
        self.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        self.mincore = libc.mincore
        self.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
        self.vec = ctypes.create_string_buffer(WINDOW // PAGE + 2)

    def resident_prefix(self, fd, offset, count):
        start = offset - offset % PAGE
        length = offset + count - start
        addr = self.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, start)
        if addr in (None, ctypes.c_void_p(-1).value):
            return 0
        try:
            if self.mincore(addr, length, self.vec) != 0:
                return 0
            pages = (length + PAGE - 1) // PAGE
            flags = self.vec.raw[:pages]
        finally:
            self.munmap(addr, length)
        resident_pages = 0
        for flag in flags:
            if not flag & 1:
                break
            resident_pages += 1
        return max(0, min(count, resident_pages * PAGE - (offset - start)))


def read_in(fd, offset, count):
    """Blocking, in a helper: bring a window of a file into the page cache.

    Returns the number of bytes actually there (less than ``count`` means
    the file was truncated).
    """
    try:
        os.posix_fadvise(fd, offset, count, os.POSIX_FADV_WILLNEED)
    except (AttributeError, OSError):
        pass
    got = 0
    while got < count:
        chunk = os.pread(fd, min(count - got, 1 << 20), offset + got)
        if not chunk:
            break
        got += len(chunk)
    return got


class FileSender:
    """Sends ``FileRange`` items of a connection's output queue."""

    def __init__(self, app, probe):
        self.app = app
        self.stats = app.stats
        self.probe_enabled = probe
        self.nowait = probe and hasattr(os, "RWF_NOWAIT") and hasattr(os, "preadv") \
            and not _kernel_has_nowait_bug()
        self.scratch = bytearray(WINDOW)
        self.scratch_view = memoryview(self.scratch)
        self.mincore = None
        if probe and not self.nowait:
            try:
                self.mincore = _Mincore()
            except (OSError, AttributeError):
                self.mincore = None
        self.use_sendfile = hasattr(os, "sendfile")
        self.zero_read = False   # the last probe read 0 bytes (EOF or the bug)

    def resident_prefix(self, fd, offset, count):
        """How many bytes from ``offset`` are in memory; -1 when unknown."""
        self.stats.residency_probes += 1
        if self.nowait:
            try:
                got = os.preadv(fd, [self.scratch_view[:count]], offset, os.RWF_NOWAIT)
                self.zero_read = got == 0
                return got
            except BlockingIOError:
                return 0
            except OSError as e:
                if e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    log.info("RWF_NOWAIT unsupported here (%s); probing with mincore", e)
                    self.nowait = False
                    self.mincore = _Mincore()
                    return self.resident_prefix(fd, offset, count)
                raise
        if self.mincore is not None:
            return self.mincore.resident_prefix(fd, offset, count)
        return -1

    def send(self, conn, item):
        """Send what can go now.  True: item done; False: wait; None: failed."""
        entry = item.entry
        fd = entry.fd
        sock_fd = conn.fd
        while item.left > 0:
            count = min(item.left, WINDOW)
            if self.probe_enabled:
                resident = self.resident_prefix(fd, item.offset, count)
                if resident == 0 or resident == -1:
                    self._offload(conn, item, count)
                    return False
                self.stats.residency_hits += 1
                count = resident
            try:
                if self.use_sendfile:
                    sent = os.sendfile(sock_fd, fd, item.offset, count)
                    self.stats.sendfile_calls += 1
                else:
                    sent = conn.sock.send(os.pread(fd, count, item.offset))
            except (BlockingIOError, InterruptedError):
                conn._want_write()
                return False
            except OSError as e:
                if e.errno in (errno.EINVAL, errno.ENOSYS) and self.use_sendfile:
                    self.use_sendfile = False  # e.g. a file system without sendfile
                    continue
                conn.abort()
                return None
            if sent == 0:
                # End of file before Content-Length: the file shrank while we
                # sent it.  A short body must never pass for a whole one.
                log.warning("%s shrank while being sent; closing the connection",
                            entry.fspath)
                conn.abort()
                return None
            item.offset += sent
            item.left -= sent
            if conn.writer_on:
                conn.send_deadline = time.monotonic() + self.app.config.send_timeout
        return True

    def _offload(self, conn, item, count):
        self.stats.residency_offloads += 1
        conn.offloading = True
        if conn.writer_on:
            conn.loop.remove_writer(conn.fd)
            conn.writer_on = False
        suspicious = self.nowait and self.zero_read
        fut = self.app.helpers.run(read_in, item.entry.fd, item.offset, count)

        def done(f):
            if f.cancelled() or f.exception() is not None:
                conn.offloading = False
                conn.abort()
                return
            if suspicious and f.result() > 0 and self.nowait:
                # RWF_NOWAIT said "end of file" where a plain read found
                # data: the kernel bug of tokio#3803.  Stop trusting it.
                log.warning("RWF_NOWAIT returned 0 before end of file; "
                            "probing with mincore from now on")
                self.nowait = False
                self.mincore = _Mincore()
            conn.offload_done()
        fut.add_done_callback(done)

"""The paper's blocking architectures: ``--arch mt`` and ``--arch mp``.

Theory of operation: both drive the same protocol (``flashplug.http.h1``)
and request cycle (``flashplug.cycle``) as the event loop, with the same
caches and static handler, and differ only in how concurrency happens, so
a benchmark of the four architectures compares concurrency models alone.

* ``mt``: one thread per connection (at most ``--procs`` at once), blocking
  sockets and blocking disk calls, one cache shared by all threads.
* ``mp``: ``--procs`` processes, each accepting and serving one connection at
  a time from start to end, each with a private cache.

``BlockingConnection`` is the blocking driver: it reads, feeds the protocol,
and every write blocks until the kernel has taken all of it, so no output is
ever left queued behind the next response.  A handler's coroutine is driven
to completion on the spot (``run_sync``), which works because with inline
helpers the static handler never suspends.  Plugins need the event loop, so
these architectures serve static files only.

What ``mt``'s threads share, and how:

* the file cache (``LockedFileCache``): its LRU and budget, and each
  entry's send count (``retain``/``release``), under one lock, so a
  descriptor is closed only when no thread still sends from it;
* ``by_target``: a ``Memo``, whose dict's single get/set/clear calls
  are atomic under the GIL; an entry found there is checked (``dead``) and
  retained under the cache lock before it is sent from;
* ``Stats`` and the access log: under one lock (``LockedStats``, the
  wrapped ``AccessLog.log``);
* the Date line: a string replaced whole by the ticker thread.

Everything else (the connection, its parser, its request) is owned by one
thread.
"""
import logging
import os
import select
import signal
import socket
import threading
import time

from flashplug.cache import FileCache, NotRegular, open_regular
from flashplug.connection import RECV_SIZE
from flashplug.cycle import SESSION_SLOTS, RequestCycle, init_session
from flashplug.helpers import run_sync
from flashplug.http.h1 import LINGER_SECONDS, H1Protocol
from flashplug.listener import ACCEPT_PAUSE, OUT_OF_RESOURCES, AcceptPause
from flashplug import systemd
from flashplug.app import App
from flashplug.residency import READ_CHUNK
from flashplug.stats import Stats
from flashplug.supervisor import Generation
from flashplug.transport import SocketTransport

log = logging.getLogger("flashplug.blocking")


class LockedFileCache(FileCache):
    """The mt architecture's cache: shared by threads, guarded by one lock.

    The lock also covers each entry's send count: ``retain`` happens under
    it, after checking the entry was not evicted, and the eviction that
    closes a descriptor (``discard``) happens under it too.
    """

    def __init__(self, *args):
        super().__init__(*args)
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            return super().get(key)

    def put(self, key, entry):
        with self.lock:
            super().put(key, entry)

    def remove(self, key):
        with self.lock:
            super().remove(key)

    def retain(self, entry):
        with self.lock:
            return super().retain(entry)

    def release(self, entry):
        with self.lock:
            super().release(entry)


class BlockingConnection(H1Protocol, RequestCycle):
    """One connection served start to end by one thread (mt) or process (mp)."""

    __slots__ = SESSION_SLOTS + ("transport", "lost")

    def __init__(self, app, transport, peer):
        transport.settimeout(app.config.header_timeout)
        local = app.listen_addr or transport.local_address()
        init_session(self, app, peer, local, time.monotonic())
        self.transport = transport
        # Bytes of the response being written that never went: a send
        # failed (the client left, --send-timeout), and the rest was
        # skipped.  ``RequestCycle._account`` logs the body less them
        # (nginx's $body_bytes_sent), as the loop's queue count does.
        self.lost = 0

    clock = staticmethod(time.monotonic)

    def spawn(self, coro):
        run_sync(coro)   # the static handler never suspends here

    def serve(self):
        config = self.app.config
        transport = self.transport
        while not self.closed:
            transport.settimeout(config.keepalive_timeout if self.state == "idle"
                                 else config.header_timeout)
            try:
                data = transport.recv(RECV_SIZE)
            except socket.timeout:
                if self.state == "head":
                    self._queue_error(408, "Request Timeout")
                break
            except OSError:
                break
            if not data:
                # Every whole request has been answered by now (each write
                # blocks); one cut off half-way cannot be.
                self.eof = True
                break
            self.feed(data, time.monotonic())
        self.close()

    # Reading is paused only by returning from serve(): nothing to watch.
    def pause_reading(self, why):
        pass

    def resume_reading(self, why):
        pass

    def write(self, data, more=0):
        if self.closed:
            self.lost += len(data)
            return
        transport = self.transport
        sent = 0
        try:
            transport.settimeout(self.app.config.send_timeout)
            # send() rather than sendall(), which does not say how much
            # went before it failed.
            sent = transport.send(data)
            if sent < len(data):
                view = memoryview(data)
                while sent < len(view):
                    sent += transport.send(view[sent:])
        except OSError:
            self.lost += len(data) - sent
            self.abort()

    def write_pair(self, head, body):
        self.write(head)
        self.write(body)

    def write_file(self, entry, offset, count):
        if self.closed or count <= 0:
            self.lost += max(count, 0)
            return
        cache = self.app.static.cache
        if not cache.retain(entry):
            # Another thread replaced the entry and closed its descriptor
            # meanwhile: send from the same file, opened again.
            self._write_reopened(entry, offset, count)
            return
        try:
            self._send_from(entry.fd, offset, count)
        except EOFError:
            log.warning("%s shrank while being sent; closing", entry.fspath)
            self.abort()
        except OSError:
            self.abort()
        finally:
            cache.release(entry)

    def _write_reopened(self, entry, offset, count):
        """Send from ``entry``'s file opened anew, if it is still the very
        file the head described (same inode, device, size and mtime); else
        drop the connection: a short or mixed body must never pass for it."""
        try:
            fd, st = open_regular(entry.fspath)
        except (OSError, NotRegular):
            self.lost += count
            self.abort()
            return
        try:
            if (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns) != entry.ident:
                self.lost += count
                self.abort()
                return
            self._send_from(fd, offset, count)
        except (OSError, EOFError):
            self.abort()
        finally:
            os.close(fd)

    def _send_from(self, fd, offset, count):
        """Send ``count`` bytes of the open file ``fd`` from ``offset``,
        blocking; EOFError if the file ends first.  What did not go when
        it stops short counts as ``lost``."""
        try:
            if not self.transport.zero_copy:
                while count > 0 and not self.closed:
                    data = os.pread(fd, min(count, READ_CHUNK), offset)
                    if not data:
                        raise EOFError
                    self.write(data)        # (counts its own bytes lost)
                    offset += len(data)
                    count -= len(data)
                return
            timeout = self.app.config.send_timeout
            self.transport.settimeout(timeout)
            sock_fd = self.transport.fd
            while count > 0:
                try:
                    sent = os.sendfile(sock_fd, fd, offset, min(count, 1 << 20))
                except (BlockingIOError, InterruptedError):
                    # A socket with a timeout is non-blocking underneath:
                    # wait for room, as sendall() does.
                    if not select.select([], [sock_fd], [], timeout)[1]:
                        raise TimeoutError("send timed out") from None
                    continue
                if sent == 0:
                    raise EOFError
                offset += sent
                count -= sent
        finally:
            self.lost += count

    async def drain(self):
        pass   # every write has already waited for the kernel

    def _close_when_flushed(self):
        if self.closed:
            return
        self.closing = True
        if not self.eof:
            # Lingering close, as on the loop: read and drop for a moment.
            transport = self.transport
            try:
                transport.shutdown_write()
                transport.settimeout(LINGER_SECONDS)
                end = time.monotonic() + LINGER_SECONDS
                while time.monotonic() < end and transport.recv(RECV_SIZE):
                    pass
            except OSError:
                pass
        self.close()

    def abort(self):
        self.close()

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.unparsed = None
        self.pending.clear()
        try:
            self.transport.close()
        except OSError:
            pass


class LockedStats(Stats):
    """mt's counters of responses: one lock, as many threads answer."""

    __slots__ = ("lock",)

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def count_response(self, status, body_bytes):
        with self.lock:
            super().count_response(status, body_bytes)


def _build_app(config, cache_class, stats):
    app = App(config, None, stats=stats)
    old = app.static.cache
    app.static.cache = cache_class(old.max_entries, old.max_bytes, old.valid, app.stats)
    return app


def _accept_one(listener):
    sock, peer = listener.accept()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, peer


def _date_ticker(app, stop):
    while not stop.wait(1.0 - time.time() % 1.0 + 0.001):
        app._update_date()
        if app.access_log is not None:
            app.access_log.flush()


def run_mt(config, listener, accepting):
    app = _build_app(config, LockedFileCache, LockedStats())
    stop = threading.Event()
    slots = threading.BoundedSemaphore(config.procs)
    threads = set()
    access_lock = threading.Lock()
    if app.access_log is not None:
        # Log lines come from many threads: serialise them.
        inner = app.access_log.log

        def locked_log(*args):
            with access_lock:
                inner(*args)
        app.access_log.log = locked_log
    threading.Thread(target=_date_ticker, args=(app, stop), daemon=True).start()

    def serve(sock, peer):
        try:
            BlockingConnection(app, SocketTransport(sock), peer).serve()
        finally:
            slots.release()
            threads.discard(threading.current_thread())

    def on_signal(signum, frame):
        systemd.notify("STOPPING=1")
        app.stopping = True        # each response from now on is its connection's last
        stop.set()
        listener.close()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    listener.setblocking(True)
    pause = AcceptPause()
    accepting(True)
    while not stop.is_set():
        slots.acquire()
        try:
            sock, peer = _accept_one(listener)
        except OSError as e:
            slots.release()
            if stop.is_set():
                break
            if e.errno in OUT_OF_RESOURCES:
                pause.note(e)
                stop.wait(ACCEPT_PAUSE)
            continue
        t = threading.Thread(target=serve, args=(sock, peer), daemon=True)
        threads.add(t)
        t.start()
    deadline = time.monotonic() + config.grace
    for t in list(threads):
        t.join(max(0.0, deadline - time.monotonic()))
    if app.access_log is not None:
        app.access_log.close()
    return 0


def _mp_child(config, listener, accepting):
    app = _build_app(config, FileCache, Stats())
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True
        app.stopping = True        # each response from now on is its connection's last
        listener.close()
        accepting(False)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGQUIT, on_signal)   # a reload's: the same, one connection at a time
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listener.setblocking(True)
    last_tick = 0
    pause = AcceptPause()
    accepting(True)
    while not stopping:
        try:
            sock, peer = _accept_one(listener)
        except OSError as e:
            if e.errno in OUT_OF_RESOURCES and not stopping:
                pause.note(e)
                time.sleep(ACCEPT_PAUSE)
            continue
        now = int(time.time())
        if now != last_tick:  # no ticker thread: refresh the Date line per connection
            last_tick = now
            app._update_date()
        BlockingConnection(app, SocketTransport(sock), peer).serve()
        if app.access_log is not None:
            app.access_log.flush()
    if app.access_log is not None:
        app.access_log.close()
    return 0


def mp_generation(config, listener):
    """mp's processes, for the supervisor (``flashplug.server``)."""
    return Generation(config.procs, lambda accepting: _mp_child(config, listener, accepting),
                      what="process")

"""The paper's blocking architectures: ``--arch mt`` and ``--arch mp``.

Theory of operation: both reuse the event-driven kernel's parser, framing,
caches and static handler, and differ only in how concurrency happens, so
a benchmark of the four architectures compares concurrency models alone.

* ``mt``: one thread per connection (at most ``--procs`` at once), blocking
  sockets and blocking disk calls, one cache shared by all threads behind a
  lock.
* ``mp``: ``--procs`` processes, each accepting and serving one connection at
  a time from start to end, each with a private cache.

A ``BlockingConnection`` is the loop's ``Connection`` with its I/O swapped:
reads and writes block, and the handler coroutine is driven to completion
on the spot (``run_sync``), which works because with inline helpers the
static handler never suspends.  Plugins need the event loop, so these
architectures serve static files only.
"""
import logging
import os
import select
import signal
import socket
import threading
import time

from flashplug.cache import FileCache
from flashplug.connection import LINGER_SECONDS, RECV_SIZE, Connection
from flashplug.helpers import run_sync

log = logging.getLogger("flashplug.blocking")


class SyncLoop:
    """Stands in for the event loop: "tasks" run to completion at once."""

    def create_task(self, coro):
        run_sync(coro)

    def add_reader(self, fd, *callback):
        pass

    remove_reader = add_writer = remove_writer = add_reader

    def call_later(self, delay, cb):
        pass

    def create_future(self):
        raise RuntimeError("a blocking architecture cannot wait on a future")


class LockedFileCache(FileCache):
    """The mt architecture's cache: shared by threads, guarded by one lock."""

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


class BlockingConnection(Connection):
    """A Connection whose socket calls block; served by one thread or process."""

    def __init__(self, app, sock, peer):
        sock.setblocking(True)
        sock.settimeout(app.config.header_timeout)
        super().__init__(app, sock, peer)

    def serve(self):
        config = self.app.config
        while not self.closed:
            self.sock.settimeout(config.keepalive_timeout if self.state == "idle"
                                 else config.header_timeout)
            try:
                data = self.sock.recv(RECV_SIZE)
            except socket.timeout:
                if self.state == "head":
                    self._queue_error(408, "Request Timeout")
                self.close()
                break
            except OSError:
                self.abort()
                break
            if not data:
                self.close()
                break
            self.feed(data)
        self.close()

    def write(self, data, more=0):
        if self.closed:
            return
        try:
            self.sock.settimeout(self.app.config.send_timeout)
            self.sock.sendall(data)
        except OSError:
            self.abort()

    def write_file(self, entry, offset, count):
        if self.closed:
            return
        timeout = self.app.config.send_timeout
        self.sock.settimeout(timeout)
        fd, sock_fd = entry.fd, self.sock.fileno()
        entry.retain()
        try:
            while count > 0:
                try:
                    sent = os.sendfile(sock_fd, fd, offset, min(count, 1 << 20))
                except (BlockingIOError, InterruptedError):
                    # A socket with a timeout is non-blocking underneath:
                    # wait for room, as sendall() does.
                    if not select.select([], [sock_fd], [], timeout)[1]:
                        self.abort()
                        return
                    continue
                if sent == 0:
                    log.warning("%s shrank while being sent; closing", entry.fspath)
                    self.abort()
                    return
                offset += sent
                count -= sent
        except OSError:
            self.abort()
        finally:
            entry.release()

    def _close_when_flushed(self):
        if self.closed:
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(LINGER_SECONDS)
            end = time.monotonic() + LINGER_SECONDS
            while time.monotonic() < end and self.sock.recv(RECV_SIZE):
                pass
        except OSError:
            pass
        self.close()


def _build_app(config, cache_class):
    from flashplug.server import App  # late: server imports this module lazily too
    app = App(config, SyncLoop())
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


def run_mt(config, listener):
    app = _build_app(config, LockedFileCache)
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
            BlockingConnection(app, sock, peer).serve()
        finally:
            slots.release()
            threads.discard(threading.current_thread())

    def on_signal(signum, frame):
        stop.set()
        listener.close()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    listener.setblocking(True)
    while not stop.is_set():
        slots.acquire()
        try:
            sock, peer = _accept_one(listener)
        except OSError:
            slots.release()
            if stop.is_set():
                break
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


def _mp_child(config, listener):
    app = _build_app(config, FileCache)
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True
        listener.close()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listener.setblocking(True)
    last_tick = 0
    while not stopping:
        try:
            sock, peer = _accept_one(listener)
        except OSError:
            continue
        now = int(time.time())
        if now != last_tick:  # no ticker thread: refresh the Date line per connection
            last_tick = now
            app._update_date()
        BlockingConnection(app, sock, peer).serve()
        if app.access_log is not None:
            app.access_log.flush()
    if app.access_log is not None:
        app.access_log.close()
    return 0


def run_mp(config, listener):
    from flashplug.supervisor import supervise
    return supervise(config.procs, lambda: _mp_child(config, listener), what="process")


def run_blocking(config, listener):
    if config.arch == "mt":
        return run_mt(config, listener)
    return run_mp(config, listener)

"""Supervised FastCGI backends: lighttpd's ``bin-path`` model.

Theory of operation
-------------------
For ``--fastcgi WHERE=spawn:COMMAND`` each worker runs ``--fastcgi-procs``
copies of COMMAND itself, through the cgi plugin's process machinery
(``flashplug.procs``: posix_spawn, own process group, reaped on the loop).
Each process gets a listening Unix socket of its own, created by us in a
private directory, as its descriptor 0: the FastCGI convention
(``FCGI_LISTENSOCK_FILENO``, what ``php-cgi`` and flup's ``WSGIServer``
expect when started by a web server).

One socket per process, as lighttpd does with ``max-procs``, lets the pool
pick the least busy process and lets us count each process's requests:

* the supervisor stands in for an address (``connect()``): it connects to
  the running process with the fewest connections; each connection
  carries its :class:`Backend` as ``origin``, which counts requests;
* a process that reached ``--fastcgi-max-requests`` is *draining*: it gets
  no new connection, a replacement starts at once, and it is stopped
  (SIGTERM, then SIGKILL after ``STOP_GRACE``) once its last connection
  closes;
* a process that exits by itself is restarted after a delay that doubles
  from ``BACKOFF_MIN`` to ``BACKOFF_MAX`` while it keeps dying young; the
  exit status and each restart go to the error log;
* on shutdown every process is stopped the same way, reaped, and its
  socket removed, then the directory.

The environment of a process is ``PATH``, plus ``PHP_FCGI_MAX_REQUESTS=0``
and ``PHP_FCGI_CHILDREN=0``: recycling and process count are ours, so
``php-cgi`` must neither exit after 500 requests nor fork children that we
could not count.
"""
import asyncio
import logging
import os
import shutil
import signal
import socket
import tempfile

from flashplug.procs import ProcessManager, stderr_text

from .pool import BackendError

log = logging.getLogger("flashplug.fastcgi")

#: Restart delays for a process that keeps exiting, in seconds.
BACKOFF_MIN = 0.2
BACKOFF_MAX = 30.0
#: A process that ran this long before exiting was healthy: restart at once.
HEALTHY_AFTER = 30.0
#: Seconds a process has to exit after SIGTERM before SIGKILL.  It is
#: stopped only once it serves no request (draining, or at shutdown after
#: the pools closed), so this only spares it a hard kill; php-cgi sometimes
#: sleeps through a SIGTERM that arrives as its connection closes.
STOP_GRACE = 1.0
#: Listen backlog of each process's socket.
BACKLOG = 128
# The longest socket path Linux binds: sockaddr_un's sun_path is 108 bytes,
# its NUL included.
SUN_PATH_MAX = 107


class Backend:
    """One supervised process and its socket."""

    def __init__(self, supervisor, number):
        self.supervisor = supervisor
        self.number = number
        self.path = os.path.join(supervisor.dir, f"backend-{number}.sock")
        self.proc = None
        self.state = "starting"     # running, draining, restarting, stopped
        self.requests = 0
        self.connections = 0
        self.restarts = 0           # of this slot, since the server started
        self.started_at = 0.0

    def served(self):
        """A connection to this process began a request."""
        self.requests += 1
        limit = self.supervisor.max_requests
        if limit and self.requests >= limit and self.state == "running":
            self.supervisor.drain(self)

    def released(self):
        """A connection to this process closed."""
        self.connections -= 1
        if self.state == "draining" and self.connections == 0:
            self.supervisor.retire(self)


def socket_dir():
    """A new private folder (mode 0700) for the backends' sockets: under
    ``TMPDIR``, or under /tmp when a socket path there would pass
    ``SUN_PATH_MAX`` (a long ``TMPDIR`` made every start fail, and the
    restarts with it, with "AF_UNIX path too long").

    :raises OSError: no such folder can be made.
    """
    for parent in (None, "/tmp"):
        path = tempfile.mkdtemp(prefix="flashplug-fastcgi-", dir=parent)
        if len(os.fsencode(os.path.join(path, "backend-9999999.sock"))) <= SUN_PATH_MAX:
            return path
        os.rmdir(path)
    raise OSError(f"no folder for sockets: {path!r} is too long for a socket path")


class Supervisor:
    """The processes of one ``spawn:`` backend, in one worker."""

    def __init__(self, loop, mapping, procs, max_requests, cwd, creds=None):
        self.loop = loop
        self.creds = creds          # (uid, gid, groups) of the processes, or None: ours
        self.name = f"fastcgi {mapping.name} (spawn:{' '.join(mapping.command)})"
        self.command = mapping.command
        self.procs = procs
        self.max_requests = max_requests
        self.cwd = cwd
        self.env = {"PATH": os.environ.get("PATH") or os.defpath,
                    "PHP_FCGI_MAX_REQUESTS": "0", "PHP_FCGI_CHILDREN": "0"}
        self.dir = None
        self.manager = None
        self.backends = []          # one per slot: running, starting or restarting
        self.retiring = set()       # replaced, still serving their last requests
        self.stopping = False
        self._numbers = 0
        self._backoff = BACKOFF_MIN
        self._tasks = set()         # pending restarts, launches and stops
        self._connectors = []       # connect() calls waiting for a running process
        self._watchers = set()      # one per process: its output and its exit
        # Read by the pool: one process is one backend's worth of limits.
        self.processes = procs
        self.text = "spawn:" + " ".join(mapping.command)

    def __str__(self):
        return self.text

    async def start(self):
        """Start every process; return self (the pool's address)."""
        self.dir = socket_dir()
        # Room for replacements beside draining processes; past it a
        # replacement waits for one of those to be reaped.
        self.manager = ProcessManager(self.loop, 4 * self.procs, 4 * self.procs, self.creds)
        for _ in range(self.procs):
            await self._launch()
        return self

    async def _launch(self, old=None, restart=False):
        self._numbers += 1
        backend = Backend(self, self._numbers)
        if old is not None:
            backend.restarts = old.restarts + restart
            self.backends[self.backends.index(old)] = backend
        else:
            self.backends.append(backend)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(backend.path)
            listener.listen(BACKLOG)
            backend.proc = await self.manager.spawn(
                self.command[0], list(self.command), self.env, self.cwd,
                stdin=listener.fileno(),
                on_stderr=lambda line: log.warning("%s: %s", self.name, stderr_text(line)),
                queue_timeout=4 * STOP_GRACE)
        except Exception as e:  # noqa: BLE001 - any failure is a failed start
            log.error("%s: cannot start %s: %s", self.name, self.command[0], e)
            backend.state = "restarting"
            self._later(self._restart(backend))
            return backend
        finally:
            listener.close()   # the child has its own copy
        backend.state = "running"
        backend.started_at = self.loop.time()
        self._wake_connectors()
        self._later(self._watch(backend), self._watchers)
        return backend

    def _later(self, coro, tasks=None):
        tasks = self._tasks if tasks is None else tasks
        task = self.loop.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _watch(self, backend):
        proc = backend.proc
        # Whatever the process writes to stdout goes to the error log,
        # so that it cannot block on a full pipe.
        while True:
            data = await proc.read()
            if not data:
                break
            log.warning("%s: stdout: %s", self.name, data.decode("utf-8", "replace").rstrip())
        code = await proc.wait()
        proc.finish()
        _remove(backend.path)
        self.retiring.discard(backend)
        if backend.state in ("draining", "stopped") or self.stopping:
            backend.state = "stopped"
            return
        lived = self.loop.time() - backend.started_at
        if lived >= HEALTHY_AFTER:
            self._backoff = BACKOFF_MIN
        how = f"exit status {code}" if code >= 0 else f"signal {-code}"
        log.error("%s: process %d ended (%s) after %.1fs and %d requests; "
                  "restarting in %gs", self.name, proc.pid, how, lived,
                  backend.requests, self._backoff)
        backend.state = "restarting"
        await self._restart(backend)

    async def _restart(self, backend):
        delay = self._backoff
        self._backoff = min(BACKOFF_MAX, self._backoff * 2)
        await asyncio.sleep(delay)
        if not self.stopping:
            await self._launch(old=backend, restart=True)

    def drain(self, backend):
        """Replace ``backend`` (it served its quota) and stop it once idle."""
        backend.state = "draining"
        self.retiring.add(backend)
        log.info("%s: process %d served %d requests; replacing it", self.name,
                 backend.proc.pid, backend.requests)
        self._later(self._launch(old=backend))
        if backend.connections == 0:
            self.retire(backend)

    def retire(self, backend):
        self._later(self._stop_one(backend))

    async def _stop_one(self, backend):
        proc = backend.proc
        if proc is None or proc.returncode is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), STOP_GRACE)
        except asyncio.TimeoutError:
            log.info("%s: process %d still there %gs after SIGTERM; killed",
                     self.name, proc.pid, STOP_GRACE)
            proc.kill()

    async def connect(self, timeout, factory):
        """A connection made by ``factory`` to the running process with the
        fewest connections, and that process (the pool's ``Address.connect``)."""
        deadline = self.loop.time() + timeout
        while True:
            running = [b for b in self.backends if b.state == "running"]
            if running:
                break
            # Between a recycled process and its replacement, or while a
            # dead one waits out its restart delay.
            left = deadline - self.loop.time()
            if self.stopping or left <= 0:
                raise BackendError("no backend process is running (see the errors above)")
            waiter = self.loop.create_future()
            self._connectors.append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except asyncio.TimeoutError:
                pass
        backend = min(running, key=lambda b: b.connections)
        try:
            _, protocol = await asyncio.wait_for(
                self.loop.create_unix_connection(factory, backend.path), timeout)
        except asyncio.TimeoutError:
            raise BackendError(f"process {backend.proc.pid} accepted no connection "
                               f"within {timeout:g}s") from None
        except OSError as e:
            raise BackendError(f"cannot connect to process {backend.proc.pid}: "
                               f"{e.strerror or e}") from None
        backend.connections += 1
        return protocol, backend

    def _wake_connectors(self):
        waiters, self._connectors = self._connectors, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def rows(self):
        """One dict per process, for the status page."""
        return [{"backend": self.name, "pid": str(b.proc.pid if b.proc else "-"),
                 "state": b.state, "requests": b.requests,
                 "connections": b.connections, "restarts": b.restarts}
                for b in [*self.backends, *self.retiring]]

    async def stop(self):
        """Stop every process gracefully, reap them, remove the sockets."""
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        backends = [b for b in [*self.backends, *self.retiring] if b.proc is not None]
        for backend in backends:
            backend.state = "stopped"
        await asyncio.gather(*[self._stop_one(b) for b in backends])
        await asyncio.gather(*list(self._watchers), return_exceptions=True)
        if self.manager is not None:
            await self.manager.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

"""Auxiliary processes of the event loop: spawn, pipes, limits, reaping.

Theory of operation
-------------------
A dynamic request runs a short-lived child process (CGI today, a FastCGI
pool later).  The event loop owns every such child the way it owns its disk
helpers: it never blocks on one.

* **Spawn.**  ``posix_spawn`` (glibc does it with ``clone(CLONE_VM |
  CLONE_VFORK)``: no page-table copy, the loop waits only for the hand-off to
  ``execve``).  It is called through ``ctypes`` because ``os.posix_spawn``
  cannot set the child's working directory, and changing the whole server's
  directory around the call would race with helper threads.  The file actions
  wire the pipes to 0, 1 and 2, ``chdir`` to the requested directory and
  close every descriptor above 2 (``closefrom``, where the C library has it;
  descriptors Python creates are close-on-exec anyway, PEP 446).  The child
  gets its own process group, every signal at its default disposition (Python
  ignores SIGPIPE, which a shell script must not inherit) and an empty signal
  mask.  Measured on one core with a ``/bin/sh`` script, 16 at a time, this
  path did ~1,400 spawns/s under uvloop, against ~1,100 for asyncio's
  ``create_subprocess_exec`` on the default loop (uvloop's refuses
  ``process_group``).
* **Exit.**  ``os.pidfd_open`` gives a descriptor that polls readable when the
  child exits; ``loop.add_reader`` watches it, so no SIGCHLD handler or
  watcher thread is involved and both uvloop and asyncio's loop work.  It
  is opened only when someone must wait: a child that has already exited
  when its owner finishes with it (the common case for a quick script) is
  reaped on the spot.  The
  exit status is read with ``waitid(WNOWAIT)``, which leaves the child a
  zombie: while it is one, its pid - and so its process-group id - cannot be
  reused, which makes a later ``killpg`` safe.  The child is reaped
  (``waitpid``) only when its owner is done with it, right after the group
  is killed, so stray grandchildren never outlive their request.
* **Pipes.**  The parent's ends are non-blocking and driven by
  ``add_reader``/``add_writer`` only while someone awaits them, so output is
  read only as fast as the consumer takes it, and input is written only as
  fast as the child reads it: backpressure both ways.  Standard error is
  drained whenever the owner waits on the child (and at the end), and
  handed over line by line.
* **Limit.**  :class:`Slots` admits ``max_procs`` children; further spawns
  wait in a bounded FIFO queue, and are refused with :class:`Busy` when the
  queue is full or the wait is too long.  A slot is held from spawn until the
  child is reaped, so the limit bounds real processes, zombies included.
* **Death of the owner.**  A worker killed outright runs no clean-up, so a
  guard process (:mod:`flashplug.guard`) watches it and kills the process
  groups of the children it leaves behind: no auxiliary process outlives
  the worker that spawned it.

Size: the longest kernel module, on purpose: a child's whole life (spawn,
pipes, the limit, the guard, reaping) is here because each step's safety
rests on the others (``waitid(WNOWAIT)`` keeps the pid for ``killpg``).
"""
import asyncio
import collections
import ctypes
import ctypes.util
import fcntl
import os
import re
import signal
import subprocess
import sys

from flashplug import guard

#: Read size for stdout/stderr: one pipe's default capacity on Linux.
CHUNK = 65536

#: An over-long stderr "line" is cut here, so a script that writes binary
#: junk to stderr cannot make the server buffer without bound.
MAX_STDERR_LINE = 8192

# What a stderr line may not hold raw in the error log: C0 controls but the
# tab, DEL and C1 controls.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def stderr_text(line):
    """A line (bytes) a process wrote to its standard error, as text for the
    error log: UTF-8 where it is, ``\\xNN`` for any other byte and for a
    control character (a tab stays).  A script often echoes what a client
    sent; raw, a CR would let it overwrite the log line's prefix on a
    terminal and an ESC send escape sequences to the terminal that shows
    the log (CVE-2009-4487 in nginx, CVE-2013-1862 in Apache)."""
    text = line.decode("utf-8", "backslashreplace")
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


#: Pass as ``stdin`` to get a pipe the caller writes with ``Process.write``.
PIPE = "pipe"


class Busy(Exception):
    """No process slot: the wait queue is full, or the wait was too long."""


class Slots:
    """A counting limit with a bounded FIFO of waiters.

    ``release`` hands a freed slot straight to the oldest waiter, so a burst
    cannot starve an early request.
    """

    def __init__(self, limit, queue):
        self.limit = limit
        self.queue = queue
        self.active = 0
        self._waiters = collections.deque()

    @property
    def waiting(self):
        return len(self._waiters)

    def try_acquire(self):
        """Take a slot if one is free and nobody waits: True, else False."""
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return True
        return False

    async def acquire(self, timeout):
        if self.try_acquire():
            return
        if len(self._waiters) >= self.queue:
            raise Busy("all %d process slots busy and the queue of %d is full"
                       % (self.limit, self.queue))
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiters.append(fut)
        timer = loop.call_later(timeout, self._expire, fut, timeout)
        try:
            await fut
        except asyncio.CancelledError:
            # The slot may have been handed over just before the cancel.
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release()
            raise
        finally:
            timer.cancel()
            if not fut.done() or fut.cancelled():
                self._discard(fut)

    def _expire(self, fut, timeout):
        if not fut.done():
            self._discard(fut)
            fut.set_exception(Busy("waited %gs for a process slot" % timeout))

    def _discard(self, fut):
        try:
            self._waiters.remove(fut)
        except ValueError:
            pass

    def release(self):
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes on; ``active`` stays
                return
        self.active -= 1


# -- posix_spawn through ctypes ------------------------------------------------

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

# Flag values shared by glibc, musl and the BSDs.
_SETPGROUP, _SETSIGDEF, _SETSIGMASK = 0x02, 0x04, 0x08

# Opaque C types; generous sizes (glibc x86-64 needs 80, 336 and 128 bytes).
_FILE_ACTIONS_SIZE = 256
_ATTR_SIZE = 1024
_SIGSET_SIZE = 256

HAVE_CHDIR = hasattr(_libc, "posix_spawn_file_actions_addchdir_np")
_HAVE_CLOSEFROM = hasattr(_libc, "posix_spawn_file_actions_addclosefrom_np")


def _sigset(fill):
    s = ctypes.create_string_buffer(_SIGSET_SIZE)
    (_libc.sigfillset if fill else _libc.sigemptyset)(s)
    return s


class _SpawnAttr:
    """The spawn attributes every child gets, built once."""

    def __init__(self):
        self.buf = ctypes.create_string_buffer(_ATTR_SIZE)
        self._all = _sigset(True)
        self._none = _sigset(False)
        _libc.posix_spawnattr_init(self.buf)
        _libc.posix_spawnattr_setflags(
            self.buf, ctypes.c_short(_SETPGROUP | _SETSIGDEF | _SETSIGMASK))
        _libc.posix_spawnattr_setpgroup(self.buf, 0)
        _libc.posix_spawnattr_setsigdefault(self.buf, self._all)
        _libc.posix_spawnattr_setsigmask(self.buf, self._none)


_attr = None


_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def _encode(s):
    """``os.fsencode`` without its per-call overhead (dozens per spawn)."""
    return s if type(s) is bytes else s.encode(_FS_ENCODING, _FS_ERRORS)


def _cstrings(items):
    return (ctypes.c_char_p * (len(items) + 1))(*items, None)


class _FileActions:
    """File actions (dup2s, chdir, closefrom) kept for reuse.

    Building them costs about as much CPU as the spawn call itself, and the
    same few combinations recur: pipe descriptor numbers are reused lowest
    first, and most scripts share a directory.  A full cache is dropped
    whole; it refills in a few requests.
    """

    MAX = 64

    def __init__(self):
        self._cache = {}

    def get(self, fds, cwd):
        key = (fds[0], fds[1], fds[2], cwd)
        fa = self._cache.get(key)
        if fa is None:
            if len(self._cache) >= self.MAX:
                self.clear()
            fa = self._cache[key] = self._build(fds, cwd)
        return fa

    @staticmethod
    def _build(fds, cwd):
        fa = ctypes.create_string_buffer(_FILE_ACTIONS_SIZE)
        _libc.posix_spawn_file_actions_init(fa)
        for child_fd in (0, 1, 2):
            _libc.posix_spawn_file_actions_adddup2(fa, fds[child_fd], child_fd)
        _libc.posix_spawn_file_actions_addchdir_np(fa, _encode(cwd))
        if _HAVE_CLOSEFROM:
            _libc.posix_spawn_file_actions_addclosefrom_np(fa, 3)
        return fa

    def clear(self):
        for fa in self._cache.values():
            _libc.posix_spawn_file_actions_destroy(fa)
        self._cache.clear()


_file_actions = _FileActions()


def spawn(path, argv, env, cwd, fds):
    """Start ``path`` in a new process group; return its pid.

    ``argv`` and ``env`` (a mapping) hold ``str`` (encoded with the file
    system encoding, so surrogate-escaped bytes survive) or ``bytes``.
    ``fds`` maps each child descriptor 0, 1, 2 to a parent descriptor
    above 2.  Raises ``OSError`` when the C library reports a failure (for
    example ``ENOEXEC``, ``EACCES``).
    """
    global _attr
    if _attr is None:
        _attr = _SpawnAttr()
    c_argv = _cstrings([_encode(a) for a in argv])
    c_env = _cstrings([_encode(k) + b"=" + _encode(v) if type(k) is bytes
                       or type(v) is bytes else _encode(k + "=" + v)
                       for k, v in env.items()])
    pid = ctypes.c_int()
    err = _libc.posix_spawn(ctypes.byref(pid), _encode(path),
                            _file_actions.get(fds, cwd), _attr.buf, c_argv, c_env)
    if err:
        raise OSError(err, os.strerror(err), path)
    return pid.value


def spawn_as(creds, path, argv, env, cwd, fds):
    """:func:`spawn`, with the child switched to ``creds`` (uid, gid,
    supplementary gids) before it executes ``path``.

    ``posix_spawn`` cannot change users, so this path forks (through
    ``subprocess``, whose child code is async-signal-safe C): it costs the
    loop a page-table copy per script, paid only when the server runs as
    root and scripts must not.  The child is reaped here, by waitid/waitpid
    on its pid, like every other; the ``Popen`` object is told so.
    """
    uid, gid, groups = creds
    try:
        child = subprocess.Popen(
            argv, executable=path, stdin=fds[0], stdout=fds[1], stderr=fds[2],
            cwd=cwd, env=env, close_fds=True, restore_signals=True,
            user=uid, group=gid, extra_groups=list(groups), **_NEW_GROUP)
    except subprocess.SubprocessError as e:
        raise OSError(0, str(e), path) from None
    # procs owns the child's exit (see Process): keep Popen from ever
    # calling waitpid on it.
    child.returncode = 0
    return child.pid


# Python 3.10 has no process_group=; os.setpgrp in the child does the same.
_NEW_GROUP = ({"process_group": 0} if sys.version_info >= (3, 11)
              else {"preexec_fn": os.setpgrp})


def _above_stdio(fd):
    """Move a new descriptor above 2, so a ``dup2`` to 0-2 cannot clobber it
    (possible only when the server itself runs with 0-2 closed)."""
    if fd > 2:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return new


def _pipe():
    r, w = os.pipe()  # both ends close-on-exec (PEP 446)
    return _above_stdio(r), _above_stdio(w)


def _nonblocking(fd):
    # One fcntl: a fresh pipe end has no other status flag to keep
    # (os.set_blocking would read them first).
    fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)


def _decode_wait(info):
    """waitid() result -> returncode in the subprocess convention."""
    if info.si_code == os.CLD_EXITED:
        return info.si_status
    return -info.si_status


# -- one child ---------------------------------------------------------------------

class Process:
    """A running child and the parent's ends of its pipes.

    The owner reads ``read()`` until it returns ``b""``, optionally writes
    ``write()``/``close_stdin()``, and calls ``finish()`` exactly once when
    it no longer needs the child (``kill=True`` to end it at once).
    """

    def __init__(self, manager, pid, stdin, stdout, stderr, on_stderr):
        self._manager = manager
        self._loop = manager.loop
        self.pid = pid
        self._guard_slot = manager._guard_add(pid)
        self.returncode = None
        self._stdin = stdin
        self._stdout = stdout
        self._stderr = stderr
        self._on_stderr = on_stderr
        self._errbuf = b""
        self._done = False
        self._reaped = False
        self._grace = None
        self._exit_waiters = []
        self._watched = {}  # fd -> (remove_reader/remove_writer, future)
        self._pidfd = None
        self._watching = False
        self._stderr_watched = False

    # exit and reaping

    def _watch_exit(self):
        """Start noticing the exit.  Lazily: a quick child has usually
        exited by the time its owner is done with it, and then it needs no
        watcher at all (saving a pidfd and a poller registration)."""
        if self._watching:
            return
        self._watching = True
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._poll_exit(0.005)  # no pidfd (old kernel, not Linux): poll
        else:
            self._loop.add_reader(self._pidfd, self._on_exit)

    def _poll_exit(self, delay):
        if self._check_exit():
            self._exited()
        else:
            self._loop.call_later(delay, self._poll_exit, min(delay * 2, 0.1))

    def _check_exit(self):
        info = os.waitid(os.P_PID, self.pid,
                         os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is None:
            return False
        self.returncode = _decode_wait(info)
        return True

    def _on_exit(self):
        self._loop.remove_reader(self._pidfd)
        self._check_exit()
        self._exited()

    def _exited(self):
        for fut in self._exit_waiters:
            if not fut.done():
                fut.set_result(self.returncode)
        self._exit_waiters.clear()
        watched = self._watched.get(self._stdout)
        if watched is not None:
            _wake(watched[1])   # a reader waiting on stdout: see read()
        if self._done:
            self._reap()

    async def wait(self):
        """The exit status: >= 0 exit code, < 0 the killing signal."""
        if self.returncode is not None or self._check_exit():
            return self.returncode
        self._watch_exit()
        self._watch_stderr()
        fut = self._loop.create_future()
        self._exit_waiters.append(fut)
        return await fut

    def kill(self):
        """SIGKILL the whole process group.  Safe until the child is reaped:
        an unreaped pid cannot be reused."""
        if not self._reaped:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def finish(self, kill=False, grace=None):
        """The owner is done: kill now (``kill``), or give the child
        ``grace`` seconds to exit by itself; then reap it."""
        if self._done:
            return
        self._done = True
        self._close_stdin()
        self._close_stdout()
        if kill:
            self.kill()
        if self.returncode is not None or self._check_exit():
            self._reap()
            return
        self._watch_exit()
        self._watch_stderr()
        if not kill and grace is not None:
            self._grace = self._loop.call_later(grace, self.kill)

    def _reap(self):
        if self._reaped:
            return
        self.kill()  # stragglers in the group die with their request
        self._reaped = True
        self._manager._guard_remove(self._guard_slot)  # before the pid is freed
        if self._grace is not None:
            self._grace.cancel()
        os.waitpid(self.pid, 0)  # a zombie by now: returns at once
        if self._pidfd is not None:
            # The exit may have been seen by waitid before the loop ran the
            # pidfd's callback: unregister it before its number is reused,
            # and wake whoever still waits for that callback.
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        for fut in self._exit_waiters:
            if not fut.done():
                fut.set_result(self.returncode)
        self._exit_waiters.clear()
        if self._stderr is not None:
            self._read_stderr()  # last words, then EOF or not, close
            self._close_stderr()
        self._manager._release(self)

    # stdout

    async def read(self, timeout=None):
        """Up to CHUNK bytes of stdout; ``b""`` at end of file, once
        ``finish`` closed it, or once the child has exited and what it
        wrote is all read.  Raises ``TimeoutError`` when nothing arrives
        within ``timeout`` seconds.

        The child's exit ends its output even while the pipe stays open: a
        background grandchild that inherited stdout (``sleep 60 &``) would
        otherwise hold a finished script's response open until the
        timeout.  What such strays write later is not the child's output;
        ``finish`` kills them with the group."""
        while True:
            fd = self._stdout
            if fd is None:
                return b""
            try:
                return os.read(fd, CHUNK)
            except BlockingIOError:
                if self.returncode is not None:
                    return b""
            self._watch_exit()
            await self._ready(self._loop.add_reader, self._loop.remove_reader,
                              fd, timeout)

    def read_nowait(self):
        """What stdout holds right now: bytes, ``b""`` at end of file, or
        None when nothing is there yet."""
        if self._stdout is None:
            return b""
        try:
            return os.read(self._stdout, CHUNK)
        except BlockingIOError:
            return None

    async def _ready(self, add, remove, fd, timeout):
        self._watch_stderr()  # while we wait, a chatty child must not block
        fut = self._loop.create_future()
        add(fd, _wake, fut)
        self._watched[fd] = (remove, fut)
        timer = None
        if timeout is not None:
            timer = self._loop.call_later(timeout, _expire, fut)
        try:
            await fut
        finally:
            # Unless _close() took the registration over: by then the fd
            # number may belong to someone else.
            if self._watched.get(fd, (None, None))[1] is fut:
                del self._watched[fd]
                remove(fd)
            if timer is not None:
                timer.cancel()

    def _close(self, fd):
        """Close one of our pipe ends, first waking whoever waits on it."""
        watched = self._watched.pop(fd, None)
        if watched is not None:
            remove, fut = watched
            remove(fd)
            _wake(fut)
        os.close(fd)

    def _close_stdout(self):
        if self._stdout is not None:
            self._close(self._stdout)
            self._stdout = None

    # stdin

    async def write(self, data, timeout=None):
        """Write all of ``data`` to stdin, as fast as the child reads it.
        Raises ``BrokenPipeError`` when the child closed its stdin (or
        exited), ``TimeoutError`` when it stops reading for ``timeout``."""
        view = memoryview(data)
        while view:
            if self._stdin is None:
                raise BrokenPipeError("stdin is closed")
            try:
                n = os.write(self._stdin, view)
            except BlockingIOError:
                await self._ready(self._loop.add_writer,
                                  self._loop.remove_writer, self._stdin,
                                  timeout)
                continue
            view = view[n:]

    def close_stdin(self):
        """Signal end of input to the child."""
        self._close_stdin()

    def _close_stdin(self):
        if self._stdin is not None:
            self._close(self._stdin)
            self._stdin = None

    # stderr

    def _watch_stderr(self):
        """Drain stderr from the loop from now on.  Only needed once someone
        waits on the child: until then it is read when the child is reaped,
        which spares a quick script's request a poller registration."""
        if self._stderr is not None and not self._stderr_watched:
            self._stderr_watched = True
            self._loop.add_reader(self._stderr, self._read_stderr)

    def _read_stderr(self):
        while True:
            try:
                data = os.read(self._stderr, CHUNK)
            except BlockingIOError:
                return
            if not data:
                self._close_stderr()
                return
            self._errbuf += data
            *lines, self._errbuf = self._errbuf.split(b"\n")
            if len(self._errbuf) > MAX_STDERR_LINE:
                lines.append(self._errbuf)
                self._errbuf = b""
            for line in lines:
                self._on_stderr(line.rstrip(b"\r"))

    def _close_stderr(self):
        if self._stderr is None:
            return
        if self._stderr_watched:
            self._loop.remove_reader(self._stderr)
        os.close(self._stderr)
        self._stderr = None
        if self._errbuf:
            self._on_stderr(self._errbuf)
            self._errbuf = b""


def _wake(fut):
    if not fut.done():
        fut.set_result(None)


def _expire(fut):
    if not fut.done():
        fut.set_exception(TimeoutError())


# -- the manager -------------------------------------------------------------------

class ProcessManager:
    """Spawns children for one event loop, within a limit; kills them all
    on ``close()``."""

    def __init__(self, loop, max_procs, queue, creds=None):
        self.loop = loop
        # (uid, gid, supplementary gids) every child runs as, or None for
        # the server's own.
        self.creds = creds
        self.slots = Slots(max_procs, queue)
        self.running = set()
        # One shared /dev/null for a child's unused stdin or stderr: saves a
        # pipe (or an open()) per spawn.
        self._devnull = _above_stdio(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
        try:
            self._guard = guard.Table(max_procs)
        except (AttributeError, OSError):
            self._guard = None  # no memfd (not Linux): children may outlive a killed worker

    def _guard_add(self, pid):
        return None if self._guard is None else self._guard.add(pid)

    def _guard_remove(self, slot):
        # After close() the guard is gone; a late reap has nothing to clear.
        if slot is not None and self._guard is not None:
            self._guard.remove(slot)

    async def spawn(self, path, argv, env, cwd, *, stdin=None,
                    on_stderr=None, queue_timeout=60.0):
        """Start a child once a slot is free.

        ``stdin``: None (``/dev/null``), :data:`PIPE`, or a descriptor the
        child reads directly (such as a spooled request body; the caller
        keeps and closes its own copy).  ``on_stderr(line: bytes)`` gets
        each line of standard error; without it stderr is discarded.
        Raises :class:`Busy` (no slot) or ``OSError`` (spawn failed).
        """
        await self.slots.acquire(queue_timeout)
        ours = []
        try:
            out_r, out_w = _pipe()
            ours += [out_r, out_w]
            fds = {1: out_w}
            parent_stdin = None
            if stdin == PIPE:
                in_r, parent_stdin = _pipe()
                ours += [in_r, parent_stdin]
                _nonblocking(parent_stdin)
                fds[0] = in_r
            else:
                fds[0] = self._devnull if stdin is None else stdin
            err_r = None
            if on_stderr is not None:
                err_r, err_w = _pipe()
                ours += [err_r, err_w]
                fds[2] = err_w
                _nonblocking(err_r)
            else:
                fds[2] = self._devnull
            _nonblocking(out_r)
            if self.creds is None:
                pid = spawn(path, argv, env, cwd, fds)
            else:
                pid = spawn_as(self.creds, path, argv, env, cwd, fds)
        except BaseException:
            for fd in ours:
                os.close(fd)
            self.slots.release()
            raise
        for child_end in (out_w, fds[2], fds[0] if stdin == PIPE else None):
            if child_end is not None and child_end != self._devnull:
                os.close(child_end)
        proc = Process(self, pid, parent_stdin, out_r, err_r, on_stderr)
        self.running.add(proc)
        # Let the child run first.  Where it shares our core (one core, or
        # a busy machine) a short script then finishes before its owner
        # first reads, which finds all the output and the end of file
        # without a poll-and-wake cycle; measured on one core with a
        # /bin/sh script: -25% server CPU per request.  Where another core
        # is idle this returns at once.
        os.sched_yield()
        return proc

    def _release(self, proc):
        self.running.discard(proc)
        self.slots.release()

    async def close(self):
        """Kill every child's group and reap them all."""
        procs = list(self.running)
        for proc in procs:
            proc.finish(kill=True)
        for proc in procs:
            if not proc._reaped:
                await proc.wait()
        if self._devnull is not None:
            os.close(self._devnull)
            self._devnull = None
        if self._guard is not None:
            self._guard.close()
            self._guard = None

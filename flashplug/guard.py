"""The guard: a worker's auxiliary processes die with it, even by SIGKILL.

Theory of operation
-------------------
A worker kills the process group of each CGI script it runs when the
request ends (``flashplug.procs``).  A worker that is itself killed
(SIGKILL, the OOM killer, a crash) runs no code, so without help its
scripts and their children would be re-parented to init and live on.

``PR_SET_PDEATHSIG`` alone cannot close that gap: it reaches only the
direct child (a fork clears it, so a script's own children survive), it
fires when the *thread* that spawned the child exits, and ``posix_spawn``,
which we use to start children cheaply, has no hook to set it.

So each :class:`~flashplug.procs.ProcessManager` starts one small guard
process (a bare ``python -I -S`` running this file, its own process group)
and shares two things with it:

* **the table**: an anonymous shared memory file (``memfd``) of 32-bit
  slots, one per running child, holding the child's pid, which is also its
  process-group id.  The worker writes a slot after each spawn and clears it
  when it reaps the child: a store to memory, no system call per request.
* **the lifeline**: a pipe whose write end only the worker holds
  (close-on-exec, and children get ``closefrom(3)``).  The guard blocks
  reading it; end of file means the worker is gone, however it went.

On end of file the guard reads the table and sends SIGKILL to every process
group still in it, then exits.  On a clean stop the worker has killed and
reaped its children already, so the table is empty and the guard just exits
(the worker reaps it).  While the worker runs, a listed group cannot have
been reused: the worker reaps a child (freeing its pid) only after clearing
its slot.

Limits: a child spawned in the microseconds between ``posix_spawn``
returning and its slot being written escapes if the worker dies right then;
a process that leaves its group (``setsid``) escapes as it would escape
the request's own kill.  Linux only (``memfd_create``); elsewhere there is
no guard.

This file is run as a script by path and imports only the standard library.
"""
import mmap
import os
import signal
import struct
import sys

#: One table slot: a pid (0 when free), native byte order.
_SLOT = struct.Struct("=i")

#: The guard's descriptors: the lifeline on 0 (stdin), the table on 3.
_TABLE_FD = 3


class Table:
    """The worker's side: the shared table and the guard that reads it.

    ``add(pid)`` returns a slot number to give back to ``remove(slot)``.
    Raises ``OSError`` from the constructor when no guard can be started.
    """

    def __init__(self, slots):
        self._free = list(range(slots - 1, -1, -1))
        self._size = slots
        # Above 3, so the dup2 onto the guard's descriptor 3 never meets
        # itself (a same-number dup2 would keep close-on-exec).
        memfd = os.memfd_create("flashplug-guard", os.MFD_CLOEXEC)
        try:
            self._fd = _move_above(memfd, _TABLE_FD)
            os.ftruncate(self._fd, slots * _SLOT.size)
            self._map = mmap.mmap(self._fd, slots * _SLOT.size)
            lifeline_r, self._lifeline = os.pipe()
            try:
                self.guard_pid = os.posix_spawn(
                    sys.executable, [sys.executable, "-I", "-S", os.path.abspath(__file__)],
                    {}, file_actions=[
                        (os.POSIX_SPAWN_DUP2, lifeline_r, 0),
                        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                        (os.POSIX_SPAWN_DUP2, self._fd, _TABLE_FD),
                    ],
                    setpgroup=0, setsigdef=(signal.SIGINT, signal.SIGTERM, signal.SIGPIPE))
            finally:
                os.close(lifeline_r)
        except BaseException:
            self._release_fds()
            raise

    def add(self, pid):
        if not self._free:  # more children than slots: grow (the guard maps it all)
            self._map.resize((self._size * 2) * _SLOT.size)
            self._free = list(range(self._size * 2 - 1, self._size - 1, -1))
            self._size *= 2
        slot = self._free.pop()
        _SLOT.pack_into(self._map, slot * _SLOT.size, pid)
        return slot

    def remove(self, slot):
        _SLOT.pack_into(self._map, slot * _SLOT.size, 0)
        self._free.append(slot)

    def close(self):
        """Let the guard go (it kills what the table still lists) and reap it."""
        self._release_fds()
        os.waitpid(self.guard_pid, 0)

    def _release_fds(self):
        for name in ("_lifeline", "_fd"):
            fd = getattr(self, name, None)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
        if getattr(self, "_map", None) is not None:
            self._map.close()
            self._map = None


def _move_above(fd, floor):
    if fd > floor:
        return fd
    import fcntl
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor + 1)
    os.close(fd)
    return new


def main():
    """The guard's side: wait for the lifeline to break, then kill."""
    os.chdir("/")  # hold no directory (and no mount) busy
    while os.read(0, 512):
        pass  # the worker never writes; only end of file matters
    size = os.fstat(_TABLE_FD).st_size
    if size == 0:
        return
    with mmap.mmap(_TABLE_FD, size, access=mmap.ACCESS_READ) as table:
        for (pid,) in _SLOT.iter_unpack(table):
            if pid > 0:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass  # the group is gone already


if __name__ == "__main__":
    main()

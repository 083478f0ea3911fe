"""The master process: generations of workers and the operator's signals.

Theory of operation: ``supervise(generation)`` forks a Generation's
children and replaces any that dies, the way nginx's master does.  A child
that raises reports the cause as one line, both in its own error log and
through a pipe to the master.  A mistake that no check before forking could
catch (a plugin's ``flashplug_startup`` that raises, a log file that vanished)
makes every new child die at once; after ``QUICK_DEATHS`` deaths of children
younger than ``QUICK_SECONDS`` that never accepted a connection, within that
many seconds, the master stops the
others and raises :class:`~flashplug.errors.StartupError` with the last cause,
so the process exits non-zero and a service manager sees the failure instead
of a master that restarts children forever.

The master is a small select() loop: signal handlers only wake it (through
``signal.set_wakeup_fd``), children say "I accept connections" on a pipe,
and exits are reaped without blocking.

Signals (nginx's vocabulary):

* SIGTERM, SIGINT: graceful stop within ``--grace``; the master passes
  SIGTERM on and waits.  SIGQUIT: graceful stop with no deadline (the
  workers get SIGQUIT, the way a reload retires them).
* SIGUSR1: reopen the log files (after logrotate renamed them); the master
  reopens its own and passes the signal on to every child.
* SIGHUP: reload.  The master loads the whole configuration again (the
  ``reload`` function ``flashplug.server`` gives it); if that fails, it logs
  why in one line and the old workers serve on.  Otherwise it forks a new
  generation on the same listening sockets and, once every new worker
  accepts, sends the old ones SIGQUIT: they stop accepting, finish what is
  in flight (with no deadline) and close their keep-alive connections, so
  no connection and no request is lost.  In single-process mode (no master) SIGHUP reloads
  only the TLS certificates (``flashplug.worker``), and says so.

systemd hears of each step through ``flashplug.systemd``: READY=1,
RELOADING=1, STOPPING=1 and STATUS= lines.

Size: over ~400 lines because the master's whole life is here: worker
generations, reload, signals and their forwarding, the quick-death exit.
Each reacts to the others' state; the pieces that stand alone (privileges,
the guard, sd_notify) are modules of their own.
"""
import logging
import os
import select
import signal
import time
import traceback

from flashplug import log as log_mod, systemd
from flashplug.errors import StartupError, UsageError

log = logging.getLogger("flashplug.supervisor")

#: A child that dies younger than this many seconds, before it accepted a
#: connection, died "quickly" (during start-up).
QUICK_SECONDS = 10.0
#: This many quick deaths within QUICK_SECONDS: the mistake will not go away
#: by itself; give up instead of restarting children ~80 times a second.
QUICK_DEATHS = 5


# -- the operator's signals ---------------------------------------------------

# Set in a supervised child: its master announces the signals, once.
_quiet = False
#: In a supervised child, the master's pid (the process to signal so that
#: every worker hears it); None elsewhere.
master_pid = None


def _on_hup(reload=None):
    systemd.reloading()
    if not _quiet:
        _log_hup(reload is not None)
    if reload is not None:
        reload()
    if systemd.is_ready():
        systemd.ready("serving")


def _log_hup(reloads):
    if reloads:
        log.info("SIGHUP: reloading the TLS certificates; without a master process "
                 "(--master, or --workers 2 or more) the rest of the configuration "
                 "is read only at start")
    else:
        log.warning("SIGHUP: configuration not reloaded: without a master process "
                    "(--master, or --workers 2 or more) only TLS certificates are "
                    "reloaded; still serving with the configuration read at start")


def _on_usr1():
    if not _quiet:
        log.info("SIGUSR1: reopening the log files")
    log_mod.reopen_logs()


def handle_operator_signals(loop=None, reload=None):
    """Without a master: SIGUSR1 reopens the logs, SIGHUP calls ``reload``
    (the TLS certificates) or logs a line; neither stops us.

    With ``loop`` the handlers run as loop callbacks (never in the middle of
    an access-log flush); without, as plain Python signal handlers (the
    blocking architectures and the master).
    """
    def on_hup():
        _on_hup(reload)
    for sig, action in ((signal.SIGUSR1, _on_usr1), (signal.SIGHUP, on_hup)):
        if loop is not None:
            loop.add_signal_handler(sig, action)
        else:
            signal.signal(sig, lambda signum, frame, action=action: action())


# -- failures, as one line --------------------------------------------------------

def describe(exc, pm=None):
    """One line for an exception that ended a worker: what and where.

    Names the plugin whose code raised it when ``pm`` can tell; the full
    traceback goes to the error log at debug level only.
    """
    if isinstance(exc, (UsageError, StartupError)):
        return str(exc)
    plugin = None
    if pm is not None:
        from flashplug.plugins import plugin_for_module
        tb = exc.__traceback__
        while tb is not None:
            plugin = plugin_for_module(pm, tb.tb_frame.f_globals.get("__name__", "")) or plugin
            tb = tb.tb_next
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    who = f"plugin {plugin!r}: " if plugin else ""
    hint = ""
    if isinstance(exc, ImportError):
        from flashplug.privileges import dropped_to
        if dropped_to:
            hint = (f" (running as {dropped_to}, from --user: can {dropped_to} read that "
                    f"module and its folders?)")
    return f"{who}{type(exc).__name__}: {exc}{at}{hint}"


def run_reporting(child_main, pm=None):
    """Run ``child_main()``; an exception becomes a StartupError whose
    message is one line (:func:`describe`); the traceback goes to the error
    log at debug level only."""
    try:
        return child_main()
    except (StartupError, UsageError):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure ends as one line
        log.debug("worker failed", exc_info=True)
        raise StartupError(describe(exc, pm)) from None


# -- the master: generations of children ----------------------------------------------

def _die_with_parent(parent):
    """Linux: SIGTERM this child if the master dies (even by SIGKILL), so no
    worker is left serving on its own."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(0)  # the master died before the request above took effect


def _exit_text(status):
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


#: The signals whose master handlers must not leak into a fresh child.
_MASTER_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1,
                   signal.SIGHUP, signal.SIGCHLD}

#: A new generation's children must all accept within this many seconds
#: of a reload, or the reload is abandoned (a start-up hook that hangs).
READY_TIMEOUT = 60.0


class Generation:
    """Children that share one configuration: ``count`` of them, each
    running ``child_main(accepting)`` (it calls ``accepting(True)`` once it
    accepts connections, ``accepting(False)`` when a stop closed its
    listener; ``pm`` names the plugin in a failure's line)."""

    def __init__(self, count, child_main, pm=None, what="worker"):
        self.count = count
        self.child_main = child_main
        self.pm = pm
        self.what = what
        self.pids = set()
        self.waiting = set()      # started, not accepting yet
        self.retired = False      # told to stop: its children are not replaced
        self.deadline = None      # READY_TIMEOUT, while it is a reload's


class _Master:
    """``supervise``'s state and event handlers (one per master process)."""

    def __init__(self, first, reload):
        self.current = first
        self.pending = None       # a reload's generation, until all of it accepts
        self.reload = reload
        self.children = {}        # pid -> (monotonic start time, Generation)
        self.quick_deaths = []    # monotonic times of quick deaths
        self.stopping = False
        self.announced = False    # READY=1 sent for the first generation
        self.closing = set()      # replaced children that may still accept
        self.reloaded = None      # the STATUS to announce once none does
        self.pid = os.getpid()
        # A dying child writes its one-line cause here; a child that starts
        # accepting writes its pid to the other, one that stops, -pid (each
        # write well under PIPE_BUF, so lines never interleave).
        self.cause_r, self.cause_w = os.pipe()
        self.cause_read = ("", 0.0)     # (last line read, when): last_cause
        self.ready_r, self.ready_w = os.pipe()
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.cause_r, self.ready_r, self.wake_r, self.wake_w):
            os.set_blocking(fd, False)

    def close(self):
        for fd in (self.cause_r, self.cause_w, self.ready_r, self.ready_w,
                   self.wake_r, self.wake_w):
            os.close(fd)

    # -- children ---------------------------------------------------------------

    def spawn(self, gen):
        # The master's handlers must never run in a child: a SIGTERM that
        # landed between fork() and the child's own handlers would make the
        # child signal its siblings and then serve on, so the stop would hang.
        # Block the signals across the fork; each side unblocks once its own
        # handlers (and, in the master, the child's pid) are in place.
        signal.pthread_sigmask(signal.SIG_BLOCK, _MASTER_SIGNALS)
        pid = os.fork()
        if pid == 0:
            self._child(gen)
        self.children[pid] = (time.monotonic(), gen)
        gen.pids.add(pid)
        gen.waiting.add(pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _MASTER_SIGNALS)

    def _child(self, gen):
        global _quiet, master_pid
        _quiet = True
        master_pid = self.pid
        systemd.forget()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        handle_operator_signals()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _MASTER_SIGNALS)
        _die_with_parent(self.pid)
        for fd in (self.cause_r, self.ready_r, self.wake_r, self.wake_w):
            os.close(fd)
        ready_w = self.ready_w

        def accepting(on):
            os.write(ready_w, b"%d\n" % (os.getpid() if on else -os.getpid()))
        code = 1
        try:
            code = run_reporting(lambda: gen.child_main(accepting), gen.pm)
        except (StartupError, UsageError) as e:
            log.error("%s %d failed: %s", gen.what, os.getpid(), e)
            os.write(self.cause_w, (str(e)[:400] + "\n").encode("utf-8", "replace"))
        finally:
            os._exit(code)

    def signal_children(self, sig, gens=None):
        for pid, (_, gen) in list(self.children.items()):
            if gens is None or gen in gens:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def last_cause(self):
        """The last line a child wrote to the cause pipe; "" if none.

        Two children that die together both write, and the first exit
        reads both lines: with nothing new in the pipe, the line read in
        the last QUICK_SECONDS stands for the second exit too."""
        try:
            lines = os.read(self.cause_r, 4096).decode("utf-8", "replace").strip().splitlines()
        except BlockingIOError:
            lines = []
        now = time.monotonic()
        if lines:
            self.cause_read = (lines[-1], now)
        line, when = self.cause_read
        return line if now - when < QUICK_SECONDS else ""

    # -- events -------------------------------------------------------------------

    def on_signal(self, signum):
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            if not self.stopping:
                self.stopping = True
                systemd.notify("STOPPING=1", "STATUS=stopping: finishing the requests "
                                             "in flight")
            if signum == signal.SIGQUIT:
                self.retire(self.children)
            else:
                self.signal_children(signal.SIGTERM)
        elif signum == signal.SIGUSR1:
            _on_usr1()
            self.signal_children(signal.SIGUSR1)
        elif signum == signal.SIGHUP and not self.stopping:
            self.on_hup()

    def on_hup(self):
        if self.pending is not None:
            log.warning("SIGHUP: a reload is already under way; this one is ignored")
            return
        systemd.reloading()
        log.info("SIGHUP: reloading the configuration")
        try:
            gen = self.reload()
        except (UsageError, StartupError) as e:
            self.reload_failed(e)
            return
        gen.deadline = time.monotonic() + READY_TIMEOUT
        self.pending = gen
        for _ in range(gen.count):
            self.spawn(gen)

    def on_ready(self, pid):
        entry = self.children.get(pid)
        if entry is None:
            return
        gen = entry[1]
        gen.waiting.discard(pid)
        if gen.waiting:
            return
        if gen is self.current and not self.announced:
            self.announced = True
            systemd.ready(f"serving with {gen.count} {gen.what}s")
        elif gen is self.pending:
            self.switch()

    def switch(self):
        """The new generation accepts: the old one stops gracefully.  The
        reload is announced once no old child accepts any more, so every
        connection made after READY=1 gets the new configuration."""
        old, self.current, self.pending = self.current, self.pending, None
        old.retired = True
        self.closing |= old.pids
        self.retire(old.pids)
        self.quick_deaths.clear()
        count = self.current.count
        self.reloaded = (f"configuration reloaded: {count} new {self.current.what}"
                         f"{'s accept' if count != 1 else ' accepts'} connections; the old "
                         f"ones finish their requests and stop")
        self.not_accepting(None)

    def retire(self, pids):
        """SIGQUIT: finish everything in flight, however long (nginx's QUIT).
        A child still starting has no handler for it yet: SIGTERM."""
        for pid in list(pids):
            entry = self.children.get(pid)
            starting = entry is not None and pid in entry[1].waiting
            try:
                os.kill(pid, signal.SIGTERM if starting else signal.SIGQUIT)
            except ProcessLookupError:
                pass

    def not_accepting(self, pid):
        self.closing.discard(pid)
        if self.reloaded is not None and not self.closing:
            log.info("%s", self.reloaded)
            self.reloaded = None
            self.announced = True
            systemd.ready(f"serving with {self.current.count} {self.current.what}s "
                          f"(configuration reloaded)")

    def abandon(self, why):
        """The reload's generation cannot serve: stop it, keep the old one."""
        gen, self.pending = self.pending, None
        gen.retired = True
        self.signal_children(signal.SIGTERM, {gen})
        self.reload_failed(why)

    def reload_failed(self, why):
        log.error("SIGHUP: configuration not reloaded, still serving the old one: %s", why)
        if self.announced:
            systemd.ready(f"reload failed, serving the old configuration: {why}")

    def on_exit(self, pid, status):
        entry = self.children.pop(pid, None)
        if entry is None:
            return
        started, gen = entry
        gen.pids.discard(pid)
        # Only a child that never accepted died at start-up: one that served
        # and was then killed (the OOM killer, an operator's SIGKILL) is
        # replaced however often, as nginx does, never a reason to stop.
        at_start = pid in gen.waiting
        gen.waiting.discard(pid)
        self.not_accepting(pid)
        if self.stopping or gen.retired:
            return
        cause = self.last_cause() or _exit_text(status)
        if gen is self.pending:
            self.abandon(f"a {gen.what} of the new configuration exited ({cause})")
            return
        now = time.monotonic()
        if at_start and now - started < QUICK_SECONDS:
            self.quick_deaths[:] = [t for t in self.quick_deaths
                                    if now - t < QUICK_SECONDS] + [now]
        if len(self.quick_deaths) >= QUICK_DEATHS:
            self.stopping = True
            self.signal_children(signal.SIGTERM)
            self.wait_all()
            raise StartupError(
                f"{gen.what}s keep dying at start-up ({len(self.quick_deaths)} in "
                f"{QUICK_SECONDS:g} s), giving up; last cause: {cause}")
        log.error("%s %d exited (%s); starting a new one", gen.what, pid, _exit_text(status))
        self.spawn(gen)

    def wait_all(self):
        while self.children:
            try:
                pid, _ = os.wait()
            except ChildProcessError:
                break
            self.children.pop(pid, None)

    # -- the loop -----------------------------------------------------------------

    def run(self):
        for _ in range(self.current.count):
            self.spawn(self.current)
        while self.children:
            timeout = None
            if self.pending is not None:
                timeout = max(0.0, self.pending.deadline - time.monotonic())
            readable, _, _ = select.select([self.wake_r, self.ready_r], [], [], timeout)
            if self.wake_r in readable:
                for signum in _read_all(self.wake_r):
                    self.on_signal(signum)
            if self.ready_r in readable:
                for line in bytes(_read_all(self.ready_r)).split():
                    pid = int(line)
                    if pid > 0:
                        self.on_ready(pid)
                    else:
                        self.not_accepting(-pid)
            while self.children:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    self.children.clear()
                    break
                if pid == 0:
                    break
                self.on_exit(pid, status)
            if self.pending is not None and time.monotonic() >= self.pending.deadline:
                self.abandon(f"the new {self.pending.what}s did not accept connections "
                             f"within {READY_TIMEOUT:g} s")
        return 0


def _read_all(fd):
    data = bytearray()
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def supervise(first, reload):
    """Fork the children of ``first`` (a Generation); replace any that
    dies; on SIGTERM or SIGINT pass the signal on and wait for them all;
    SIGUSR1 is passed on.

    SIGHUP calls ``reload``, which returns the next Generation or raises
    UsageError/StartupError with one line; the new children start on the
    same listening sockets, and once all of them accept, the old ones are
    told to stop gracefully.  A reload that fails keeps the old children.

    Returns 0 after a stop; raises StartupError when children keep dying
    within seconds of their start.
    """
    master = _Master(first, reload)
    # Signals wake the select() of the loop through this pipe; the handlers
    # themselves do nothing, so no event is handled in the middle of another.
    previous = signal.set_wakeup_fd(master.wake_w, warn_on_full_buffer=False)
    for sig in _MASTER_SIGNALS:
        signal.signal(sig, lambda signum, frame: None)
    try:
        return master.run()
    finally:
        signal.set_wakeup_fd(previous)
        master.close()

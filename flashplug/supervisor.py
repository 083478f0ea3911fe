"""The master process: worker supervision and the operator's signals.

Theory of operation: ``supervise(count, child_main)`` forks ``count``
children and replaces any that dies, the way nginx's master does.  A child
that raises reports the cause as one line, both in its own error log and
through a pipe to the master.  A mistake that no check before forking could
catch (a plugin's ``flashplug_startup`` that raises, a log file that vanished)
makes every new child die at once; after ``QUICK_DEATHS`` deaths of children
younger than ``QUICK_SECONDS`` within that many seconds, the master stops the
others and raises :class:`~flashplug.errors.StartupError` with the last cause,
so the process exits non-zero and a service manager sees the failure instead
of a master that restarts children forever.

Signals (nginx's vocabulary):

* SIGTERM, SIGINT: graceful stop; the master passes the signal on and waits.
* SIGUSR1: reopen the log files (after logrotate renamed them); the master
  reopens its own and passes the signal on to every child.
* SIGHUP: with HTTPS, every worker reloads its TLS certificates and keys
  (``flashplug.worker``): new handshakes use them, open connections keep
  theirs, none is dropped.  The rest of the configuration is read only at
  start; without HTTPS, SIGHUP logs one line and changes nothing (the
  default action would stop the server).
"""
import logging
import os
import signal
import time
import traceback

from flashplug import log as log_mod
from flashplug.errors import StartupError, UsageError

log = logging.getLogger("flashplug.supervisor")

#: A child that dies younger than this many seconds died "quickly" (during
#: or just after start-up, before it served anything worth restarting for).
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
    if not _quiet:
        _log_hup(reload is not None)
    if reload is not None:
        reload()


def _log_hup(reloads):
    if reloads:
        log.info("SIGHUP: reloading the TLS certificates; the rest of the "
                 "configuration is read only at start")
    else:
        log.warning("SIGHUP: nothing to reload (only TLS certificates are reloaded); "
                    "still serving with the configuration read at start")


def _on_usr1():
    if not _quiet:
        log.info("SIGUSR1: reopening the log files")
    log_mod.reopen_logs()


def handle_operator_signals(loop=None, reload=None):
    """SIGUSR1 reopens the logs, SIGHUP calls ``reload`` (the TLS
    certificates) or logs a line; neither stops us.

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


# -- the master of several children ----------------------------------------------

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
_MASTER_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP}


def supervise(count, child_main, what="worker", pm=None, reloads=False):
    """Fork ``count`` children running ``child_main()``; replace any that
    dies; on SIGTERM or SIGINT pass the signal on and wait for them all;
    SIGUSR1 and SIGHUP are passed on too (``reloads``: the children reload
    their certificates on SIGHUP, for the log line).

    Returns 0 after a stop; raises StartupError when children keep dying
    within seconds of their start.
    """
    children = {}            # pid -> monotonic time of its start
    quick_deaths = []        # monotonic times of quick deaths
    stopping = False
    master = os.getpid()
    # A dying child writes its one-line cause here (well under PIPE_BUF,
    # so lines from several children never interleave).
    cause_r, cause_w = os.pipe()
    os.set_blocking(cause_r, False)
    last_cause = ""

    def spawn():
        # The master's handlers must never run in a child: a SIGTERM that
        # landed between fork() and the child's own handlers would make the
        # child signal its siblings and then serve on, so the stop would hang.
        # Block the signals across the fork; each side unblocks once its own
        # handlers (and, in the master, the child's pid) are in place.
        signal.pthread_sigmask(signal.SIG_BLOCK, _MASTER_SIGNALS)
        pid = os.fork()
        if pid == 0:
            global _quiet, master_pid
            _quiet = True
            master_pid = master
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            handle_operator_signals()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _MASTER_SIGNALS)
            _die_with_parent(master)
            os.close(cause_r)
            code = 1
            try:
                code = run_reporting(child_main, pm)
            except (StartupError, UsageError) as e:
                log.error("%s %d failed: %s", what, os.getpid(), e)
                os.write(cause_w, (str(e)[:400] + "\n").encode("utf-8", "replace"))
            finally:
                os._exit(code)
        children[pid] = time.monotonic()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _MASTER_SIGNALS)

    def signal_children(sig):
        for pid in children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def on_stop(signum, frame):
        nonlocal stopping
        stopping = True
        signal_children(signal.SIGTERM)

    def on_usr1(signum, frame):
        _on_usr1()
        signal_children(signal.SIGUSR1)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGUSR1, on_usr1)
    def on_hup(signum, frame):
        _log_hup(reloads)
        signal_children(signal.SIGHUP)

    signal.signal(signal.SIGHUP, on_hup)
    try:
        for _ in range(count):
            if stopping:  # a stop during start-up: start no more children
                break
            spawn()
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            started = children.pop(pid, None)
            if started is None or stopping:
                continue
            try:
                last_cause = os.read(cause_r, 4096).decode("utf-8", "replace") \
                    .strip().splitlines()[-1]
            except (BlockingIOError, IndexError):
                pass
            now = time.monotonic()
            if now - started < QUICK_SECONDS:
                quick_deaths[:] = [t for t in quick_deaths if now - t < QUICK_SECONDS] + [now]
            if len(quick_deaths) >= QUICK_DEATHS:
                stopping = True
                signal_children(signal.SIGTERM)
                _wait_all(children)
                raise StartupError(
                    f"{what}s keep dying at start-up ({len(quick_deaths)} in "
                    f"{QUICK_SECONDS:g} s), giving up; last cause: "
                    f"{last_cause or _exit_text(status)}")
            log.error("%s %d exited (%s); starting a new one", what, pid, _exit_text(status))
            spawn()
    finally:
        os.close(cause_r)
        os.close(cause_w)
    return 0


def _wait_all(children):
    while children:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        children.pop(pid, None)

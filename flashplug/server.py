"""The running server: its listener, its processes, and stop.

Theory of operation: ``run(config)`` binds the listening socket first (so
a bad port fails at once with a clear message), then serves with the
architecture ``--arch`` names (``flashplug.arches``): in this process, or in
``--workers`` (or mp's ``--procs``) processes that share the socket under a
master that restarts any that die.  The App lives in ``flashplug.app``, a
worker's loop in ``flashplug.worker``.
"""
import errno
import logging
import os
import resource
import signal
import socket
import sys

from flashplug.arches import BLOCKING
from flashplug.errors import UsageError
from flashplug.log import setup_error_log
from flashplug.worker import Worker

log = logging.getLogger("flashplug.server")

LISTEN_BACKLOG = 1024


# -- listening ----------------------------------------------------------------------

def bind_listener(host, port):
    """A listening socket, or a UsageError that says how to fix the problem."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"--bind {host}: not an address this machine has ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is already in use; "
                             f"stop the other server or pick another with --port") from None
        if e.errno == errno.EACCES:
            raise UsageError(f"permission denied binding port {port} on {host}; ports "
                             f"below 1024 need root: pick one above 1023 with --port") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"--bind {host}: not an address of this machine") from None
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.setblocking(False)
    return sock


def _url(sock):
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def raise_fd_limit():
    """Idle keep-alive connections cost a descriptor each: allow the most we may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


# -- the master of several workers ----------------------------------------------------------

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


def supervise(count, child_main, what="worker"):
    """Fork ``count`` children running ``child_main()``; replace any that
    dies; on SIGTERM or SIGINT pass the signal on and wait for them all."""
    children = set()
    stopping = False
    master = os.getpid()

    def spawn():
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _die_with_parent(master)
            code = 1
            try:
                code = child_main()
            finally:
                os._exit(code)
        children.add(pid)

    def on_stop(signum, frame):
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    for _ in range(count):
        spawn()
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        children.discard(pid)
        if not stopping:
            log.error("%s %d exited (status %d); starting a new one", what, pid, status)
            spawn()
    return 0


def run(config):
    """Serve until SIGINT or SIGTERM; returns the exit status."""
    setup_error_log(config.log_level)
    raise_fd_limit()
    if config.arch in BLOCKING and config.plugins:
        raise UsageError(f"--arch {config.arch} serves static files only; "
                         f"plugins need --arch amped or sped")
    config.plugin_manager.hook.flashplug_configure.call_historic(kwargs={"config": config})
    listener = bind_listener(config.bind, config.port)
    print(f"Serving {config.docroot} on {_url(listener)}", flush=True)
    if config.arch in BLOCKING:
        from flashplug.blocking import run_blocking
        return run_blocking(config, listener, supervise)
    if config.workers > 1:
        return supervise(config.workers, lambda: Worker(config, listener).run())
    code = Worker(config, listener).run()
    # A helper may still be blocked in the kernel (a FIFO's open(), a dead
    # NFS server); the interpreter would wait for it forever at exit.
    # Everything is flushed and closed by now, so leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)

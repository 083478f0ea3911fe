"""The running server: its listener, its processes, and stop.

Theory of operation: ``run(config)`` binds the listening socket first (so
a bad port fails at once with a clear message), checks everything that can
be checked in the master, then serves with the architecture ``--arch``
names (``flashplug.arches``): in this process, or in ``--workers`` (or mp's
``--procs``) processes that share the socket under the supervisor
(``flashplug.supervisor``).  The App lives in ``flashplug.app``, a worker's
loop in ``flashplug.worker``.
"""
import errno
import logging
import os
import resource
import socket
import sys

from flashplug.app import collect_routes
from flashplug.arches import BLOCKING
from flashplug.errors import StartupError, UsageError
from flashplug.log import setup_error_log
from flashplug.privileges import check_logs, drop_privileges
from flashplug.sites import configure_plugins
from flashplug.static import script_dir_warnings
from flashplug.supervisor import handle_operator_signals, run_reporting, supervise
from flashplug.tls import Certificates, alpn_for, load_certificates, pairs_from
from flashplug.worker import Worker, import_uvloop

log = logging.getLogger("flashplug.server")

LISTEN_BACKLOG = 1024


# -- listening ----------------------------------------------------------------------

def bind_listener(host, port, listen=True):
    """A listening socket, or a UsageError that says how to fix the problem.

    ``listen=False`` only binds (the caller calls ``listen`` once it is
    sure to serve), so no client is accepted by a server about to fail.
    """
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
        if listen:
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


def _url(sock, scheme="http"):
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}/"


def _check_tls(config):
    """The HTTPS options' one-line errors; load the certificates (as the
    user we start as, before giving up root, as nginx reads its keys)."""
    tls = bool(config.get("tls_cert") or config.get("tls_key")
               or any(site.tls for site in config.sites))
    if tls and config.arch in BLOCKING:
        raise UsageError(f"--tls needs --arch amped or sped (--arch {config.arch} "
                         f"has no event loop to drive TLS)")
    for flag, dest in (("--redirect-http", "redirect_http"), ("--hsts", "hsts")):
        if config.get(dest) is not None and not tls:
            raise UsageError(f"{flag} needs HTTPS: give --tls-cert FILE --tls-key FILE")
    if config.get("redirect_http") is not None and config.redirect_http == config.port:
        raise UsageError(f"--redirect-http {config.redirect_http} is the HTTPS port; "
                         f"pick another (usually 80)")
    if config.get("h2c") and config.arch in BLOCKING:
        raise UsageError(f"--h2c needs --arch amped or sped (--arch {config.arch} "
                         f"has no event loop to multiplex streams)")
    config.certificates = load_certificates(config)


def _check_balancer(config):
    """The load-balancer options' one-line errors."""
    if config.arch in BLOCKING:
        for flag, dest in (("--proxy-protocol", "proxy_protocol"),
                           ("--health-path", "health_path"),
                           ("--shutdown-delay", "shutdown_delay")):
            if config.get(dest):
                raise UsageError(f"{flag} needs --arch amped or sped (--arch {config.arch} "
                                 f"has no event loop to drive it)")


def _reload_early(config):
    try:
        config.certificates = Certificates(pairs_from(config), alpn_for(config))
    except UsageError as e:
        log.error("SIGHUP: TLS certificates not reloaded, still serving the old ones: %s", e)


def raise_fd_limit():
    """Idle keep-alive connections cost a descriptor each: allow the most we may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def run(config):
    """Serve until SIGINT or SIGTERM; returns the exit status.

    Everything that can be checked is checked here, in the master, before
    any worker is forked: the port (bound first, while we may still be
    root), the user to run as, the log files, the plugins' settings.
    """
    setup_error_log(config.log_level)
    raise_fd_limit()
    if config.arch in BLOCKING and config.plugins:
        raise UsageError(f"--arch {config.arch} serves static files only; "
                         f"plugins need --arch amped or sped")
    if config.arch in BLOCKING and config.sites:
        raise UsageError(f"{config.config_file}: [[site]] needs --arch amped or sped "
                         f"(--arch {config.arch} serves one document root)")
    _check_balancer(config)
    _check_tls(config)
    # Until a worker's loop takes the signals over: a SIGHUP this early
    # re-reads the certificates at once (no loop to keep from blocking yet).
    handle_operator_signals(reload=None if config.certificates is None
                            else lambda: _reload_early(config))
    listener = bind_listener(config.bind, config.port, listen=False)
    redirect = None
    if config.get("redirect_http") is not None:
        redirect = bind_listener(config.bind, config.redirect_http, listen=False)
    # Imported while we may still be root: --user may not be able to read
    # the interpreter's files (a Python under /root), and a worker whose
    # import failed would quietly run on asyncio's slower loop.
    import_uvloop()
    drop_privileges(config)
    check_logs(config)
    # Plugins' configure code runs as the dropped user: a mistake there (or
    # a lazy import the user cannot read) is one line, never a traceback.
    run_reporting(lambda: configure_plugins(config), config.plugin_manager)
    # Each worker collects its own; a bad Route (or a site's bad plugin
    # option) stops us here, before we listen.
    for view in [config] + [site.config for site in config.sites]:
        collect_routes(view)
    for line in script_dir_warnings(config):
        log.warning(line)
    listener.listen(LISTEN_BACKLOG)
    if redirect is not None:
        redirect.listen(LISTEN_BACKLOG)
    enabled = ", ".join(config.plugins) or "none"
    scheme = "https" if config.certificates is not None else "http"
    also = f", redirecting {_url(redirect)}" if redirect is not None else ""
    sites = f", {len(config.sites)} site(s) by host name" if config.sites else ""
    print(f"Serving {config.docroot} on {_url(listener, scheme)}{also} (plugins: {enabled}"
          f"{sites})", flush=True)
    if config.arch in BLOCKING:
        from flashplug.blocking import run_blocking
        return run_blocking(config, listener)
    pm = config.plugin_manager
    if config.workers > 1:
        return supervise(config.workers, lambda: Worker(config, listener, redirect).run(),
                         pm=pm, reloads=config.certificates is not None)
    try:
        code = run_reporting(lambda: Worker(config, listener, redirect).run(), pm)
    except StartupError as e:
        print(f"flashplug: error: {e}", file=sys.stderr)
        code = 1
    # A helper may still be blocked in the kernel (a FIFO's open(), a dead
    # NFS server); the interpreter would wait for it forever at exit.
    # Everything is flushed and closed by now, so leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)

"""The running server: its listener, its processes, and stop.

Theory of operation: ``run(config)`` binds the listening socket first (so
a bad port fails at once with a clear message), checks everything that can
be checked in the master, then serves with the architecture ``--arch``
names (``flashplug.arches``): in this process, or in ``--workers`` (or mp's
``--procs``) processes that share the socket under the supervisor
(``flashplug.supervisor``), which reloads the configuration on SIGHUP
(``_reloader``).  Under systemd it may serve on an inherited socket and
reports its state (``flashplug.systemd``).  The App lives in
``flashplug.app``, a worker's loop in ``flashplug.worker``.
"""
import errno
import logging
import os
import resource
import socket
import sys

from flashplug.app import collect_routes
from flashplug import systemd
from flashplug.arches import BLOCKING
from flashplug.compress import missing_codings
from flashplug.config import locate
from flashplug.errorpages import missing_pages
from flashplug.errors import StartupError, UsageError
from flashplug.log import setup_error_log
from flashplug.privileges import (check_log_folders, check_logs, drop_privileges,
                                  lookup_group, lookup_user)
from flashplug.sites import configure_plugins
from flashplug.static import script_dir_warnings
from flashplug.supervisor import Generation, handle_operator_signals, run_reporting, supervise
from flashplug.tls import load_certificates, plugin_pairs, reload_certificates
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
               or any(site.tls for site in config.sites)) or plugin_pairs(config) is not None
    if tls and config.arch in BLOCKING:
        raise UsageError(f"--tls needs --arch amped or sped (--arch {config.arch} "
                         f"has no event loop to drive TLS)")
    for flag, dest in (("--redirect-http", "redirect_http"), ("--hsts", "hsts")):
        if config.get(dest) is not None and not tls:
            raise UsageError(f"{flag} needs HTTPS: give --tls-cert FILE --tls-key FILE "
                             f"(or --acme-domains NAMES)")
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
        config.certificates = reload_certificates(config)
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


#: Settings fixed at start: the sockets are bound and the user switched
#: before any reload can happen.  A reload that changes one warns and
#: keeps the running value (nginx does the same with ``user``).
FIXED_ON_RELOAD = (("bind", "--bind"), ("port", "--port"), ("redirect_http", "--redirect-http"),
                   ("user", "--user"), ("group", "--group"), ("arch", "--arch"))


def supervised(config):
    """Whether a master process runs the workers (and so can reload)."""
    return config.arch == "mp" or (config.arch != "mt" and
                                   (config.workers > 1 or bool(config.get("master"))))


def _check(config):
    """The checks of a configuration that need no socket and no user switch."""
    if config.arch in BLOCKING and config.plugins:
        raise UsageError(f"--arch {config.arch} serves static files only; "
                         f"plugins need --arch amped or sped")
    if config.arch in BLOCKING and config.sites:
        raise UsageError(f"{config.config_file}: [[site]] needs --arch amped or sped "
                         f"(--arch {config.arch} serves one document root)")
    _check_balancer(config)
    if config.get("master") and config.arch == "mt":
        raise UsageError("--master needs --arch amped, sped or mp (mt is one process "
                         "by design)")
    _check_tls(config)


def _prepare(config):
    """Start-up work in the master, as the user we serve as: the log files,
    the plugins' configure hooks (one line each, never a traceback), the
    routes (a bad Route stops us here, before any worker starts)."""
    check_logs(config)
    _configure(config)


def _configure(config):
    """The plugins' configure hooks (a mistake in a setting from the config
    file is named by its line there), then the routes."""
    try:
        run_reporting(lambda: configure_plugins(config), config.plugin_manager)
    except UsageError as e:
        raise UsageError(locate(config, str(e))) from None
    # Each worker collects its own; a bad Route (or a site's bad plugin
    # option) stops us here, before we listen.
    for view in [config] + [site.config for site in config.sites]:
        collect_routes(view)
    lines = script_dir_warnings(config)
    for view in [config] + [site.config for site in config.sites]:
        lines += missing_pages(view.docroot, _named_pages(view))
    for line in dict.fromkeys(lines):     # sites sharing a root and a page: once
        log.warning(line)
    if any(view.compress for view in [config] + [site.config for site in config.sites]):
        for line in missing_codings():
            log.warning(line)


class _CommandFormatter(logging.Formatter):
    """``flashplug: warning: ...``: a log record as the command line writes
    its own notes (argparse's style, lower case), so ``check`` and ``serve``
    word a warning the same way."""

    def format(self, record):
        return f"flashplug: {record.levelname.lower()}: {record.getMessage()}"


def check(config):
    """``flashplug check``: everything a start checks short of taking the
    port (the running server may hold it), switching user and opening the
    log files (whether they open depends on the user it starts as); the
    bind address and the log files' folders are checked.  Returns the
    one-line summary.  Raises UsageError/StartupError as a start would."""
    setup_error_log("warning")
    for handler in logging.getLogger("flashplug").handlers:   # a command's lines, no times
        handler.setFormatter(_CommandFormatter())
    _check(config)
    bind_listener(config.bind, 0, listen=False).close()   # an address of this machine?
    check_log_folders(config)
    if config.get("user"):
        lookup_user(str(config.user))
    if config.get("group"):
        lookup_group(str(config.group))
    _configure(config)
    scheme = "https" if config.certificates is not None else "http"
    host = f"[{config.bind}]" if ":" in config.bind else config.bind
    processes = (f"{config.procs} processes" if config.arch == "mp" else
                 "one process" if not supervised(config) else
                 f"a master and {config.workers} worker{'s' if config.workers > 1 else ''}")
    # The top level answers names no [[site]] claims, unless a site is
    # marked default: then only the sites are reachable.
    sites = len(config.sites) + (not any(site.default for site in config.sites))
    return (f"{config.config_file or 'the command line'}: OK: {sites} site"
            f"{'s' if sites > 1 else ''}, serving {config.docroot} on "
            f"{scheme}://{host}:{config.port}/ with {processes}, --arch {config.arch} "
            f"(plugins: {', '.join(config.plugins) or 'none'})")


# How many bytes a connection may have queued in the kernel and not yet sent
# before its socket stops being writable (TCP_NOTSENT_LOWAT, Linux 3.12).
# Without a bound, each socket's send buffer grows towards tcp_wmem's maximum
# (4 MiB) whatever its peer reads: a few thousand slow readers (slowhttptest
# -X) then hold gigabytes of socket memory, the host's TCP goes over tcp_mem
# into memory pressure, and every other client slows down too (measured:
# 579,000 pages held, over the limit, active client at 0.76x; with the bound,
# 209,000 pages and 0.96x).  Bytes in flight are not counted, so a fast
# reader on a long path is not held back; 128 KiB is what large sites use.
NOTSENT_LOWAT = 128 * 1024


def limit_unsent(sock):
    """Give every connection accepted on ``sock`` ``NOTSENT_LOWAT`` (accepted
    sockets inherit it).  Not TCP, or not Linux: nothing to do."""
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, NOTSENT_LOWAT)
    except OSError:
        pass    # a kernel without it serves as before


def _listeners(config):
    """The listening sockets, bound but not listening yet: systemd's (socket
    activation, ``flashplug.systemd``), else ``--bind``/``--port`` and
    ``--redirect-http``'s."""
    main, redirect = systemd.inherited_listeners()
    if main is not None:
        log.info("serving on the socket systemd passed (LISTEN_FDS); --bind and --port "
                 "are not used")
    else:
        main = bind_listener(config.bind, config.port, listen=False)
    if config.get("redirect_http") is not None and redirect is None:
        redirect = bind_listener(config.bind, config.redirect_http, listen=False)
    elif config.get("redirect_http") is None and redirect is not None:
        raise UsageError("systemd passed a socket named 'redirect', but --redirect-http "
                         "is not given")
    limit_unsent(main)
    return main, redirect


def _generation(config, listener, redirect):
    if config.arch == "mp":
        from flashplug.blocking import mp_generation
        return mp_generation(config, listener)
    return Generation(config.workers, lambda accepting: Worker(config, listener, redirect,
                                                               accepting).run(),
                      pm=config.plugin_manager)


def _reloader(config, listener, redirect):
    """The master's SIGHUP: load the whole configuration again (the same
    command line, the config file as it is now), check it as a start
    would, and return the next Generation; UsageError/StartupError (one
    line) keeps the running one."""
    from flashplug.cli import build_serve
    running = config

    def reload():
        nonlocal running
        new = build_serve(running.argv)
        for name, flag in FIXED_ON_RELOAD:
            if new.get(name) != running.get(name):
                log.warning("SIGHUP: %s cannot change without a restart; keeping %s "
                            "(asked for %s)", flag, running.get(name), new.get(name))
                new.override(name, running.get(name))
        _check(new)
        _prepare(new)
        running = new
        return _generation(new, listener, redirect)
    return reload


def run(config):
    """Serve until SIGINT or SIGTERM; returns the exit status.

    Everything that can be checked is checked here, in the master, before
    any worker is forked: the port (bound first, while we may still be
    root), the user to run as, the log files, the plugins' settings.
    """
    setup_error_log(config.log_level)
    raise_fd_limit()
    systemd.take_environment()
    _check(config)
    # Until a worker's loop takes the signals over: a SIGHUP this early
    # re-reads the certificates at once (no loop to keep from blocking yet).
    handle_operator_signals(reload=None if config.certificates is None
                            else lambda: _reload_early(config))
    listener, redirect = _listeners(config)
    # Imported while we may still be root: --user may not be able to read
    # the interpreter's files (a Python under /root), and a worker whose
    # import failed would quietly run on asyncio's slower loop.
    import_uvloop()
    drop_privileges(config)
    # Plugins' configure code runs as the dropped user: a mistake there (or
    # a lazy import the user cannot read) is one line, never a traceback.
    _prepare(config)
    listener.listen(LISTEN_BACKLOG)
    if redirect is not None:
        redirect.listen(LISTEN_BACKLOG)
    enabled = ", ".join(config.plugins) or "none"
    scheme = "https" if config.certificates is not None else "http"
    also = f", redirecting {_url(redirect)}" if redirect is not None else ""
    sites = f", {len(config.sites)} site(s) by host name" if config.sites else ""
    print(f"Serving {config.docroot} on {_url(listener, scheme)}{also} (plugins: {enabled}"
          f"{sites})", flush=True)
    if supervised(config):
        return supervise(_generation(config, listener, redirect),
                         reload=_reloader(config, listener, redirect))

    def accepting(on):
        if on:
            systemd.ready(f"serving {_url(listener, scheme)} in one process")
    if config.arch == "mt":
        from flashplug.blocking import run_mt
        return run_mt(config, listener, accepting)
    try:
        code = run_reporting(lambda: Worker(config, listener, redirect, accepting).run(),
                             config.plugin_manager)
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


def _named_pages(view):
    """(config key, URL path) of each page the config file names for the
    top level or a site (``view``: its Config)."""
    where = "" if view.site is None else f"[[site]] {view.site}: "
    named = []
    if view.error_pages is not None:
        named += [(f"{where}error_pages.{status}", path)
                  for status, path in view.error_pages.pages.items()]
    if view.rules is not None and view.rules.spa_fallback is not None:
        named.append((f"{where}spa_fallback", view.rules.spa_fallback))
    return named

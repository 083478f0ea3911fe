"""The running server: the App, its listener, workers, signals and stop.

Theory of operation: ``run(config)`` binds the listening socket first (so
a bad port fails at once with a clear message), then either serves in this
process or forks ``--workers`` processes that share the socket under a
master that restarts any that die.  Each worker builds one ``App`` on its
own event loop: the mount table, the static handler and its caches, the
helper pool and the hooks in use are all decided there, once.
"""
import asyncio
import errno
import inspect
import logging
import os
import resource
import signal
import socket
import sys
import time
import traceback

from flashplug import plugins as plugin_mod
from flashplug.errors import HTTPError, StartupError, UsageError
from flashplug.helpers import DEFAULT_HELPERS, InlineHelpers, ThreadHelpers
from flashplug.http.dates import format_http_date
from flashplug.http.message import Response
from flashplug.http.status import reason
from flashplug.http.validate import (ResponseMistake, check_headers, check_response,
                                     is_async_handler)
from flashplug.log import AccessLog, setup_error_log
from flashplug.privileges import check_logs, drop_privileges
from flashplug.residency import FileSender
from flashplug.routes import Route, RouteError
from flashplug.static import StaticFiles, script_dir_warnings
from flashplug.stats import Stats
from flashplug.supervisor import handle_operator_signals, run_reporting, supervise

log = logging.getLogger("flashplug.server")

SERVER_NAME = "flashplug"
LISTEN_BACKLOG = 1024
# Accept at most this many connections per readiness event, so a flood of
# new connections cannot starve the ones already open.
ACCEPT_BATCH = 64


_UNROUTED = object()   # respond(): the handler has not been looked up yet


class Router:
    """The mount table: exact paths, then prefixes by whole path segments
    (longest first), then extension routes, then the route hook."""

    def __init__(self, routes, route_hook):
        self.paths = {}
        for route in routes:
            if route.path is not None:
                self.paths.setdefault(route.path, route.handler)
        # (base, base + "/", handler): "/hello/" and "/hello" claim the same
        # paths, "/" (base "") claims all.
        bases = sorted(((r.prefix.rstrip("/"), r.handler) for r in routes if r.prefix is not None),
                       key=lambda item: len(item[0]), reverse=True)
        self.prefixes = [(base, base + "/", handler) for base, handler in bases]
        self.exts = [r for r in routes if r.ext is not None]
        self.route_hook = route_hook
        self.empty = not routes and route_hook is None

    def match(self, request):
        """The handler for ``request``, or None for the static handler."""
        if self.empty:
            return None
        path = request.path
        if path is None or path == "*":
            return None
        if self.paths:
            handler = self.paths.get(path)
            if handler is not None:
                return handler
        for base, below, handler in self.prefixes:
            if path == base or path.startswith(below):
                return handler
        for route in self.exts:
            if route.ext in path:
                for segment in path.split("/"):
                    if segment.endswith(route.ext) and len(segment) > len(route.ext):
                        return route.handler
        if self.route_hook is not None:
            return self.route_hook(request=request)
        return None


class App:
    """Everything one worker needs to answer requests."""

    def __init__(self, config, loop, listener=None):
        self.config = config
        self.loop = loop
        self.listener = listener
        # The local address every connection shares, unless we listen on a
        # wildcard address (then each connection asks its own socket).
        self.listen_addr = None
        if listener is not None:
            addr = listener.getsockname()
            if addr[0] not in ("0.0.0.0", "::"):
                self.listen_addr = addr
        self.pm = config.plugin_manager
        self.stats = Stats()
        self.connections = set()
        self.stopping = False
        self.hooks_in_use = plugin_mod.hooks_in_use(self.pm)
        if config.arch == "amped":
            self.helpers = ThreadHelpers(loop, config.helpers or DEFAULT_HELPERS, self.stats)
        else:
            self.helpers = InlineHelpers(self.stats)
        self.access_log = None if config.access_log == "off" else AccessLog(config.access_log)
        self.response_headers_hook = self._checking_headers(
            self.hook_if_used("flashplug_response_headers"))
        self.request_done_hook = self.hook_if_used("flashplug_request_done")
        self.error_page_hook = self.hook_if_used("flashplug_error_page")
        self.router = Router(collect_routes(config), self.hook_if_used("flashplug_route_request"))
        self.static = StaticFiles(self)
        # The cached path may skip building a Response only when no hook
        # wants to see one.
        self.fast_path_ok = self.response_headers_hook is None and self.request_done_hook is None
        self.sender = FileSender(self, probe=config.arch == "amped")
        self.date_server_lines = b""
        self._update_date()

    def hook_if_used(self, name):
        """The hook caller for ``name`` if an enabled plugin implements it."""
        return getattr(self.pm.hook, name) if name in self.hooks_in_use else None

    def implementers(self, hook_name):
        """The plugins that implement ``hook_name``, for error messages."""
        names = [impl.plugin_name for impl in getattr(self.pm.hook, hook_name).get_hookimpls()]
        return f"plugin {', '.join(map(repr, names))} ({hook_name})"

    def _checking_headers(self, hook):
        """The response-headers hook, followed by a check of what it left."""
        if hook is None:
            return None
        owner = self.implementers("flashplug_response_headers")

        def run(request, response):
            hook(request=request, response=response)
            try:
                check_headers(response.headers)
            except ResponseMistake as mistake:
                mistake.owner = owner
                raise
        return run

    def _update_date(self):
        self.date_server_lines = (f"Date: {format_http_date(time.time())}\r\n"
                                  f"Server: {SERVER_NAME}\r\n").encode("ascii")

    # -- answering -------------------------------------------------------------

    async def respond(self, request, handler=_UNROUTED):
        """The Response for ``request``: its route's handler, else static files.

        The connection passes the handler it already looked up; a plugin
        re-dispatching a request (a CGI local redirect) lets it be looked up.
        """
        try:
            if request.path is None:
                raise request.state["path_error"]
            if request.path == "*":
                if request.method == "OPTIONS":
                    return Response(200, [("Allow", "GET, HEAD, OPTIONS")], b"")
                raise HTTPError(400, "Bad Request")
            if handler is _UNROUTED:
                handler = self.router.match(request)
            if handler is not None:
                return await self.run_handler(handler, request)
            return await self.static.handle(request)
        except HTTPError as e:
            return self.error_response(request, e.status, e.message, e.headers, e.close)

    async def run_handler(self, handler, request):
        """A plugin handler's Response, checked at the API boundary; a
        handler that is no ``async def`` or a response that cannot be sent
        is a logged 500."""
        owner = plugin_mod.plugin_for_code(self.pm, handler)
        owner = f"plugin {owner!r}" if owner else "a plugin"
        if not is_async_handler(handler):
            return self.plugin_mistake(request, ResponseMistake(
                f"handler {getattr(handler, '__qualname__', handler)!r} is not an async "
                f"function; define it with 'async def'", owner))
        return await self.checked(request, handler(request), owner)

    async def checked(self, request, answer, owner):
        """Await ``answer`` (a plugin's awaitable Response) and check it."""
        response = None
        try:
            if not inspect.isawaitable(answer):
                raise ResponseMistake(f"gave a {type(answer).__name__} where an awaitable "
                                      f"was due (the coroutine of an async def)", owner)
            response = await answer
            return check_response(response, owner)
        except ResponseMistake as mistake:
            mistake.owner = mistake.owner or owner
            stream = getattr(response, "stream", None)
            if hasattr(stream, "aclose"):
                try:
                    await stream.aclose()   # its finally: blocks run, as when a client leaves
                except Exception:  # noqa: BLE001 - the mistake is what gets logged
                    pass
            return self.plugin_mistake(request, mistake)

    def plugin_mistake(self, request, mistake):
        """A 500 for a plugin's response that cannot be sent."""
        self.log_plugin_error(mistake, request)
        return self.error_response(request, 500, "Internal Server Error")

    async def dispatch(self, request):
        """Answer a request a plugin made up (e.g. a CGI local redirect)."""
        return await self.respond(request)

    def failure_response(self, request, exc):
        """A 500 for an exception a handler raised; the server goes on."""
        if isinstance(exc, HTTPError):
            return self.error_response(request, exc.status, exc.message, exc.headers, exc.close)
        self.log_plugin_error(exc, request)
        return self.error_response(request, 500, "Internal Server Error")

    def log_plugin_error(self, exc, request):
        what = f"{request.method} {request.target}" if request is not None else "a request"
        if isinstance(exc, ResponseMistake):
            log.error("%s gave an invalid response to %s: %s", exc.owner or "a plugin",
                      what, exc)
            return
        plugin = None
        tb = exc.__traceback__
        while tb is not None:
            plugin = plugin_mod.plugin_for_module(
                self.pm, tb.tb_frame.f_globals.get("__name__", "")) or plugin
            tb = tb.tb_next
        where = f"plugin {plugin!r}" if plugin else "the server"
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        at = f" at {last[0].filename}:{last[0].lineno}" if last else ""
        log.error("%s failed while serving %s: %s: %s%s", where, what,
                  type(exc).__name__, exc, at)

    def error_response(self, request, status, message, headers=(), close=False):
        response = None
        if self.error_page_hook is not None:
            try:
                response = self.error_page_hook(request=request, status=status, message=message)
            except Exception as exc:  # noqa: BLE001
                self.log_plugin_error(exc, request)
            if response is not None:
                owner = self.implementers("flashplug_error_page")
                try:
                    check_response(response, owner)
                except ResponseMistake as mistake:
                    mistake.owner = owner
                    self.log_plugin_error(mistake, request)
                    response = None   # the kernel's own page, then
        if response is None:
            title = f"{status} {reason(status)}"
            detail = message if message and message != reason(status) else ""
            body = (f"<!doctype html>\n<html><head><title>{title}</title></head>"
                    f"<body><h1>{title}</h1>"
                    f"{'<p>' + _html_escape(detail) + '</p>' if detail else ''}"
                    f"</body></html>\n").encode("utf-8")
            response = Response(status, [("Content-Type", "text/html; charset=utf-8")], body)
        response.status = status
        response.headers.extend(headers)
        response.close = close or response.close
        return response

    # -- the loop's housekeeping --------------------------------------------------

    def tick(self):
        """Once a second: Date line, log flush, connection deadlines."""
        self._update_date()
        if self.access_log is not None:
            self.access_log.flush()
        self.static.revalidate_ahead()
        now = time.monotonic()
        for conn in list(self.connections):
            if (conn.deadline is not None and now > conn.deadline) or \
                    (conn.send_deadline is not None and now > conn.send_deadline):
                conn.on_timeout(now)
        self.loop.call_later(1.0 - time.time() % 1.0 + 0.001, self.tick)


def collect_routes(config):
    """Every Route the enabled plugins return, each tagged with its plugin.

    A plugin that returns something else, or builds a Route wrong (a plain
    ``def`` handler, a prefix without ``/``), is refused with a UsageError
    that names it.
    """
    routes = []
    for impl in config.plugin_manager.hook.flashplug_routes.get_hookimpls():
        try:
            result = impl.function(config=config) if "config" in impl.argnames \
                else impl.function()
        except RouteError as e:
            raise UsageError(f"plugin {impl.plugin_name!r}: flashplug_routes: {e}") from None
        for route in result or ():
            if not isinstance(route, Route):
                raise UsageError(f"plugin {impl.plugin_name!r}: flashplug_routes must "
                                 f"return Route objects, got {route!r}")
            route.plugin = impl.plugin_name
            routes.append(route)
    return routes


def _html_escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


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


def _import_uvloop():
    """uvloop, or None where it cannot be imported."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def new_loop():
    uvloop = _import_uvloop()
    if uvloop is None:
        log.info("uvloop is not installed; using asyncio's own event loop")
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# -- one worker on one loop ---------------------------------------------------------------

class Worker:
    def __init__(self, config, listener):
        self.config = config
        self.listener = listener
        self.loop = new_loop()
        self.app = None
        self.stopped = None

    def run(self):
        asyncio.set_event_loop(self.loop)
        try:
            return self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()

    async def _main(self):
        from flashplug.connection import Connection
        self.connection_class = Connection
        loop = self.loop
        app = self.app = App(self.config, loop, self.listener)
        self.stopped = loop.create_future()
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
            handle_operator_signals(loop)
        except (ValueError, RuntimeError):
            pass  # not the main thread (an in-process test): stop() is called directly
        # After the signal handlers: a stop during start-up still runs shutdown.
        await _call_async_hooks(app.pm.hook.flashplug_startup, app=app)
        loop.add_reader(self.listener.fileno(), self._accept)
        app.tick()
        await self.stopped
        await self._drain()
        await _call_async_hooks(app.pm.hook.flashplug_shutdown, app=app)
        app.helpers.close()
        if app.access_log is not None:
            app.access_log.close()
        app.static.cache.clear()
        return 0

    def _accept(self):
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("cannot accept a connection: %s", e.strerror)
                    return
                continue  # the client gave up before we accepted (ECONNABORTED)
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.app.stats.connections_total += 1
            self.connection_class(self.app, sock, peer)

    def stop(self):
        if not self.stopped.done():
            self.stopped.set_result(None)

    async def _drain(self):
        """Graceful stop: no new connections; finish what is in flight."""
        app = self.app
        app.stopping = True
        self.loop.remove_reader(self.listener.fileno())
        self.listener.close()
        deadline = time.monotonic() + self.config.grace
        while time.monotonic() < deadline:
            for conn in list(app.connections):
                if conn.active is None and not conn.out and not conn.pending:
                    conn.close()       # idle: nothing to finish
                else:
                    conn.closing = True  # finish this response, then close
            if not app.connections:
                break
            await asyncio.sleep(0.05)
        for conn in list(app.connections):
            conn.abort()


async def _call_async_hooks(hook, **kwargs):
    for result in hook(**kwargs):
        if result is not None and hasattr(result, "__await__"):
            await result


def run(config):
    """Serve until SIGINT or SIGTERM; returns the exit status.

    Everything that can be checked is checked here, in the master, before
    any worker is forked: the port (bound first, while we may still be
    root), the user to run as, the log files, the plugins' settings.
    """
    setup_error_log(config.log_level)
    raise_fd_limit()
    handle_operator_signals()
    if config.arch in ("mt", "mp") and config.plugins:
        raise UsageError(f"--arch {config.arch} serves static files only; "
                         f"plugins need --arch amped or sped")
    listener = bind_listener(config.bind, config.port, listen=False)
    # Imported while we may still be root: --user may not be able to read
    # the interpreter's files (a Python under /root), and a worker whose
    # import failed would quietly run on asyncio's slower loop.
    _import_uvloop()
    drop_privileges(config)
    check_logs(config)
    # Plugins' configure code runs as the dropped user: a mistake there (or
    # a lazy import the user cannot read) is one line, never a traceback.
    run_reporting(lambda: config.plugin_manager.hook.flashplug_configure.call_historic(
        kwargs={"config": config}), config.plugin_manager)
    collect_routes(config)  # each worker collects its own; a bad Route stops us here, before we listen
    for line in script_dir_warnings(config):
        log.warning(line)
    listener.listen(LISTEN_BACKLOG)
    enabled = ", ".join(config.plugins) or "none"
    print(f"Serving {config.docroot} on {_url(listener)} (plugins: {enabled})", flush=True)
    if config.arch in ("mt", "mp"):
        from flashplug.blocking import run_blocking
        return run_blocking(config, listener)
    pm = config.plugin_manager
    if config.workers > 1:
        return supervise(config.workers, lambda: Worker(config, listener).run(), pm=pm)
    try:
        code = run_reporting(lambda: Worker(config, listener).run(), pm)
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

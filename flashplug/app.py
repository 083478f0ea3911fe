"""The App: everything one worker needs to answer requests.

Theory of operation: one ``App`` per worker process, built once at start:
the mount table (``Router``), the static handler and its caches, the helper
pool, the access log, the counters, and a caller for each hook an enabled
plugin implements (``hooks_in_use``), so a hook nobody implements costs
nothing on any request.  ``respond`` turns a Request into a Response (the
route's handler, else static files); ``error_response`` builds error pages.
The connection layer calls these; plugins see the App only through
``flashplug.facade.Server``.
"""
import logging
import time
import traceback

from flashplug import plugins as plugin_mod
from flashplug.errors import HTTPError, UsageError
from flashplug.facade import Server
from flashplug.helpers import DEFAULT_HELPERS, InlineHelpers, ThreadHelpers
from flashplug.http.dates import format_http_date
from flashplug.http.message import Response
from flashplug.http.status import reason
from flashplug.log import AccessLog
from flashplug.residency import FileSender
from flashplug.routes import Route
from flashplug.static import StaticFiles
from flashplug.stats import Stats

log = logging.getLogger("flashplug.server")

SERVER_NAME = "flashplug"

_UNROUTED = object()   # respond(): the handler has not been looked up yet


class Router:
    """The mount table: prefix routes (longest first), then extension routes."""

    def __init__(self, routes, route_hook):
        self.prefixes = sorted((r for r in routes if r.prefix is not None),
                               key=lambda r: len(r.prefix), reverse=True)
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
        for route in self.prefixes:
            prefix = route.prefix
            if path.startswith(prefix) or (prefix.endswith("/") and path == prefix[:-1]):
                return route.handler
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

    def __init__(self, config, loop, listener=None, stats=None):
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
        self.stats = Stats() if stats is None else stats
        self.connections = set()
        self.stopping = False
        self.hooks_in_use = plugin_mod.hooks_in_use(self.pm)
        if config.arch == "amped":
            self.helpers = ThreadHelpers(loop, config.helpers or DEFAULT_HELPERS, self.stats)
        else:
            self.helpers = InlineHelpers(self.stats)
        self.access_log = None if config.access_log == "off" else AccessLog(config.access_log)
        self.response_headers_hook = self.hook_if_used("flashplug_response_headers")
        self.request_done_hook = self.hook_if_used("flashplug_request_done")
        self.error_page_hook = self.hook_if_used("flashplug_error_page")
        self.router = Router(self._collect_routes(), self.hook_if_used("flashplug_route_request"))
        self.static = StaticFiles(self)
        # The cached path may skip building a Response only when no hook
        # wants to see one.
        self.fast_path_ok = self.response_headers_hook is None and self.request_done_hook is None
        self.sender = FileSender(self, probe=config.arch == "amped")
        self.date_server_lines = b""
        self._update_date()
        # What plugins see of all this (hooks' ``app``, ``request.server``).
        self.facade = Server(self)

    def hook_if_used(self, name):
        """The hook caller for ``name`` if an enabled plugin implements it."""
        return getattr(self.pm.hook, name) if name in self.hooks_in_use else None

    def _collect_routes(self):
        routes = []
        for impl in self.pm.hook.flashplug_routes.get_hookimpls():
            result = impl.function(config=self.config) if "config" in impl.argnames \
                else impl.function()
            for route in result or ():
                if not isinstance(route, Route):
                    raise UsageError(f"plugin {impl.plugin_name!r}: flashplug_routes must "
                                     f"return Route objects, got {route!r}")
                route.plugin = impl.plugin_name
                routes.append(route)
        return routes

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
                response = await handler(request)
                if not isinstance(response, Response):
                    raise TypeError(f"handler returned {response!r}, not a Response")
                return response
            return await self.static.handle(request)
        except HTTPError as e:
            return self.error_response(request, e.status, e.message, e.headers, e.close)

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
        plugin = None
        tb = exc.__traceback__
        while tb is not None:
            plugin = plugin_mod.plugin_for_module(
                self.pm, tb.tb_frame.f_globals.get("__name__", "")) or plugin
            tb = tb.tb_next
        where = f"plugin {plugin!r}" if plugin else "the server"
        what = f"{request.method} {request.target}" if request is not None else "a request"
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


def _html_escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))

"""The App: everything one worker needs to answer requests.

Theory of operation: one ``App`` per worker process, built once at start:
the helper pool, the file cache, the access log, the counters, and a
``Vhost`` per site (just one without ``[[site]]`` tables): its mount table
(``Router``), its static handler, and a caller for each hook a plugin it
enables implements (``hooks_in_use``), so a hook nobody implements costs
nothing on any request, and a plugin a site does not enable is never
called on its requests.  ``respond`` turns a Request into a Response (the
route's handler, checked at the plugin boundary, else static files);
``error_answer`` builds error answers (the site's own pages,
flashplug.errorpages).  The connection layer calls these; plugins see the
App only through ``flashplug.facade.Server``.

Size: about 500 lines because App and Vhost are built together (a
site's parts need the worker's shared ones) and the error answers
(``error_answer``, plugin mistakes) need both; routing is
``flashplug.routes``, the plugin view ``flashplug.facade``.
"""
import inspect
import logging
import time
import traceback
import types

from flashplug import plugins as plugin_mod
from flashplug.cache import FileCache, FileEntry
from flashplug.compress import VariantCache
from flashplug.errorpages import default_page
from flashplug.errors import HTTPError, UsageError
from flashplug.facade import Server
from flashplug.helpers import DEFAULT_HELPERS, InlineHelpers, ThreadHelpers
from flashplug.http.dates import format_http_date
from flashplug.http.forwarded import trusted_networks
from flashplug.http.paths import decode_slashed_path
from flashplug.http.known_requests import KnownRequests
from flashplug.http.message import Response
from flashplug.http.validate import (ResponseMistake, check_headers, check_response,
                                     is_async_handler)
from flashplug.log import AccessLog
from flashplug.policy import cache_tag
from flashplug.residency import FileSender
from flashplug.routes import Route, RouteError, server_allow
from flashplug.rules import host_redirect_location
from flashplug.sites import SiteTable
from flashplug.static import FileBody, ScriptDirs, StaticFiles
from flashplug.stats import Stats

log = logging.getLogger("flashplug.server")

SERVER_NAME = "flashplug"

_COROUTINE = types.CoroutineType
_UNROUTED = object()   # respond(): the handler has not been looked up yet


class Router:
    """The mount table: exact paths, then prefixes by whole path segments
    (longest first), then extension routes, then the route hook."""

    by_host = False   # the Host never changes the route (see HostRedirectRouter)

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
        # The prefixes that take paths with an encoded slash (the proxy's).
        self.slashed = [(base, base + "/", r.handler) for base, _, _ in self.prefixes
                        for r in routes if r.encoded_slashes and r.prefix.rstrip("/") == base]
        # A prefix route of "/" takes every path: the static handler gets none.
        self.claims_all = any(base == "" for base, _, _ in self.prefixes)

    def match(self, request):
        """The handler for ``request``, or None for the static handler."""
        if self.empty:
            return None
        path = request.path
        if path is None:
            return self._match_slashed(request) if self.slashed else None
        if path == "*":
            return None
        if self.paths:
            handler = self.paths.get(path)
            if handler is not None:
                return handler
        for base, below, handler in self.prefixes:
            if path == base or path.startswith(below):
                return handler
        for route in self.exts:
            ext = route.ext
            if path.endswith(ext) and path[-len(ext) - 1] != "/":
                return route.handler   # the last segment (the usual case: /x.php)
            if ext in path:
                for segment in path.split("/"):
                    if segment.endswith(route.ext) and len(segment) > len(route.ext):
                        return route.handler
        if self.route_hook is not None:
            return self.route_hook(request=request)
        return None

    def _match_slashed(self, request):
        """The route of a path with an encoded slash, among those that take
        one (``Route.encoded_slashes``), or None: the path's 404 stands."""
        error = request.state.get("path_error")
        if error is None or error.message != "encoded slash in path":
            return None
        path = decode_slashed_path(request.raw_path)   # HTTPError: a 400 of its own
        if path is None:
            return None
        for base, below, handler in self.slashed:
            if path == base or path.startswith(below):
                request.state["slashed_path"] = path
                return handler
        return None


class HostRedirectRouter(Router):
    """A Router that first sends ``www.NAME`` to ``NAME`` (``www_to_apex``).

    Used only when that rule is on, so no other server checks the Host.
    308 keeps the method and body (RFC 9110 §15.4.9), like --redirect-http.
    """

    by_host = True

    def match(self, request):
        if request.path is not None and request.path != "*" \
                and host_redirect_location(request) is not None:
            return _to_apex
        return super().match(request)


async def _to_apex(request):
    location = host_redirect_location(request)
    return Response(308, [("Location", location), ("Content-Type", "text/plain; charset=utf-8")],
                    f"Moved to {location}\n".encode("utf-8"))


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
        if config.arch == "amped":
            self.helpers = ThreadHelpers(loop, config.helpers or DEFAULT_HELPERS, self.stats)
        else:
            self.helpers = InlineHelpers(self.stats)
        self.access_log = None if config.access_log == "off" else AccessLog(
            config.access_log, config.get("log_format", "combined"))
        # A graceful stop has begun: the health endpoint fails from now on.
        self.draining = False
        # --trusted-proxies: the networks whose forwarded headers are believed.
        self.trusted_proxies = trusted_networks(config.get("trusted_proxies"))
        self.real_ip_header = config.get("real_ip_header") or "x-forwarded-for"
        self._missing_pages = set()   # (root, error page) whose failure is logged already
        # id(handler) -> (handler, owner) for every route's handler: checked
        # once here (Route refuses one that is no async def), so a request
        # to it skips the check and the search for its plugin.
        self.route_handlers = {}
        self.reply_starters = {}     # id(handler) -> (handler, owner, its start_reply)
        # Whole request heads parsed before, for a plugin's handler
        # (flashplug.http.known_requests): not parsed again.
        self.known_requests = KnownRequests()
        # One file cache for every site: with sites it is keyed by the file's
        # path (root + URL path) after the site's policy tag (flashplug.policy
        # .cache_tag), so sites that share a root and a policy share entries.
        cache = FileCache(config.cache_entries, config.cache_size, config.cache_valid,
                          self.stats)
        # Compressed copies of files (--compress), shared the same way.
        self.compressed = VariantCache(config.compress_cache_size)
        sites = getattr(config, "sites", None) or ()
        views = [config] + [site.config for site in sites]
        scripts = script_dirs_by_root(views)
        tags = {}
        top = Vhost(self, config, cache, scripts, bool(sites), {}, cache_tag(config, tags))
        self.sites = None
        if sites:
            parts = [(site, Vhost(self, site.config, cache, scripts, True, site.table,
                                  cache_tag(site.config, tags))) for site in sites]
            self.sites = SiteTable(parts, next((v for s, v in parts if s.default), top))
        # The site that answers unknown names, and requests that could not
        # be parsed; its parts stand for the App's where no site is known
        # (the architectures without a loop, the redirect port).
        site = self.default_site = top if self.sites is None else self.sites.default
        self.hooks_in_use = site.hooks_in_use
        self.router = site.router
        self.static = top.static     # also holds the remembered heads of every site
        self.response_headers_hook = site.response_headers_hook
        self.request_done_hook = site.request_done_hook
        self.error_page_hook = site.error_page_hook
        self.fast_path_ok = site.fast_path_ok
        # Some site's plain GETs may skip building a Request.  Not when the
        # client's address may come from a header: the quickest paths answer
        # without a Request, so without that address.
        self.target_path_ok = self.trusted_proxies is None and (
            top.target_path_ok if self.sites is None else any(
                v.target_path_ok for v in self.sites.all()))
        self.sender = FileSender(self, probe=config.arch == "amped")
        # TLS: the worker's certificates (flashplug.tls), replaced on SIGHUP.
        self.certificates = getattr(config, "certificates", None)
        # The 421 check of a request's host (flashplug.misdirect), made by
        # the drivers once per request before its site is chosen: None, as
        # nothing is checked but on a connection whose certificate may be
        # asked for a name another one covers (its view of the App has one).
        self.misdirect = None
        # HTTP/2 (flashplug.h2conn): offered by ALPN over TLS, and by prior
        # knowledge on a plain port with --h2c.
        self.h2_tls = self.certificates is not None and config.get("http2", True)
        self.h2c = bool(config.get("h2c"))
        hsts = config.get("hsts")
        self.hsts_line = (f"Strict-Transport-Security: max-age={hsts}\r\n".encode("ascii")
                          if hsts and self.certificates is not None else b"")
        self.date_server_lines = self.plain_date_server_lines = b""
        # Cache entries that keep a whole answer with this second's Date
        # line (flashplug.framing.write_entry): dropped when it changes.
        self.kept_answers = []
        self._update_date()
        # What plugins see of all this (hooks' ``app``; ``request.server`` is
        # its site's).
        self.facade = site.facade

    def implementers(self, hook_name):
        """The plugins that implement ``hook_name``, for error messages."""
        names = [impl.plugin_name for impl in getattr(self.pm.hook, hook_name).get_hookimpls()]
        return f"plugin {', '.join(map(repr, names))} ({hook_name})"

    def site_for(self, request):
        """The Vhost that answers ``request``: the one its facade names
        (chosen when it was parsed, kept by a plugin's made-up request),
        else the one its host chooses."""
        server = request.server if request is not None else None
        if server is not None:
            return server._site
        if self.sites is None or request is None:
            return self.default_site
        return self.sites.choose(request.host)

    def _checking_headers(self, hook):
        """The response-headers hook, followed by a check of what it left."""
        if hook is None:
            return None
        owner = self.implementers("flashplug_response_headers")

        def run(request, response):
            hook(request=request, response=response)
            try:
                # The whole response, not its fields alone: the hook may
                # have set a status or a body, or a Content-Length that
                # the body does not have (sent, its extra bytes would be
                # read as the next response).
                check_response(response, owner)
            except ResponseMistake as mistake:
                mistake.owner = owner
                raise
        return run

    def _update_date(self):
        # HSTS rides on the Date/Server lines: every response over TLS gets
        # it at no cost per request; the redirect port's plain connections
        # use the lines without it (RFC 6797 §7.2).
        lines = self.plain_date_server_lines = (f"Date: {format_http_date(time.time())}\r\n"
                                                f"Server: {SERVER_NAME}\r\n").encode("ascii")
        self.date_server_lines = lines + self.hsts_line
        # The answers kept whole carry the old Date line: their memory goes.
        kept, self.kept_answers = self.kept_answers, []
        for entry in kept:
            entry.answer = None

    # -- answering -------------------------------------------------------------

    async def _health(self, request):
        """``--health-path``: 200 while serving, 503 once a graceful stop
        has begun, so a load balancer stops sending us new requests first."""
        status, body = (503, b"draining\n") if self.draining else (200, b"ok\n")
        return Response(status, [("Content-Type", "text/plain; charset=utf-8"),
                                 ("Cache-Control", "no-store")], body)

    async def respond(self, request, handler=_UNROUTED):
        """The Response for ``request``: its route's handler, else static files.

        The connection passes the handler it already looked up (it calls
        ``run_handler`` itself for a route's, so here it passes None); a
        plugin re-dispatching a request (a CGI local redirect) lets it be
        looked up.
        """
        try:
            if request.path is None:
                raise request.state["path_error"]
            if request.path == "*":
                if request.method == "OPTIONS":
                    return Response(200, [("Allow", self.site_for(request).allow)], b"")
                raise HTTPError(400, "Bad Request")
            site = self.site_for(request)
            if handler is _UNROUTED:
                handler = site.router.match(request)
            if handler is not None:
                return await self.run_handler(handler, request)
            return await site.static.handle(request)
        except HTTPError as e:
            return await self.http_error_answer(request, e)

    def run_handler(self, handler, request):
        """Awaitable: a plugin handler's Response, checked at the API
        boundary; a handler that is no ``async def`` or a response that
        cannot be sent is a logged 500.  (A plain function giving the
        coroutine that does it: one coroutine less per request.)"""
        if request.method == "TRACE":
            return self._refuse_trace(request)
        known = self.route_handlers.get(id(handler))
        if known is not None and known[0] is handler:
            return self.checked(request, handler(request), known[1])
        owner = self.owner_text(handler)
        if inspect.iscoroutine(handler):
            # flashplug_route_request returned handler(request), not handler.
            code = handler.cr_code
            handler.close()     # (never awaited: no warning for it)
            plugin = plugin_mod.plugin_for_module(self.pm, getattr(
                inspect.getmodule(code), "__name__", "") or "")
            return self.mistake_answer(request, ResponseMistake(
                f"gave the coroutine of {code.co_name!r} where a handler was due; return "
                f"the async def itself, not its call", f"plugin {plugin!r}" if plugin
                else owner))
        if not is_async_handler(handler):
            return self.mistake_answer(request, ResponseMistake(
                f"handler {getattr(handler, '__qualname__', handler)!r} is not an async "
                f"function; define it with 'async def'", owner))
        return self.checked(request, handler(request), owner)

    async def _refuse_trace(self, request):
        """TRACE is answered 405 on every route, as nginx answers it
        whatever the location: its echo would reflect the request's Cookie
        and Authorization to a script that can read the answer (cross-site
        tracing), and RFC 9110 §9.3.8 asks an origin not to send such
        fields back.  So a script, a FastCGI backend or an upstream never
        sees one (a proxy must not forward what it cannot filter).  Static
        files refuse it themselves (flashplug.static)."""
        raise HTTPError(405, "Method Not Allowed", [("Allow", self.site_for(request).allow)])

    def owner_text(self, handler):
        """``"plugin 'NAME'"`` for the plugin that defined ``handler``, for
        the error log; ``"a plugin"`` when none is known."""
        owner = plugin_mod.plugin_for_code(self.pm, handler)
        return f"plugin {owner!r}" if owner else "a plugin"

    async def checked(self, request, answer, owner):
        """Await ``answer`` (a plugin's awaitable Response) and check it."""
        response = None
        try:
            if type(answer) is not _COROUTINE and not inspect.isawaitable(answer):
                raise ResponseMistake(f"gave a {type(answer).__name__} where an awaitable "
                                      f"was due (the coroutine of an async def)", owner)
            response = await answer
            return check_response(response, owner)
        except ResponseMistake as mistake:
            return await self.mistaken(request, response, mistake, owner)

    async def mistaken(self, request, response, mistake, owner):
        """The answer to ``request`` when ``owner``'s ``response`` (None if
        it gave none) is a ``mistake``: its stream closed, a logged 500."""
        mistake.owner = mistake.owner or owner
        stream = getattr(response, "stream", None)
        if hasattr(stream, "aclose"):
            try:
                await stream.aclose()   # its finally: blocks run, as when a client leaves
            except Exception:  # noqa: BLE001 - the mistake is what gets logged
                pass
        return await self.mistake_answer(request, mistake)

    async def mistake_answer(self, request, mistake):
        """A 500 for a plugin's response that cannot be sent (a coroutine,
        like every ``*_answer``: the site's error page is a file to look up)."""
        self.log_plugin_error(mistake, request)
        return await self.error_answer(request, 500, "Internal Server Error")

    async def dispatch(self, request):
        """Answer a request a plugin made up (e.g. a CGI local redirect)."""
        return await self.respond(request)

    async def failure_answer(self, request, exc):
        """A 500 for an exception a handler raised; the server goes on."""
        if isinstance(exc, HTTPError):
            return await self.http_error_answer(request, exc)
        self.log_plugin_error(exc, request)
        return await self.error_answer(request, 500, "Internal Server Error")

    async def http_error_answer(self, request, exc):
        """The error page of an HTTPError a handler raised, once its
        status and fields are found fit to send: a plugin's HTTPError(100)
        would be a final answer the client takes for an interim one, a
        Content-Length of its own would frame the page wrong (its bytes
        read as the next response), so either is a logged 500."""
        status = exc.status
        try:
            if type(status) is not int or not 200 <= status <= 599:
                raise ResponseMistake(f"raised HTTPError with status {status!r}, not an int "
                                      f"from 200 to 599")
            if check_headers(exc.headers) is not None:
                raise ResponseMistake("raised HTTPError with a Content-Length field: the "
                                      "error page's length is the server's to state")
        except ResponseMistake as mistake:
            mistake.owner = self._plugin_of(exc)
            self.log_plugin_error(mistake, request)
            return await self.error_answer(request, 500, "Internal Server Error")
        return await self.error_answer(request, status, exc.message, exc.headers, exc.close)

    def _plugin_of(self, exc):
        """``"plugin 'NAME'"`` for the plugin whose code raised ``exc``
        last, or ``"the server"``."""
        plugin = None
        tb = exc.__traceback__
        while tb is not None:
            plugin = plugin_mod.plugin_for_module(
                self.pm, tb.tb_frame.f_globals.get("__name__", "")) or plugin
            tb = tb.tb_next
        return f"plugin {plugin!r}" if plugin else "the server"

    def log_plugin_error(self, exc, request):
        what = f"{request.method} {request.target}" if request is not None else "a request"
        if isinstance(exc, ResponseMistake):
            log.error("%s gave an invalid response to %s: %s", exc.owner or "a plugin",
                      what, exc)
            return
        where = self._plugin_of(exc)
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        at = f" at {last[0].filename}:{last[0].lineno}" if last else ""
        log.error("%s failed while serving %s: %s: %s%s", where, what,
                  type(exc).__name__, exc, at)

    async def error_answer(self, request, status, message, headers=(), close=False):
        """The error Response for ``status``: the site's page for it
        (``error_pages``), read through the file cache and the helpers, with
        ``status`` and no validators; else ``error_response``'s.  A page that
        cannot be served is logged once and the default page sent: the
        lookup routes nothing, so an error page never loops."""
        site = self.site_for(request)
        path = site.error_pages.page_for(status) if site.error_pages is not None else None
        if path is not None:
            try:
                entry = await site.static.page_entry(path)
                problem = None if isinstance(entry, FileEntry) else "not a file"
            except HTTPError as e:
                problem = f"{e.status} {e.message}"
            except Exception as exc:  # noqa: BLE001 - a broken page is not a broken server
                problem = f"{type(exc).__name__}: {exc}"
            missing = (site.static.docroot, path)
            if problem is None:
                self._missing_pages.discard(missing)
                response = Response(status, [("Content-Type", entry.content_type)],
                                    FileBody(entry, [(0, entry.size)]))
                response.headers.extend(headers)
                response.close = close
                return response
            if missing not in self._missing_pages:
                self._missing_pages.add(missing)
                log.warning("error page %s for status %d cannot be served from %s (%s); "
                            "sending the default page", path, status, site.static.docroot,
                            problem)
        return self.error_response(request, status, message, headers, close)

    def error_response(self, request, status, message, headers=(), close=False):
        """The error Response a plugin's ``flashplug_error_page`` gives, else
        the kernel's default page (no disk work: callable anywhere)."""
        response = None
        error_page_hook = self.site_for(request).error_page_hook
        if error_page_hook is not None:
            try:
                response = error_page_hook(request=request, status=status, message=message)
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
            content_type, body = default_page(status, message)
            response = Response(status, [("Content-Type", content_type)], body)
        response.status = status
        if headers:
            response.headers.extend(headers)
            response._block = None      # the check's lines are not these
        response.close = close or response.close
        return response

    # -- the loop's housekeeping --------------------------------------------------

    def tick(self):
        """Once a second: Date line, log flush, connection deadlines."""
        self._update_date()
        if self.access_log is not None:
            self.access_log.flush()
        now = time.monotonic()
        for conn in list(self.connections):
            if (conn.deadline is not None and now > conn.deadline) or \
                    (conn.send_deadline is not None and now > conn.send_deadline):
                conn.on_timeout(now)
        self.loop.call_later(1.0 - time.time() % 1.0 + 0.001, self.tick)


class Vhost:
    """What answers one site's requests in a worker: the hooks its plugins
    implement (``hooks_in_use``; a plugin not enabled for the site is never
    called there), its mount table, its static files, and the facade its
    requests carry as ``request.server``.

    ``table`` is the site's raw ``[[site]]`` table ({} for the top-level
    settings).  Its policy (flashplug.policy) is compiled on its view of
    the config: ``error_pages``, ``rules`` (None: none) and ``compress``;
    ``tag`` starts its file-cache keys, so entries built under another
    policy (other rule fields baked in, other codings) are never its own.
    """

    def __init__(self, app, config, cache, scripts, keyed, table, tag):
        self.config = config
        self.table = table
        self.name = config.site or "-"     # what the access log shows
        self.error_pages = config.error_pages
        self.rules = rules = config.rules
        pm = config.plugin_manager
        routes = collect_routes(config)    # first: a plugin may register a helper object
        if rules is not None:
            # The owner's redirects come first: their word beats a plugin's.
            routes = rules.routes() + routes
        if config.get("health_path"):
            # The kernel's own, first: no plugin's route can shadow it.
            routes.insert(0, Route(app._health, path=config.health_path, methods=()))
        self.hooks = site_hooks(pm, config.plugins)
        self.hooks_in_use = frozenset(self.hooks)
        self.response_headers_hook = app._checking_headers(
            self.hooks.get("flashplug_response_headers"))
        self.request_done_hook = self.hooks.get("flashplug_request_done")
        self.error_page_hook = self.hooks.get("flashplug_error_page")
        router = HostRedirectRouter if rules is not None and rules.www_to_apex else Router
        self.router = router(routes, self.hooks.get("flashplug_route_request"))
        self.allow = server_allow(routes, self.router.route_hook)   # OPTIONS *
        # A copy of a file an extension route runs (index.php~) is its source.
        scripts[config.real_docroot].refuse_copies(r.ext for r in routes if r.ext)
        self.static = StaticFiles(app, config, cache, scripts[config.real_docroot],
                                  self.hooks.get("flashplug_directory"), keyed, tag)
        # The cached path may skip building a Response only when no hook
        # wants to see one; skip parsing the request too when no route hook
        # may claim it.
        self.fast_path_ok = self.response_headers_hook is None and self.request_done_hook is None
        # ... and skip routing when no route hook, nor the Host (www_to_apex),
        # may send a path elsewhere; and not at all when a route claims every
        # path (``--proxy /=...``): no file is ever answered from the cache
        # then, and looking for one would cost each request its time.
        self.target_path_ok = self.fast_path_ok and self.router.route_hook is None \
            and not self.router.by_host and not self.router.claims_all
        self.facade = Server(app, self)
        for route in routes:
            owner = app.owner_text(route.handler)
            app.route_handlers[id(route.handler)] = (route.handler, owner)
            start = getattr(route.handler, "start_reply", None)   # flashplug.reply
            if start is not None:
                app.reply_starters[id(route.handler)] = (route.handler, owner, start)


def site_hooks(pm, enabled):
    """``{hook name: caller}`` for each hook that a plugin in ``enabled`` (a
    site's plugin names) implements, the caller leaving out every plugin
    the site does not enable."""
    outside = [plugin for name, plugin in pm.list_name_plugin()
               if plugin_mod.owner_of(pm, name, plugin) not in enabled]
    found = {}
    for name in plugin_mod.spec_names():
        impls = getattr(pm.hook, name).get_hookimpls()
        if any(plugin_mod.owner_of(pm, impl.plugin_name, impl.plugin) in enabled
               for impl in impls):
            found[name] = pm.subset_hook_caller(name, outside) if outside \
                else getattr(pm.hook, name)
    return found


def script_dirs_by_root(views):
    """The script folders and extensions each document root refuses: the
    union of what every site with that root names, so sites sharing a
    root (and so its cache entries) refuse the same files."""
    dirs, exts = {}, {}
    for view in views:
        dirs.setdefault(view.real_docroot, {}).update(view.script_dirs)
        exts.setdefault(view.real_docroot, {}).update(dict.fromkeys(view.script_exts))
    return {root: ScriptDirs(dirs[root], tuple(exts[root])) for root in dirs}


def collect_routes(config):
    """Every Route the plugins ``config`` enables return, each tagged with
    its plugin; ``config`` is the top-level Config or a site's view.

    A plugin that returns something else, or builds a Route wrong (a plain
    ``def`` handler, a prefix without ``/``), is refused with a UsageError
    that names it.
    """
    routes = []
    pm = config.plugin_manager
    for impl in pm.hook.flashplug_routes.get_hookimpls():
        if plugin_mod.owner_of(pm, impl.plugin_name, impl.plugin) not in config.plugins:
            continue
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

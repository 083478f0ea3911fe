"""Routes: how a plugin claims requests before the static handler sees them.

A plugin returns ``Route`` objects from ``flashplug_routes``; the kernel builds
its mount table (:class:`flashplug.server.Router`) from them once, at start.
A request's decoded path is matched against exact paths, then prefixes
(longest first, whole path segments only), then extensions, then
``flashplug_route_request`` if some plugin implements it, and finally falls
to the static handler.
"""
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Optional, Tuple

from flashplug.http.h1_checks import TOKEN
from flashplug.http.validate import is_async_handler



class RouteError(ValueError):
    """A Route built wrong; the kernel reports it as the plugin's mistake."""


@dataclass
class Route:
    """Send matching requests to ``handler``.

    Give exactly one of:

    ``prefix``
        a URL path prefix such as ``"/hello"``, matched by whole path
        segments: it claims ``/hello``, ``/hello/`` and everything below
        (``/hello/x``), never ``/helloworld``.  A trailing slash changes
        nothing (``"/hello/"`` is the same route); ``"/"`` claims every path.
    ``path``
        one exact URL path such as ``"/status"``: it claims ``/status``
        only, not ``/status/`` nor ``/status/x``.
    ``ext``
        a file extension such as ``".cgi"``; it matches when any segment of
        the decoded path ends with it (``/app.cgi/extra/path`` matches), so
        the handler can split script name from path info.

    ``methods``: the request methods the handler serves, as ``OPTIONS *``
    tells them for the whole server (``Allow``, RFC 9110 §9.3.7), a tuple
    of str; None (the default) is what a script (CGI, FastCGI) or an
    upstream takes as a form's action: GET, HEAD and POST.

    ``encoded_slashes``: a ``prefix`` route that also takes paths with an
    encoded slash (``%2F``), which every other route and the static
    handler answer 404 (Apache's ``AllowEncodedSlashes Off``).  The prefix
    is matched on the decoded, normalised path with each ``%2F`` kept
    inside its segment; ``request.path`` is then None and
    ``request.state["slashed_path"]`` holds that path, with each encoded
    slash as ``flashplug.http.paths.ENCODED_SLASH`` (the proxy's routes).

    ``handler`` is ``async def handler(request) -> Response``; a plain
    ``def`` is refused here (:class:`RouteError`), so the server refuses
    to start instead of failing each request.  ``plugin`` is filled in by
    the kernel with the name of the plugin that returned the route; it is
    used in error messages.
    """

    handler: Callable[..., Awaitable]
    prefix: Optional[str] = None
    ext: Optional[str] = None
    path: Optional[str] = None
    methods: Optional[Tuple[str, ...]] = None
    encoded_slashes: bool = False
    plugin: str = field(default="?", compare=False)

    def __post_init__(self):
        given = [k for k in ("prefix", "path", "ext") if getattr(self, k) is not None]
        if len(given) != 1:
            raise RouteError("Route needs exactly one of prefix=, path= or ext=")
        for key in ("prefix", "path"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, str) and value.startswith("/")):
                raise RouteError(f"Route {key} must be a str that starts with '/': {value!r}")
        if self.ext is not None and not (isinstance(self.ext, str) and self.ext.startswith(".")):
            raise RouteError(f"Route ext must be a str that starts with '.': {self.ext!r}")
        if self.methods is not None and (
                isinstance(self.methods, str)
                or not all(isinstance(m, str) and TOKEN.match(m) for m in self.methods)):
            raise RouteError(f"Route methods must be a tuple of method names such as "
                             f"('GET', 'HEAD'): {self.methods!r}")
        self.methods = None if self.methods is None else tuple(self.methods)
        if self.encoded_slashes and self.prefix is None:
            raise RouteError("Route encoded_slashes=True needs a prefix=")
        if not is_async_handler(self.handler):
            raise RouteError(f"Route handler {_name(self.handler)} is not an async function; "
                             f"define it with 'async def'")


# A route that names no methods: a script's or an upstream's, which a form
# posts to (lighttpd, whose mod_cgi is such a route, answers OPTIONS * so).
SCRIPT_METHODS = ("GET", "HEAD", "POST")
# The order Allow lists methods in (the rest sorted after them): RFC 9110's.
_ALLOW_ORDER = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")


def server_allow(routes, route_hook):
    """The ``Allow`` value of ``OPTIONS *`` (RFC 9110 §9.3.7): what static
    files take (GET, HEAD), with the ``methods`` of each route, and
    SCRIPT_METHODS when a ``route_hook`` may send a request anywhere; and
    OPTIONS, last."""
    methods = {"GET", "HEAD"}
    for route in routes:
        methods.update(SCRIPT_METHODS if route.methods is None else route.methods)
    if route_hook is not None:
        methods.update(SCRIPT_METHODS)
    methods.discard("OPTIONS")
    listed = [m for m in _ALLOW_ORDER if m in methods] + sorted(methods - set(_ALLOW_ORDER))
    return ", ".join(listed + ["OPTIONS"])


def _name(handler):
    return getattr(handler, "__qualname__", None) or repr(handler)

"""Routes: how a plugin claims requests before the static handler sees them.

A plugin returns ``Route`` objects from ``flashplug_routes``; the kernel builds
its mount table (:class:`flashplug.server.Router`) from them once, at start.
A request's decoded path is matched against exact paths, then prefixes
(longest first, whole path segments only), then extensions, then
``flashplug_route_request`` if some plugin implements it, and finally falls
to the static handler.
"""
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Optional

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
        if not is_async_handler(self.handler):
            raise RouteError(f"Route handler {_name(self.handler)} is not an async function; "
                             f"define it with 'async def'")


def _name(handler):
    return getattr(handler, "__qualname__", None) or repr(handler)

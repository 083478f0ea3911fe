"""Routes: how a plugin claims requests before the static handler sees them.

A plugin returns ``Route`` objects from ``flashplug_routes``; the kernel builds
its mount table from them once, at start.  A request is matched against
prefixes (longest first), then extensions, then ``flashplug_route_request``
if some plugin implements it, and finally falls to the static handler.
"""
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Optional


@dataclass
class Route:
    """Send matching requests to ``handler``.

    Give exactly one of:

    ``prefix``
        a URL path prefix such as ``"/cgi-bin/"``.  A request for the prefix
        without its trailing slash matches too.
    ``ext``
        a file extension such as ``".cgi"``; it matches when any segment of
        the decoded path ends with it (``/app.cgi/extra/path`` matches), so
        the handler can split script name from path info.

    ``handler`` is ``async def handler(request) -> Response``.
    ``plugin`` is filled in by the kernel with the name of the plugin that
    returned the route; it is used in error messages.
    """

    handler: Callable[..., Awaitable]
    prefix: Optional[str] = None
    ext: Optional[str] = None
    plugin: str = field(default="?", compare=False)

    def __post_init__(self):
        if (self.prefix is None) == (self.ext is None):
            raise ValueError("Route needs exactly one of prefix= or ext=")
        if self.prefix is not None and not self.prefix.startswith("/"):
            raise ValueError(f"Route prefix must start with '/': {self.prefix!r}")
        if self.ext is not None and not self.ext.startswith("."):
            raise ValueError(f"Route ext must start with '.': {self.ext!r}")

"""flashplug: a plugin-extensible AMPED web server.

Plugins import what they need from here::

    from flashplug import hookimpl, Response, Route, UsageError
"""
import pluggy

__version__ = "0.1.0"

#: Marker for plugin hook implementations: ``@hookimpl def flashplug_...``.
hookimpl = pluggy.HookimplMarker("flashplug")

from flashplug.errors import UsageError, HTTPError  # noqa: E402
from flashplug.http.message import Request, Response, Headers  # noqa: E402
from flashplug.routes import Route  # noqa: E402

__all__ = ["hookimpl", "UsageError", "HTTPError", "Request", "Response",
           "Headers", "Route", "__version__"]

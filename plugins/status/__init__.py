"""status: the kernel's counters as a page, like nginx's stub_status and
Apache's mod_status.

Theory of operation: the Flash paper's server gathers information about
itself (cache hits, bytes, connections) in one place, the kernel's
``Stats``; this plugin makes it visible at one URL (``/server-status`` by
default), as text, JSON or Prometheus metrics, to loopback clients unless
told otherwise.  The work is split by kind:

* ``access``   the allow-list: parsed at start, a pure test per request;
* ``snapshot`` the table of values shown and how each is read from the App;
* ``render``   the formats, and how a request picks one (pure);
* ``handler``  settings, the checks, the Response.

It adds one prefix route and no per-request hook, so requests for anything
else cost exactly what they cost without it.  Each worker answers with its
own counters.
"""
from flashplug import Route, hookimpl

_state = {}   # "settings" after configure, "page" after startup


@hookimpl
def flashplug_addoption(parser):
    group = parser.add_argument_group("status", "server status page (--plugins status)")
    group.add_argument("--status-path", default="/server-status", metavar="PATH",
                       help="URL path of the status page (default: /server-status)")
    group.add_argument("--status-allow", action="append", default=None, metavar="LIST",
                       help="comma-separated clients that may read it: 'local', IP "
                            "addresses, CIDR networks (may repeat; default: local)")


@hookimpl
def flashplug_configure(config):
    from .handler import Settings
    _state["settings"] = Settings.from_config(config)


@hookimpl
def flashplug_routes():
    # A prefix claims whole path segments: "/server-status", its "/" form
    # and what lies below (the page answers 404 there, so nothing below it
    # leaks to the static handler), never "/server-status.html".
    return [Route(prefix=_state["settings"].path + "/", handler=_handle)]


@hookimpl
def flashplug_startup(app):
    from .handler import StatusPage
    _state["page"] = StatusPage(_state["settings"], app)


async def _handle(request):
    return await _state["page"].handle(request)

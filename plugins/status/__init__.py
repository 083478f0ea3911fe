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
from flashplug.plugins import per_config

# "settings": the Settings of each Config the plugin serves, by its id (the
# top-level one, and each site's view); "pages" after startup: the
# StatusPage of each.
_state = {"settings": {}}


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
    # Once per loaded configuration: a master that reloads starts afresh
    # (a reused id() would otherwise find the last one's settings).
    _state["settings"] = {}
    _settings_for(config)


def _settings_for(config):
    from .handler import Settings
    return per_config(_state["settings"], config, Settings.from_config)


@hookimpl
def flashplug_routes(config):
    # A prefix claims whole path segments: "/server-status", its "/" form
    # and what lies below (the page answers 404 there, so nothing below it
    # leaks to the static handler), never "/server-status.html".  Each
    # site that enables the plugin gets its own path and allow-list.
    key = id(config)

    async def handle(request):
        return await _state["pages"][key].handle(request)
    return [Route(prefix=_settings_for(config).path + "/", handler=handle, methods=("GET", "HEAD"))]


@hookimpl
def flashplug_startup(app):
    from .handler import StatusPage
    _state["pages"] = {key: StatusPage(settings, app)
                       for key, settings in _state["settings"].items()}

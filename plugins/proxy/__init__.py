"""The proxy plugin: an HTTP/1.1 reverse proxy (nginx's proxy_pass, Caddy's
reverse_proxy).

Theory of operation: at start-up the options become :class:`Settings`
(``options.py``) and each ``--proxy PREFIX=UPSTREAM,...`` becomes a prefix
route to one :class:`~.handler.ProxyHandler` (per site, from the Config
view ``flashplug_routes`` gets, with ``[[site]]`` tables), which owns a
:class:`~.upstream.Group` of peers.  Peers hold no connection until a
worker's first request, so the master forks workers with empty pools;
``flashplug_shutdown`` closes each worker's parked connections.

The work is split by kind: ``message.py`` is HTTP to and from an upstream
(pure), ``upstream.py`` connections, pooling, balancing and health on the
loop, ``handler.py`` one request, ``tunnel.py`` a WebSocket after its 101.
"""
import functools
import os

from flashplug import Route, hookimpl
from flashplug.plugins import per_config

from .handler import ProxyHandler
from .options import add_options, settings_from
from .upstream import Group, Peer

# "handlers": the ProxyHandlers of each Config the plugin serves, by its id
# (the top-level one, and each [[site]]'s view with its own --proxy
# mappings and options).
_state = {"handlers": {}}


@hookimpl
def flashplug_addoption(parser):
    add_options(parser)


@hookimpl
def flashplug_configure(config):
    # Once per loaded configuration: a master that reloads starts afresh,
    # else each reload would add its upstreams to the last one's.
    _state["handlers"] = {}
    _handlers_for(config)


def _handlers_for(config):
    return per_config(_state["handlers"], config, _new_handlers)


def _new_handlers(config):
    s = settings_from(config)
    return [   # longest prefix first, for FilesFirst
        ProxyHandler(m, Group([Peer(u, s.keepalive) for u in m.upstreams], s.balance,
                              s.max_fails, s.fail_timeout), s)
        for m in sorted(s.mappings, key=lambda m: -len(m.prefix))]


@hookimpl
def flashplug_routes(config):
    handlers = _handlers_for(config)
    if handlers and handlers[0].settings.files_first:
        pm = config.plugin_manager
        if not pm.has_plugin("proxy-files-first"):
            # Registered only when asked for: an implemented route hook is
            # called for every unrouted request, static files included.
            pm.register(FilesFirst(), name="proxy-files-first")
        return []
    # encoded_slashes: a %2F reaches the upstream (nginx's proxy_pass and
    # Caddy pass it on; GitLab's API needs it); static files still 404 it.
    return [Route(prefix=h.mapping.prefix, handler=h, encoded_slashes=True) for h in handlers]


class FilesFirst:
    """``--proxy-files-first``: the prefixes are no routes; a request no
    route claims goes to the longest prefix's upstreams unless its path
    names a file under the document root, which the static handler then
    serves (nginx: ``try_files $uri @app``).  A folder is no file: ``/``
    goes to the app."""

    @hookimpl
    def flashplug_route_request(self, request):
        if request.state.get("proxy_file"):
            return None     # a file: the static handler
        path = request.path
        for handler in _state["handlers"].get(id(request.server.config), ()):
            prefix = handler.mapping.prefix
            if handler.settings.files_first and (
                    path.startswith(prefix) or path == prefix[:-1] or prefix == "/"):
                return functools.partial(_files_first, handler)
        return None


async def _files_first(handler, request):
    fspath = os.path.join(request.server.config.docroot, request.path.lstrip("/"))
    if await request.server.helpers.run(os.path.isfile, fspath):
        request.state["proxy_file"] = True
        return await request.server.dispatch(request)
    return await handler(request)


def _all_handlers():
    return [h for handlers in _state["handlers"].values() for h in handlers]


@hookimpl
def flashplug_shutdown():
    for handler in _all_handlers():
        for peer in handler.group.peers:
            peer.close()


@hookimpl
def flashplug_status(app):
    """Each upstream of each prefix, for the status page."""
    handlers = _all_handlers()
    if not handlers:
        return None
    now = app.loop.time() if app.loop is not None else 0.0
    return {"proxy_upstreams": [
        {"prefix": h.mapping.prefix, "upstream": p.name,
         "state": "up" if p.available(now) else "out",
         "active": p.active, "idle": len(p.idle), "requests": p.requests,
         "failures": p.failures}
        for h in handlers for p in h.group.peers]}

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
from flashplug import Route, hookimpl

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
    handlers = _state["handlers"]
    if id(config) not in handlers:
        s = settings_from(config)
        handlers[id(config)] = [
            ProxyHandler(m, Group([Peer(u, s.keepalive) for u in m.upstreams], s.balance,
                                  s.max_fails, s.fail_timeout), s)
            for m in s.mappings]
    return handlers[id(config)]


@hookimpl
def flashplug_routes(config):
    return [Route(prefix=h.mapping.prefix, handler=h) for h in _handlers_for(config)]


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

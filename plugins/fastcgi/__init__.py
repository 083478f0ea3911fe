"""The fastcgi plugin: persistent FastCGI backends (php-fpm, flup, php-cgi).

Theory of operation: at start-up the options become :class:`Settings`
(``options.py``) and each ``--fastcgi WHERE=BACKEND`` becomes a route (an
extension route for ``.php``, a prefix route for ``/app``), each leading to
one :class:`~.handler.FastCGIHandler`.  In each worker,
``flashplug_startup`` gives every backend a connection :class:`~.pool.Pool`
on that worker's loop, first starting the processes of a ``spawn:`` backend
(``supervisor.py``); ``flashplug_shutdown`` closes the connections and
stops those processes.

The work is split by kind: ``protocol.py`` is the FastCGI 1.0 record codec
(pure), ``pool.py`` the connections on the loop, ``handler.py`` one
request, ``supervisor.py`` the spawned backends.  The environment and the
response head are the cgi plugin's (``env.py``, ``response.py``).
"""
import os

from flashplug import HTTPError, Route, hookimpl
from flashplug_plugins.cgi.env import base_env
from flashplug_plugins.cgi.script import Script

from .handler import FastCGIHandler
from .options import add_options, settings_from
from .pool import Pool

_state = {}   # "handler"; "supervisors" while running


@hookimpl
def flashplug_addoption(parser):
    add_options(parser)


@hookimpl
def flashplug_configure(config):
    settings = settings_from(config)
    handler = _state["handler"] = FastCGIHandler(settings, config.docroot, base_env(()),
                                                 bool(config.get("show_dotfiles")),
                                                 bool(config.get("follow_symlinks")),
                                                 float(config.get("cache_valid") or 0))
    if settings.fallback is not None:
        # Registered only when asked for: an implemented route hook is
        # called for every unrouted request, static files included.
        config.plugin_manager.register(FrontController(handler), name="fastcgi-fallback")


@hookimpl
def flashplug_routes():
    handler = _state["handler"]
    return [Route(prefix=m.prefix, handler=handler.for_mapping(m)) if m.prefix
            else Route(ext=m.ext, handler=handler.for_mapping(m))
            for m in handler.settings.mappings]


@hookimpl
def flashplug_startup(app):
    return _start(app)


async def _start(app):
    from .supervisor import Supervisor
    handler = _state["handler"]
    settings = handler.settings
    supervisors = _state["supervisors"] = []
    for m in settings.mappings:
        address = m.address
        if m.command is not None:
            sup = Supervisor(app.loop, m, settings.procs, settings.max_requests,
                             handler.docroot)
            supervisors.append(sup)
            address = await sup.start()
        handler.pools[m.name] = Pool(app.loop, address, f"fastcgi {m.name} ({m.text})",
                                     settings.max_conns, settings.queue, settings.timeout)


@hookimpl
def flashplug_shutdown(app):
    return _stop()


async def _stop():
    handler = _state.get("handler")
    if handler is not None:
        pools, handler.pools = handler.pools, {}
        for pool in pools.values():
            await pool.close()
    for sup in _state.pop("supervisors", ()):
        await sup.stop()


@hookimpl
def flashplug_directory(request, fspath):
    handler = _state["handler"]
    index = handler.settings.index
    if index is None:
        return None
    mapping = next(m for m in handler.settings.mappings if m.ext and index.endswith(m.ext))
    return _run_index(request, fspath, handler, mapping, index)


async def _run_index(request, fspath, handler, mapping, index):
    filename = os.path.join(fspath, index)
    if not await request.server.helpers.run(os.path.isfile, filename):
        raise HTTPError(404, "Not Found")
    script = Script(filename, request.path + index, "", fspath)
    return await handler.handle(request, mapping, script)


@hookimpl
def flashplug_status():
    """Each backend's pool and each supervised process, for the status page."""
    handler = _state.get("handler")
    if handler is None:
        return None
    pools = [{"backend": pool.name, "connections": len(pool.conns),
              "active": pool.slots.active, "waiting": pool.slots.waiting,
              "requests": pool.requests} for pool in handler.pools.values()]
    processes = [row for sup in _state.get("supervisors", ()) for row in sup.rows()]
    values = {"fastcgi_backends": pools}
    if processes:
        values["fastcgi_processes"] = processes
    return values


class FrontController:
    """``--fastcgi-fallback /index.php``: a request for a path that is no
    file or directory runs that script, with the original ``REQUEST_URI``
    (nginx: ``try_files $uri $uri/ /index.php?$args``).  One that exists
    goes on to the static handler (and its ``--fastcgi-index``)."""

    def __init__(self, handler):
        self.handler = handler
        self.target = handler.settings.fallback
        self.mapping = next(m for m in handler.settings.mappings
                            if m.ext and self.target.endswith(m.ext))

    @hookimpl
    def flashplug_route_request(self, request):
        if request.state.get("fastcgi_fallback"):
            return None   # the file exists: static handler
        return self.handle

    async def handle(self, request):
        docroot = self.handler.docroot
        path = os.path.join(docroot, request.path.lstrip("/"))
        if await request.server.helpers.run(os.path.lexists, path):
            request.state["fastcgi_fallback"] = True
            return await request.server.dispatch(request)
        script = Script(docroot + self.target, self.target, "",
                        os.path.dirname(docroot + self.target))
        return await self.handler.handle(request, self.mapping, script)

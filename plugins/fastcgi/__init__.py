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
import functools
import logging
import os
import pwd

from flashplug import HTTPError, Route, hookimpl
from flashplug.plugins import per_config
from flashplug_plugins.cgi.env import base_env
from flashplug_plugins.cgi.script import Script

from .handler import FastCGIHandler
from .options import add_options, settings_from
from .pool import Pool

log = logging.getLogger("flashplug.fastcgi")

# "handlers": the FastCGIHandler of each Config the plugin serves, by its id
# (the top-level one, and each site's view: its root, its backends);
# "supervisors" while running.
_state = {"handlers": {}}


@hookimpl
def flashplug_addoption(parser):
    add_options(parser)


@hookimpl
def flashplug_configure(config):
    # Once per loaded configuration: a master that reloads starts afresh,
    # else each reload would add its backends (and spawn: processes) to
    # the last one's in every new worker.
    _state["handlers"] = {}
    settings = _handler_for(config).settings
    for mapping in settings.mappings:
        path = mapping.address.path if mapping.address is not None else None
        if path is not None and not os.path.exists(path):
            log.warning(_no_socket(mapping, path))
    if settings.creds is not None and any(m.command for m in settings.mappings):
        roots = [config.docroot] + [site.root for site in config.sites
                                    if site.plugins is None or "fastcgi" in site.plugins]
        for root in dict.fromkeys(os.path.abspath(r) for r in roots):
            warning = _unreachable_root(root, settings.creds)
            if warning:
                log.warning(warning)


def _unreachable_root(root, creds):
    """Start-up's word on a document root the spawn: backends' user cannot
    read: php-cgi would answer "No input file specified." to every request."""
    from .reach import unreachable
    found = unreachable(root, creds)
    if found is None:
        return None
    path, lack = found
    try:
        user = pwd.getpwuid(creds[0]).pw_name
    except KeyError:
        user = f"uid {creds[0]}"
    where = "the document root" if path == root else f"on the way to the document root {root}"
    return (f"fastcgi: spawn: backends run as {user}, who cannot {lack} {path} ({where}): "
            f"PHP would answer 'No input file specified.'; give them a user who can "
            f"(--fastcgi-user), or chmod o+{'x' if lack == 'search' else 'rx'} {path}")


def _no_socket(mapping, path):
    """Start-up's word on a ``unix:`` backend whose socket is not there (yet):
    php-fpm not running, or another PHP version's socket name."""
    folder = os.path.dirname(path) or "."
    try:
        there = sorted(n for n in os.listdir(folder) if n.endswith(".sock"))
    except OSError:
        there = []
    return (f"fastcgi {mapping.name}: {path} does not exist (yet): its requests get 502 "
            f"until a backend listens there (is php-fpm running?)"
            + (f"; sockets in {folder}: {', '.join(there)}" if there else ""))


def _handler_for(config):
    return per_config(_state["handlers"], config, _new_handler)


def _new_handler(config):
    return FastCGIHandler(settings_from(config), config.docroot, base_env(()),
                          bool(config.get("show_dotfiles")), bool(config.get("follow_symlinks")),
                          float(config.get("cache_valid") or 0))


@hookimpl
def flashplug_routes(config):
    handler = _handler_for(config)
    pm = config.plugin_manager
    if handler.settings.fallback is not None and not pm.has_plugin("fastcgi-fallback"):
        # Registered only when asked for: an implemented route hook is
        # called for every unrouted request, static files included.
        pm.register(FrontController(), name="fastcgi-fallback")
    return [Route(prefix=m.prefix, handler=handler.for_mapping(m)) if m.prefix
            else Route(ext=m.ext, handler=handler.for_mapping(m))
            for m in handler.settings.mappings]


@hookimpl
def flashplug_startup(app):
    return _start(app)


async def _start(app):
    from .supervisor import Supervisor
    supervisors = _state["supervisors"] = []
    for handler in _state["handlers"].values():
        settings = handler.settings
        for m in settings.mappings:
            address = m.address
            if m.command is not None:
                sup = Supervisor(app.loop, m, settings.procs, settings.max_requests,
                                 handler.docroot, settings.creds)
                supervisors.append(sup)
                address = await sup.start()
            handler.pools[m.name] = Pool(app.loop, address, f"fastcgi {m.name} ({m.text})",
                                         settings.max_conns, settings.queue, settings.timeout)


@hookimpl
def flashplug_shutdown(app):
    return _stop()


async def _stop():
    for handler in _state["handlers"].values():
        pools, handler.pools = handler.pools, {}
        for pool in pools.values():
            await pool.close()
    for sup in _state.pop("supervisors", ()):
        await sup.stop()


@hookimpl
def flashplug_directory(request, fspath):
    handler = _state["handlers"].get(id(request.server.config))
    index = handler.settings.index if handler is not None else None
    if index is None:
        return None
    mapping = next(m for m in handler.settings.mappings if m.ext and index.endswith(m.ext))
    return _run_index(request, fspath, handler, mapping, index)


async def _run_index(request, fspath, handler, mapping, index):
    filename = os.path.join(fspath, index)
    if not await request.server.helpers.run(os.path.isfile, filename):
        raise HTTPError(404, "Not Found")
    script = Script(filename, request.path + index, "", fspath)
    return await handler.handle(mapping, request, script)


@hookimpl
def flashplug_status():
    """Each backend's pool and each supervised process, for the status page."""
    handlers = _state["handlers"].values()
    if not handlers:
        return None
    pools = [{"backend": pool.name, "connections": len(pool.conns),
              "active": pool.slots.active, "waiting": pool.slots.waiting,
              "requests": pool.requests}
             for handler in handlers for pool in handler.pools.values()]
    processes = [row for sup in _state.get("supervisors", ()) for row in sup.rows()]
    values = {"fastcgi_backends": pools}
    if processes:
        values["fastcgi_processes"] = processes
    return values


class FrontController:
    """``--fastcgi-fallback /index.php``: a request for a path that is no
    file or directory runs that script, with the original ``REQUEST_URI``
    (nginx: ``try_files $uri $uri/ /index.php?$args``).  One that exists
    goes on to the static handler (and its ``--fastcgi-index``).  Each site
    has its own fallback, or none."""

    @hookimpl
    def flashplug_route_request(self, request):
        if request.state.get("fastcgi_fallback"):
            return None   # the file exists: static handler
        handler = _state["handlers"].get(id(request.server.config))
        if handler is None or handler.settings.fallback is None:
            return None
        return functools.partial(_fallback, handler)


async def _fallback(handler, request):
    docroot = handler.docroot
    target = handler.settings.fallback
    path = os.path.join(docroot, request.path.lstrip("/"))
    if await request.server.helpers.run(os.path.lexists, path):
        request.state["fastcgi_fallback"] = True
        return await request.server.dispatch(request)
    mapping = next(m for m in handler.settings.mappings if m.ext and target.endswith(m.ext))
    script = Script(docroot + target, target, "", os.path.dirname(docroot + target))
    return await handler.handle(mapping, request, script)

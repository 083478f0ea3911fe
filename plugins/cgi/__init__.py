"""The cgi plugin: CGI/1.1 scripts (RFC 3875), run as auxiliary processes.

Theory of operation: at start-up the options become :class:`Settings`
(``options.py``) and each CGI directory becomes a prefix route, each
``--cgi-ext`` extension an extension route; all lead to one
:class:`~.handler.CGIHandler`.  In each worker, ``flashplug_startup`` gives
the handler a :class:`flashplug.procs.ProcessManager` on that worker's loop,
and ``flashplug_shutdown`` kills whatever still runs.

A CGI directory that lies inside the document root under a different URL
(``--cgi-dir /run/=DOCROOT/scripts``) would otherwise have its sources
served as static files at ``/scripts/``; that URL gets a 403 route too.

The per-request pieces are pure modules: ``script.py`` (which file, which
path-info), ``env.py`` (the environment), ``response.py`` (the header
block); ``handler.py`` ties them to the loop.
"""
import os

from flashplug import HTTPError, Route, UsageError, hookimpl
from flashplug.procs import HAVE_CHDIR, ProcessManager

from .env import base_env
from .handler import CGIHandler
from .options import add_options, settings_from

_handler = None


@hookimpl
def flashplug_addoption(parser):
    add_options(parser)


@hookimpl
def flashplug_configure(config):
    global _handler
    if not HAVE_CHDIR:
        raise UsageError("cgi: this C library lacks posix_spawn_file_actions_addchdir_np "
                         "(glibc >= 2.29, musl >= 1.1.24 or macOS >= 10.15 needed)")
    settings = settings_from(config)
    _handler = CGIHandler(settings, config.docroot, base_env(settings.pass_env),
                          bool(config.get("show_dotfiles")),
                          bool(config.get("follow_symlinks")),
                          float(config.get("cache_valid") or 0))


@hookimpl
def flashplug_routes(config):
    settings = _handler.settings
    docroot = config.docroot
    routes = [Route(prefix=prefix, handler=_handler.for_mount(prefix, path))
              for prefix, path in settings.dirs]
    mounted = {prefix for prefix, _ in settings.dirs}
    for prefix, path in settings.dirs:
        rel = os.path.relpath(path, docroot)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            continue
        shadow = "/" if rel == os.curdir else "/" + rel.replace(os.sep, "/") + "/"
        if shadow not in mounted:
            mounted.add(shadow)
            routes.append(Route(prefix=shadow, handler=_forbidden))
    if settings.exts:
        by_ext = _handler.for_mount("/", docroot, settings.exts)
        routes += [Route(ext=ext, handler=by_ext) for ext in settings.exts]
    return routes


@hookimpl
def flashplug_startup(app):
    _handler.manager = ProcessManager(app.loop, _handler.settings.max_procs,
                                      _handler.settings.queue, _handler.settings.creds)


@hookimpl
def flashplug_shutdown(app):
    manager, _handler.manager = _handler.manager, None
    if manager is not None:
        return manager.close()


async def _forbidden(request):
    raise HTTPError(403, "Forbidden")

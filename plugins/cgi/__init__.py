"""The cgi plugin: CGI/1.1 scripts (RFC 3875), run as auxiliary processes.

Theory of operation: at start-up the options become :class:`Settings`
(``options.py``) and each CGI directory becomes a prefix route, each
``--cgi-ext`` extension an extension route; all lead to one
:class:`~.handler.CGIHandler` (one per site, with the site's root and
options, when ``[[site]]`` tables enable the plugin).  In each worker, ``flashplug_startup`` gives
the handler a :class:`flashplug.procs.ProcessManager` on that worker's loop,
and ``flashplug_shutdown`` kills whatever still runs.

Every CGI directory goes into ``config.script_dirs``, so the static handler
refuses its files (403) under any other URL: a directory inside the
document root under a different URL (``--cgi-dir /run/=DOCROOT/scripts``)
never has its sources served at ``/scripts/``, nor through ``/CGI-BIN/`` or
a symlink.  The kernel refuses ``cgi-bin`` and ``htbin`` even when this
plugin is off.

The per-request pieces are pure modules: ``script.py`` (which file, which
path-info), ``env.py`` (the environment), ``response.py`` (the header
block); ``handler.py`` ties them to the loop.
"""
from flashplug import Route, UsageError, hookimpl
from flashplug.plugins import per_config
from flashplug.procs import HAVE_CHDIR, ProcessManager

from .env import base_env
from .handler import CGIHandler
from .options import add_options, settings_from

_handler = None
# The handler of each Config the plugin serves, by its id: the one it was
# configured with, and each site's view (its root, its [site.plugins.cgi]
# options).  All share the worker's ProcessManager.
_handlers = {}


@hookimpl
def flashplug_addoption(parser):
    add_options(parser)


@hookimpl
def flashplug_configure(config):
    global _handler
    if not HAVE_CHDIR:
        raise UsageError("cgi: this C library lacks posix_spawn_file_actions_addchdir_np "
                         "(glibc >= 2.29, musl >= 1.1.24 or macOS >= 10.15 needed)")
    # Once per loaded configuration: a reload starts afresh, so that a
    # site's Config that reuses an id of the last configuration's never
    # finds that configuration's handler (per_config).
    _handlers.clear()
    _handler = _new_handler(config)
    _handlers[id(config)] = _handler
    for _, path in _handler.settings.dirs:
        config.script_dirs[path] = "cgi"


def _new_handler(config):
    settings = settings_from(config)
    return CGIHandler(settings, config.docroot, base_env(settings.pass_env),
                      bool(config.get("show_dotfiles")),
                      bool(config.get("follow_symlinks")),
                      float(config.get("cache_valid") or 0))


def _handler_for(config):
    """The handler for the Config ``flashplug_routes`` gets: the one
    configured, or a site's (docs/configuration.md, "Virtual hosts")."""
    return per_config(_handlers, config, _new_handler)


@hookimpl
def flashplug_routes(config):
    handler = _handler_for(config)
    settings = handler.settings
    routes = [Route(prefix=prefix, handler=handler.for_mount(prefix, path))
              for prefix, path in settings.dirs]
    if settings.exts:
        by_ext = handler.for_mount("/", config.docroot, settings.exts)
        routes += [Route(ext=ext, handler=by_ext) for ext in settings.exts]
    return routes


@hookimpl
def flashplug_startup(app):
    # One limit for the worker (--cgi-max-procs, --cgi-queue, --cgi-user are
    # server-wide), shared by every site's handler.
    manager = ProcessManager(app.loop, _handler.settings.max_procs,
                             _handler.settings.queue, _handler.settings.creds)
    for handler in _handlers.values():
        handler.manager = manager


@hookimpl
def flashplug_shutdown(app):
    manager = _handler.manager
    for handler in _handlers.values():
        handler.manager = None
    if manager is not None:
        return manager.close()

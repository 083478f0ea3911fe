"""The cgi plugin: CGI/1.1 scripts (RFC 3875), run as auxiliary processes.

Theory of operation: at start-up the options become :class:`Settings`
(``options.py``) and each CGI directory becomes a prefix route, each
``--cgi-ext`` extension an extension route; all lead to one
:class:`~.handler.CGIHandler`.  In each worker, ``flashplug_startup`` gives
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
    for _, path in settings.dirs:
        config.script_dirs[path] = "cgi"


@hookimpl
def flashplug_routes(config):
    settings = _handler.settings
    routes = [Route(prefix=prefix, handler=_handler.for_mount(prefix, path))
              for prefix, path in settings.dirs]
    if settings.exts:
        by_ext = _handler.for_mount("/", config.docroot, settings.exts)
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


"""autoindex: directory listings in HTML, JSON and XML.

Theory of operation: the static handler calls ``flashplug_directory`` for a
URL ending in ``/`` whose folder has no index file; we answer with a
listing.  The work is split by kind:

* ``listing``  reads the folder (blocking; always in a helper);
* ``render``   sorts and formats it (pure: HTML through jinja2 with
               autoescape, JSON, XML, query parsing, Accept negotiation);
* ``cache``    a bounded LRU for scans and rendered bodies;
* ``handler``  settings, caching, conditional GET, the Response.

This module holds only the hooks.  It imports the rest on
``flashplug_configure``, so that merely being installed (every installed
plugin is imported for ``--help``) does not cost jinja2's import time.
"""
from flashplug import hookimpl
from flashplug.plugins import per_config

# "settings": the Settings of each Config the plugin serves, by its id (the
# top-level one, and each site's view); "autoindex" after startup: the
# Autoindex of each.
_state = {"settings": {}}


@hookimpl
def flashplug_addoption(parser):
    group = parser.add_argument_group("autoindex", "directory listings (--plugins autoindex)")
    group.add_argument("--autoindex-exact-size", action="store_true", default=False,
                       help="show sizes in bytes instead of KiB/MiB/GiB")
    group.add_argument("--autoindex-localtime", action="store_true", default=False,
                       help="show times in the server's local time instead of UTC")
    group.add_argument("--autoindex-ignore", action="append", default=None,
                       metavar="PATTERNS",
                       help="comma-separated glob patterns of names not to list "
                            "(may repeat), e.g. '*.bak,*~'")
    group.add_argument("--autoindex-template", default=None, metavar="PATH",
                       help="a jinja2 template for the HTML page (see docs/autoindex.md)")
    # The "no" form is added first: the config-file reader maps
    # `dirs_first = true|false` through the last action with this dest, and
    # it must be the store_true one.
    group.add_argument("--no-autoindex-dirs-first", dest="autoindex_dirs_first",
                       action="store_false", default=True,
                       help="sort folders among files")
    group.add_argument("--autoindex-dirs-first", dest="autoindex_dirs_first",
                       action="store_true", default=True,
                       help="list folders before files (the default)")


@hookimpl
def flashplug_configure(config):
    # Once per loaded configuration: a master that reloads starts afresh
    # (a reused id() would otherwise find the last one's settings).
    _state["settings"] = {}
    _settings_for(config)


@hookimpl
def flashplug_routes(config):
    # No routes (listings come through flashplug_directory): called once
    # per site with its view, this takes in and checks the site's options.
    _settings_for(config)
    return []


def _settings_for(config):
    from .handler import Settings
    return per_config(_state["settings"], config, Settings.from_config)


@hookimpl
def flashplug_startup(app):
    from .handler import Autoindex
    _state["autoindex"] = {key: Autoindex(settings, app.helpers)
                           for key, settings in _state["settings"].items()}


@hookimpl
def flashplug_shutdown(app):
    return _close()


async def _close():
    for autoindex in _state.get("autoindex", {}).values():
        await autoindex.close()


@hookimpl
def flashplug_directory(request, fspath):
    autoindex = _state.get("autoindex", {}).get(id(request.server.config))
    if autoindex is None:
        return None
    return autoindex.handle(request, fspath)

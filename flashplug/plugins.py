"""The plugin manager: find plugins, choose the enabled ones, check them.

Theory of operation: every plugin, ours included, is found the same way,
through the ``flashplug`` entry-point group (our bundled ones point into the
``flashplug_plugins`` package) or as a single ``.py`` file in a
``--plugins-dir``.  All installed plugins are imported so that
``flashplug_addoption`` can show their options in ``--help``; only the ones
named by ``--plugins`` stay registered for the rest of the run.
"""
import functools
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import types
from dataclasses import dataclass, field

import pluggy

from flashplug import hookspecs
from flashplug.errors import UsageError

ENTRY_POINT_GROUP = "flashplug"
BUNDLED_PACKAGE = "flashplug_plugins"


@dataclass
class PluginInfo:
    name: str
    version: str
    source: str          # "bundled", "entry point" or "plugins dir"
    location: str        # module name or file path
    module: object = field(default=None, repr=False)

    def hooks(self, pm):
        return sorted(impl_name for impl_name in dir(self.module)
                      if impl_name.startswith("flashplug_")
                      and pm.parse_hookimpl_opts(self.module, impl_name) is not None)


def new_manager():
    pm = pluggy.PluginManager("flashplug")
    pm.add_hookspecs(hookspecs)
    return pm


def discover(plugins_dirs=()):
    """Every installed plugin, by name; nothing is imported yet."""
    found = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            continue  # the same distribution installed twice (editable + site)
        dist = ep.dist
        bundled = ep.value.startswith(BUNDLED_PACKAGE + ".")
        found[ep.name] = PluginInfo(
            name=ep.name,
            version=dist.version if dist is not None else "?",
            source="bundled" if bundled else "entry point",
            location=ep.value, module=ep)
    for folder in plugins_dirs:
        if not os.path.isdir(folder):
            raise UsageError(f"--plugins-dir {folder}: not a directory")
        for fname in sorted(os.listdir(folder)):
            if fname.endswith(".py") and not fname.startswith((".", "_")):
                name = fname[:-3]
                found[name] = PluginInfo(
                    name=name, version="-", source="plugins dir",
                    location=os.path.join(os.path.abspath(folder), fname))
    return found


def load(info):
    """Import a plugin's module (once) and return it."""
    if info.module is not None and not isinstance(info.module, importlib.metadata.EntryPoint):
        return info.module
    try:
        if info.source == "plugins dir":
            modname = f"flashplug_local_plugins.{info.name}"
            spec = importlib.util.spec_from_file_location(modname, info.location)
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module
            spec.loader.exec_module(module)
        else:
            module = info.module.load()
    except Exception as e:
        raise UsageError(f"plugin {info.name!r} ({info.location}) failed to import: "
                         f"{type(e).__name__}: {e}") from e
    info.module = module
    return module


#: The plugins enabled when neither ``--plugins`` nor the config file names
#: any: directory listings, so that a first ``flashplug serve`` shows the
#: folder at ``/`` as ``python -m http.server`` does.  Only where plugins
#: can run: ``--arch mt`` and ``mp`` serve static files only.
DEFAULT_SELECTION = "autoindex"
#: ``--plugins none`` (or an empty value) enables no plugin at all.
NO_PLUGINS = "none"


def parse_selection(text, arch="amped"):
    """The enabled plugin names for a ``--plugins`` value.

    ``"cgi, autoindex"`` -> ``["cgi", "autoindex"]``; ``"none"`` or ``""``
    -> ``[]``; ``None`` (not given anywhere) -> the default set for ``arch``.
    """
    if text is None:
        text = DEFAULT_SELECTION if arch in ("amped", "sped") else ""
    # A name given twice is enabled once (and listed once at start-up).
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    return [] if names == [NO_PLUGINS] else names


def check_selection(selected, installed):
    unknown = [name for name in selected if name not in installed]
    if unknown:
        have = ", ".join(sorted(installed)) or "none"
        raise UsageError(f"unknown plugin {', '.join(map(repr, unknown))}; "
                         f"installed plugins: {have}")


def register(pm, info):
    module = load(info)
    if pm.is_registered(module):
        return
    try:
        pm.register(module, name=info.name)
    except pluggy.PluginValidationError as e:
        detail = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        raise UsageError(f"plugin {info.name!r} ({info.location}): {detail}") from None


# The hooks whose result the kernel awaits: an ``async def`` is fine there.
# Every other hook is called and its result used as it is, so an ``async
# def`` one gives a coroutine that nobody awaits: its body never runs (a
# response-headers hook that adds nothing, an error page refused as "not
# a Response"), with no word of why but Python's "never awaited" warning.
AWAITED_HOOKS = frozenset({"flashplug_startup", "flashplug_shutdown", "flashplug_directory"})


def check_hooks(pm):
    """Refuse an implementation whose name matches no hook spec, and an
    ``async def`` one of a hook whose result is not awaited."""
    for name in sorted(vars(pm.hook)):
        caller = getattr(pm.hook, name)
        if name.startswith("_"):
            continue
        if caller.has_spec():
            if name not in AWAITED_HOOKS:
                for impl in caller.get_hookimpls():
                    if inspect.iscoroutinefunction(impl.function) \
                            or inspect.isasyncgenfunction(impl.function):
                        raise UsageError(
                            f"plugin {impl.plugin_name!r}: {name} is an async def, but the "
                            f"server calls it without await, so its body would never run; "
                            f"define it with def")
            continue
        for impl in caller.get_hookimpls():
            if not impl.optionalhook:
                raise UsageError(
                    f"plugin {impl.plugin_name!r} implements unknown hook {name!r}; "
                    f"known hooks: {', '.join(spec_names())}")


def spec_names():
    return sorted(n for n in dir(hookspecs) if n.startswith("flashplug_"))


def hooks_in_use(pm):
    """The hooks that at least one registered plugin implements."""
    return frozenset(name for name in spec_names()
                     if getattr(pm.hook, name).get_hookimpls())


def plugin_for_module(pm, modname):
    """The name of the registered plugin whose code lives in ``modname``."""
    for name, plugin in pm.list_name_plugin():
        pmod = getattr(plugin, "__name__", None)
        if pmod and (modname == pmod or modname.startswith(pmod + ".")):
            return name
    return None


def owner_of(pm, name, plugin):
    """The enabled plugin a registered object belongs to: its own name for a
    plugin module, else the plugin whose module defined its class (an
    object a plugin registered itself, such as fastcgi's fallback)."""
    if isinstance(plugin, types.ModuleType):
        return name
    return plugin_for_module(pm, type(plugin).__module__) or name


def plugin_for_code(pm, obj):
    """The name of the registered plugin that defined ``obj`` (a function,
    method, ``functools.partial`` or callable object), or None."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    return plugin_for_module(pm, getattr(obj, "__module__", None) or "")


def per_config(made, config, make):
    """``make(config)``, made once for each Config a plugin's hooks are
    handed (the top-level one, and each ``[[site]]``'s view, with its own
    options): kept in ``made``, the plugin's dict by ``id(config)``, which
    its ``flashplug_configure`` empties once per loaded configuration, so
    that a reused id never finds the last configuration's."""
    key = id(config)
    found = made.get(key)
    if found is None:
        found = made[key] = make(config)
    return found

"""One Config object: command-line flags over the config file over defaults.

Theory of operation: the TOML file is turned into argparse defaults before
the command line is parsed, so a flag always wins over the file and both go
through the same type checks.  Top-level keys are kernel settings
(``port = 8080``); a ``[plugins.NAME]`` table holds a plugin's settings with
the ``NAME_`` prefix of its option names dropped (``[plugins.cgi]
timeout = 30`` is ``--cgi-timeout 30``).

A mistake in the file is one line that starts ``FILE:LINE:`` (``At``: the
line of the key, found in the file's text only when a message needs it)
and names the key, as compilers do, so editors can jump to it.
"""
import argparse
import difflib
import os
import re

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from flashplug import errorpages, rules
from flashplug.errors import UsageError

#: Folders at the top of the document root whose files are programs, never
#: documents: http.server's ``cgi_directories``.
DEFAULT_SCRIPT_DIRS = ("cgi-bin", "htbin")


#: Plugin options the kernel reads itself, even while their plugin is off:
#: --cgi-dir folders and --cgi-ext files are never served as documents.
KERNEL_READ = frozenset({"cgi_dir", "cgi_ext"})


def cgi_ext_list(value):
    """The extensions a ``--cgi-ext`` value names (a str, or a list of them,
    each comma-separated): ``(".cgi", ".py")``, as given.  Checked here,
    whether or not the cgi plugin is on, since the kernel refuses them too.

    Raises UsageError for one that is not a dot and a name.
    """
    items = value if isinstance(value, (list, tuple)) else [] if value is None else [value]
    exts = tuple(e.strip() for item in items for e in str(item).split(",") if e.strip())
    for ext in exts:
        if not ext.startswith(".") or len(ext) < 2 or "/" in ext:
            raise UsageError(f"--cgi-ext: expected extensions like .cgi,.py, got {ext!r}")
    return exts


def cgi_dir_path(item, docroot):
    """The folder a ``--cgi-dir URLPREFIX[=PATH]`` item names (absolute):
    PATH, or else the folder named like URLPREFIX in ``docroot``."""
    prefix, eq, path = str(item).partition("=")
    return os.path.abspath(path if eq else os.path.join(docroot, prefix.strip("/")))


class Config:
    """Settings for one run of ``flashplug serve``.

    ``get(name)`` returns a setting by its option's dest name (``"port"``,
    ``"cgi_timeout"``); attribute access works too (``config.port``).
    """

    def __init__(self, namespace, config_file=None):
        self._ns = namespace
        # Plain attributes: settings are read on hot paths.
        self.__dict__.update(vars(namespace))
        self.config_file = config_file
        self.docroot = os.path.abspath(namespace.docroot)
        # Resolved once, before any event loop runs: symlink checks compare
        # real paths against it.
        self.real_docroot = os.path.realpath(self.docroot)
        self.plugins = []            # names of the enabled plugins
        # Folders whose files the static handler never serves (403): absolute
        # path -> the plugin that runs their scripts, or None when none does.
        # A plugin that runs scripts from a folder marks it here in
        # ``flashplug_configure``.  Folders given to --cgi-dir count even
        # while the cgi plugin is off: they hold scripts all the same.
        cgi_dirs = self.get("cgi_dir") or []
        if not isinstance(cgi_dirs, (list, tuple)):
            cgi_dirs = [cgi_dirs]
        self.script_dirs = dict.fromkeys(
            [os.path.join(self.docroot, name) for name in DEFAULT_SCRIPT_DIRS]
            + [cgi_dir_path(item, self.docroot) for item in cgi_dirs])
        # Likewise the --cgi-ext extensions: files ending in one are scripts
        # anywhere in the document root, never documents.
        self.script_exts = cgi_ext_list(self.get("cgi_ext"))
        self.plugin_manager = None   # set by the CLI once plugins are loaded
        self.sites = []              # the [[site]] tables (flashplug.sites.Site)
        # The error pages and rules of this view (flashplug.errorpages,
        # flashplug.rules), compiled by flashplug.policy; None: none.
        self.error_pages = None
        self.rules = None

    #: The site this Config is the view of (flashplug.sites.SiteConfig);
    #: None for the top-level settings.
    site = None

    #: Every option's dest by its flag (``{"--fastcgi": "fastcgi_backend"}``),
    #: set by the CLI, so ``locate`` finds the key of an aliased flag.
    flag_dests = {}

    def get(self, name, default=None):
        return getattr(self._ns, name, default)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return getattr(self._ns, name)
        except AttributeError:
            raise AttributeError(f"no setting {name!r}") from None

    def as_dict(self):
        return dict(vars(self._ns))

    def override(self, name, value):
        """Set a setting after the fact (a reload keeps what cannot change)."""
        setattr(self._ns, name, value)
        self.__dict__[name] = value


#: Tables of a site's policy (error pages, header and redirect rules): no
#: flag sets them; ``flashplug.policy`` compiles them from the file, at the
#: top level and in each ``[[site]]``.
POLICY_KEYS = frozenset((errorpages.KEY, *rules.KEYS))

#: Settings that name a file: a relative value in the config file is
#: relative to the config file's folder (like ``docroot`` and
#: ``plugins_dir``), so the file means the same wherever the server starts.
FILE_PATH_KEYS = frozenset({"access_log", "error_log", "tls_cert", "tls_key"})


class At:
    """``FILE:LINE`` of a key of the TOML file at ``path`` (in the table
    ``table``, a dotted name, or at the top), or ``FILE`` when the line
    cannot be found; looked up when formatted, so only for a message.

    ``site``: the key is in the ``site``-th ``[[site]]`` table (from 1),
    and ``table`` names a table inside it (``"plugins.cgi"`` for
    ``[site.plugins.cgi]``).  A key written as a table of its own
    (``[error_pages]``, ``[[site.header]]``) is found at that header; of
    an array of tables, ``index`` (from 1) says which (``[[header]] #2``).
    """

    def __init__(self, path, key=None, table=None, site=None, index=1):
        self.path, self.key, self.table, self.site = path, key, table, site
        self.index = index

    def __str__(self):
        line = self.line()
        return f"{self.path}:{line}" if line else str(self.path)

    def line(self):
        """The line number (from 1), or None."""
        try:
            with open(self.path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeError):
            return None
        table = self.table
        if self.site is not None:
            table = "site" if table is None else f"site.{table}"
        # The header a key written as a table has: [error_pages], [[site.header]].
        as_table = None if self.key is None else (f"{table}." if table else "") + self.key
        name = re.escape(self.key or "")
        key_line = re.compile(rf"""\s*(?:{name}|"{name}"|'{name}')\s*=""")
        current = None                          # the table of the lines below
        sites = 0                               # [[site]] headers so far
        seen = 0                                # headers of the key's own tables so far
        for number, text in enumerate(lines, 1):
            header = re.match(r"\s*(\[\[?)\s*([^\]]+?)\s*\]", text)
            inside = self.site is None or sites == self.site
            if header:
                current = header.group(2).replace(" ", "")
                if current == "site" and header.group(1) == "[[":
                    sites += 1
                inside = self.site is None or sites == self.site
                if inside and self.key is None and current == table:
                    return number
                if inside and as_table is not None and current == as_table:
                    seen += 1
                    if seen == self.index:
                        return number
                elif inside and as_table is not None and current.startswith(as_table + ".") \
                        and not seen:
                    return number               # [site.plugins.cgi] for "plugins"
            elif inside and self.key is not None and current == table and key_line.match(text):
                return number
        return None


def locate(config, message):
    """``message`` of an error about a setting (``--cgi-timeout: ...``,
    from a plugin's checks) with ``FILE:LINE:`` in front when the setting
    comes from the config file, so it reads like the file's other errors."""
    flag = re.match(r"--([a-z0-9-]+)", message)
    path = config.config_file
    if flag is None or path is None:
        return message
    name = flag.group(1)
    # A plugin's own flag is an alias: --fastcgi is written backend in
    # [plugins.fastcgi], as its dest (fastcgi_backend) says.
    dest = config.flag_dests.get(flag.group(0), name.replace("-", "_"))
    places = [At(path, name), At(path, dest)]
    plugin, _, rest = dest.partition("_")
    if rest:
        places += [At(path, rest, f"plugins.{plugin}"),
                   At(path, rest.replace("_", "-"), f"plugins.{plugin}")]
    for at in places:
        if at.line() is not None:
            return f"{at}: {message}"
    return message


def read_toml(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except OSError as e:
        raise UsageError(f"--config {path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        # A TOML file is UTF-8 (TOML 1.0 "Spec"); an editor's Latin-1 save
        # must say where, not end in a traceback (or, on SIGHUP, a master).
        line = data.count(b"\n", 0, e.start) + 1
        raise UsageError(f"{path}:{line}: not valid TOML: byte 0x{data[e.start]:02x} is not "
                         f"UTF-8; save the file as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        line = re.search(r"at line (\d+)", str(e))
        where = f"{path}:{line.group(1)}" if line else path
        hint = ""
        if "('plugins', " in str(e):
            # A top-level ``plugins = [...]`` beside a [plugins.NAME] table.
            hint = ("; a top-level plugins = [...] and a [plugins.NAME] table clash in TOML: "
                    "write the list as enable = [...] in a [plugins] table")
        raise UsageError(f"{where}: not valid TOML: {e}{hint}") from None


def actions_by_dest(parser):
    return {a.dest: a for a in parser._actions
            if a.dest not in ("help", argparse.SUPPRESS) and a.option_strings}


def plugin_actions(parser):
    """The options plugins added (``{dest: action}``): every option but the
    kernel's, which the CLI notes as ``parser.kernel_dests`` before any
    plugin adds one.  A kernel option may share a plugin's prefix
    (``--proxy-protocol`` beside the proxy plugin's ``--proxy-*``)."""
    kernel = parser.kernel_dests
    return {d: a for d, a in actions_by_dest(parser).items() if d not in kernel}


def top_level_keys(parser):
    """The keys the config file takes at its top level, as ``misplaced``'s
    ``outer``: their names, what they are, where they are written."""
    names = frozenset({d for d in parser.kernel_dests if d != "config"} | POLICY_KEYS
                      | {"docroot", "directory", "plugins_dir"})
    return names, "a top-level setting", "above the file's first [table] header"


def misplaced(key, outer):
    """The fix for TOML's usual slip, or "": a key of the level above
    (``outer``: its keys, what they are, where they go) written below a
    table's header, where TOML makes it the table's."""
    if outer is None or key.replace("-", "_") not in outer[0]:
        return ""
    return (f"; {key} is {outer[1]}, and in TOML every key below a [table] header "
            f"belongs to that table: write it {outer[2]}")


def _convert(path, key, value, action):
    """Check a TOML value against the option it sets; return the value.
    ``path`` is where messages say the key is (an ``At``)."""
    flag = action.option_strings[-1]
    if isinstance(action, argparse.BooleanOptionalAction):
        # --http2 / --no-http2, --precompressed / --no-precompressed: the key
        # says which, as the positive flag does.
        if not isinstance(value, bool):
            raise UsageError(f"{path}: {key} = {value!r}: expected true or false "
                             f"({action.option_strings[0]})")
        return value
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise UsageError(f"{path}: {key} = {value!r}: expected true or false ({flag})")
        return value if isinstance(action, argparse._StoreTrueAction) else not value
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_convert_one(path, key, v, action, flag) for v in items]
    if isinstance(value, (list, dict)):
        raise UsageError(f"{path}: {key}: expected a single value ({flag})")
    return _convert_one(path, key, value, action, flag)


def _convert_one(path, key, value, action, flag):
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        shown = str(value).lower() if isinstance(value, bool) else repr(value)  # as TOML has it
        raise UsageError(f"{path}: {key} = {shown}: expected a string or number ({flag})")
    if action.type is not None:
        try:
            value = action.type(str(value))
        except (argparse.ArgumentTypeError, ValueError, TypeError) as e:
            raise UsageError(f"{path}: {key} = {value!r}: {e} ({flag})") from None
    elif action.choices is None:
        value = str(value)      # as the command line gives it (bind = 5 is "5")
    if action.choices is not None and value not in action.choices:
        allowed = ", ".join(map(str, action.choices))
        raise UsageError(f"{path}: {key} = {value!r}: allowed values are {allowed}")
    return value


def toml_defaults(path, data, parser, plugin_names):
    """Map a parsed config file onto ``{dest: value}`` for ``set_defaults``."""
    actions = actions_by_dest(parser)
    kernel_keys = sorted(d for d in actions if d in parser.kernel_dests and d != "config")
    plugins_only = plugin_actions(parser)
    defaults = {}
    for key, value in data.items():
        if key == "site":
            continue    # [[site]] tables: flashplug.sites
        if key == "plugins" and not isinstance(value, dict):
            defaults["plugins"] = config_selection(path, data)
            continue
        if key == "plugins":
            enable, options = plugin_tables(path, "", value, plugins_only, plugin_names,
                                            outer=top_level_keys(parser))
            if enable is not None:
                defaults["plugins"] = ",".join(enable)
            defaults.update(options)
            continue
        dest = key.replace("-", "_")
        if key in POLICY_KEYS:
            continue
        if dest == "plugins_dir":
            defaults["plugins_dir"] = config_plugins_dirs(path, data)
            continue
        if dest in ("docroot", "directory"):  # two names, as on the command line
            if not isinstance(value, str):
                raise UsageError(f"{At(path, key)}: {key} must be a string")
            defaults["docroot"] = os.path.join(os.path.dirname(os.path.abspath(path)), value)
            continue
        if dest in FILE_PATH_KEYS:
            value = _relative_to(path, value)
        action = actions.get(dest)
        if action is None or dest not in kernel_keys:
            close = difflib.get_close_matches(dest, kernel_keys, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UsageError(f"{At(path, key)}: {key}: unknown setting; {hint}allowed: "
                             f"docroot, {', '.join(kernel_keys)}, "
                             f"{', '.join(sorted(POLICY_KEYS))}, [plugins.NAME]")
        defaults[dest] = _convert(At(path, key), key, value, action)
    return defaults


def plugin_tables(path, where, value, actions, plugin_names, prefix="", outer=None):
    """A ``[plugins]`` table (top level, or a site's, named by ``where``)
    as ``(enable, {dest: value})`` (``prefix``: "site." in a site, for
    messages): the plugin names it enables (a list, or
    None when it names none) and the options of its ``[plugins.NAME]``
    tables, checked like their flags.  A site may give the list alone
    (``plugins = ["cgi"]``).  ``path`` is the file, or for a site where
    its ``plugins`` key is (an ``At``): messages start with it.
    ``outer``: the keys of the level the table is in, for the fix when
    one of them is written inside it (``misplaced``)."""
    if isinstance(value, (str, list)) and where:
        return _enable_names(path, where, value, plugin_names), {}
    if not isinstance(value, dict):
        raise UsageError(f"{path}: {where}{prefix}plugins must be a list or a table")
    enable, options = None, {}

    def at(key, table):
        # The line of a top-level table's key; a site's is named by ``where``.
        return path if where else At(path, key, table)
    for pname, table in value.items():
        if pname == "enable":
            enable = _enable_names(path, where, table, plugin_names)
            continue
        if pname not in plugin_names:
            hint = misplaced(pname, outer)
            if hint and not isinstance(table, dict):
                raise UsageError(f"{at(pname, 'plugins')}: {where}[{prefix}plugins] {pname}: "
                                 f"not a plugin's table{hint}")
            raise UsageError(f"{at(None, f'plugins.{pname}')}: {where}[{prefix}plugins.{pname}]: "
                             f"no such plugin; "
                             f"installed: {', '.join(sorted(plugin_names)) or 'none'}")
        if not isinstance(table, dict):
            raise UsageError(f"{path}: {where}{prefix}plugins.{pname} must be a table")
        for pkey, pvalue in table.items():
            dest = f"{pname}_{pkey.replace('-', '_')}"
            action = actions.get(dest)
            if action is None:
                allowed = sorted(d[len(pname) + 1:] for d in actions
                                 if d.startswith(pname + "_"))
                raise UsageError(
                    f"{at(pkey, f'plugins.{pname}')}: {where}[{prefix}plugins.{pname}] {pkey}: "
                    f"unknown setting; allowed: {', '.join(allowed) or 'none'}"
                    f"{misplaced(pkey, outer)}")
            options[dest] = _convert(at(pkey, f"plugins.{pname}"),
                                     f"{where}[{prefix}plugins.{pname}] {pkey}", pvalue, action)
    return enable, options


def _enable_names(path, where, value, plugin_names):
    """The names an ``enable`` list gives; at the top level an unknown one
    is reported later, with the command line's, by the plugin manager."""
    names = [n.strip() for n in _enable_list(path, value).split(",") if n.strip()]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in plugin_names]
    if where and unknown:
        raise UsageError(f"{path}: {where}plugins: unknown plugin {unknown[0]!r}; installed: "
                         f"{', '.join(sorted(plugin_names)) or 'none'}")
    return names


def _relative_to(path, value):
    """A file name (or a list of them) in the config file at ``path``,
    relative to that file's folder; ``-`` and ``off`` stay as they are."""
    if isinstance(value, list):
        return [_relative_to(path, v) for v in value]
    if isinstance(value, str) and value not in ("-", "off"):
        return os.path.join(os.path.dirname(os.path.abspath(path)), value)
    return value


def _enable_list(path, value):
    """``[plugins] enable = ["cgi", "autoindex"]`` (or "cgi,autoindex")."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    raise UsageError(f"{path}: [plugins] enable must be a list of plugin names")


def config_plugins_dirs(path, data):
    """The file's ``plugins_dir`` (a string or a list), relative to the file."""
    value = data.get("plugins_dir", data.get("plugins-dir", []))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{path}: plugins_dir must be a folder or a list of folders")
    base = os.path.dirname(os.path.abspath(path))
    return [os.path.join(base, v) for v in value]


def config_selection(path, data):
    """The plugins a config file enables, as a ``--plugins`` string, or None:
    ``plugins = "cgi,autoindex"``, a list (as a site writes it), or the
    ``enable`` of a ``[plugins]`` table."""
    value = data.get("plugins")
    if value is None:
        return None
    if isinstance(value, dict):
        return _enable_list(path, value["enable"]) if "enable" in value else None
    if isinstance(value, str) or (isinstance(value, list)
                                  and all(isinstance(v, str) for v in value)):
        return _enable_list(path, value)
    raise UsageError(f"{At(path, 'plugins')}: plugins = {value!r}: expected plugin names "
                     f"(\"cgi,autoindex\" or [\"cgi\", \"autoindex\"]) or a [plugins] table")

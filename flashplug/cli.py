"""The command line: ``flashplug serve``, ``check`` and ``plugins``.

Every mistake a user can make here ends as one line on stderr and exit
status 2, never a traceback.

Size: over ~400 lines because it holds every kernel option with its
help text and type check, in the order ``--help`` shows them; the config
file's reading is ``flashplug.config``, the sites' ``flashplug.sites``.
"""
import argparse
import difflib
import json
import os
import signal
import sys

from flashplug import __version__, plugins as plugin_mod
from flashplug.arches import ARCHITECTURES
from flashplug.config import (KERNEL_READ, At, Config, actions_by_dest, config_plugins_dirs,
                              config_selection, plugin_actions, plugin_tables, read_toml,
                              toml_defaults, top_level_keys)
from flashplug.errors import StartupError, UsageError
from flashplug.http.forwarded import HEADERS, parse_networks
from flashplug.log import LOG_FORMATS
from flashplug.policy import apply_policies
from flashplug.sites import SITE_LEVEL, SiteConfig, read_sites

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _port(text):
    try:
        value = int(text)
    except ValueError:
        if text.upper().startswith("HTTP/"):  # http.server's -p is --protocol
            raise argparse.ArgumentTypeError(
                f"not a port number: {text!r}; -p is --port here, and flashplug "
                f"always speaks HTTP/1.1: leave it out") from None
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0-65535")
    return value


def _address(text):
    """--bind: an address or host name.  An IPv6 address in brackets, as
    URLs and nginx's ``listen [::1]:80`` write it, is taken without them;
    an address with a port (``127.0.0.1:8080``, nginx's ``listen``) is
    refused with the fix, since getaddrinfo would only call it unknown."""
    if text.startswith("[") and text.endswith("]"):
        return text[1:-1]
    host, colon, port = text.rpartition(":")
    if colon and port.isdigit() and (host.startswith("[") or ":" not in host):
        raise argparse.ArgumentTypeError(
            f"{text!r} has a port: give the address alone and the port with --port {port}")
    return text


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# The longest timeout a flag takes: "inf" or 1e300 would overflow a
# socket's timeout (--arch mt/mp reset every connection) and disable the
# limit the flag is for without saying so.
MAX_SECONDS = 365 * 86400


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    if not value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SECONDS} seconds (a year), "
                                         f"got {text}")
    return value


def _delay(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be 0 to 3600 seconds, got {text}")
    return value


def _health_path(text):
    if not text.startswith("/") or any(c in text for c in "?#%") or "//" in text \
            or any(seg in (".", "..") for seg in text.split("/")) \
            or not text.isascii() or not text.isprintable() or " " in text:
        raise argparse.ArgumentTypeError(
            f"expected a plain URL path such as /healthz, got {text!r}")
    return text


def _index(text):
    """Comma-separated file names; nginx's space-separated list and a path
    are refused with the fix rather than never matching."""
    names = [n.strip() for n in text.split(",")]
    for name in names:
        if " " in name:
            fix = ",".join(n for part in names for n in part.split())
            raise argparse.ArgumentTypeError(f"separate the names with commas: --index {fix}")
        if "/" in name or name in (".", "..") or "\0" in name:
            raise argparse.ArgumentTypeError(
                f"{name!r} is no file name; --index names files in the requested "
                f"folder, such as index.html")
    return text


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def size(text):
    """``"64m"`` -> 67108864; plain numbers are bytes."""
    t = str(text).strip().lower().removesuffix("b").removesuffix("i")
    unit = t[-1:] if t[-1:] in _SIZE_UNITS and t[-1:] else ""
    try:
        value = int(float(t[:len(t) - len(unit)]) * _SIZE_UNITS[unit])
    except (ValueError, OverflowError):     # OverflowError: "1e400" is infinite
        raise argparse.ArgumentTypeError(
            f"not a size: {text!r} (use bytes or a k/m/g suffix, e.g. 64m)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"size must not be negative: {text!r}")
    return value


def _hsts(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {value}")
    return value


# Workers per CPU past which --workers is refused.  Each worker is a whole
# process with its own caches (tens of MB); past one per CPU they only take
# turns on the same cores, and a slip such as 100000 forked until the host
# ran out of memory.
WORKERS_PER_CPU_MAX = 16


def _workers(text):
    if text == "auto":
        return os.cpu_count() or 1
    try:
        value = _positive_int(text)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e}; give a number of processes, or auto "
                                         f"for one per CPU") from None
    cpus = os.cpu_count() or 1
    if value > WORKERS_PER_CPU_MAX * cpus:
        raise argparse.ArgumentTypeError(
            f"{value} worker processes on {cpus} CPU(s) is more than "
            f"{WORKERS_PER_CPU_MAX * cpus} ({WORKERS_PER_CPU_MAX} per CPU); one per CPU "
            f"(auto) is usually best")
    return value


#: Flags of ``python -m http.server`` that flashplug has no use for, with
#: what to do instead (a close match such as --proxy-protocol for
#: --protocol would mislead someone moving over).
HTTP_SERVER_FLAGS = {
    "--protocol": "flashplug always speaks HTTP/1.1 with keep-alive (and HTTP/2 over "
                  "HTTPS): leave it out",
    "--tls-password-file": "flashplug asks for no pass phrase: decrypt the key "
                           "(`openssl pkey -in KEY -out KEY.plain`) and give that to "
                           "--tls-key",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line, exit status 2.

    Abbreviated options are refused: a plugin's options join the parser at
    run time, so an abbreviation that works today could mean another option
    tomorrow (``--plugin`` for ``--plugins`` or ``--plugins-dir``).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        raise UsageError(message)

    def parse_args(self, args=None, namespace=None):
        ns, extra = self.parse_known_intermixed_args(args, namespace)
        unknown = [a for a in extra if a.startswith("-")]
        if unknown:
            name = unknown[0].partition("=")[0]
            if name in HTTP_SERVER_FLAGS:
                raise UsageError(f"{name} is python -m http.server's; {HTTP_SERVER_FLAGS[name]}")
            known = [o for a in self._actions for o in a.option_strings]
            # An abbreviation http.server's argparse took (--dir): its one
            # completion, rather than the nearest spelling (--cgi-dir).
            close = [o for o in known if o.startswith(name) and name.startswith("--")]
            if len(close) != 1:
                close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; see `{self.prog} --help`"
            raise UsageError(f"unknown option {name}{hint}")
        if extra:
            raise UsageError(f"unexpected argument{'s' if len(extra) > 1 else ''}: "
                             f"{' '.join(extra)}")
        return ns


def _add_serve_options(p):
    # Several words are accepted so that `--plugins cgi autoindex` can be
    # answered with the fix instead of serving a folder named autoindex.
    p.add_argument("docroot", nargs="*", default=[],
                   help="directory to serve (default: the current directory)")
    p.add_argument("-d", "--directory", default=None, metavar="DIR",
                   help="the same as DOCROOT (as in python -m http.server)")
    net = p.add_argument_group("network")
    net.add_argument("-b", "--bind", type=_address, default="127.0.0.1", metavar="ADDR",
                     help="address to listen on (default: 127.0.0.1)")
    net.add_argument("-p", "--port", type=_port, default=8000, help="port (default: 8000)")
    net.add_argument("--workers", type=_workers, default=1, metavar="N|auto",
                     help="worker processes sharing the port (default: 1)")
    net.add_argument("--master", action="store_true",
                     help="run the workers under a master process even with --workers 1, "
                          "so that SIGHUP reloads the configuration (implied by "
                          "--workers 2 or more)")
    net.add_argument("--h2c", action="store_true",
                     help="also speak HTTP/2 in cleartext to clients that start with its "
                          "preface (prior knowledge; default: off; docs/http2.md)")
    net.add_argument("--arch", choices=tuple(ARCHITECTURES), default="amped",
                     help="concurrency architecture (default: amped)")
    net.add_argument("--procs", type=_positive_int, default=64, metavar="N",
                     help="--arch mt: most connection threads; --arch mp: "
                          "processes (default: 64)")
    tls = p.add_argument_group("HTTPS (docs/https.md)")
    tls.add_argument("--tls-cert", action="append", default=[], metavar="FILE",
                     help="serve HTTPS with this PEM certificate chain (leaf first); "
                          "repeat with --tls-key for more names, chosen by SNI; "
                          "the first is the default")
    tls.add_argument("--tls-key", action="append", default=[], metavar="FILE",
                     help="the PEM private key of the --tls-cert in the same place")
    tls.add_argument("--redirect-http", type=_port, default=None, metavar="PORT",
                     help="with HTTPS: also listen on PORT in plain HTTP and answer "
                          "308 to the https URL (ACME challenges are still served)")
    tls.add_argument("--http2", action=argparse.BooleanOptionalAction, default=True,
                     help="with HTTPS: offer HTTP/2 by ALPN (default: on; docs/http2.md)")
    tls.add_argument("--hsts", type=_hsts, default=None, metavar="SECONDS",
                     help="with HTTPS: send Strict-Transport-Security with this "
                          "max-age (default: off)")
    lb = p.add_argument_group("behind a load balancer (docs/deployment.md)")
    lb.add_argument("--proxy-protocol", action="store_true",
                    help="every connection starts with a PROXY protocol v1 or v2 header "
                         "(HAProxy's send-proxy-v2) naming the client; one without is closed")
    lb.add_argument("--trusted-proxies", action="append", type=parse_networks, default=[],
                    metavar="CIDR,...",
                    help="believe --real-ip-header from these peers only (default: nobody)")
    lb.add_argument("--real-ip-header", choices=HEADERS, default="x-forwarded-for",
                    help="the header the trusted proxies set (default: x-forwarded-for)")
    lb.add_argument("--health-path", type=_health_path, default=None, metavar="PATH",
                    help="answer 200 ok on PATH, 503 once a graceful stop begins "
                         "(default: off)")
    lb.add_argument("--shutdown-delay", type=_delay, default=0.0, metavar="S",
                    help="on SIGTERM, keep serving this long with the health check "
                         "failing before the --grace drain (default: 0)")
    logs = p.add_argument_group("logging")
    logs.add_argument("--access-log", default="-", metavar="PATH|-|off",
                      help="Combined Log Format access log: a file, - for stdout, "
                           "or off (default: -)")
    logs.add_argument("--log-format", choices=LOG_FORMATS, default="combined",
                      help="access log lines: combined, or vhost_combined (the site's "
                           "name and the port first, as Apache's; default: combined)")
    logs.add_argument("--error-log", default="-", metavar="PATH|-",
                      help="error log: a file, or - for stderr (default: -)")
    logs.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                      help="error log level (default: info)")
    users = p.add_argument_group("privileges")
    users.add_argument("--user", default=None, metavar="NAME|UID",
                       help="started as root: after binding the port, run as this "
                            "user (default: stay as started)")
    users.add_argument("--group", default=None, metavar="NAME|GID",
                       help="with --user: run in this group (default: the user's own)")
    files = p.add_argument_group("files")
    files.add_argument("--follow-symlinks", action="store_true",
                       help="serve symlinks that point outside the document root")
    files.add_argument("--show-dotfiles", action="store_true",
                       help="serve files and folders whose names start with '.'")
    # index.htm too: python -m http.server, which flashplug replaces, tries both.
    files.add_argument("--index", default="index.html,index.htm", metavar="NAMES", type=_index,
                       help="comma-separated index file names, tried in order "
                            "(default: index.html,index.htm)")
    coding = p.add_argument_group("compression (docs/compression.md)")
    coding.add_argument("--compress", action="store_true",
                        help="compress text, JSON, JS, SVG... static files of 1 KiB or more "
                             "with br, zstd or gzip, as the client accepts (default: off)")
    coding.add_argument("--precompressed", action=argparse.BooleanOptionalAction, default=True,
                        help="serve FILE.br, FILE.zst, FILE.gz beside FILE to clients that "
                             "accept them (default: on)")
    coding.add_argument("--compress-cache-size", type=size, default="32m", metavar="BYTES",
                        help="memory for compressed copies of files; a bigger file is not "
                             "compressed (default: 32m)")
    cache = p.add_argument_group("caches and helpers")
    cache.add_argument("--cache-size", type=size, default="64m", metavar="BYTES",
                       help="memory for small files' contents (default: 64m; 0 disables)")
    cache.add_argument("--cache-file-max", type=size, default="32k", metavar="BYTES",
                       help="largest file kept in memory (default: 32k)")
    cache.add_argument("--cache-entries", type=_positive_int, default=10000, metavar="N",
                       help="most paths remembered (default: 10000)")
    cache.add_argument("--cache-valid", type=_seconds, default=1.0, metavar="S",
                       help="seconds before a cached file is checked again (default: 1)")
    cache.add_argument("--helpers", type=_positive_int, default=None, metavar="N",
                       help="helper threads for disk work (default: 32)")
    limits = p.add_argument_group("limits and timeouts")
    limits.add_argument("--max-body-size", type=size, default="64m", metavar="BYTES",
                        help="largest request body (default: 64m)")
    limits.add_argument("--header-timeout", type=_seconds, default=10.0, metavar="S",
                        help="time to send the request head (default: 10)")
    limits.add_argument("--keepalive-timeout", type=_seconds, default=5.0, metavar="S",
                        help="idle time before a keep-alive connection closes (default: 5)")
    limits.add_argument("--send-timeout", type=_seconds, default=60.0, metavar="S",
                        help="time a client may stall reading a response (default: 60)")
    limits.add_argument("--min-rate", type=size, default="500", metavar="BYTES",
                        help="after --min-rate-grace, the slowest average a client may "
                             "read a response or send a body at, in bytes/s "
                             "(default: 500; 0 turns it off)")
    limits.add_argument("--min-rate-grace", type=_seconds, default=10.0, metavar="S",
                        help="seconds a transfer may run before --min-rate applies (default: 10)")
    limits.add_argument("--grace", type=_seconds, default=10.0, metavar="S",
                        help="on SIGTERM, time to finish in-flight responses (default: 10)")
    plug = p.add_argument_group("plugins")
    plug.add_argument("--plugins", default=None, metavar="A,B",
                      help=f"plugins to enable, or 'none' (default: "
                           f"{plugin_mod.DEFAULT_SELECTION}); see `flashplug plugins`")
    plug.add_argument("--plugins-dir", action="append", default=[], metavar="DIR",
                      help="load single-file plugins from DIR (may repeat)")
    plug.add_argument("--cgi", action="store_true",
                      help="enable the cgi plugin (as python -m http.server --cgi); "
                           "the same as adding cgi to --plugins")
    plug.add_argument("--config", metavar="FILE", help="TOML config file")


def _pre_parse(argv):
    """Read just the options that decide which plugins to load."""
    pre = _Parser(add_help=False)
    pre.add_argument("--plugins", default=None)
    pre.add_argument("--plugins-dir", action="append", default=[])
    pre.add_argument("--config", default=None)
    pre.add_argument("--cgi", action="store_true")
    try:
        known, _ = pre.parse_known_args(argv)
    except UsageError:
        # A value is missing (`--plugins` last): the full parse says which.
        return argparse.Namespace(plugins=None, plugins_dir=[], config=None, cgi=False)
    return known


def _check_file_selection(path, selection, installed):
    """An unknown name in the config file's ``enable``/``plugins`` list is
    reported at its FILE:LINE, as the file's other mistakes are (the
    command line's ``--plugins`` is checked later, by check_selection)."""
    unknown = [n for n in plugin_mod.parse_selection(selection) if n not in installed]
    if not unknown:
        return
    where, key = "plugins", "plugins"
    for at, name in ((At(path, "enable", "plugins"), "[plugins] enable"),
                     (At(path, "plugins"), "plugins")):
        if at.line() is not None:
            where, key = str(at), name
            break
    else:
        where = path
    raise UsageError(f"{where}: {key}: unknown plugin {', '.join(map(repr, unknown))}; "
                     f"installed plugins: {', '.join(sorted(installed)) or 'none'}")


def build_serve(argv):
    """Parse ``serve`` arguments into a Config with its plugin manager."""
    pre = _pre_parse(argv)
    file_data = read_toml(pre.config) if pre.config else {}
    plugins_dirs = list(pre.plugins_dir)
    selection = pre.plugins
    if pre.config:
        plugins_dirs += config_plugins_dirs(pre.config, file_data)
        if selection is None:
            selection = config_selection(pre.config, file_data)
    installed = plugin_mod.discover(plugins_dirs)
    if pre.config and pre.plugins is None:
        _check_file_selection(pre.config, selection, installed)
    wanted = set(plugin_mod.parse_selection(selection)) | ({"cgi"} if pre.cgi else set())

    pm = plugin_mod.new_manager()
    parser = _Parser(prog="flashplug serve",
                     description="Serve DOCROOT over HTTP/1.1.")
    _add_serve_options(parser)
    parser.kernel_dests = frozenset(actions_by_dest(parser))   # before any plugin's
    for name, info in list(installed.items()):
        try:
            plugin_mod.register(pm, info)
        except UsageError as e:
            if name in wanted:
                raise
            # A broken plugin nobody asked for must not stop the server.
            print(f"flashplug: warning: {e} (not enabled, skipped)", file=sys.stderr)
            del installed[name]
    pm.hook.flashplug_addoption.call_historic(kwargs={"parser": parser})
    file_docroot = None
    sites = []
    if pre.config:
        defaults = toml_defaults(pre.config, file_data, parser, set(installed))
        file_docroot = defaults.pop("docroot", None)
        parser.set_defaults(**defaults)
        actions = plugin_actions(parser)
        sites = read_sites(pre.config, file_data, lambda at, where, value: plugin_tables(
            at, where, value, actions, set(installed), prefix="site.",
            outer=SITE_LEVEL),
            top_level_keys(parser))
    ns = parser.parse_args(argv)
    given = _docroot_argument(ns, set(installed))
    ns.docroot = given or file_docroot or "."
    if "\0" in ns.docroot:   # only a config file can give one; no path has it
        raise UsageError(f"document root {ns.docroot!r} contains a NUL byte")
    config = Config(ns, pre.config)
    config.argv = list(argv)   # a reload (SIGHUP) loads the same command line again
    config.flag_dests = {flag: action.dest for action in parser._actions
                         for flag in action.option_strings}

    selected = plugin_mod.parse_selection(ns.plugins, ns.arch)
    if ns.cgi and "cgi" not in selected:
        selected.append("cgi")
    plugin_mod.check_selection(selected, installed)
    selected += [name for name in _enabled_by_option(parser, ns, installed)
                 if name not in selected]
    # A plugin stays registered when the top level or some site enables it.
    in_sites = {name for site in sites for name in site.plugins or ()}
    for flag, name in _idle_plugin_options(parser, argv, installed, set(selected) | in_sites):
        print(f"flashplug: warning: {flag} is an option of the {name} plugin, which is "
              f"off, so it does nothing; enable it: --plugins "
              f"{','.join(selected + [name])}", file=sys.stderr)
    for name in list(installed):
        if name not in selected and name not in in_sites:
            pm.unregister(name=name)
    plugin_mod.check_hooks(pm)
    config.plugins = selected
    config.plugin_manager = pm
    _check_docroot(config.docroot, ns.docroot)
    for site in sites:
        site.config = SiteConfig(config, site)
    config.sites = sites
    apply_policies(config, file_data)
    return config


def _enabled_by_option(parser, ns, installed):
    """Plugins whose own ``--NAME`` option has a value (``--fastcgi X``, or
    its setting in the config file): giving it is asking for the plugin."""
    for action in parser._actions:
        for flag in action.option_strings:
            if flag[2:] in installed and getattr(ns, action.dest, None) not in (None, False):
                yield flag[2:]


def _idle_plugin_options(parser, argv, installed, enabled):
    """``(flag, plugin)`` for each option on the command line that belongs
    to an installed plugin that is not enabled (``--cgi-dir`` without
    ``--plugins cgi``): such an option would otherwise do nothing, silently.
    Not the options the kernel reads itself (``KERNEL_READ``), which have
    their own start-up warnings (``static.script_dir_warnings``).
    A plugin's options are named ``--NAME-...`` (the kernel's convention)."""
    actions = parser._option_string_actions
    for word in argv:
        flag = word.partition("=")[0]
        action = actions.get(flag)
        if action is None or action.dest in parser.kernel_dests or action.dest in KERNEL_READ:
            continue
        bare = flag[2:].removeprefix("no-")
        for name in installed:
            if name not in enabled and (bare == name or bare.startswith(name + "-")):
                yield flag, name


def _docroot_argument(ns, plugin_names):
    """The document root given on the command line (DOCROOT or -d), or None.

    Catches the usual slips: two roots, a plugin name left over from
    ``--plugins cgi autoindex``, http.server's ``serve 8080``.
    """
    words = ns.docroot
    for given in [*words, ns.directory]:
        # http.server's port is positional: `-d site 8080` is its muscle memory.
        if given is not None and given.isdigit() and not os.path.exists(given):
            raise UsageError(f"document root {given!r} does not exist; "
                             f"did you mean --port {given}?")
    if ns.directory is not None and words:
        raise UsageError(f"the document root is given twice ({words[0]!r} and "
                         f"--directory {ns.directory!r}); give one of them")
    stray = [w for w in words if w in plugin_names and not os.path.isdir(w)]
    if stray:
        enabled = ",".join(dict.fromkeys(plugin_mod.parse_selection(ns.plugins) + stray))
        raise UsageError(f"{stray[0]!r} looks like a plugin name, not a document root; "
                         f"separate plugins with commas: --plugins {enabled}")
    if len(words) > 1:
        raise UsageError(f"one document root expected, got {len(words)}: "
                         f"{' '.join(words)}")
    return ns.directory if ns.directory is not None else (words[0] if words else None)


def _check_docroot(path, given):
    if not os.path.exists(path):
        raise UsageError(f"document root {given!r} does not exist; "
                         f"give an existing directory, e.g. `flashplug serve .`")
    if not os.path.isdir(path):
        raise UsageError(f"document root {given!r} is not a directory")


def cmd_plugins(argv):
    parser = _Parser(prog="flashplug plugins",
                     description="List installed plugins and the hooks they implement.")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--plugins", default=None, metavar="A,B",
                        help="show which would be enabled by this --plugins value")
    parser.add_argument("--plugins-dir", action="append", default=[], metavar="DIR")
    ns = parser.parse_args(argv)
    installed = plugin_mod.discover(ns.plugins_dir)
    selected = plugin_mod.parse_selection(ns.plugins)
    plugin_mod.check_selection(selected, installed)
    pm = plugin_mod.new_manager()
    rows = []
    for info in sorted(installed.values(), key=lambda i: i.name):
        row = {"name": info.name, "version": info.version, "source": info.source,
               "location": info.location, "hooks": [], "enabled": info.name in selected}
        # This is the command people run when a plugin misbehaves: a plugin
        # that fails to import is listed as broken, with why, not fatal.
        try:
            plugin_mod.load(info)
        except UsageError as e:
            cause = e.__cause__ or e
            row["broken"] = " ".join(f"{type(cause).__name__}: {cause}".split())
        else:
            row["hooks"] = info.hooks(pm)
        rows.append(row)
    if ns.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no plugins installed")
        return 0
    for row in rows:
        mark = "enabled" if row["enabled"] else "disabled"
        if "broken" in row:
            mark = f"broken: {row['broken']}"
        print(f"{row['name']} {row['version']} ({row['source']}: {row['location']}) [{mark}]")
        for hook in row["hooks"]:
            print(f"    {hook}")
    return 0


def cmd_check(argv):
    """``flashplug check [--config FILE] [serve's options]``: load the
    configuration as ``serve`` would and print one line: OK, or the error."""
    if argv and argv[0] in ("-h", "--help"):
        print("usage: flashplug check [--config FILE] [the options of flashplug serve]\n\n"
              "Load and check the configuration as `flashplug serve` would (the config "
              "file, the plugins' settings, TLS files), without binding the port; print "
              "one line; exit 0 when it is good, 2 (or 1) with FILE:LINE: KEY: the "
              "problem otherwise.")
        return 0
    config = build_serve(argv)
    from flashplug.server import check
    print(check(config))
    return 0


def _open_standard_streams():
    """Put /dev/null on descriptors 0-2 where they are closed (a daemon
    started with ``>&-``), as nginx and other daemons do: else the first
    socket or log file opened lands on one, and what is printed to
    standard output goes into it; and Python leaves ``sys.stdout`` None,
    which the access log's ``-`` and the exit's flush would trip over."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)   # the lowest free number: fd itself
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)
    if sys.stderr is None:
        sys.stderr = open(2, "w", buffering=1, closefd=False)


def _ignore_early_signals():
    """SIGHUP and SIGUSR1 while the configuration is still being read
    (plugins imported, files loaded: a second or more on a busy host) are
    let go, not the default action, which ends the process: a logrotate
    or a reload that lands during a start must not stop the server.  There
    is nothing to reload or reopen yet; ``server.run`` puts the real
    handlers in place before it opens anything.  (A Python handler, not
    SIG_IGN, so the processes a worker starts later do not inherit it.)"""
    for sig in (signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, _early_signal)


def _early_signal(signum, frame):
    pass


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    _open_standard_streams()
    top = _Parser(prog="flashplug",
                  description="A plugin-extensible AMPED web server.",
                  epilog="Commands: serve [DOCROOT] ...; check [--config FILE]; "
                         "plugins [--json]. "
                         "Run `flashplug serve --help` for the serve options.")
    top.add_argument("--version", action="version", version=f"flashplug {__version__}")
    top.add_argument("command", choices=("serve", "check", "plugins"))
    try:
        if not argv or argv[0] in ("-h", "--help", "--version"):
            top.parse_args(argv or ["--help"])
            return 0
        command, rest = argv[0], argv[1:]
        if command == "plugins":
            return cmd_plugins(rest)
        if command == "check":
            return cmd_check(rest)
        if command != "serve":
            raise UsageError(f"unknown command {command!r}; use `flashplug serve`, "
                             f"`flashplug check` or `flashplug plugins`")
        _ignore_early_signals()
        config = build_serve(rest)
        from flashplug.server import run
        return run(config)
    except UsageError as e:
        print(f"flashplug: error: {e}", file=sys.stderr)
        return 2
    except StartupError as e:
        print(f"flashplug: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # Our reader left (`flashplug plugins | head -1`): nothing to say to
        # it.  Point stdout at /dev/null so the exit's own flush cannot fail
        # again (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1

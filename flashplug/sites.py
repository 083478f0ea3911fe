"""Virtual hosts: ``[[site]]`` tables, each site's Config view, and the
choice of a site by the request's host.

Theory of operation: ``read_sites`` turns the config file's ``[[site]]``
tables into ``Site`` objects at start (every mistake is a one-line
UsageError naming the file and line, the site and the key).  Each Site
keeps its raw table (``Site.table``), so per-site settings of other
features read it from one place, and gets a ``SiteConfig``: the
server-wide Config with the site's root and its ``[site.plugins.NAME]``
options laid over it, and its policy (error pages, header and redirect
rules, ``compress``: ``flashplug.policy``, the top level's unless the
site sets a key itself).  That
view is what a plugin's ``flashplug_routes(config)`` is called with for
the site, and what ``request.server.config`` is on its requests.

``SiteTable`` answers "which site?" from the request's host
(``flashplug.http.h1_checks.host_name``: the absolute-form authority over
Host, lowercased, port dropped): exact names first, then a ``*.suffix``
wildcard (one label: ``*.example.org`` is ``www.example.org``, not
``example.org`` nor ``a.b.example.org``), then the default site.  The default is the site
marked ``default = true``, else the top-level settings (``docroot``, the
top-level plugins), as lighttpd's global document-root and nginx's
``default_server`` answer names no server block claims.  Raw Host values
seen on the cached path are remembered (bounded), so choosing costs one
dict lookup there.  Without ``[[site]]`` tables there is no SiteTable at
all, and nothing is chosen.
"""
import ipaddress
import os
import re

from flashplug.config import At, Config, misplaced
from flashplug.errors import UsageError
from flashplug.http.h1_checks import host_name
from flashplug.memo import Memo
from flashplug.plugins import owner_of

#: The keys a ``[[site]]`` table may hold.  A feature that is set per site
#: adds its key here and reads it from ``Site.table``.
SITE_KEYS = {
    "names": "the host names it answers: exact names and *.example.org wildcards",
    "root": "its document root (relative to the config file)",
    "default": "true: it answers names no site claims",
    "plugins": "its plugins: a list, or a table with enable and [site.plugins.NAME] options",
    "tls_cert": "its PEM certificate chain, chosen by SNI",
    "tls_key": "the private key of its tls_cert",
    # Its policy (flashplug.policy): the top level's unless it sets them.
    "error_pages": "its pages per error status",
    "security_headers": "its security-header preset",
    "header": "its [[site.header]] rules",
    "redirect": "its [[site.redirect]] rules",
    "spa_fallback": "its single-page app's page",
    "www_to_apex": "true: www.NAME redirects to NAME",
    "compress": "true or false: on-the-fly compression there",
}
#: A site's keys, as ``config.misplaced``'s ``outer`` for a site's
#: ``[site.plugins]`` tables: names, what they are, where they go.
SITE_LEVEL = (frozenset(SITE_KEYS), "a [[site]] setting", "above the site's [site.plugins] headers")
# Raw Host values remembered by SiteTable.for_value; a bound, so clients
# inventing names cannot grow it.
HOST_MEMORY = 1024
_LABELS = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\Z")


class Site:
    """One ``[[site]]`` table, checked."""

    def __init__(self, names, root, default, plugins, options, tls, table, number):
        self.number = number        # its place among the file's [[site]] tables, from 1
        self.names = names          # tuple of lowercase names and "*.suffix" wildcards
        self.name = names[0]        # what the access log shows
        self.root = root            # absolute document root
        self.default = default      # answers names no site claims
        self.plugins = plugins      # enabled plugin names, or None: the top level's
        self.options = options      # {dest: value} over the server-wide settings
        self.tls = tls              # (cert, key) or None
        self.table = table          # the raw table, for per-site settings
        self.config = None          # its SiteConfig, once the Config exists

    def __repr__(self):
        return f"<Site {self.name}>"


class SiteConfig(Config):
    """The Config as one site sees it: the site's root and plugin options
    over the server-wide settings.  ``site`` is the site's name (None on
    the top-level Config)."""

    def __init__(self, base, site):
        ns = type(base._ns)(**vars(base._ns))
        ns.__dict__.update(site.options)
        ns.docroot = site.root
        super().__init__(ns, base.config_file)
        self.site = site.name
        self.plugins = list(base.plugins if site.plugins is None else site.plugins)
        self.plugin_manager = base.plugin_manager


def _label(number, table):
    names = table.get("names")
    names = [names] if isinstance(names, str) else names
    return names[0] if isinstance(names, list) and names and isinstance(names[0], str) \
        else f"#{number}"


def check_name(name):
    """A site name, lowercased: an exact host name or address, or
    ``*.suffix``; ValueError saying what is wrong."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{name!r}: expected a host name such as example.org")
    lowered = name.lower()
    if lowered.startswith("*."):
        suffix = lowered[2:]
        if "*" in suffix or not _LABELS.match(suffix):
            raise ValueError(f"{name!r}: a wildcard is '*.' and a domain, such as "
                             f"*.example.org")
        return lowered
    if "*" in lowered:
        raise ValueError(f"{name!r}: '*' may only stand as the first label (*.example.org)")
    lowered = lowered.rstrip(".")
    if lowered.startswith("[") and host_name(lowered) == lowered or _LABELS.match(lowered):
        return lowered
    if _is_ipv6(lowered):
        # As in a URL and a Host header (RFC 3986 §3.2.2).
        raise ValueError(f"{name!r}: write an IPv6 address in brackets, [{lowered}]")
    raise ValueError(f"{name!r}: expected a host name or address without a port, such "
                     f"as example.org")


def _is_ipv6(text):
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _relative(path, value):
    return os.path.join(os.path.dirname(os.path.abspath(path)), value)


def site_at(path, number, key=None, index=1):
    """``FILE:LINE`` of ``key`` (of its ``index``-th table, for an array of
    tables) in the ``number``-th ``[[site]]`` table, or of the table's
    header when the key is not written there (missing, or spelt with "-")."""
    at = At(path, key, site=number, index=index)
    return at if key is None or at.line() is not None else At(path, site=number)


def read_sites(path, data, plugin_options, top_keys=None):
    """The config file's ``[[site]]`` tables as Site objects.

    ``plugin_options(at, where, value)`` reads a site's ``plugins``
    (config.py's ``plugin_tables``; ``at``: where the key is, for
    messages): it returns ``(enable, {dest: value})``.  ``top_keys``:
    the file's top-level keys (``config.top_level_keys``), for the fix
    when one is written below a ``[[site]]`` header (``misplaced``).
    """
    tables = data.get("site", [])
    if isinstance(tables, dict):
        tables = [tables]
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise UsageError(f"{path}: site: write each site as a [[site]] table")
    sites, owner = [], {}
    for number, table in enumerate(tables, 1):
        # "-" and "_" are one in keys, as at the top level.
        table = {key.replace("-", "_"): value for key, value in table.items()}
        label = _label(number, table)

        def where(key=None, number=number, label=label):
            return f"{site_at(path, number, key)}: [[site]] {label}"
        unknown = sorted(set(table) - set(SITE_KEYS))
        if unknown:
            raise UsageError(f"{where(unknown[0])}: {unknown[0]}: unknown key; allowed: "
                             f"{', '.join(SITE_KEYS)}"
                             f"{misplaced(unknown[0], top_keys)}")
        names = table.get("names")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names:
            raise UsageError(f"{where('names')}: names: missing; give the host names it answers, "
                             f"e.g. names = [\"example.org\", \"*.example.org\"]")
        checked = []
        for name in names:
            try:
                name = check_name(name)
            except ValueError as e:
                raise UsageError(f"{where('names')}: names: {e}") from None
            if name in owner:
                raise UsageError(f"{where('names')}: names: {name!r} is also a name of "
                                 f"[[site]] {owner[name]}; each name belongs to one site")
            owner[name] = names[0]
            checked.append(name)
        root = table.get("root")
        if not isinstance(root, str) or not root:
            raise UsageError(f"{where('root')}: root: missing; give its document root, "
                             f"e.g. root = \"sites/example\"")
        root = os.path.abspath(_relative(path, root))
        if not os.path.isdir(root):
            raise UsageError(f"{where('root')}: root = {table['root']!r}: {root} is not a "
                             f"directory")
        default = table.get("default", False)
        if not isinstance(default, bool):
            raise UsageError(f"{where('default')}: default = {default!r}: expected true or false")
        plugins, options = None, {}
        if "plugins" in table:
            plugins, options = plugin_options(site_at(path, number, "plugins"),
                                              f"[[site]] {label}: ", table["plugins"])
        tls = None
        cert, key = table.get("tls_cert"), table.get("tls_key")
        if cert is not None or key is not None:
            for k, v in (("tls_cert", cert), ("tls_key", key)):
                if not isinstance(v, str) or not v:
                    raise UsageError(f"{where(k)}: {k}: missing or not a file name; a site's "
                                     f"tls_cert needs its tls_key")
            tls = (_relative(path, cert), _relative(path, key))
        sites.append(Site(tuple(checked), root, default, plugins, options, tls, table, number))
    defaults = [s for s in sites if s.default]
    if len(defaults) > 1:
        raise UsageError(f"{site_at(path, defaults[1].number, 'default')}: [[site]] "
                         f"{defaults[1].name}: default: only one site may be the default "
                         f"([[site]] {defaults[0].name} is)")
    return sites


class SiteTable:
    """Which site answers a host: exact name, wildcard, default.

    ``sites`` pairs each Site with what the caller serves it with (the
    App's per-site parts); ``default`` is what unknown names get.
    """

    def __init__(self, sites, default):
        self.exact = {}
        self.wildcards = {}     # "example.org" for "*.example.org"
        for site, value in sites:
            for name in site.names:
                if name.startswith("*."):
                    self.wildcards[name[2:]] = value
                else:
                    self.exact[name] = value
        self.default = default
        self.by_value = Memo(HOST_MEMORY)

    def all(self):
        """Each site's value once, the default's included."""
        values = [*self.exact.values(), *self.wildcards.values(), self.default]
        return list({id(v): v for v in values}.values())

    def choose(self, host):
        """The site for ``host`` (``Request.host``: lowercased, no port)."""
        found = self.exact.get(host)
        if found is not None:
            return found
        if self.wildcards:
            # One label, as a wildcard certificate covers (RFC 6125 §6.4.3),
            # so the site that answers is the one whose certificate shows;
            # an empty one (".example.org") is none.
            label, _, parent = host.partition(".")
            found = self.wildcards.get(parent) if label else None
            if found is not None:
                return found
        return self.default

    def for_value(self, value):
        """The site for a raw Host value (bytes, or None when absent): one
        dict lookup for a value seen before."""
        found = self.by_value.data.get(value)
        if found is None:
            found = self.by_value.put(
                value, self.choose((host_name(value) or "") if value is not None else ""))
        return found


def configure_plugins(config):
    """Run ``flashplug_configure`` once for each enabled plugin.

    Without sites, as it always ran: historic, with the Config.  With
    sites, each plugin gets the top-level Config if the top level enables
    it, else the view of the first site that does (its options there are
    the ones it is checked with); each site's own options reach it later
    through ``flashplug_routes(config)`` and ``request.server.config``.
    """
    pm = config.plugin_manager
    hook = pm.hook.flashplug_configure
    if not config.sites:
        hook.call_historic(kwargs={"config": config})
        return
    first = {}
    for site in config.sites:
        for name in site.config.plugins:
            first.setdefault(name, site.config)
    for impl in reversed(hook.get_hookimpls()):    # pluggy's own order: last registered first
        owner = owner_of(pm, impl.plugin_name, impl.plugin)
        view = config if owner in config.plugins else first.get(owner, config)
        impl.function(**({"config": view} if "config" in impl.argnames else {}))

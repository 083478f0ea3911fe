"""A site's policy: its error pages, header and redirect rules and
on-the-fly compression, compiled once at start.

Theory of operation: the policy keys (``KEYS``: ``error_pages``, the rule
keys of ``flashplug.rules``, ``compress``) may stand at the top level of the
config file and inside a ``[[site]]`` table.  A site has the top level's
value of each key it does not set itself; a key it sets replaces the top
level's value whole, nothing is merged (a site's ``[[header]]`` list
replaces the top level's list, its ``error_pages`` table the top level's
table), as a directive such as nginx's ``add_header`` or ``error_page`` in
a ``server`` block replaces the ``http`` block's.  The top level's
``compress`` is the command line's ``--compress`` over the file's.

``apply_policies`` checks each key where it is written (a mistake is one
line, ``FILE:LINE:`` first), then compiles every view's effective table:
the top-level Config gets ``error_pages`` and ``rules``, each site's
``SiteConfig`` the same and its own ``compress``.  Views whose rule keys
say the same thing share one compiled :class:`flashplug.rules.Rules`, so
``cache_tag`` gives them the same tag and they share cache entries.
"""
import json

from flashplug import errorpages, rules
from flashplug.config import At
from flashplug.errors import UsageError
from flashplug.sites import site_at

#: The keys of a site's policy, at the top level or in a ``[[site]]`` table.
KEYS = (errorpages.KEY, *rules.KEYS, "compress")


def _check_key(key, value, source, at):
    """Compile ``key = value`` alone, for its mistakes: ``source`` names the
    table; a mistake is compiled again with ``at(key, number)`` (the
    ``FILE:LINE`` of the key, or of its ``number``-th table), which reads
    the file, so only a failing start pays for it."""
    try:
        if key == errorpages.KEY:
            errorpages.compile_error_pages({key: value}, source)
        elif key == "compress":
            if not isinstance(value, bool):
                raise UsageError(f"{source}: compress = {value!r}: expected true or false "
                                 f"(--compress)")
        else:
            rules.compile_rules({key: value}, source)
    except UsageError as e:
        if key in rules.KEYS:
            rules.compile_rules({key: value}, source, at)
        raise UsageError(str(e).replace(source, at(key, None), 1)) from None


def apply_policies(config, data):
    """Compile the policy of the top-level Config and of each site's view
    (``config.sites``, their SiteConfig made) from the parsed file ``data``.

    :raises UsageError: one line, ``FILE:LINE: [[site]] NAME: key...``.
    """
    path = config.config_file
    top = {key: data[key] for key in KEYS if key in data and key != "compress"}
    for key, value in top.items():
        _check_key(key, value, str(path), lambda k, n: str(At(path, k, index=n or 1)))
    compiled = {}       # a rule table's canonical text -> its Rules

    def compile_view(view, table):
        view.error_pages = errorpages.compile_error_pages(table, path)
        rule_table = {key: table[key] for key in rules.KEYS if key in table}
        canon = json.dumps(rule_table, sort_keys=True, default=str)
        if canon not in compiled:
            compiled[canon] = rules.compile_rules(rule_table, path)
        view.rules = compiled[canon]

    compile_view(config, top)
    for site in config.sites:
        own = {key: site.table[key] for key in KEYS if key in site.table}
        label = f"[[site]] {site.name}"
        for key, value in own.items():
            _check_key(key, value, f"{path}: {label}",
                       lambda k, n, number=site.number, label=label:
                       f"{site_at(path, number, k, n or 1)}: {label}")
        compile_view(site.config, {**top, **own})
        if "compress" in own:
            site.config.override("compress", own["compress"])


def cache_tag(view, tags):
    """The prefix of a view's file-cache keys: views whose cache entries
    would be built alike (the same compiled rules, baked into entries, and
    the same ``compress``, which decides their variants) share a tag, and
    so entries; ``tags`` holds the tags given so far (one dict per worker).
    The first view's tag is "", so a server with one policy keys as before."""
    key = (id(view.rules), bool(view.compress))
    tag = tags.get(key)
    if tag is None:
        # Cache keys are a document root (it starts with "/") and a path:
        # a tag starting with a control character cannot make one of them.
        tag = tags[key] = f"\x01{len(tags)}" if tags else ""
    return tag

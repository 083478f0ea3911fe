"""Header and redirect rules from the config file, compiled once at start.

Theory of operation: ``compile_rules`` turns the rule keys of one TOML table
(the top level of the config file, or a site's effective table:
``flashplug.policy``) into an immutable :class:`Rules`, every value checked at start, or
None when the table has none, so a server without rules runs no rule code
at all.  The parts:

* ``security_headers``: a preset of ``X-Content-Type-Options``,
  ``Referrer-Policy`` and ``X-Frame-Options``, plus an optional
  ``Content-Security-Policy``, added to every response that does not set
  the field itself (errors included: they are pages a browser renders);
* ``[[header]]``: fields set by URL-path glob (``Cache-Control``,
  ``Expires`` as nginx's ``expires``, any other field) on 2xx and 3xx
  responses (like nginx's ``add_header`` without ``always``: a 404 must
  not be cached for a year);
* ``[[redirect]]``: an exact path, or a prefix written ``/old/*``, sent to
  a path or URL with 301/302/307/308, the query kept.  They become routes
  in the mount table (``routes``), ahead of the plugins';
* ``spa_fallback``: the file a GET/HEAD of an unknown, extension-less path
  is answered with (the static handler asks ``spa_path_for``);
* ``www_to_apex``: ``www.example.org`` redirected to ``example.org``
  (``host_redirect``, a router checked before the mount table).

Globs match the decoded, normalised URL path as requested; ``*`` matches
any run of characters, ``/`` included (as in Caddy's path matcher), ``?``
one character other than ``/``, and ``{a,b}`` either word.  A pattern
starts with ``/`` or ``*`` (``*.css`` is every CSS file, ``/assets/*``
everything under ``/assets/``).

The cached static path pays nothing: the field lines a path gets are baked
into its cache entry's prebuilt header when the entry is loaded
(``entry_headers``), and responses built by handlers get them in
``apply``, from a memo per path.

Size: a little over ~400 lines because the compiler's checks (one
line naming the file and key for every mistake) sit beside what they check;
splitting them from the rules they build would scatter each rule over two
files.
"""
import re
import time
from urllib.parse import quote

from flashplug.errors import UsageError
from flashplug.http.dates import format_http_date
from flashplug.http.h1_checks import TOKEN
from flashplug.http.message import Response
from flashplug.memo import Memo
from flashplug.routes import Route

#: The config keys this module reads, in the top-level table or a site's
#: (a site's own value of a key replaces the top level's: flashplug.policy).
KEYS = ("security_headers", "header", "redirect", "spa_fallback", "www_to_apex")

#: The preset (OWASP's secure-headers list; the values Mozilla's
#: Observatory expects): no MIME sniffing, no full Referer to other
#: origins, no framing by another site.  CSP has no safe default for every
#: site, so it is only sent when configured.
SECURITY_PRESET = (("X-Content-Type-Options", "nosniff"),
                   ("Referrer-Policy", "strict-origin-when-cross-origin"),
                   ("X-Frame-Options", "SAMEORIGIN"))
_SECURITY_KEYS = {"content_security_policy": "Content-Security-Policy",
                  "referrer_policy": "Referrer-Policy",
                  "frame_options": "X-Frame-Options"}

REDIRECT_STATUSES = (301, 302, 307, 308)
# Without a status a redirect is temporary (302, as Caddy's redir): a
# browser keeps a 301 or 308 for good, so a typo in a permanent rule
# outlives its fix.
DEFAULT_REDIRECT_STATUS = 302
# Fields the server frames or derives from the file itself: a rule that set
# one would contradict the response it is added to.
FORBIDDEN_FIELDS = frozenset((
    "connection", "content-length", "content-range", "content-type", "date", "etag",
    "keep-alive", "last-modified", "location", "server", "te", "trailer",
    "transfer-encoding", "upgrade", "proxy-connection", "accept-ranges"))
# Visible ASCII, space and tab, and obs-text (RFC 9110 §5.5): no CR, LF, NUL.
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# What www_to_apex leaves after "www.": labels with a dot between
# ("example.org"), not "." or "example..org".
_APEX = re.compile(r"[^.]+(\.[^.]+)+")
_DURATION = re.compile(r"(\d+)\s*([smhd]?)", re.ASCII)
# The longest ``expires``: a cache takes a longer max-age as 2^31 seconds
# (RFC 9111 §1.2.2), and a longer one would carry the Expires date past the
# four-digit years an HTTP-date has (RFC 9110 §5.6.7).
MAX_EXPIRES = 2 ** 31
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Paths whose rule headers are remembered; cleared when full, so clients
# inventing paths cannot grow it without limit.
MEMO_SIZE = 4096


class HeaderRule:
    """One ``[[header]]`` table: a path glob and the fields it sets."""

    __slots__ = ("regex", "fields", "expires")

    def __init__(self, regex, fields, expires):
        self.regex = regex
        self.fields = fields      # ((name, value), ...) set on a match
        self.expires = expires    # seconds for an Expires field, or None


class Rules:
    """The compiled rules of one table (a site).  Immutable once built; the
    per-path memo is a cache of ``_rule_fields``, not state."""

    def __init__(self, security, header_rules, redirects, spa_fallback, www_to_apex):
        self.security = security            # ((name, value), ...), set if absent
        self.header_rules = header_rules    # (HeaderRule, ...), in file order
        self.redirects = redirects          # (RedirectRule, ...)
        self.spa_fallback = spa_fallback    # URL path, or None
        self.www_to_apex = www_to_apex
        self._memo = Memo(MEMO_SIZE)

    # -- headers -----------------------------------------------------------------

    def _rule_fields(self, path):
        """The fields the ``[[header]]`` rules give ``path`` and its Expires
        seconds (or None): every matching rule in file order, a later one
        replacing an earlier one's field of the same name."""
        found = self._memo.data.get(path)
        if found is not None:
            return found
        fields = {}
        expires = None
        for rule in self.header_rules:
            if rule.regex.fullmatch(path):
                for name, value in rule.fields:
                    fields[name.lower()] = (name, value)
                if rule.expires is not None:
                    expires = rule.expires
        return self._memo.put(path, (tuple(fields.values()), expires))

    def entry_headers(self, path):
        """Every field a 200 or 304 for the static file at ``path`` gets, as
        (name, value) pairs, for its cache entry to bake in, and the Expires
        seconds (or None) to refresh its ``Expires`` with."""
        fields, expires = self._rule_fields(path)
        out = list(fields)
        if expires is not None:
            out.append(("Expires", format_http_date(time.time() + expires)))
        named = {name.lower() for name, _ in out}
        out.extend(f for f in self.security if f[0].lower() not in named)
        return out, expires

    def apply(self, path, response):
        """Add the rules' fields to ``response`` (a handler's, or an error
        page) for the URL path ``path`` (None: a request that could not be
        parsed): rule fields replace the response's own on a 2xx or 3xx;
        security fields only fill in what it lacks."""
        headers = response.headers
        if isinstance(headers, dict):   # a plugin may give a dict; check_response allows it
            headers = response.headers = list(headers.items())
        if path is not None and response.status < 400 and self.header_rules:
            fields, expires = self._rule_fields(path)
            if expires is not None:
                fields = fields + (("Expires", format_http_date(time.time() + expires)),)
            if fields:
                # Vary is added to, never replaced: a cache must still see
                # what the response varies on (Accept-Encoding for a
                # negotiated file), as the cached path's prebuilt lines do.
                names = {name.lower() for name, _ in fields} - {"vary"}
                headers[:] = [h for h in headers if h[0].lower() not in names]
                headers.extend(fields)
                response._block = None      # the check's lines are not these
        if self.security:
            present = {name.lower() for name, _ in headers}
            missing = [f for f in self.security if f[0].lower() not in present]
            if missing:
                headers.extend(missing)
                response._block = None

    # -- redirects and fallbacks ------------------------------------------------------

    def routes(self):
        """The redirects as mount-table Routes (exact paths and prefixes)."""
        return [rule.route() for rule in self.redirects]

    def spa_path_for(self, request):
        """The SPA fallback's URL path for a GET/HEAD of an unknown path
        whose last segment has no dot, else None.  A missing ``app.js`` stays
        a 404: an HTML page in its place only breaks the script."""
        if self.spa_fallback is None or request.method not in ("GET", "HEAD"):
            return None
        if "." in request.path.rpartition("/")[2]:
            return None
        return self.spa_fallback


class RedirectRule:
    """One ``[[redirect]]``: ``from`` exact, or a prefix written ``/x/*``."""

    __slots__ = ("source", "target", "status", "prefix")

    def __init__(self, source, target, status):
        self.prefix = source.endswith("/*")
        self.source = source[:-2] if self.prefix else source
        self.target = target
        self.status = status

    def location(self, request):
        """The Location for ``request``: ``to``, its ``*`` replaced by the
        rest of the path after the prefix (percent-encoded again), and the
        request's query appended."""
        target = self.target
        if self.prefix and target.endswith("*"):
            rest = request.path[len(self.source) + 1:]
            target = target[:-1] + quote(rest.encode("utf-8", "surrogateescape"),
                                         safe="/!$&'()*+,;=:@~-._")
        if request.query:
            target += ("&" if "?" in target else "?") + request.query
        return target

    def route(self):
        async def redirect(request):
            location = self.location(request)
            return Response(self.status, [("Location", location),
                                          ("Content-Type", "text/plain; charset=utf-8")],
                            f"Moved to {location}\n".encode("utf-8"))
        if self.prefix:
            return Route(redirect, prefix=self.source or "/", methods=())
        return Route(redirect, path=self.source, methods=())


def host_redirect_location(request):
    """``www_to_apex``: the URL a request for ``www.NAME`` goes to, or None.
    Same scheme, port, path and query; ``NAME`` keeps at least one dot, so
    ``www.localhost``-style names with nothing after them are left alone."""
    # The Host field as sent, port and all (request.host is the bare name);
    # an absolute-form target's authority is already in it.
    host = request.headers.get("host") or ""
    name = request.host     # lowercase, no port, no trailing dot
    if not name.startswith("www.") or not _APEX.fullmatch(name[4:]):
        return None
    # The raw path and query, whichever form the target came in (an
    # absolute-form target's own path, RFC 9112 §3.2.2).
    target = request.raw_path + ("?" + request.query if request.query else "")
    return f"{request.scheme}://{host[4:]}{target}"


# -- compiling -----------------------------------------------------------------------


def compile_rules(table, source, at=None):
    """The :class:`Rules` that ``table``'s rule keys (``KEYS``) describe, or
    None when it has none.  ``source`` names the table in messages;
    ``at(key, number)``, if given, names where a key (the ``number``-th
    table of ``header`` or ``redirect``, else None) is written instead
    (``FILE:LINE``, looked up in the file: for a message of a mistake).

    :raises UsageError: one line naming ``source``, the key and the fix.
    """
    if not any(key in table for key in KEYS):
        return None

    def where(key, number=None):
        return source if at is None else at(key, number)
    security = _security(table.get("security_headers", False), where("security_headers"))
    header_rules = tuple(_header_rule(item, f"{where('header', i)}: [[header]] #{i}")
                         for i, item in enumerate(_array(table, "header", where("header")), 1))
    redirects = tuple(_redirect_rule(item, f"{where('redirect', i)}: [[redirect]] #{i}")
                      for i, item in enumerate(_array(table, "redirect", where("redirect")), 1))
    seen = {}
    for i, rule in enumerate(redirects, 1):
        key = (rule.source, rule.prefix)
        if key in seen:
            raise UsageError(f"{where('redirect', i)}: [[redirect]] #{i}: from = "
                             f"{rule.source!r} is given twice")
        seen[key] = rule
    spa = table.get("spa_fallback")
    if spa is not None and not (isinstance(spa, str) and _is_file_path(spa)):
        raise UsageError(f'{where("spa_fallback")}: spa_fallback = {spa!r}: expected the URL '
                         f'path of a file in the document root, like "/index.html"')
    www = table.get("www_to_apex", False)
    if not isinstance(www, bool):
        raise UsageError(f"{where('www_to_apex')}: www_to_apex = {www!r}: expected true or "
                         f"false")
    if not (security or header_rules or redirects or spa or www):
        return None
    return Rules(security, header_rules, redirects, spa, www)


def _array(table, key, source):
    value = table.get(key, [])
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise UsageError(f"{source}: {key} must be tables: write [[{key}]] sections")
    return value


def _security(value, source):
    if value is False:
        return ()
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise UsageError(f"{source}: security_headers = {value!r}: expected true, false "
                         f"or a table")
    fields = dict((name.lower(), (name, v)) for name, v in SECURITY_PRESET)
    for key, v in value.items():
        field = _SECURITY_KEYS.get(key)
        if field is None:
            raise UsageError(f"{source}: security_headers.{key}: unknown setting; "
                             f"allowed: {', '.join(_SECURITY_KEYS)}")
        _check_value(v, f"{source}: security_headers.{key}")
        fields[field.lower()] = (field, v)
    return tuple(fields.values())


def _header_rule(item, where):
    allowed = ("match", "cache_control", "expires", "set")
    for key in item:
        if key not in allowed:
            raise UsageError(f"{where}: {key}: unknown setting; allowed: {', '.join(allowed)}")
    patterns = item.get("match")
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns or not isinstance(patterns, list) \
            or not all(isinstance(p, str) for p in patterns):
        raise UsageError(f'{where}: match: expected a path glob or a list of them, '
                         f'like match = ["*.css", "/assets/*"]')
    regex = re.compile("|".join(_glob_regex(p, f"{where}: match") for p in patterns))
    fields = []
    if "cache_control" in item:
        fields.append(("Cache-Control", _check_value(item["cache_control"],
                                                      f"{where}: cache_control")))
    expires = None
    if "expires" in item:
        expires = _duration(item["expires"], f"{where}: expires")
        if "cache_control" not in item:   # as nginx's expires: both fields
            fields.append(("Cache-Control", f"max-age={expires}"))
    extra = item.get("set", {})
    if not isinstance(extra, dict):
        raise UsageError(f'{where}: set: expected a table of fields, like '
                         f'set = {{ "X-Robots-Tag" = "noindex" }}')
    for name, value in extra.items():
        if not TOKEN.match(name):
            raise UsageError(f"{where}: set: {name!r} is not a valid field name")
        if name.lower() in FORBIDDEN_FIELDS or name.lower() in ("cache-control", "expires"):
            fix = ("use cache_control / expires" if name.lower() in ("cache-control", "expires")
                   else "the server sets it")
            raise UsageError(f"{where}: set: {name} cannot be set by a rule ({fix})")
        fields.append((name, _check_value(value, f"{where}: set.{name}")))
    if not fields:
        raise UsageError(f"{where}: sets nothing; give cache_control, expires or set")
    return HeaderRule(regex, tuple(fields), expires)


def _redirect_rule(item, where):
    allowed = ("from", "to", "status")
    for key in item:
        if key not in allowed:
            raise UsageError(f"{where}: {key}: unknown setting; allowed: {', '.join(allowed)}")
    source = item.get("from")
    if not isinstance(source, str) or not source.startswith("/") or "?" in source \
            or "*" in source[:-2] or (source.endswith("*") and not source.endswith("/*")) \
            or not _is_clean(source):
        given = "from: missing" if source is None else f"from = {source!r}"
        raise UsageError(f'{where}: {given}: expected an exact URL path '
                         f'("/old.html") or a prefix ending in /* ("/blog/*")')
    target = item.get("to")
    if not isinstance(target, str) or not target or not _is_clean(target) \
            or " " in target or not (target.startswith("/") or re.match(r"https?://", target)) \
            or target.startswith("//") or not target.isascii():
        given = "to: missing" if target is None else f"to = {target!r}"
        raise UsageError(f'{where}: {given}: expected a path ("/new/") or an '
                         f'http(s) URL ("https://example.org/"), non-ASCII percent-encoded')
    if "*" in target[:-1] or (target.endswith("*") and not source.endswith("/*")):
        raise UsageError(f"{where}: to = {target!r}: a '*' may only end 'to', and only "
                         f"when 'from' ends in /*")
    if target.endswith("*") and re.fullmatch(r"https?://[^/?#]*\*", target):
        # The rest of the path would join the host: "/old/@evil.example"
        # would send the browser to evil.example.
        raise UsageError(f"{where}: to = {target!r}: the '*' must follow the URL's path, "
                         f"as in \"{target[:-1]}/*\"")
    status = item.get("status", DEFAULT_REDIRECT_STATUS)
    if isinstance(status, bool) or status not in REDIRECT_STATUSES:
        raise UsageError(f"{where}: status = {status!r}: allowed values are "
                         f"{', '.join(map(str, REDIRECT_STATUSES))}")
    return RedirectRule(source, target, status)


def _glob_regex(pattern, where):
    if not (pattern.startswith("/") or pattern.startswith("*")) or not _is_clean(pattern):
        raise UsageError(f"{where}: {pattern!r}: a glob starts with / or * "
                         f"(\"/assets/*\", \"*.css\")")
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append("[^/]")
        elif c == "{":
            end = pattern.find("}", i)
            if end < 0 or "{" in pattern[i + 1:end]:
                raise UsageError(f"{where}: {pattern!r}: unbalanced {{")
            out.append("(?:" + "|".join(re.escape(w) for w in pattern[i + 1:end].split(","))
                       + ")")
            i = end
        elif c == "}":
            raise UsageError(f"{where}: {pattern!r}: unbalanced }}")
        else:
            out.append(re.escape(c))
        i += 1
    return "(?:" + "".join(out) + ")"


def _duration(value, where):
    """Seconds from ``3600`` or ``"30d"``/``"12h"``/``"15m"``/``"90s"``, at
    most MAX_EXPIRES."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        seconds = value
    else:
        m = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
        if m is None:
            raise UsageError(f'{where} = {value!r}: expected seconds or a duration like '
                             f'"30d", "12h", "15m"')
        seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds > MAX_EXPIRES:
        raise UsageError(f"{where} = {value!r}: at most {MAX_EXPIRES} seconds (68 years, "
                         f"the most a cache counts, RFC 9111 §1.2.2); nginx's "
                         f"'expires max' is 3650d")
    return seconds


def _check_value(value, where):
    """A header field value: a one-line string (no CR, LF, NUL or other
    control character but tab), as it will go on the wire."""
    if not isinstance(value, str) or not _FIELD_VALUE.fullmatch(value) \
            or value != value.strip():
        raise UsageError(f"{where} = {value!r}: expected a one-line header value (no CR, "
                         f"LF, NUL or control characters, no leading or trailing spaces)")
    if not value:
        raise UsageError(f"{where}: empty value")
    return value


def _is_clean(text):
    return not any(ord(c) < 0x21 and c != " " or c == "\x7f" for c in text)


def _is_file_path(path):
    return path.startswith("/") and _is_clean(path) and " " not in path \
        and not path.endswith("/") and ".." not in path.split("/") \
        and "?" not in path and "#" not in path

"""Turning a scanned directory into bytes: HTML, JSON or XML.  Pure code.

Theory of operation: a request names a *view* of a listing: a format, a
sort column and an order.  ``parse_query`` reads it from the query string
(Apache's ``C=N;O=D`` as well as ``sort=``/``order=``/``format=``);
``negotiate`` picks the format from ``Accept`` when the query does not.
``rows`` sorts the entries and prepares, once per entry, what every format
shows: a readable name, a safe link and formatted size and time.  Then one
of ``render_html`` (a jinja2 template, autoescape on), ``render_json`` or
``render_xml`` makes the body.

Safety rests on two rules applied here and nowhere else:

* every name reaches a page through autoescaping (HTML) or an XML escape,
  after ``display_name`` made it printable: bytes that are not UTF-8 and
  control characters become ``\\xNN`` text;
* every link is ``urllib.parse.quote`` of the name's exact bytes with no
  "safe" characters, so ``? # % : ;`` and spaces cannot change what the
  link means, and the kernel (which decodes paths with surrogateescape)
  finds the very file.  A name that looks like ``scheme:`` also gets a
  ``./`` prefix, so even a careless template that skipped quoting could not
  turn it into a ``javascript:`` link.
"""
import json
import os
import re
import time
from collections import namedtuple
from urllib.parse import quote, unquote_plus
from xml.sax.saxutils import escape as xml_escape, quoteattr

import jinja2
from markupsafe import Markup, escape

from flashplug.http.accept import media_ranges, quality
from flashplug.http.dates import nameable

FORMATS = ("html", "json", "xml")
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "json": "application/json; charset=utf-8",
    "xml": "application/xml; charset=utf-8",
}
SORTS = ("name", "size", "mtime")
ORDERS = ("asc", "desc")

#: Apache mod_autoindex's one-letter query codes.
_APACHE_COLUMNS = {"N": "name", "S": "size", "M": "mtime"}
_APACHE_ORDERS = {"A": "asc", "D": "desc"}
_COLUMN_LETTER = {v: k for k, v in _APACHE_COLUMNS.items()}
_ORDER_LETTER = {v: k for k, v in _APACHE_ORDERS.items()}

#: Media types we can produce, most preferred first (wins ties in Accept).
_MEDIA = (
    ("text/html", "html"),
    ("application/json", "json"),
    ("application/xml", "xml"), ("text/xml", "xml"),
)

View = namedtuple("View", "format sort order")
DEFAULT_VIEW = View(None, "name", "asc")

#: What a template sees for each entry; see docs/autoindex.md.
Row = namedtuple("Row", "name href type size size_text mtime mtime_text mtime_iso")

_SCHEME_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
# C0 controls and DEL: invisible or dangerous on a page, illegal in XML 1.0.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What quote() leaves alone anyway: such a name is its own link.
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]+")

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
DEFAULT_TEMPLATE = "listing.html"


class QueryError(ValueError):
    """The query string asks for something we cannot give (a 400)."""


# -- the view: query string and Accept ----------------------------------------

def parse_query(query):
    """The :class:`View` a query string asks for.

    Pairs are split on ``&`` and ``;`` (Apache writes ``C=N;O=D``).  Unknown
    keys, and unknown sort columns or orders, are ignored as Apache ignores
    them; an unknown ``format`` is a :class:`QueryError`, because a script
    asking for a format it will not get should be told.
    """
    fmt, sort, order = DEFAULT_VIEW
    for pair in re.split(r"[&;]", query):
        key, _, value = pair.partition("=")
        key, value = unquote_plus(key), unquote_plus(value)
        if key == "C":
            sort = _APACHE_COLUMNS.get(value.upper(), sort)
        elif key == "O":
            order = _APACHE_ORDERS.get(value.upper(), order)
        elif key == "sort":
            sort = value.lower() if value.lower() in SORTS else sort
        elif key == "order":
            order = value.lower() if value.lower() in ORDERS else order
        elif key == "format":
            if value.lower() not in FORMATS:
                raise QueryError("format must be one of: " + ", ".join(FORMATS))
            fmt = value.lower()
    return View(fmt, sort, order)


def negotiate(accept):
    """The format an ``Accept`` header prefers; "html" when none fits.

    Each format takes the quality of the most specific media range that
    matches it (RFC 9110 §12.5.1); the highest quality wins, ties go to the
    order of ``_MEDIA``.  When nothing we make is acceptable we still send
    HTML rather than 406: a person reading the page is the likeliest client.
    """
    if not accept:
        return "html"
    ranges = media_ranges(accept)
    best, best_q = "html", 0.0
    for media, fmt in _MEDIA:
        q = quality(media, ranges)
        if q > best_q:
            best, best_q = fmt, q
    return best


def sort_link(view, column):
    """The query for a column header: toggles the order of the current
    column, and starts any other column ascending."""
    order = "asc"
    if column == view.sort and view.order == "asc":
        order = "desc"
    return "?C=%s;O=%s" % (_COLUMN_LETTER[column], _ORDER_LETTER[order])


# -- names, links, sizes, times -------------------------------------------------

def display_name(name):
    """``name`` made printable: undecodable bytes and controls as ``\\xNN``."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        name = os.fsencode(name).decode("utf-8", "backslashreplace")
    if _CONTROL.search(name):
        name = _CONTROL.sub(lambda m: "\\x%02x" % ord(m.group()), name)
    return name


def href(name, is_dir=False):
    """A relative link that fetches exactly the file called ``name``."""
    # Most names need no quoting; skipping quote() for them halves the cost
    # of a big listing's links.
    link = name if _PLAIN.fullmatch(name) else quote(os.fsencode(name), safe="")
    if _SCHEME_LIKE.match(name):
        link = "./" + link
    return link + "/" if is_dir else link


def human_size(n):
    """1023 B, 1.0 KiB, 12 KiB, 1.5 MiB ...: IEC units, at most four digits."""
    if n < 1024:
        return "%d B" % n
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        # 1023.7 KiB would print as "1024 KiB": move up a unit instead.
        if value < 1023.5 or unit == "PiB":
            return ("%.1f %s" if value < 9.95 else "%.0f %s") % (value, unit)


def rows(listing, view, *, dirs_first=True, exact_size=False, localtime=False,
         hide=()):
    """The entries of ``listing`` sorted for ``view``, as :class:`Row` s.

    ``hide`` holds names left out (the HEADER/README shown on the page).
    Names sort case-insensitively; size and time ties fall back to the name.
    Directories stay on top in either order when ``dirs_first``.
    """
    entries = [e for e in listing.entries if e.name not in hide] if hide else list(listing.entries)
    if view.sort == "size":
        key = lambda e: (-1 if e.size is None else e.size, e.name.casefold(), e.name)  # noqa: E731
    elif view.sort == "mtime":
        key = lambda e: (e.mtime_ns, e.name.casefold(), e.name)  # noqa: E731
    else:
        key = lambda e: (e.name.casefold(), e.name)  # noqa: E731
    entries.sort(key=key, reverse=view.order == "desc")
    if dirs_first:
        entries.sort(key=lambda e: e.kind != "directory")  # stable: keeps the order

    clock = time.localtime if localtime else time.gmtime
    times = {}   # files written together share a second: format it once
    out = []
    for e in entries:
        # A time no HTTP-date names (tmpfs holds any) is shown at that
        # range's end: time.gmtime refuses the farthest ones.
        seconds = nameable(e.mtime_ns // 1_000_000_000)
        texts = times.get(seconds)
        if texts is None:
            texts = times[seconds] = (
                time.strftime("%Y-%m-%d %H:%M", clock(seconds)),
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds)))
        if e.size is None:
            size_text = "-"
        else:
            size_text = str(e.size) if exact_size else human_size(e.size)
        out.append(Row(display_name(e.name), href(e.name, e.kind == "directory"),
                       e.kind, e.size, size_text, seconds, *texts))
    return out


# -- formats ----------------------------------------------------------------------

def render_json(rows_):
    """nginx's ``autoindex_format json``, with RFC 3339 times and an ``href``
    (the quoted link, the only exact handle on a name that is not UTF-8)."""
    items = []
    for r in rows_:
        item = {"name": r.name, "type": r.type, "mtime": r.mtime_iso}
        if r.type == "file":
            item["size"] = r.size
        item["href"] = r.href
        items.append(item)
    # One entry per line, like nginx: readable with `less`, easy to grep.
    body = ",\n".join(json.dumps(i, ensure_ascii=False) for i in items)
    return ("[\n%s\n]\n" % body if items else "[]\n").encode("utf-8")


def render_xml(rows_):
    """nginx's ``autoindex_format xml``: one element per entry, named by type."""
    out = ['<?xml version="1.0" encoding="utf-8"?>\n<list>\n']
    for r in rows_:
        size = ' size="%d"' % r.size if r.type == "file" else ""
        out.append('<%s mtime="%s"%s href=%s>%s</%s>\n' % (
            r.type, r.mtime_iso, size, quoteattr(r.href), xml_escape(r.name), r.type))
    out.append("</list>\n")
    return "".join(out).encode("utf-8")


def notice_markup(notice):
    """A HEADER/README ready for the page: HTML as is (it is the site's own
    content), text escaped inside ``<pre>``."""
    if notice is None:
        return None
    if notice.is_html:
        return Markup(notice.text)
    return Markup('<pre class="notice">%s</pre>') % escape(notice.text)


def breadcrumbs(path):
    """``(label, href)`` for each step of ``path`` ("/a/b/"), root first;
    hrefs are relative, so the page works behind a path-rewriting proxy."""
    parts = [p for p in path.split("/") if p]
    crumbs = [("/", "../" * len(parts) or "./")]
    for i, part in enumerate(parts):
        up = len(parts) - i - 1
        crumbs.append((display_name(part) + "/", "../" * up or "./"))
    return crumbs


def html_context(path, listing, view, rows_, *, exact_size=False, localtime=False,
                 version=""):
    """The variables a template sees; docs/autoindex.md lists them."""
    return {
        "path": display_name(path),
        "crumbs": breadcrumbs(path),
        "parent": "../" if path != "/" else None,
        "entries": rows_,
        "sort": view.sort,
        "order": view.order,
        "sort_links": {c: sort_link(view, c) for c in SORTS},
        "header": notice_markup(listing.header),
        "readme": notice_markup(listing.readme),
        "exact_size": exact_size,
        "localtime": localtime,
        "time_label": "local time" if localtime else "UTC",
        "json_href": "?format=json",
        "xml_href": "?format=xml",
        "version": version,
    }


def make_environment(search_dir):
    """A jinja2 environment with autoescape forced on (whatever the file's
    extension) and no reload check, which would stat on the event loop."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(search_dir),
        autoescape=True, auto_reload=False,
        trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined)


def load_template(path=None):
    """The bundled template, or the user's at ``path``.

    Raises OSError when it cannot be read and jinja2.TemplateError when it
    does not compile.
    """
    if path is None:
        return make_environment(TEMPLATE_DIR).get_template(DEFAULT_TEMPLATE)
    path = os.path.abspath(path)
    with open(path, "rb"):   # a clear OSError before jinja2's own message
        pass
    return make_environment(os.path.dirname(path)).get_template(os.path.basename(path))


def render_html(template, context):
    # "replace": a user's template must not turn a stray surrogate into a 500.
    return template.render(context).encode("utf-8", "replace")


def render(template, listing, path, view, *, dirs_first=True, exact_size=False,
           localtime=False, version=""):
    """The body for ``view`` (its format already decided).  Pure but
    CPU-heavy for big folders, so the caller runs it in a helper."""
    if view.format == "html":
        hide = {n.name for n in (listing.header, listing.readme) if n is not None}
        rs = rows(listing, view, dirs_first=dirs_first, exact_size=exact_size,
                  localtime=localtime, hide=hide)
        return render_html(template, html_context(
            path, listing, view, rs, exact_size=exact_size, localtime=localtime,
            version=version))
    rs = rows(listing, view, dirs_first=dirs_first, exact_size=True)
    return render_json(rs) if view.format == "json" else render_xml(rs)

"""Error pages: the kernel's default page and the site's own, per status.

Theory of operation: ``compile_error_pages`` turns the ``error_pages`` key
of one TOML table (the top level of the config file, or a site's
effective table: ``flashplug.policy``) into an immutable :class:`ErrorPages`, checked
once at start.  At run time the App asks it for the URL path of a status's
page and reads that file through the static handler's cache and helpers,
like any other file (``App.error_answer``), so a page costs the loop no
disk wait; a page that is missing or fails falls back to
:func:`default_page`, never to another lookup, so an error cannot loop.

The answer keeps the error's status (nginx's ``error_page 404 /404.html``
without ``=code``): a custom page is never a 200 and never a redirect, so
clients, crawlers and caches see the error.  Preconditions and ranges do
not apply to it (RFC 9110 §13.2.1 and §14.2: both are for a 2xx answer),
so it carries no ETag or Last-Modified and is always the whole page.
"""
import os
from types import MappingProxyType

from flashplug.errors import UsageError
from flashplug.http.status import reason

#: The config key, in the top-level table or a site's.
KEY = "error_pages"


class ErrorPages:
    """Status -> URL path of its page (immutable, built at start)."""

    __slots__ = ("pages",)

    def __init__(self, pages):
        self.pages = MappingProxyType(dict(pages))

    def page_for(self, status):
        """The URL path of ``status``'s page (``"/404.html"``), or None."""
        return self.pages.get(status)

    def __repr__(self):
        return f"ErrorPages({dict(self.pages)!r})"


def compile_error_pages(table, source):
    """The :class:`ErrorPages` that ``table[KEY]`` describes, or None when
    the key is absent or empty.

    ``table`` is a mapping (a parsed TOML table); ``source`` names it in
    messages (``"site.toml"``).  Keys are statuses 400-599 (TOML makes them
    strings: ``{404 = "/404.html"}``); values are URL paths inside the
    document root: they start with ``/`` and have no ``..`` segment, query,
    fragment or control character.

    :raises UsageError: one line naming ``source`` and the key.
    """
    value = table.get(KEY)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UsageError(f'{source}: {KEY} must be a table of status = "/path", '
                         f'like {KEY} = {{404 = "/404.html"}}')
    pages = {}
    for key, path in value.items():
        where = f"{source}: {KEY}.{key}"
        try:
            status = int(str(key))
        except ValueError:
            status = 0
        if not 400 <= status <= 599:
            raise UsageError(f"{where}: expected an error status 400-599 as the key")
        if not isinstance(path, str) or not path.startswith("/"):
            raise UsageError(f'{where} = {path!r}: expected a URL path inside the document '
                             f'root, like "/{status}.html"')
        if any(ord(c) < 0x20 or c == "\x7f" for c in path) or "?" in path or "#" in path \
                or ".." in path.split("/") or path.endswith("/"):
            raise UsageError(f"{where} = {path!r}: expected the path of a file, without "
                             f"'..', query, fragment or control characters")
        pages[status] = path
    return ErrorPages(pages) if pages else None


def default_page(status, message):
    """The kernel's own error page: a few lines of HTML, the status and the
    handler's short safe message (never request data or server internals).
    Returns (content type, body bytes)."""
    title = f"{status} {reason(status)}"
    detail = message if message and message != reason(status) else ""
    body = (f"<!doctype html>\n<html><head><title>{title}</title></head>"
            f"<body><h1>{title}</h1>"
            f"{'<p>' + _html_escape(detail) + '</p>' if detail else ''}"
            f"</body></html>\n")
    return "text/html; charset=utf-8", body.encode("utf-8")


def _html_escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def missing_pages(docroot, named):
    """Start-up warnings, one line each, for the pages that are not files in
    ``docroot``: ``named`` holds (config key, URL path) pairs.  Blocking
    (stats): called once before the event loop runs.  Only a warning, as
    the site may be deployed after the server starts."""
    lines = []
    for key, path in named:
        if not os.path.isfile(os.path.join(docroot, *path.split("/"))):
            lines.append(f"{key} = {path!r}: no such file in {docroot}; "
                         f"the default answer is sent until it exists")
    return lines

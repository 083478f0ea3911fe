"""The request side of status: settings, the checks, the Response.

Theory of operation: ``Settings.from_config`` checks the options once, at
start, and fails with a one-line ``UsageError``.  The route is the prefix
``PATH/``, which the kernel also matches for ``PATH`` itself; for each
request ``StatusPage.handle``

1. refuses a client the allow-list does not name (403), before anything
   else, so a stranger learns nothing, not even which paths exist;
2. answers 404 below the page (``PATH/x``): only ``PATH`` and ``PATH/``
   are the page, and the prefix route would otherwise swallow them;
3. refuses methods other than GET and HEAD (405 with ``Allow``);
4. picks the format and renders a fresh snapshot, never cached: every
   response carries ``Cache-Control: no-store``.

A snapshot costs a walk over the open connections (to count reading,
writing and waiting ones); that is the only work that grows with load.
"""
import re
from dataclasses import dataclass

from flashplug import HTTPError, Response, UsageError

from . import access, render, snapshot

ALLOWED_METHODS = ("GET", "HEAD")

# Segments of plain URL characters (RFC 3986 pchar without escapes): the
# path is compared with the request's decoded path, so what is written here
# must already be in that form.
_PATH = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+/?")


def check_path(value):
    """``--status-path`` -> the page's path without a trailing slash."""
    text = str(value)
    segments = text.strip("/").split("/")
    if not _PATH.fullmatch(text) or any(s in (".", "..") for s in segments):
        raise UsageError(f"--status-path {text!r}: give a URL path such as /server-status "
                         f"(starts with '/', not '/' alone, no '.' or '..' segments, "
                         f"no '%', '?', '#' or spaces)")
    return text.rstrip("/")


@dataclass(frozen=True)
class Settings:
    path: str
    rules: access.Rules

    @classmethod
    def from_config(cls, config):
        return cls(path=check_path(config.get("status_path")),
                   rules=access.parse_allow(config.get("status_allow")))


class StatusPage:
    """One per worker: the settings, the server it reports on (the kernel's
    ``flashplug.facade.Server``), its start time."""

    def __init__(self, settings, server):
        self.settings = settings
        self.server = server
        self.started = snapshot.started_now()
        self.paths = (settings.path, settings.path + "/")

    async def handle(self, request):
        if not access.allowed(self.settings.rules, request.remote_addr, request.server_addr):
            raise HTTPError(403, "Forbidden")
        if request.path not in self.paths:
            raise HTTPError(404, "Not found")
        if request.method not in ALLOWED_METHODS:
            raise HTTPError(405, "Method not allowed",
                            headers=[("Allow", ", ".join(ALLOWED_METHODS))])
        try:
            fmt = render.choose_format(request.query, request.headers.get("accept"))
        except render.QueryError as e:
            raise HTTPError(400, str(e)) from None
        body = render.RENDERERS[fmt](snapshot.snapshot(self.server, self.started))
        return Response(200, [
            ("Content-Type", render.CONTENT_TYPES[fmt]),
            # Counters are stale the moment they are sent: no cache may keep them.
            ("Cache-Control", "no-store"),
            # Without ?format= the answer depends on Accept.
            ("Vary", "Accept"),
            ("X-Content-Type-Options", "nosniff"),
        ], body)

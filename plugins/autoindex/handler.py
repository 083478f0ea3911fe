"""The request side of autoindex: settings, caches, conditional GET.

Theory of operation: ``Settings.from_config`` checks the options once at
start and fails with a one-line ``UsageError``.  For each request
``Autoindex.handle``

1. refuses what is never listed (CGI prefixes) and reads the view from the
   query string or ``Accept``;
2. gets the folder's ``Listing``: a cached one is trusted while it is
   younger than the kernel's ``--cache-valid`` and a helper's ``stat`` of
   the folder shows the same mtime; otherwise a helper scans it again.
   (The age limit is there because a file that grows in place changes its
   size but not its folder's mtime.);
3. answers 304/412 from the entity-tag and Last-Modified before rendering
   anything, so a browser's revalidation costs one stat;
4. renders the body in a helper (10,000 rows of template are tens of
   milliseconds of CPU the loop should not spend), keeping it in a second
   cache keyed by the listing's digest, so an unchanged folder is not
   rendered twice even after a rescan.

Every await is on ``app.helpers.run``, so under the ``sped``, ``mt`` and
``mp`` architectures, where helpers run inline, the coroutine never
suspends, and the caches lock for the threads of ``mt``.
"""
import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass

import flashplug
from flashplug import HTTPError, Response, UsageError
from flashplug.http.conditionals import evaluate
from flashplug.http.dates import format_http_date, nameable

from flashplug.procs import ProcessManager, stderr_text

from . import child
from . import listing as listing_mod
from . import render
from .cache import BoundedLRU

log = logging.getLogger("flashplug.autoindex")

#: Folders whose scan is kept; a site browsed by people touches few at once.
MAX_LISTINGS = 64
#: Rough memory of one cached entry (namedtuple, name, ints), for the budget.
BYTES_PER_ENTRY = 200
LISTINGS_BYTES = 32 << 20
#: Rendered bodies: several views (sorts, formats) of the folders above.
MAX_BODIES = 256
BODIES_BYTES = 32 << 20

ALLOWED_METHODS = ("GET", "HEAD")

#: Past this many entries a listing is rendered in a child process
#: (``child``), not a helper thread: measured on 100,000 entries, a thread's
#: rendering held the interpreter lock up to 370 ms at a time, stalling
#: the loop; the child costs a python start (~0.1 s), small beside the
#: rendering (a 10,000-entry one takes ~0.15 s in all).
BIG_LISTING = 20000
#: Child renderers at once per worker; more wait (RENDER_QUEUE of them).
RENDERERS = 2
RENDER_QUEUE = 64
#: Seconds a child renderer may take.
RENDER_TIMEOUT = 120


def split_patterns(values):
    """``["*.bak,*~", "tmp"]`` (repeated flags, or a config list) -> tuple."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    patterns = []
    for value in values:
        for pat in str(value).split(","):
            pat = pat.strip()
            if not pat:
                continue
            if "/" in pat:
                raise UsageError(f"--autoindex-ignore {pat!r}: patterns match single "
                                 f"names, so they cannot contain '/'")
            patterns.append(pat)
    return tuple(patterns)


@dataclass(frozen=True)
class Settings:
    policy: listing_mod.Policy
    template: object
    template_path: str = None
    dirs_first: bool = True
    exact_size: bool = False
    localtime: bool = False
    revalidate: float = 1.0

    @classmethod
    def from_config(cls, config):
        path = config.get("autoindex_template")
        try:
            template = render.load_template(path)
        except OSError as e:
            raise UsageError(f"--autoindex-template {path}: {e.strerror}") from None
        except Exception as e:  # jinja2.TemplateError and its kin
            raise UsageError(f"--autoindex-template {path}: does not compile: "
                             f"{_one_line(e)}") from None
        settings = cls(
            policy=listing_mod.Policy(
                docroot=os.path.realpath(config.docroot),
                show_dotfiles=bool(config.get("show_dotfiles")),
                follow_symlinks=bool(config.get("follow_symlinks")),
                ignore=split_patterns(config.get("autoindex_ignore")),
                # The kernel refuses script folders before asking for a
                # listing; this is the second line of defence.
                unlisted=tuple(os.path.realpath(d) for d in config.script_dirs)),
            template=template,
            template_path=os.path.abspath(path) if path else None,
            dirs_first=bool(config.get("autoindex_dirs_first", True)),
            exact_size=bool(config.get("autoindex_exact_size")),
            localtime=bool(config.get("autoindex_localtime")),
            revalidate=float(config.get("cache_valid") or 1.0))
        if path:
            settings.try_template()
        return settings

    def try_template(self):
        """Render a sample page, so a template that names a missing variable
        fails at start rather than on the first request."""
        sample = listing_mod.Listing(0, (listing_mod.Entry("sample.txt", "file", 1, 0),
                                         listing_mod.Entry("sub", "directory", None, 0)))
        try:
            render.render(self.template, sample, "/sample/", render.View("html", "name", "asc"))
        except Exception as e:
            raise UsageError(f"--autoindex-template {self.template_path}: fails to render: "
                             f"{_one_line(e)}") from None

    def fingerprint(self):
        """What, besides the folder and the view, changes the bytes we send."""
        return repr((flashplug.__version__, self.template_path, self.dirs_first,
                     self.exact_size, self.localtime))


def _one_line(e):
    text = " ".join(str(e).split())
    line = getattr(e, "lineno", None)
    return f"line {line}: {text}" if line else text


class Autoindex:
    """One per worker process: settings, the helper pool, the caches."""

    def __init__(self, settings, helpers=None):
        self.settings = settings
        self.helpers = helpers
        self.listings = BoundedLRU(MAX_LISTINGS, LISTINGS_BYTES)
        self.bodies = BoundedLRU(MAX_BODIES, BODIES_BYTES)
        self._fingerprint = settings.fingerprint()
        self.renderers = None   # a ProcessManager, made at the first big listing

    async def handle(self, request, fspath):
        if request.method not in ALLOWED_METHODS:
            raise HTTPError(405, "Method not allowed", headers=[("Allow", ", ".join(ALLOWED_METHODS))])
        try:
            view = render.parse_query(request.query)
        except render.QueryError as e:
            raise HTTPError(400, str(e)) from None
        if view.format is None:
            view = view._replace(format=render.negotiate(request.headers.get("accept")))

        listing = await self.listing(fspath)
        etag = self.etag(listing, request.path, view)
        # RFC 9110 §8.8.2.1: a modification time in the future (a clock
        # set wrong, an archive unpacked with its dates) is sent as "now",
        # as the static handler sends a file's (and one before year 1 as
        # the first date an HTTP-date names).
        last_modified = min(nameable(listing.last_modified), int(time.time()))
        headers = [
            ("Content-Type", render.CONTENT_TYPES[view.format]),
            ("ETag", etag),
            ("Last-Modified", format_http_date(last_modified)),
            # The same URL answers in three formats, and a listing changes
            # often: caches must ask every time (cheap: a 304).
            ("Vary", "Accept"),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
        ]
        status = evaluate(request.method, request.headers.get, etag, last_modified)
        if status is not None:
            if status == 304:
                return Response(304, [h for h in headers if h[0] != "Content-Type"])
            raise HTTPError(status, "Precondition failed")

        key = (listing.digest, request.path, view)
        body = self.bodies.get(key)
        if body is None:
            s = self.settings
            body = None
            if len(listing.entries) > BIG_LISTING and request.server.loop is not None \
                    and self.helpers.size:
                body = await self.render_in_child(request.server.loop, fspath,
                                                  request.path, view)
            if body is None:
                body = await self.helpers.run(_render, s, listing, request.path, view)
            self.bodies.put(key, body, len(body))
        return Response(200, headers, body)

    async def listing(self, fspath):
        """The folder's Listing, from the cache when it is still right."""
        hit = self.listings.get(fspath)
        if hit is not None:
            cached, scanned_at = hit
            if time.monotonic() - scanned_at < self.settings.revalidate:
                try:
                    mtime_ns = await self.helpers.run(listing_mod.dir_mtime_ns, fspath)
                except OSError:
                    mtime_ns = None   # gone: the scan below gives the right error
                if mtime_ns == cached.mtime_ns:
                    return cached
        scanned_at = time.monotonic()
        try:
            fresh = await self.helpers.run(listing_mod.scan, fspath, self.settings.policy)
        except (FileNotFoundError, NotADirectoryError):
            raise HTTPError(404, "Not found") from None
        except PermissionError:
            raise HTTPError(403, "Forbidden") from None
        weight = BYTES_PER_ENTRY * (len(fresh.entries) + 1) + sum(
            len(n.text) for n in (fresh.header, fresh.readme) if n is not None)
        self.listings.put(fspath, (fresh, scanned_at), weight)
        return fresh

    async def render_in_child(self, loop, fspath, path, view):
        """The body, scanned and rendered by a child process (``child``),
        or None when that failed (logged; the caller renders in a helper).
        The child scans the folder again: the body may show a change made
        since the scan the entity-tag came from, which the next request's
        revalidation picks up."""
        if self.renderers is None:
            self.renderers = ProcessManager(loop, RENDERERS, RENDER_QUEUE)
        s = self.settings
        job = child.job_argument(fspath, path, view, s.policy, s.template_path, {
            "dirs_first": s.dirs_first, "exact_size": s.exact_size,
            "localtime": s.localtime, "version": flashplug.__version__})
        argv = [sys.executable, "-m", "flashplug_plugins.autoindex.child", job]
        proc = None
        try:
            proc = await self.renderers.spawn(
                sys.executable, argv, dict(os.environ), "/", queue_timeout=RENDER_TIMEOUT,
                on_stderr=lambda line: log.warning("listing %s: %s", fspath, stderr_text(line)))
            chunks = []
            while chunk := await proc.read(RENDER_TIMEOUT):
                chunks.append(chunk)
            status = await proc.wait()
        except Exception as e:  # noqa: BLE001 - Busy, OSError, TimeoutError: render here
            log.warning("listing %s: the child renderer failed (%s); rendering in a helper",
                        fspath, e)
            return None
        finally:
            if proc is not None:
                proc.finish(kill=True)
        if status != 0:
            log.warning("listing %s: the child renderer exited with status %d; rendering "
                        "in a helper", fspath, status)
            return None
        return b"".join(chunks)

    async def close(self):
        if self.renderers is not None:
            await self.renderers.close()
            self.renderers = None

    def etag(self, listing, path, view):
        h = hashlib.blake2b(digest_size=12)
        h.update(repr((listing.digest, path, tuple(view), self._fingerprint))
                 .encode("utf-8", "surrogateescape"))
        return '"ai-%s"' % h.hexdigest()


def _render(settings, listing, path, view):
    return render.render(settings.template, listing, path, view,
                         dirs_first=settings.dirs_first, exact_size=settings.exact_size,
                         localtime=settings.localtime, version=flashplug.__version__)

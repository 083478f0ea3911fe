"""The static handler: URL path -> file on disk -> response.

Theory of operation: ``fast_response`` is the cached path.  It runs on the
loop, touches no disk and calls no hook, and answers a plain GET or HEAD
for a fresh cache entry with one prebuilt buffer.  Everything else goes
through ``handle``, a coroutine whose disk work (``resolve``, a stat to
revalidate) runs in the helper pool.  The HTTP decisions themselves
(conditionals, ranges) are the pure functions of ``flashplug.http``.

Size: over ~400 lines because path resolution, the script-folder refusal,
the cached path and the handler rely on one another's guarantees (nothing
refused is ever cached), which is easiest to check in one file.
"""
import errno
import os
import time
from urllib.parse import quote

from flashplug.cache import FileEntry, IsDirectory, NotRegular, load_entry, still_fresh, still_fresh_all
from flashplug.compress import Compression
from flashplug.errors import HTTPError
from flashplug.http import conditionals, ranges
from flashplug.http.message import Response
from flashplug.http.paths import is_hidden
from flashplug.memo import Memo

ALLOW = "GET, HEAD, OPTIONS"
# Characters left unescaped when a path is put back into a URL (RFC 3986
# pchar plus "/").
URL_SAFE = "/!$&'()*+,;=:@~-._"
# Files this small are kept in memory even when the content budget is full:
# sending them with sendfile would cost more syscalls than their bytes.
ALWAYS_IN_MEMORY = 16 * 1024
# Raw request-targets remembered for the quickest path; a bound, so that
# clients inventing query strings cannot grow it without limit.
TARGET_MEMORY = 4096
# Seconds a client is asked to wait for a file under another process's lease:
# a lease holder gets /proc/sys/fs/lease-break-time (45 s by default) at most,
# and usually lets go at once.
RETRY_LEASED = "1"
# Methods RFC 9110 defines (plus PATCH, RFC 5789): a static file refuses them
# with 405; anything else is a method we do not implement at all (501).
# Where pages named by the config file are cached: before their path, a
# character no request path has (see StaticFiles.page_entry).
PAGE_KEY = "\0"
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT",
                           "OPTIONS", "TRACE", "PATCH"))


def target_key(target):
    """The key of ``StaticFiles.by_target`` for a raw request-target (bytes).

    An origin-form target ("/path?query") is keyed by its path alone: the
    query and a fragment never change which file answers (routes match
    paths, and ``set_target`` cuts the path exactly there), so a
    cache-busting query still finds the entry, and queries cannot fill
    the table.  Any other form is keyed whole.
    """
    if target[:1] == b"/":
        return target.partition(b"?")[0].partition(b"#")[0]
    return target


class FileBody:
    """A response body made of file ranges and literal bytes.

    ``parts`` is a list of ``bytes`` or ``(offset, count)`` pairs read from
    ``entry`` (its in-memory ``data`` or its open ``fd``).
    """

    __slots__ = ("entry", "parts", "length")

    def __init__(self, entry, parts):
        self.entry = entry
        self.parts = parts
        self.length = sum(len(p) if isinstance(p, bytes) else p[1] for p in parts)


class Redirect(Exception):
    """The path is a directory named without its trailing slash."""


class Directory(Exception):
    """The path is a directory with no index file."""

    def __init__(self, fspath):
        super().__init__(fspath)
        self.fspath = fspath


def _inside(real, root):
    return real == root or real.startswith(root + os.sep)


class ScriptDirs:
    """Folders whose files are programs (CGI scripts), never documents.

    The static handler refuses everything in them, the folders themselves
    included, with 403: whether or not a plugin runs their scripts, their
    source is not for download.  A path is in one when, compared without
    regard to case (a case-insensitive file system maps ``/CGI-BIN/`` to
    ``cgi-bin/``), it lies under the folder as named or under the real path
    the folder had at start-up; the caller checks the requested path and
    its real path, so a symlink elsewhere in the document root that points
    into a script folder is refused too.  A file whose name ends in one of
    ``exts`` (``--cgi-ext``) is a script wherever it lies, by the same rules,
    and so is an editor's or an operator's copy of one (``app.py~``,
    ``#app.py#``, ``app.py.bak``: ``BACKUP_SUFFIXES``), whose text is the
    script's source all the same (lighttpd's default configuration denies
    names ending in ``~`` everywhere).

    PHP's files and their copies (``is_php``) are scripts in every root,
    with or without a FastCGI backend: when one runs them, its route
    answers them before this handler; when none does (``--fastcgi``
    forgotten, or not given to this site), a WordPress root must not give
    out ``wp-config.php``.

    ``copied``: the extensions of plugins' routes (``Route(ext=".php")``,
    FastCGI's): the route answers such a file, never this handler, but a
    copy of one (``index.php~``) would reach it, and is refused too.
    """

    def __init__(self, dirs, exts=()):
        names = set()
        for d in dirs:
            names.add(os.path.normpath(d))
            names.add(os.path.realpath(d))
        self.prefixes = tuple(sorted(n.casefold().rstrip(os.sep) + os.sep for n in names))
        self.exts = tuple(e.casefold() for e in exts)
        self.copied = ()

    def refuse_copies(self, exts):
        """Refuse editors' and operators' copies of files ending in one of
        ``exts`` (route extensions) from now on."""
        self.copied = tuple(dict.fromkeys(self.copied + tuple(e.casefold() for e in exts)))

    def holds(self, fspath):
        """Is the absolute path ``fspath`` a script folder or inside one, a
        script by its extension, or a copy of one a route answers?"""
        return self.in_folder(fspath) or self.named_like_script(fspath)

    def in_folder(self, fspath):
        """Is ``fspath`` a script folder or inside one?"""
        return bool(self.prefixes) and (fspath.casefold() + os.sep).startswith(self.prefixes)

    def named_like_script(self, fspath):
        """Is ``fspath`` named like a ``--cgi-ext`` script, or like a copy of
        one a route answers?"""
        folded = fspath.casefold()
        if not self.exts and not self.copied:
            return False
        original = _without_backup_suffix(folded)
        return bool(self.exts) and (folded.endswith(self.exts) or original.endswith(self.exts)) \
            or bool(self.copied) and original is not folded and original.endswith(self.copied)

    @staticmethod
    def is_php(fspath):
        """Is ``fspath`` named like a PHP script, or a copy of one?"""
        return _without_backup_suffix(fspath.casefold()).endswith(PHP_EXTS)


#: PHP's script extensions (Debian's php-fpm runs these: its
#: security.limit_extensions); never sent as documents.
PHP_EXTS = (".php", ".phtml", ".php3", ".php4", ".php5", ".php7", ".php8")


#: What editors and operators append to a copy of a file: Emacs and most
#: editors' ``~`` (and Emacs's auto-save ``#name#``), ``cp x x.bak`` and the
#: like, vim's swap file (its name starts with a dot too); and the
#: compressed copies that ``gzip -k``, ``brotli`` and ``zstd`` leave beside
#: it, as a site precompressed for --precompressed has them: the source still.
BACKUP_SUFFIXES = ("~", "#", ".bak", ".orig", ".old", ".save", ".swp", ".gz", ".br", ".zst")


def _without_backup_suffix(name):
    for suffix in BACKUP_SUFFIXES:
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def _refusal(fspath, real_root, follow_symlinks, scripts):
    """404 for a path whose real location leaves the document root (unless
    symlinks are followed), 403 for one in a script folder, named like a
    --cgi-ext script or a copy of a route's script, or a PHP file or copy
    that exists (as requested or as its symlinks resolve), else None."""
    real = os.path.realpath(fspath)
    if not follow_symlinks and not _inside(real, real_root):
        return 404
    if scripts.in_folder(fspath) or scripts.in_folder(real):
        return 403
    # A folder named like a script (``x.php/``) is a folder: served as one
    # (index, listing), as nginx's ``location ~ \.php$`` leaves ``/x.php/``
    # alone.  Only what is not a folder is refused by its name.
    if (scripts.named_like_script(fspath) or scripts.named_like_script(real)) \
            and not os.path.isdir(real):
        return 403
    if (scripts.is_php(fspath) or scripts.is_php(real)) and os.path.lexists(fspath) \
            and not os.path.isdir(real):
        return 403      # one that is not there is a 404, as any missing file
    return None


def resolve(docroot, real_root, path, index_names, follow_symlinks, small_max,
            scripts=ScriptDirs(()), compression=None):
    """Blocking (runs in a helper): find what ``path`` names on disk.

    Returns a FileEntry (with its sidecars and codings when ``compression``,
    a :class:`flashplug.compress.Compression`, is given), or raises
    Redirect, Directory or HTTPError (403 for anything in ``scripts``, a
    :class:`ScriptDirs`, decided before anything is opened or cached).
    """
    parts = [p for p in path.split("/") if p]
    fspath = os.path.join(docroot, *parts)
    try:
        refused = _refusal(fspath, real_root, follow_symlinks, scripts)
        if refused is not None:
            raise HTTPError(refused, "Forbidden" if refused == 403 else "Not Found")
        if not path.endswith("/"):
            # A file, most likely: opened straight away, and a directory is
            # told by the open descriptor's fstat (one stat less per miss
            # than asking isdir first).  One that cannot be opened (no read
            # permission, only search) is still a directory to redirect.
            try:
                return load_entry(fspath, small_max, compression)
            except IsDirectory:
                raise Redirect() from None
            except PermissionError:
                if os.path.isdir(fspath):
                    raise Redirect() from None
                raise
        if os.path.isdir(fspath):
            for name in index_names:
                candidate = os.path.join(fspath, name)
                if os.path.isfile(candidate) and _refusal(
                        candidate, real_root, follow_symlinks, scripts) is None:
                    return load_entry(candidate, small_max, compression)
            raise Directory(fspath)
        raise HTTPError(404, "Not Found")  # a file named like a directory, or nothing
    except (FileNotFoundError, NotADirectoryError):
        raise HTTPError(404, "Not Found") from None
    except PermissionError:
        raise HTTPError(403, "Forbidden") from None
    except NotRegular:
        raise HTTPError(403, "Forbidden") from None
    except OSError as e:
        if e.errno in (errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL):
            raise HTTPError(404, "Not Found") from None
        if e.errno in (errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP):
            raise HTTPError(403, "Forbidden") from None  # a socket or device file
        if e.errno == errno.EWOULDBLOCK:
            # Another process holds a lease on the file (fcntl F_SETLEASE):
            # a blocking open would wait for it; ours says "later" instead.
            raise HTTPError(503, "Service Unavailable",
                            [("Retry-After", RETRY_LEASED)]) from None
        raise


def _shown(path):
    """``path`` as start-up names it: ``./x`` under the working directory."""
    rel = os.path.relpath(path)
    return path if rel.startswith(os.pardir) else os.path.join(os.curdir, rel)


def script_dir_warnings(config):
    """Start-up warnings, one line each: script folders that exist but whose
    scripts no plugin runs, and a PHP site's front page with no FastCGI
    backend (their files are refused, see ScriptDirs)."""
    lines = []
    for path, runner in config.script_dirs.items():
        if runner is not None or not os.path.isdir(path):
            continue
        shown = _shown(path)
        if "cgi" in config.plugins:
            fix = f"Run its scripts with --cgi-dir /{os.path.basename(path)}/"
        else:
            fix = "Enable it with --plugins cgi"
        plugin = "no --cgi-dir names it" if "cgi" in config.plugins else "the cgi plugin is off"
        lines.append(f"{shown}/ exists but {plugin}; its files are refused (403). {fix}.")
    if config.script_exts and "cgi" not in config.plugins:
        exts = ",".join(config.script_exts)
        lines.append(f"--cgi-ext {exts} is given but the cgi plugin is off; files ending in "
                     f"{exts.replace(',', ' or ')} are refused (403). Enable it with --plugins cgi.")
    index_php = os.path.join(config.docroot, "index.php")
    if "fastcgi" not in config.plugins and os.path.isfile(index_php):
        lines.append(f"{_shown(index_php)} exists but the fastcgi plugin is off; PHP files are "
                     f"refused (403). Run them with --fastcgi .php=unix:/run/php/php-fpm.sock "
                     f"(docs/fastcgi.md).")
    return lines


class StaticFiles:
    """Serves the document root through the FileCache and the helpers."""

    def __init__(self, app, config, cache, scripts, directory_hook, keyed=False, tag=""):
        """``config``: the top-level Config or a site's (its ``rules`` and
        ``compress`` are this handler's policy); ``cache``: the worker's
        FileCache; ``scripts``: the ScriptDirs of the root; ``keyed``:
        cache entries are keyed by the file's path (root + URL path, when
        sites share the cache), else by the URL path alone; ``tag``: the
        policy's (``flashplug.policy.cache_tag``), before either."""
        self.app = app
        self.docroot = config.docroot
        self.real_root = config.real_docroot
        self.index_names = [n.strip() for n in config.index.split(",") if n.strip()]
        self.follow_symlinks = config.follow_symlinks
        self.show_dotfiles = config.show_dotfiles
        self.scripts = scripts
        self.small_max = min(config.cache_file_max, config.cache_size)
        self.cache = cache
        # Entries carry the policy's choices (rule fields, codings), so the
        # policy's tag is part of their key; the compressed copies shared
        # in app.compressed are keyed by it likewise.
        self.key_prefix = tag + (self.docroot if keyed else "")
        self.directory_hook = directory_hook
        self.rules = config.rules       # flashplug.rules, or None
        compression = Compression(
            config.compress, config.precompressed, app.compressed,
            lambda path: _refusal(path, self.real_root, self.follow_symlinks,
                                  self.scripts) is not None, app.stats, tag)
        # None when neither sidecars nor --compress are wanted: a load then
        # looks for no sidecar at all.
        self.compression = compression if compression.active else None
        self.target_memory = memory = max(TARGET_MEMORY, 2 * config.cache_entries)
        self.by_target = Memo(memory)       # target_key -> FileEntry
        # Heads answered from the cache, so that the next one skips the
        # parser: by their shape (h1.known_key, one whole message) ->
        # KnownHead; and the exact bytes of one of a known shape -> (KnownHead,
        # path, target str), so that a client that repeats its head byte for byte
        # (a load generator, a browser between cookie changes) skips
        # known_key too.  Each remembered on its second sight (seen_before).
        self.known_shapes = Memo(memory)
        self.known_heads = Memo(memory)
        self.heads_seen = Memo(memory)      # hash of a head answered from the cache -> True
        self.revalidating = False   # a revalidate_ahead batch is in a helper

    # -- the cached path -------------------------------------------------------

    def fast_entry(self, request):
        """The fresh cache entry for a plain GET/HEAD, or None.

        "Plain" means no conditional or Range header: the connection's parser
        flags those, so this costs two dict lookups and a clock read.
        """
        entry = self.cache.get(self.key_prefix + request.path)
        if entry is None or not self.cache.is_fresh(entry, time.monotonic()):
            return None
        entry.used = True
        return entry

    def _admit_max(self):
        """The largest file a miss may bring into memory right now.

        While the content budget has room, files up to --cache-file-max;
        once it is full, only tiny ones: a bigger file is then served by
        sendfile from the page cache, instead of pushing out a file already
        in memory (which would be read again on its next request).
        """
        if self.cache.bytes + self.small_max <= self.cache.max_bytes:
            return self.small_max
        return min(self.small_max, ALWAYS_IN_MEMORY)

    def remember_target(self, target, entry):
        """Note that the raw request-target ``target`` (bytes) named ``entry``
        (keyed by ``target_key``).

        Decoding a target is deterministic and routes are fixed at start, so
        the next plain request with the same bytes can skip building a
        Request altogether.  Bounded: cleared when full.
        """
        self.by_target.put(target_key(target), entry)

    def seen_before(self, head):
        """Were the request bytes or the shape ``head`` answered from the
        cache before?

        Heads and shapes are remembered on their second sight: a browser's
        changing cookie makes most heads unique, and remembering each would
        cost more than it saves.  Only hashes are kept here (bounded like
        ``by_target``); a collision merely remembers one a sight early.
        """
        key = hash(head)     # cached in the bytes object: known_heads hashed it
        if key in self.heads_seen.data:
            return True
        self.heads_seen.put(key, True)
        return False

    def entry_for_target(self, target):
        entry = self.by_target.data.get(target_key(target))
        if entry is None or entry.dead or not self.cache.is_fresh(entry, time.monotonic()):
            return None
        entry.used = True
        return entry

    def revalidate_ahead(self):
        """Stat the hot entries in one helper call before their trust runs out.

        Runs on the loop every ``FileCache.period`` seconds (a third of
        ``--cache-valid``, at most one), once started by the first call.
        Entries served lately are stat'ed together; the unchanged ones are
        trusted for another window, the changed ones dropped (the next
        request reloads them).  So a busy file is never revalidated on a
        request's path, and an edit is still seen within ``--cache-valid``
        (plus the batch's own few milliseconds).
        """
        if self.cache.period <= 0 or not hasattr(self.app.helpers, "loop"):
            return   # no trust window, or a blocking driver (no loop to sweep on)
        self.app.loop.call_later(self.cache.period, self.revalidate_ahead)
        if self.revalidating:
            return
        started = time.monotonic()
        due = self.cache.due_for_check(started)
        if not due:
            return
        self.revalidating = True
        self.app.stats.cache_revalidations += len(due)
        future = self.app.helpers.run(still_fresh_all, [entry for _, entry in due])

        def done(f):
            self.revalidating = False
            if f.cancelled() or f.exception() is not None:
                return
            for (key, entry), (fresh, vouch) in zip(due, f.result()):
                if entry.dead:
                    continue
                if fresh:
                    entry.trust(started)
                    entry.absent_in = vouch
                elif self.cache.get(key) is entry:
                    self.cache.remove(key)
        future.add_done_callback(done)

    # -- the general path ----------------------------------------------------------

    async def handle(self, request):
        method = request.method
        if method not in ("GET", "HEAD"):
            if method == "OPTIONS":
                return Response(200, [("Allow", ALLOW)], b"")
            if method in KNOWN_METHODS:
                raise HTTPError(405, "Method Not Allowed", [("Allow", ALLOW)])
            raise HTTPError(501, "Not Implemented")
        path = request.path
        if not self.show_dotfiles and is_hidden(path):
            raise HTTPError(404, "Not Found")
        try:
            entry = await self._lookup(path)
            if not isinstance(entry, FileEntry):
                return await self._not_a_file(request, entry)
        except HTTPError as e:
            fallback = self.rules.spa_path_for(request) \
                if e.status == 404 and self.rules is not None else None
            if fallback is None:
                raise
            # The SPA fallback (nginx's try_files $uri /index.html): its
            # page, under the path asked for, never cached under that path.
            entry = await self.page_entry(fallback)
            if not isinstance(entry, FileEntry):
                raise HTTPError(404, "Not Found") from None
        if entry.variants is not None:
            chosen = self._negotiate(request, entry)
            if type(chosen) is str:
                chosen = await self.compression.make(self.app.helpers, entry, chosen)
            entry = chosen
        return self._represent(request, entry)

    async def page_entry(self, path):
        """The FileEntry of a page the config file names (an error page, the
        SPA fallback) for the URL path ``path``, as ``_lookup`` finds it.

        Cached under a key no request path has (a decoded path never holds
        NUL), so a page the static handler would refuse to a request for it
        (one in a dot-folder) never reaches the cached path.
        """
        return await self._lookup(path, PAGE_KEY + path)

    async def _lookup(self, path, key=None):
        """A fresh FileEntry for ``path``, from the cache (under ``key``,
        by default ``path``) or a helper.

        For a directory it returns the Redirect or Directory that says what
        to do with it.
        """
        app = self.app
        page = key is not None
        key = self.key_prefix + (path if key is None else key)
        entry = self.cache.get(key)
        if entry is not None:
            entry.used = True   # the sweeps keep it fresh while it is asked for
            if self.cache.is_fresh(entry, time.monotonic()):
                app.stats.cache_hits += 1
                return entry
            app.stats.cache_revalidations += 1
            fresh = await app.helpers.run(still_fresh, entry)
            # The cache may have dropped the entry (and closed its file)
            # while the helper ran: then it is loaded again, as a miss.
            if fresh and not entry.dead:
                entry.trust(time.monotonic())
                return entry
            if self.cache.get(key) is entry:
                self.cache.remove(key)
        app.stats.cache_misses += 1
        try:
            entry = await app.helpers.run(
                resolve, self.docroot, self.real_root, path, self.index_names,
                self.follow_symlinks, self._admit_max(), self.scripts, self.compression)
        except (Redirect, Directory) as e:
            return e
        if self.rules is not None and not page:   # a page is served as a page
            entry.set_rule_fields(*self.rules.entry_headers(path))
        self.cache.put(key, entry)
        return entry

    async def _not_a_file(self, request, found):
        if isinstance(found, Redirect):
            # Built from the normalised path, which starts with exactly one
            # "/": a Location of "//host/..." would send the browser
            # elsewhere (CVE-2021-28861).
            location = quote(request.path.encode("utf-8", "surrogateescape"),
                             safe=URL_SAFE) + "/"
            if request.query:
                location += "?" + request.query
            return Response(301, [("Location", location),
                                  ("Content-Type", "text/html; charset=utf-8")],
                            b"<!doctype html><title>301 Moved Permanently</title>"
                            b"<h1>Moved Permanently</h1>\n")
        if self.directory_hook is not None:
            answer = self.directory_hook(request=request, fspath=found.fspath)
            if answer is not None:
                return await self.app.checked(request, answer,
                                              self.app.implementers("flashplug_directory"))
        # 404 rather than 403: with no listing enabled the directory is, to a
        # client, simply not a document; nginx says 403 here, which tells a
        # scanner the folder exists.
        raise HTTPError(404, "Not Found")

    def respond_with(self, request, entry):
        """The Response for a GET or HEAD of a fresh entry (no disk work), or
        None when the client's choice is a compressed variant not made yet
        (``handle`` has a helper make it)."""
        if entry.variants is not None:
            entry = self._negotiate(request, entry)
            if type(entry) is str:
                return None
        return self._represent(request, entry)

    def ready_variant(self, accept, entry):
        """For a plain GET/HEAD of a negotiated ``entry`` with Accept-Encoding
        ``accept`` (str or None): the variant to send if it is ready, else
        None (a 406, or a variant still to be made: ``respond_with`` and
        ``handle`` deal with those)."""
        chosen = self.compression.pick(accept, entry)
        return None if chosen is None or type(chosen) is str else chosen

    def _negotiate(self, request, entry):
        """The variant of a negotiated ``entry`` to send (a FileEntry), or
        the coding still to be made (str); 406 when the client accepts
        neither a coding we have nor identity (RFC 9110 §12.5.3)."""
        chosen = self.compression.pick(request.headers.get("accept-encoding"), entry)
        if chosen is None:
            raise HTTPError(406, "Not Acceptable: no acceptable content-coding",
                            [("Vary", "Accept-Encoding")])
        return chosen

    def _represent(self, request, entry):
        """The Response that sends ``entry`` (a file or one of its variants)."""
        validators = [("Last-Modified", entry.last_modified), ("ETag", entry.etag)]
        if entry.vary:
            validators.append(("Vary", "Accept-Encoding"))
        content = [("Content-Type", entry.content_type)]
        if entry.coding is not None:
            content.append(("Content-Encoding", entry.coding))
        if not request.conditional:  # no If-* or Range header: a plain 200
            return Response(200, [*content, *validators, ("Accept-Ranges", "bytes")],
                            FileBody(entry, [(0, entry.size)]))
        status = conditionals.evaluate(request.method, request.headers.get,
                                       entry.etag, entry.mtime)
        if status == 304:
            return Response(304, validators)
        # Errors about a negotiated file depend on Accept-Encoding too.
        vary = [("Vary", "Accept-Encoding")] if entry.vary else []
        if status == 412:
            raise HTTPError(412, "Precondition Failed", vary)
        headers = [*content, *validators, ("Accept-Ranges", "bytes")]
        size = entry.size
        range_header = request.headers.get("range")
        if range_header is not None and request.method == "GET":
            if_range = request.headers.get("if-range")
            if if_range is None or conditionals.if_range_allows(if_range, entry.etag, entry.mtime):
                wanted = ranges.parse_range(range_header, size)
                if wanted is ranges.UNSATISFIABLE:
                    raise HTTPError(416, "Range Not Satisfiable",
                                    [("Content-Range", ranges.unsatisfied_range(size)), *vary])
                # Ranges count the encoded bytes (RFC 9110 §14.1.2).  Several
                # of them would make a multipart body whose parts are pieces
                # of a coded stream, which no Content-Encoding field can
                # describe: such a request gets the whole variant (§14.2
                # lets a server ignore Range).
                if wanted and (entry.coding is None or len(wanted) == 1):
                    return self._partial(entry, headers, wanted)
        return Response(200, headers, FileBody(entry, [(0, size)]))

    def _partial(self, entry, headers, wanted):
        size = entry.size
        if len(wanted) == 1:
            start, end = wanted[0]
            headers[0:1] = [("Content-Type", entry.content_type),
                            ("Content-Range", ranges.content_range(start, end, size))]
            return Response(206, headers, FileBody(entry, [(start, end - start + 1)]))
        boundary = ranges.make_boundary()
        plan, closing, _total = ranges.multipart_plan(wanted, size, entry.content_type, boundary)
        parts = []
        for part_head, start, end in plan:
            parts.append(part_head)
            parts.append((start, end - start + 1))
        parts.append(closing)
        headers[0:1] = [("Content-Type", ranges.multipart_content_type(boundary))]
        return Response(206, headers, FileBody(entry, parts))

"""Content codings for static files: precompressed sidecars and on-the-fly
compression (RFC 9110 §8.4, §12.5.3).

Theory of operation: when a helper loads a file (``cache.load_entry``),
``Compression.find`` decides whether the file is negotiated on
Accept-Encoding and with which codings:

* sidecars: ``page.html.br``, ``page.html.zst``, ``page.html.gz`` beside
  ``page.html`` (nginx's ``gzip_static``, Caddy's ``precompressed``), on by
  default, since only the site's owner puts them there.  A sidecar must be a
  regular file that the static handler would serve itself (inside the
  document root, not a script), and not older than its original: a stale
  one (the original edited since) is ignored, with a warning, rather than
  sent to some clients only.  It is loaded with the original's entry, so
  its bytes are ready on the loop like the original's;
* on-the-fly (``--compress``): a file of a compressible type of at least
  ``MIN_LENGTH`` bytes may be compressed with any coding whose library is
  installed.  Compressing is CPU work, so it runs in a helper (zlib, brotli
  and zstandard release the GIL), once per file version and coding: the
  result is kept in a bounded LRU keyed by the file's identity (inode,
  device, size, mtime), the coding and the site policy's tag, so an
  edited file is never served from an old result, and two URLs (or sites
  of one policy) naming one file share it.

On each request ``pick`` negotiates (``flashplug.http.encoding``) and
returns the variant to send, or the coding still to be made (``make``).
A file that is negotiated answers with ``Vary: Accept-Encoding`` whatever
coding it is sent in; each variant has its own ETag (the coding appended,
Apache's way).  A sidecar's tag is strong, made from the sidecar's own
stat: its bytes are on disk.  A tag of bytes compressed on the fly is weak
(``W/``, nginx's way): the same file and coding may give other bytes
once brotli, zlib or zstd is upgraded and the server restarted, so the tag
cannot promise byte identity (RFC 9110 §8.8.1).  If-None-Match compares
weakly and still gives a 304; If-Match and If-Range never match it.

Only static files are compressed on the fly: a CGI or FastCGI response can
reflect a secret beside attacker-chosen text, and compressing both leaks
the secret through the length (BREACH).
"""
import asyncio
import gzip
import logging
import os
import stat as stat_mod
import threading
from collections import OrderedDict

from flashplug.cache import FileEntry, NotRegular, ident_of, load_entry, open_regular
from flashplug.http.encoding import IDENTITY, choose
from flashplug.http.mime import is_textual
from flashplug.memo import Memo

try:
    import brotli
except ImportError:  # the optional extra "compress" is not installed
    brotli = None
try:
    import zstandard
except ImportError:
    zstandard = None

log = logging.getLogger("flashplug.compress")

#: Codings we send, in our order of preference when a client rates several
#: alike: brotli makes the smallest text, zstd is close, gzip is everywhere.
PREFERENCE = ("br", "zstd", "gzip")
#: The file-name extension of each coding's sidecar.
SIDECAR_EXT = {"br": ".br", "zstd": ".zst", "gzip": ".gz"}
#: Smaller files are sent as they are: a compressed body plus its headers
#: would save a few dozen bytes at best (nginx's gzip_min_length idea).
MIN_LENGTH = 1024
#: Non-textual types that compress well (``mime.is_textual`` covers text/*,
#: JSON, XML, SVG, JavaScript); images, audio, video, fonts such as woff2
#: and archives are compressed already.
COMPRESSIBLE = frozenset(("application/wasm", "font/ttf", "font/otf", "image/bmp",
                          "image/vnd.microsoft.icon", "application/vnd.ms-fontobject"))
# Levels: a result is kept and reused, so they lean to size more than a
# proxy compressing every response would.  On a 100 KiB HTML page
# (bench/compress_bench.py) they give br < zstd < gzip in bytes, our order
# of preference, each in tens of milliseconds of a helper: gzip 6 (zlib's
# default), brotli 7 (5 is quicker but larger than gzip 6; 11 takes 20
# times as long), zstd 9 (its default 3 is larger than gzip 6).
GZIP_LEVEL, BROTLI_QUALITY, ZSTD_LEVEL = 6, 7, 9
# What a "not worth it" answer costs the variant cache (its key and slot).
MARKER_BYTES = 64
# Accept-Encoding answers remembered (Compression.pick).
CHOICES_MAX = 256
_UNKNOWN = object()


def _gzip(data):
    return gzip.compress(data, GZIP_LEVEL, mtime=0)


def _brotli(data):
    return brotli.compress(data, quality=BROTLI_QUALITY)


def _zstd(data):
    # A compressor object is not for two threads at once: one per call.
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)


COMPRESSORS = {"gzip": _gzip}
if brotli is not None:
    COMPRESSORS["br"] = _brotli
if zstandard is not None:
    COMPRESSORS["zstd"] = _zstd

#: The Python package each coding needs (for the start-up warning).
PACKAGES = {"br": "brotli", "zstd": "zstandard"}


def missing_codings():
    """Start-up warning lines for codings ``--compress`` cannot use because
    their package is missing (one line, or none)."""
    missing = [c for c in PREFERENCE if c not in COMPRESSORS]
    if not missing:
        return []
    packages = " and ".join(PACKAGES[c] for c in missing)
    return [f"--compress: {', '.join(missing)} off ({packages} not installed); "
            f"gzip only. Install them with: pip install 'flashplug[compress]'"]


def compressible(content_type):
    """Is a body of ``content_type`` (a Content-Type value) worth compressing?"""
    media = content_type.partition(";")[0].strip().lower()
    return is_textual(media) or media in COMPRESSIBLE


class NotSmaller:
    """The compressed bytes were no smaller: send the file as it is."""


NOT_SMALLER = NotSmaller()


def compress_entry(entry, coding):
    """Blocking (a helper): ``entry``'s content compressed with ``coding``,
    as a FileEntry, or NOT_SMALLER; None if the file changed under us (the
    caller sends the entry as it is; its next check reloads it)."""
    data = entry.data
    if data is None:
        # Read by name, not from the entry's descriptor: the loop may close
        # that meanwhile.  The identity check makes it the same file.
        try:
            fd, st = open_regular(entry.fspath)
        except (OSError, NotRegular):
            return None
        try:
            if ident_of(st) != entry.ident:
                return None
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read()
        finally:
            os.close(fd)
        if len(data) != entry.size:
            return None
    out = COMPRESSORS[coding](data)
    if len(out) >= len(data):
        return NOT_SMALLER
    return FileEntry(entry.fspath, entry.ident, entry.content_type, out, None,
                     size=len(out), coding=coding, vary=True, weak=True)


class VariantCache:
    """(file identity, coding) -> compressed FileEntry (or NOT_SMALLER), LRU,
    bounded in bytes.  A lock, since the ``mt`` architecture's threads share
    it; on the loop it is never contended."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def cost(variant):
        return MARKER_BYTES if variant is NOT_SMALLER else variant.nbytes + MARKER_BYTES

    def get(self, key):
        with self._lock:
            variant = self._items.get(key)
            if variant is not None:
                self._items.move_to_end(key)
            return variant

    def put(self, key, variant):
        cost = self.cost(variant)
        if cost > self.max_bytes:
            return      # bigger than the whole budget: sent this once, not kept
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= self.cost(old)
            self._items[key] = variant
            self.bytes += cost
            while self.bytes > self.max_bytes:
                _, victim = self._items.popitem(last=False)
                self.bytes -= self.cost(victim)

    def __len__(self):
        return len(self._items)


class Compression:
    """One worker's content-coding policy and its cache of compressed variants.

    Args:
        on_the_fly (bool): ``--compress``: compress compressible files.
        precompressed (bool): ``--precompressed``: serve sidecars.
        cache (VariantCache): where compressed copies are kept (the
            worker's one, ``--compress-cache-size``); a file bigger than
            its budget is never compressed on the fly.
        refused (callable): blocking; ``refused(path)`` is true for a path
            the static handler would not serve (outside the document root,
            a script): such a sidecar is ignored.
        stats (flashplug.stats.Stats | None): counts ``compressions``.
        tag (str): the site policy's (``flashplug.policy.cache_tag``):
            compressed copies are kept per policy, as the header-rule
            fields in their prebuilt lines are the policy's.
    """

    def __init__(self, on_the_fly, precompressed, cache, refused, stats=None, tag=""):
        self.codings = tuple(c for c in PREFERENCE if c in COMPRESSORS) if on_the_fly else ()
        self.precompressed = precompressed
        self.refused = refused
        self.stats = stats
        self.cache = cache
        self.tag = tag
        self.making = {}        # key -> the helper's future, while it compresses
        self.choices = Memo(CHOICES_MAX)   # (Accept-Encoding, offered codings) -> choose()

    @property
    def active(self):
        return bool(self.codings) or self.precompressed

    # -- in a helper, as a file is loaded ---------------------------------------------

    def find(self, fspath, st, content_type, small_max):
        """Blocking: the codings ``fspath`` (``st``: its fstat) is offered in.

        Returns ``(variants, sidecars)``: ``variants`` maps each coding, in
        PREFERENCE order, to its loaded sidecar FileEntry or to None (made
        on the fly), or is None when the file is not negotiated at all;
        ``sidecars`` lists ``(path, ident or None)`` of each sidecar name
        looked at, for ``cache.still_fresh`` to watch.
        """
        loaded = {}
        sidecars = []
        if self.precompressed:
            for coding in PREFERENCE:
                path = fspath + SIDECAR_EXT[coding]
                ident, variant = self._sidecar(path, st, content_type, coding, small_max)
                sidecars.append((path, ident))
                if variant is not None:
                    loaded[coding] = variant
        fly = (self.codings and MIN_LENGTH <= st.st_size <= self.cache.max_bytes
               and compressible(content_type))
        variants = {}
        for coding in PREFERENCE:
            if coding in loaded:
                variants[coding] = loaded[coding]
            elif fly and coding in self.codings:
                variants[coding] = None
        return (variants or None), tuple(sidecars)

    def _sidecar(self, path, original, content_type, coding, small_max):
        """Blocking: ``(ident or None, FileEntry or None)`` for one sidecar."""
        try:
            st = os.stat(path)
        except OSError:
            return None, None
        ident = ident_of(st)
        if not stat_mod.S_ISREG(st.st_mode) or self.refused(path):
            return ident, None
        if st.st_mtime_ns < original.st_mtime_ns:
            log.warning("%s is older than %s: ignored until it is made again",
                        path, os.path.basename(path[:-len(SIDECAR_EXT[coding])]))
            return ident, None
        try:
            variant = load_entry(path, small_max, content_type=content_type, coding=coding)
        except (OSError, NotRegular):
            return ident, None
        return variant.ident, variant

    # -- on the loop, per request -----------------------------------------------------

    def pick(self, accept, entry):
        """What to send for a negotiated ``entry`` to a client that sent
        ``accept`` (its Accept-Encoding value, or None): a FileEntry (the
        entry itself for identity), a coding (str) still to be made with
        ``make``, or None when nothing acceptable exists (a 406)."""
        variants = entry.variants
        key = (accept, tuple(variants))
        coding = self.choices.data.get(key, _UNKNOWN)
        if coding is _UNKNOWN:
            # Clients send a handful of distinct fields: remember each
            # answer (bounded, as fields come from requests).
            coding = self.choices.put(key, choose(accept, variants))
        if coding is None or coding == IDENTITY:
            return entry if coding is not None else None
        variant = variants[coding]
        if variant is None:
            variant = self.cache.get(entry.ident + (coding, self.tag))
            if variant is None:
                return coding
            if variant is NOT_SMALLER:
                return entry
        if variant.rule_fields is not entry.rule_fields:
            # The header rules' fields are the path's (flashplug.rules), and
            # a made variant may serve several paths of one file: it takes
            # those of the entry it is sent for, before its lines go out.
            variant.set_rule_fields(entry.rule_fields, entry.expires)
        return variant

    async def make(self, helpers, entry, coding):
        """The variant of ``entry`` in ``coding``, compressed by a helper
        (once, however many requests wait for it) and kept in the cache;
        ``entry`` itself when compressing does not pay or the file changed."""
        key = entry.ident + (coding, self.tag)
        job = self.making.get(key)
        if job is None:
            job = helpers.run(compress_entry, entry, coding)
            if hasattr(job, "add_done_callback"):       # a helper thread's future
                self.making[key] = job
                job.add_done_callback(lambda f: self._made(key, f))
                result = await _shielded(job)
            else:                                        # inline (sped, mt, mp): done
                result = await job
                self._keep(key, result)
        else:
            result = await _shielded(job)
        return entry if result is None or result is NOT_SMALLER else result

    def _made(self, key, future):
        self.making.pop(key, None)
        if not future.cancelled() and future.exception() is None:
            self._keep(key, future.result())

    def _keep(self, key, result):
        if result is not None:
            self.cache.put(key, result)
            if self.stats is not None:
                self.stats.compressions += 1


async def _shielded(future):
    """Await a shared future without cancelling it for the others when this
    waiter is cancelled (its client went away)."""
    return await asyncio.shield(future)

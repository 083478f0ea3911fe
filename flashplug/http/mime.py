"""Content-Type from a file name.

Theory of operation: our own table of the types a web site serves, looked
up by the lowercased last extension; then the defaults compiled into
Python's ``mimetypes`` (an instance of ``MimeTypes``, which never reads
/etc/mime.types, so the answer does not depend on the host); then
``application/octet-stream``.  Textual types get ``charset=utf-8`` so a
browser does not guess.  Answers are cached per extension: this runs for
every uncached static response.
"""

import mimetypes

_TYPES = {
    # documents
    "html": "text/html", "htm": "text/html", "xhtml": "application/xhtml+xml",
    "css": "text/css", "txt": "text/plain", "md": "text/markdown",
    "csv": "text/csv", "xml": "application/xml", "pdf": "application/pdf",
    "rss": "application/rss+xml", "atom": "application/atom+xml",
    "ics": "text/calendar", "vtt": "text/vtt",
    # scripts and data (RFC 9239 names text/javascript for JavaScript)
    "js": "text/javascript", "mjs": "text/javascript", "cjs": "text/javascript",
    "json": "application/json", "map": "application/json",
    "jsonld": "application/ld+json",
    "webmanifest": "application/manifest+json",
    "wasm": "application/wasm",  # needed for WebAssembly streaming compile
    # Source files have no registered type; text/plain makes browsers show
    # them instead of downloading them.
    "py": "text/plain", "sh": "text/plain", "c": "text/plain",
    "h": "text/plain", "toml": "text/plain", "ini": "text/plain",
    "log": "text/plain", "yaml": "text/plain", "yml": "text/plain",
    "diff": "text/plain", "patch": "text/plain", "rst": "text/plain",
    # office documents and e-books a site offers for download (Python's
    # built-in table has none of them; http.server found them in
    # /etc/mime.types)
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
    "epub": "application/epub+zip",
    # images
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
    "gif": "image/gif", "webp": "image/webp", "avif": "image/avif",
    "svg": "image/svg+xml", "ico": "image/vnd.microsoft.icon",
    "bmp": "image/bmp", "tif": "image/tiff", "tiff": "image/tiff",
    "jxl": "image/jxl",
    # fonts
    "woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf",
    "otf": "font/otf", "eot": "application/vnd.ms-fontobject",
    # audio and video
    "mp4": "video/mp4", "m4v": "video/mp4", "webm": "video/webm",
    "ogv": "video/ogg", "mov": "video/quicktime", "mp3": "audio/mpeg",
    "m4a": "audio/mp4", "aac": "audio/aac", "flac": "audio/flac",
    "ogg": "audio/ogg", "oga": "audio/ogg", "opus": "audio/ogg",
    "wav": "audio/wav",
    # archives
    "zip": "application/zip", "gz": "application/gzip",
    "tgz": "application/gzip", "tar": "application/x-tar",
    "bz2": "application/x-bzip2", "xz": "application/x-xz",
    "zst": "application/zstd", "7z": "application/x-7z-compressed",
    "rar": "application/vnd.rar",
}

DEFAULT_TYPE = "application/octet-stream"

# Non-text/* types whose content is text.  Any +json or +xml type is too.
_TEXTUAL = frozenset((
    "application/javascript", "application/json", "application/xml",
    "image/svg+xml", "application/manifest+json",
))

_BUILTIN = mimetypes.MimeTypes()

# Bounded because names may come from requests: a flood of made-up
# extensions must not grow it without limit.
_CACHE_MAX = 1024
_cache = {}


def is_textual(ctype):
    """Is ``ctype`` (a media type without parameters) text, whatever its name?"""
    return (ctype.startswith("text/") or ctype in _TEXTUAL
            or ctype.endswith("+json") or ctype.endswith("+xml"))


def _lookup(ext):
    ctype = _TYPES.get(ext)
    if ctype is None and ext:
        dotted = "." + ext
        ctype = (_BUILTIN.types_map[True].get(dotted)
                 or _BUILTIN.types_map[False].get(dotted))
    if ctype is None:
        return DEFAULT_TYPE
    return ctype + "; charset=utf-8" if is_textual(ctype) else ctype


def content_type_for(name):
    """The Content-Type value for a file called ``name`` (a path is fine)."""
    base = name[name.rfind("/") + 1:].lstrip(".")  # ".bashrc" has no extension
    dot = base.rfind(".")
    ext = base[dot + 1:].lower() if dot >= 0 else ""
    ctype = _cache.get(ext)
    if ctype is None:
        ctype = _lookup(ext)
        if len(_cache) < _CACHE_MAX:
            _cache[ext] = ctype
    return ctype

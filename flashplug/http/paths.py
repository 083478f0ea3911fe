"""Request paths: decode once, refuse the dangerous, normalise.

Theory of operation: the kernel hands us the still-encoded path of the
request target.  ``decode_path`` percent-decodes it exactly once and then
resolves "." and ".." on the decoded segments, so an encoded dot cannot
sneak a ".." past the normaliser and nothing is ever decoded twice.  What
comes out starts with "/", has no empty, "." or ".." segment, no NUL and no
backslash, so joining its segments onto the document root cannot leave it
(symlinks are the file layer's business).

Refusals follow the big servers: a malformed escape, a NUL (raw or
encoded), a raw control character, or a ".." above the root is 400 (nginx);
an encoded slash or a backslash is 404 (Apache's default for encoded
slashes), because no file name on disk can contain either.

A *percent-encoded* control character other than NUL (``%0A``, ``%01``,
``%7F``) is decoded and kept: a POSIX file name may hold one, nginx and
Apache serve such a file, and the autoindex listing links to it that way
(docs/autoindex.md).  The decoded path is therefore not fit for a header
or a log line as it is: whoever puts it there percent-encodes it again
(the static handler's redirect does) or escapes it.

``raw_path`` is a str holding one character per byte of the target (the
kernel decodes the request line as ISO-8859-1, like header values).  The
decoded bytes are read as UTF-8 with surrogateescape, so a file whose
name is not UTF-8 can still be served: ``os`` functions encode such a
str back to the same bytes.
"""

import re
import string

from ..errors import HTTPError

# Each two-byte hex pair, either case, to the byte it encodes.  int(x, 16)
# alone would also take "+f", " f" or "_f".
_HEX_PAIRS = {(a + b).encode("ascii"): bytes([int(a + b, 16)])
              for a in string.hexdigits for b in string.hexdigits}

# C0 controls and DEL, NUL among them: refused when they arrive unencoded
# (RFC 3986 has no place for them in a URI).
_RAW_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Anything that needs more than a look: an escape, a control character, a
# backslash, an empty segment or one that starts with a dot.  A plain ASCII
# path without any of these is already decoded and normal.
_NEEDS_WORK = re.compile(r'[%\x00-\x1f\x7f\\]|//|/\.')

_WELL_KNOWN = ".well-known"  # RFC 8615 names it; ACME needs it served


#: What an encoded slash becomes in a path decoded for a route that takes
#: them (``decode_slashed_path``): NUL, which no other decoded path holds
#: (a NUL is refused), so it cannot be confused with a real ``/`` nor with
#: a decoded ``%252F``.
ENCODED_SLASH = "\x00"


def _percent_decode(raw, keep_slash=False):
    try:
        data = raw.encode("latin-1")
    except UnicodeEncodeError:
        raise HTTPError(400, "request path is not made of bytes") from None
    if b"%" not in data:
        return data
    pieces = data.split(b"%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        byte = _HEX_PAIRS.get(piece[:2])
        if byte is None:
            raise HTTPError(400, "malformed percent-escape in path")
        if byte == b"/":
            if not keep_slash:
                raise HTTPError(404, "encoded slash in path")
            byte = b"\x00"             # ENCODED_SLASH
        elif byte == b"\x00" and keep_slash:
            # A real NUL must not pass for the marker (it would reach the
            # upstream as %2F).
            raise HTTPError(400, "NUL in path")
        out.append(byte)
        out.append(piece[2:])
    return b"".join(out)


def decode_path(raw_path):
    """The decoded, normalised path of a request (see the module docstring).

    Raises ``HTTPError`` 400 or 404 for a path we refuse to map to a file.
    """
    if not raw_path.startswith("/"):
        raise HTTPError(400, "request path does not start with /")
    if raw_path.isascii() and _NEEDS_WORK.search(raw_path) is None:
        return raw_path
    if _RAW_CONTROL.search(raw_path):
        raise HTTPError(400, "control character in path")
    data = _percent_decode(raw_path)
    if b"\\" in data:
        raise HTTPError(404, "backslash in path")
    if b"\x00" in data:
        # No file name holds one, and C calls would stop at it.
        raise HTTPError(400, "NUL in path")
    return _remove_dot_segments(data.decode("utf-8", "surrogateescape").split("/"))


def _remove_dot_segments(segments):
    """The path of ``segments`` (a decoded path split at "/") without
    empty, "." and ".." segments (RFC 3986 §5.2.4); a ".." above the
    root is a 400."""
    out = []
    for seg in segments:
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            if not out:
                raise HTTPError(400, "path climbs above the root")
            out.pop()
        else:
            out.append(seg)
    if not out:
        return "/"
    # "/a/b/" and "/a/b/." and "/a/b/c/.." all name a directory.
    trailing = "/" if segments[-1] in ("", ".", "..") else ""
    return "/" + "/".join(out) + trailing


def decode_slashed_path(raw_path):
    """For routes that take encoded slashes (the proxy's, as nginx's
    ``proxy_pass`` and Caddy pass ``%2F`` on: GitLab's API names projects
    ``group%2Fproject``): ``raw_path`` decoded and normalised as
    ``decode_path`` does, but each ``%2F`` kept inside its segment as
    ``ENCODED_SLASH``; None when the path holds no encoded slash.  A piece
    of a segment between encoded slashes that is ``.`` or ``..`` is a 400:
    an upstream that decodes ``%2F`` must not climb out of its prefix
    with it (``/api/x%2F..%2F..%2Fadmin``)."""
    if "%" not in raw_path or not raw_path.startswith("/"):
        return None
    if _RAW_CONTROL.search(raw_path):
        return None
    try:
        data = _percent_decode(raw_path, keep_slash=True)
    except HTTPError:
        return None
    # ENCODED_SLASH is a NUL: none, no encoded slash; a backslash is a 404
    # (decode_path), left to it.
    if b"\x00" not in data or b"\\" in data:
        return None
    path = data.decode("utf-8", "surrogateescape")
    segments = path.split("/")
    for seg in segments:
        if ENCODED_SLASH in seg and any(p in (".", "..") for p in seg.split(ENCODED_SLASH)):
            raise HTTPError(400, "dot segment between encoded slashes")
    return _remove_dot_segments(segments)


def is_hidden(path):
    """True when a segment of ``path`` starts with "." (.git, .env, ...).

    The ".well-known" directory of RFC 8615 is the one exception.
    """
    if "/." not in path:
        return False
    for seg in path.split("/"):
        if seg.startswith(".") and seg != _WELL_KNOWN:
            return True
    return False


def to_relative_parts(path):
    """The segments of a ``decode_path`` result, to join onto the docroot."""
    return [seg for seg in path.split("/") if seg]

"""HTTP/2 requests and responses as field lists: the checks RFC 9113 asks
for, as pure functions (no connection, no h2 state).

``request_parts(fields)`` checks a request's decoded field block (RFC 9113
§8.2 and §8.3) and returns its method, target, authority and regular
fields.  A malformed block raises ``StreamError`` (the stream is reset with
PROTOCOL_ERROR, §8.1.1); a well-formed request the server will not serve
raises ``ProtocolError`` with its HTTP status, exactly as over HTTP/1.1.

``response_fields(head)`` turns a response head the request cycle framed
as HTTP/1.1 (``flashplug.framing``), or a CGI NPH script's own head, into
the ``:status`` and fields of a HEADERS frame: lowercase names, no
connection-specific fields (§8.2.2).  So the cycle and the handlers frame
every response one way, whichever protocol carries it.
"""
import re

from flashplug.http.h1_checks import TOKEN_BYTES, ProtocolError

# RFC 9113 §8.3.1: the request pseudo-header fields (":protocol" belongs to
# extended CONNECT, RFC 8441, which we do not offer).
REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":path", b":authority"))
# RFC 9113 §8.2.2: connection-specific fields are malformed in HTTP/2.
CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection",
                                 b"transfer-encoding", b"upgrade"))
# Names are lowercase tokens (RFC 9110 §5.1, RFC 9113 §8.2.1).
_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9a-z-]+\Z")
# A value holds no NUL, CR, LF or other control byte but HTAB, and does not
# begin or end with whitespace (RFC 9113 §8.2.1, RFC 9110 §5.5).
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|\A[ \t]|[ \t]\Z")
# Names browsers and load generators send, known to be good lowercase tokens.
_COMMON = frozenset((b"user-agent", b"accept", b"accept-encoding", b"accept-language",
                     b"referer", b"cookie", b"cache-control", b"pragma", b"origin",
                     b"priority", b"if-none-match", b"if-modified-since", b"range",
                     b"content-type", b"content-length", b"sec-fetch-site", b"sec-fetch-mode",
                     b"sec-fetch-dest", b"sec-fetch-user", b"sec-ch-ua", b"sec-ch-ua-mobile",
                     b"sec-ch-ua-platform", b"upgrade-insecure-requests", b"dnt"))


class StreamError(Exception):
    """A malformed request: the stream is reset with PROTOCOL_ERROR."""


def request_parts(fields):
    """Check a request's field block (a list of ``(name, value)`` bytes).

    Returns ``(method, target, authority, regular)``: str, str, bytes or
    None, and the regular fields as ``(name, value)`` bytes with repeated
    ``cookie`` fields joined by ``"; "`` (§8.2.3).  Raises StreamError for
    a malformed block, ProtocolError(501) for CONNECT (we are no proxy)
    and ProtocolError(400) for a ``:path`` that is no URI (a raw byte
    above 0x7F), as HTTP/1.1 answers such a request-target.
    """
    pseudo = {}
    regular = []
    cookies = []
    for name, value in fields:
        if name[:1] == b":":
            if regular or cookies:
                raise StreamError("pseudo-header field after a regular field")
            if name not in REQUEST_PSEUDO:
                raise StreamError(f"unknown pseudo-header field {name!r}")
            if name in pseudo:
                raise StreamError(f"repeated pseudo-header field {name!r}")
            pseudo[name] = value
            continue
        if name not in _COMMON and not _NAME.match(name):
            raise StreamError(f"field name {name!r} is not a lowercase token")
        if name in CONNECTION_SPECIFIC:
            raise StreamError(f"connection-specific field {name!r}")
        if name == b"te" and value != b"trailers":
            raise StreamError("TE other than trailers")
        if value and _BAD_VALUE.search(value):
            raise StreamError(f"invalid value of {name!r}")
        if name == b"cookie":
            cookies.append(value)
        else:
            regular.append((name, value))
    if cookies:
        regular.append((b"cookie", b"; ".join(cookies)))
    method = pseudo.get(b":method")
    if not method or not TOKEN_BYTES.match(method):
        raise StreamError("missing or invalid :method")
    authority = pseudo.get(b":authority")
    if method == b"CONNECT":
        if b":scheme" in pseudo or b":path" in pseudo or authority is None:
            raise StreamError("CONNECT takes :authority only")
        raise ProtocolError(501, "Not Implemented: CONNECT")
    path = pseudo.get(b":path")
    if not path or b":scheme" not in pseudo:
        raise StreamError("missing :scheme or :path")
    if _BAD_VALUE.search(path) or b" " in path or (authority and _BAD_VALUE.search(authority)):
        raise StreamError("invalid :path or :authority")
    if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
        # §8.3.1: the path and query (origin form), or "*" for OPTIONS; an
        # absolute form would name a host beside :authority.
        raise StreamError(":path is not a path")
    if not path.isascii():
        # A URI is ASCII (RFC 3986 §2: anything else is percent-encoded);
        # over HTTP/1.1 llhttp refuses such a target with 400, so it is
        # refused the same way here, not reset: the field block is well
        # formed (§8.2.1 allows obs-text), the target is not a URI.
        raise ProtocolError(400, "Bad Request: a byte above 0x7F in the request-target")
    return method.decode("ascii"), path.decode("latin-1"), authority, regular


def check_trailers(fields):
    """Check a request's trailer section (RFC 9113 §8.1): no pseudo-header
    field, and each field well formed as in the header section (§8.2).
    Raises StreamError; the fields themselves are not used."""
    for name, value in fields:
        if name[:1] == b":":
            raise StreamError(f"pseudo-header field {name!r} in trailers")
        if not _NAME.match(name):
            raise StreamError(f"trailer field name {name!r} is not a lowercase token")
        if name in CONNECTION_SPECIFIC:
            raise StreamError(f"connection-specific field {name!r} in trailers")
        if value and _BAD_VALUE.search(value):
            raise StreamError(f"invalid value of trailer {name!r}")


def response_fields(head):
    """``(status, fields)`` of an HTTP/1.x response head (bytes up to and
    including the blank line): fields are lowercase ``(name, value)``
    bytes, without connection-specific ones.  Raises ValueError for a head
    that is not one (a CGI NPH script's mistake)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or len(parts[1]) != 3 \
            or not parts[1].isdigit():
        raise ValueError(f"not a status line: {lines[0][:80]!r}")
    fields = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(b":")
        name = name.lower()
        value = value.strip(b" \t")
        if not colon or not _NAME.match(name) or (value and _BAD_VALUE.search(value)):
            raise ValueError(f"not a header line: {line[:80]!r}")
        if name not in CONNECTION_SPECIFIC:
            fields.append((name, value))
    return int(parts[1]), fields

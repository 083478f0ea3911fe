"""The checks of an HTTP/1.1 request head, as pure functions (RFC 9112).

Theory of operation: ``flashplug.http.h1`` calls these from its parser
callbacks; each takes bytes or a Request and returns an answer or raises a
``ProtocolError`` that carries the HTTP status the client gets.  Nothing
here keeps state between requests except a bounded set of Host values
already found valid.
"""
import re

import httptools

from flashplug.errors import HTTPError
from flashplug.http.paths import decode_path
from flashplug.memo import Memo

# Longest request target accepted (Apache's LimitRequestLine is 8190).
MAX_REQUEST_TARGET = 8190
# A token longer than this where the method goes is 501 whatever follows
# it: longer than any method (RFC 9112 §3).
MAX_METHOD = 64
# Longest request line waited for whole before it is parsed (h1._line_whole):
# a method, the longest target and the version, with their spaces and CR.
MAX_REQUEST_LINE = MAX_METHOD + MAX_REQUEST_TARGET + len("  HTTP/1.1\r")
# RFC 3986 host (IP-literal, IPv4 or reg-name) and an optional port.
_HOST_RE = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(:[0-9]*)?")
# Host values already read -> the request's host they give (None: invalid).
_HOST_NAMES = Memo(1024)
_VERSION_RE = re.compile(rb"HTTP/[0-9]\.[0-9]")
#: RFC 9110 §5.6.2 token (a method, a field name), as str and as bytes: the
#: one definition, which the other checks import.
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
TOKEN_BYTES = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
# scheme "://" authority path-abempty ["?" query] ["#" fragment] (RFC 3986 §3)
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#.*)?", re.S)


class ProtocolError(Exception):
    """A request we answer with ``status`` and then close the connection."""

    def __init__(self, status, message):
        super().__init__(status, message)
        self.status = status
        self.message = message


def classify(error, message):
    """The ProtocolError for an error llhttp reported in ``message``, the
    bytes of the request that failed (from its first byte)."""
    line = bytes(message[:MAX_REQUEST_TARGET + 64]).lstrip(b"\r\n").partition(b"\r\n")[0]
    method, _, rest = line.partition(b" ")
    if isinstance(error, httptools.HttpParserInvalidMethodError):
        # An unknown but well-formed method ("FOO / HTTP/1.1") is 501, in
        # any case: methods are case-sensitive tokens (RFC 9110 §9.1), so
        # "get" is another method, not a malformed GET (Apache and lighttpd
        # answer it 501 too); bytes that are not HTTP at all (a TLS
        # ClientHello, a number where the method goes) are 400.  A token
        # longer than any method is 501 whatever follows it (RFC 9112 §3).
        if TOKEN_BYTES.match(method) and not method.isdigit() and (
                len(method) > MAX_METHOD or rest.startswith(b"/")
                or rest[:8].lower().startswith((b"http://", b"https://"))):
            return ProtocolError(501, "Not Implemented")
        return ProtocolError(400, "Bad Request")
    version = rest.rpartition(b" ")[2]
    if _VERSION_RE.fullmatch(version) and version not in (b"HTTP/1.1", b"HTTP/1.0"):
        return ProtocolError(505, "HTTP Version Not Supported")
    return ProtocolError(400, "Bad Request")


def request_line_unended(message):
    """Are ``message`` (a request's bytes from its first byte) the start
    of a request line that has not ended (no LF yet) and may still be
    one we read (at most MAX_REQUEST_LINE bytes, nothing but visible ASCII
    and spaces)?"""
    if len(message) > MAX_REQUEST_LINE:
        return False
    # Empty lines before it are no part of it (RFC 9112 §2.2): llhttp
    # skips them, and with nothing after them no message has begun.
    line = (message.tobytes() if type(message) is memoryview else message).lstrip(b"\r\n")
    return _LINE_START.fullmatch(line) is not None


# What a request line may begin with: visible ASCII and spaces, a CR last.
# A byte outside (a TLS ClientHello's first) is an error at once, and a 400
# whatever follows it.
_LINE_START = re.compile(rb"[\x21-\x7e][\x20-\x7e]*\r?")


def as_http11(message):
    """``message`` (the bytes of a request from its first byte) with the
    version of its request line read as ``HTTP/1.1`` when it is a later
    HTTP/1 minor version (``HTTP/1.2`` to ``HTTP/1.9``), or None.

    RFC 9110 §2.5: a recipient SHOULD process a message of a higher minor
    version as if it were of the highest minor version it implements, and
    answer with that version; nginx, Apache and Go do.  llhttp refuses any
    version but 1.0 and 1.1, so the kernel feeds it the rewritten bytes.
    """
    head = bytes(message)
    start = len(head) - len(head.lstrip(b"\r\n"))
    end = head.find(b"\r\n", start)
    if end < 10 or not _LATER_MINOR.fullmatch(head, end - 9, end):
        return None
    return head[:end - 1] + b"1" + head[end:]


_LATER_MINOR = re.compile(rb" HTTP/1\.[2-9]")


def host_name(value):
    """The request's host named by a Host field value or by the authority
    of an absolute-form target (``bytes`` or ``str``): the URI host,
    lowercased, without its port or a trailing dot (``"example.org"``,
    ``"127.0.0.1"``, ``"[::1]"``); None when ``value`` is no URI host with
    an optional port (RFC 9112 §3.2, RFC 3986 §3.2.2), or a name with an
    empty label (``"a..b"``, ``"a.."``).

    The one definition of "the request's host": ``Request.host``, the CGI
    ``SERVER_NAME``, redirects and the choice of a site all read it.  An
    empty value is invalid: our target URIs are "http" URIs, whose host
    must not be empty (RFC 9110 §4.2.1).
    """
    name = _HOST_NAMES.data.get(value, False)
    if name is not False:
        return name
    raw = value.encode("latin-1") if isinstance(value, str) else bytes(value)
    m = _HOST_RE.fullmatch(raw) if raw else None
    name = None
    if m is not None and m.group(1):
        name = m.group(1).decode("ascii").lower()
        if not name.startswith("["):
            # One trailing dot is the root label (RFC 1034 §3.1); two dots in
            # a row are an empty label, which no name has (nginx: 400).
            name = None if ".." in name else (name[:-1] if name.endswith(".") else name) or None
    return _HOST_NAMES.put(value, name)


def same_authority(one, other, scheme):
    """Do two authorities (``host[:port]``, bytes or str) name the same
    host and port once normalised as RFC 3986 §6.2.2-6.2.3 asks: the host
    without regard to case or a trailing dot, an empty or absent port as
    the scheme's default (80 for "http", 443 for "https")?  False when
    either is no valid authority.  RFC 9113 §8.3.1 compares Host with
    :authority this way."""
    default = b"443" if scheme == "https" else b"80"
    keys = []
    for value in (one, other):
        raw = value.encode("latin-1") if isinstance(value, str) else bytes(value)
        m = _HOST_RE.fullmatch(raw)
        name = host_name(m.group(1)) if m is not None and m.group(1) else None
        if name is None:
            return False
        keys.append((name, (m.group(2) or b":")[1:].lstrip(b"0") or default.lstrip(b"0")))
    return keys[0] == keys[1]


def valid_host(host):
    """Is a Host value (bytes, or None when absent) a URI host with an
    optional port (RFC 9112 §3.2)?  Absent is valid here; whether one is
    required is the caller's rule."""
    return host is None or host_name(host) is not None


def content_length(headers, limit):
    """The request's declared body length (int), or None without one: the
    Content-Length fields must agree on one number (RFC 9110 §8.6, a list
    of equal values counts as one).  ProtocolError 400 when they do not,
    413 past ``limit`` bytes."""
    lengths = headers.get_all("content-length")
    if not lengths:
        return None
    values = {v.strip() for v in ",".join(lengths).split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise ProtocolError(400, "Bad Request: invalid Content-Length")
    length = int(next(iter(values)))
    if length > limit:
        raise ProtocolError(413, "Content Too Large")
    return length


def expects_continue(value):
    """Does an Expect field value (str, or None when absent) ask for
    ``100 Continue``?  RFC 9110 §10.1.1: 100-continue, matched without
    regard to case, is the one expectation there is; a value naming any
    other is a ProtocolError 417 (as Apache and Go's net/http, so Caddy,
    answer it), whether or not the request has a body.  An empty value
    asks for nothing."""
    if value is None:
        return False
    members = {m.strip(" \t").lower() for m in value.split(",")} - {""}
    if members - {"100-continue"}:
        raise ProtocolError(417, "Expectation Failed")
    return bool(members)


def keep_alive(version, options):
    """May the connection carry another request after this one?

    llhttp's own answer misses a "close" beside "keep-alive" in HTTP/1.0,
    so the Connection options are read here (RFC 9112 §9.3).
    """
    if options is None:
        return version == "1.1"
    tokens = {t.strip() for t in options.lower().split(b",")}
    if b"close" in tokens:
        return False
    return version == "1.1" or b"keep-alive" in tokens


def set_target(request, target):
    """The path and query of ``target`` (RFC 9112 §3.2), on ``request``.

    Returns the authority (``host[:port]``, as sent) of an absolute-form
    target, else None.  Raises ProtocolError: 400 for a target of no form
    its method takes, 501 for an authority-form CONNECT.
    """
    authority = None
    if target.startswith("/") and request.method != "CONNECT":
        raw_path, _, query = target.partition("?")
        query = query.partition("#")[0]  # a fragment is the client's business
        raw_path = raw_path.partition("#")[0]
    elif request.method == "CONNECT":
        # RFC 9112 §3.2.3: CONNECT names a host and port, nothing else (an
        # h2 CONNECT with a :path is malformed too).  We are no proxy, and a
        # method not implemented is 501 (RFC 9110 §9.1, §15.6.2), as over h2.
        # Any other form is 400, the origin form too (as Apache answers; nginx
        # and lighttpd say 405): a plugin's route must never get a CONNECT,
        # whose 2xx would turn the connection into a tunnel for the client
        # and any proxy in front (§9.3.6), while we go on reading HTTP.
        if host_name(target) is None or ":" not in target.rpartition("]")[2]:
            raise ProtocolError(400, "Bad Request: CONNECT takes host:port")
        raise ProtocolError(501, "Not Implemented: CONNECT")
    elif target == "*" and request.method == "OPTIONS":
        raw_path, query = "*", ""
    elif "://" in target:
        # absolute-form (RFC 9112 §3.2.2): the path comes from the URI, whose
        # authority is read as a Host value is (an empty or large port
        # included), so the two forms agree on what is a valid host.
        m = _ABSOLUTE.fullmatch(target)
        if m is None:
            raise ProtocolError(400, "Bad Request: invalid request target")
        authority, raw_path, query = m.group(1), m.group(2) or "/", m.group(3) or ""
        if "@" in authority:
            # RFC 9110 §4.2.4: userinfo in an http URI is an error.
            raise ProtocolError(400, "Bad Request: userinfo in request target")
        if host_name(authority) is None:
            raise ProtocolError(400, "Bad Request: invalid host in request target")
    else:
        raise ProtocolError(400, "Bad Request: invalid request target")
    request.query = query
    request.raw_path = raw_path
    if raw_path == "*":
        request.path = "*"
        return authority
    try:
        request.path = decode_path(raw_path)
    except HTTPError as e:
        request.path = None
        request.state["path_error"] = e
    return authority

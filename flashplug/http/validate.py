"""What a plugin hands the kernel is checked here before it reaches the wire.

Theory of operation: plugin code is the one source of responses the kernel
did not build itself, so everything a handler or hook returns goes through
:func:`check_response` (and a route's handler through
:func:`is_async_handler`) at the API boundary.  A mistake raises
:class:`ResponseMistake` with a one-line cause for the error log; the kernel
answers 500 instead and the connection stays in step.  The kernel's own
responses (static files, error pages) are built right and skip this.

The rules, with the RFC that sets them:

==================  ====================================================
status              an ``int`` from 200 to 599: a handler gives the
                    final response, and 1xx are interim (RFC 9110 §15);
                    or 101 with ``upgrade``, an ``async def`` that
                    takes the connection over (RFC 9110 §15.2.2)
reason              ``None`` or ``str``: HTAB, SP, VCHAR, obs-text
                    (RFC 9112 §4)
headers             a ``list`` of ``(name, value)`` pairs of ``str``; a
                    ``dict`` is refused, as it cannot repeat a field
                    (``Set-Cookie``) and hooks append to the list; a
                    ``CheckedFields`` (a list whose fields a gateway
                    checked with ``field_error`` as it read them) is
                    not checked again, but for Content-Length
header name         a token (RFC 9110 §5.1)
header value        no CR, LF, NUL or other control character but HTAB
                    (RFC 9110 §5.5), and only ISO-8859-1 characters,
                    the ones a field value can carry as octets
Content-Length      at most one, digits only, and the body's length when
                    a non-empty body is given (RFC 9110 §8.6): a wrong
                    one would leave the client waiting, or reading the
                    next response as this one's body
body                ``bytes``, ``bytearray`` or ``memoryview``; or the
                    kernel's ``FileBody`` (file ranges), which a plugin
                    gets by re-dispatching a request to a static file
stream              an async iterable (``__aiter__``) of such chunks;
                    a bad chunk can only be caught while it is sent,
                    when the status line is gone, so the connection is
                    then closed instead
==================  ====================================================

No I/O and no kernel state of its own; ``plugins/cgi`` checks a script's
header lines with the same :func:`field_error`.
"""
import inspect
import re

from flashplug.http.framing import SERVER_FIELDS
from flashplug.http.h1_checks import TOKEN
from flashplug.http.message import CheckedFields, Response
from flashplug.memo import Memo

#: What a field value or reason phrase must not contain: controls other
#: than HTAB (RFC 9110 §5.5), and characters that are no single octet.
_BAD_CHAR = re.compile(r"[^\t\x20-\x7e\x80-\xff]")
# Field names already found to be tokens, each with its lowercase form:
# the same few come in every response, so each is matched against TOKEN
# (a field name must be one) and lowercased once (up to _TOKENS_MAX).
_TOKENS = {}
_TOKENS_MAX = 1024
_NAMES = {"\r": "CR", "\n": "LF", "\x00": "NUL", "\x7f": "DEL"}
# Lists of fields found valid, as a tuple of their (name, value) pairs ->
# FieldBlock: a handler or a backend sends the same few lists again and
# again (up to _BLOCKS_MAX, forgotten at once when full).
_BLOCKS_MAX = 512
_BLOCKS = Memo(_BLOCKS_MAX)
_BLOCK_BYTES_MAX = 2048

BODY_TYPES = (bytes, bytearray, memoryview)


class ResponseMistake(Exception):
    """A plugin's response cannot be sent; the message says why, in one line.

    ``owner`` names the plugin for the error log (``"plugin 'x'"``), or is
    None when the caller did not know it.
    """

    def __init__(self, message, owner=None):
        super().__init__(message)
        self.owner = owner


def field_error(name, value):
    """Why ``(name, value)`` cannot be a header field, or None if it can.

    Both are ``str`` (header octets decoded as ISO-8859-1).
    """
    if type(name) is not str or type(value) is not str:
        return (f"header ({_clip(repr(name))}, {_clip(repr(value))}): name and value must be str, "
                f"not {type(name).__name__} and {type(value).__name__}")
    if name not in _TOKENS:
        if not TOKEN.match(name):
            return (f"header name {_clip(name)!r} is not a token (RFC 9110 §5.1: letters, "
                    f"digits and !#$%&'*+-.^_`|~ only)")
        if len(_TOKENS) < _TOKENS_MAX:
            _TOKENS[name] = name.lower()
    if not (value.isascii() and value.isprintable()):  # else plainly fine, and quick
        bad = _BAD_CHAR.search(value)
        if bad is not None:
            return f"header {name!r} value has {_char(bad.group())}"
    return None


class FieldBlock:
    """A list of response fields found valid, kept for the next list equal
    to it (the same names and values, so the same characters): its
    Content-Length values (``lengths``, a list of str, or None; not to be
    changed), and the HTTP/1.1 lines of its fields (``lines``, bytes, each
    ``Name: value\\r\\n``, but the fields the server writes itself, as
    ``flashplug.framing`` would write them), and whether those hold a
    Content-Length (``has_length``; the other framing field,
    Transfer-Encoding, is the server's).  ``verified``: ``check_headers``
    found it valid, rather than a gateway's ``CheckedFields`` saying so
    (a plain list equal to it is then still checked once)."""

    __slots__ = ("lengths", "lines", "has_length", "verified")

    def __init__(self, headers, lengths, verified):
        self.lengths = lengths
        self.has_length = lengths is not None
        self.verified = verified
        self.lines = "".join([f"{name}: {value}\r\n" for name, value in headers
                              if name.lower() not in SERVER_FIELDS]).encode("latin-1")


def known_block(headers):
    """The FieldBlock of a list of fields equal to ``headers`` (a list of
    ``(name, value)``) found valid before, or None."""
    try:
        return _BLOCKS.data.get(tuple(headers))
    except TypeError:    # an item that cannot be a key: no such list was valid
        return None


def _remember_block(headers, lengths, verified):
    """Note ``headers``, found valid, with its Content-Length values
    (unless its lines are long: a cookie or a token is seldom sent twice).
    Returns its FieldBlock when kept, else None."""
    try:
        block = FieldBlock(headers, lengths, verified)
        if len(block.lines) <= _BLOCK_BYTES_MAX:
            return _BLOCKS.put(tuple(headers), block)
    except (TypeError, UnicodeEncodeError):
        pass    # a CheckedFields that breaks its promise: written field by field
    return None


def check_response(response, owner=None):
    """Check a plugin's ``response``; raise :class:`ResponseMistake` if wrong.

    Returns the response ready to send: a ``memoryview`` body becomes
    ``bytes`` (the framing counts octets), and a stream is wrapped so that
    a chunk of the wrong type raises :class:`ResponseMistake`, naming
    ``owner``, when it comes.
    """
    if not isinstance(response, Response):
        raise ResponseMistake(f"returned {_clip(repr(response))}, not a flashplug.Response")
    status = response.status
    if response.upgrade is not None:
        if status != 101 or not is_async_handler(response.upgrade):
            raise ResponseMistake("upgrade needs status 101 and an async def taking the "
                                  "tunnel")
    elif type(status) is not int or not 200 <= status <= 599:
        raise ResponseMistake(f"status {status!r} is not an int from 200 to 599")
    reason = response.reason
    if reason is not None and (type(reason) is not str or not (
            reason.isascii() and reason.isprintable()) and _BAD_CHAR.search(reason)):
        raise ResponseMistake(f"reason {_clip(repr(reason))} is not a one-line str")
    headers = response.headers
    if type(headers) is CheckedFields and headers.checked:
        # Each field passed field_error where it was read: only the
        # Content-Length values are looked for, to weigh against the body.
        block = known_block(headers)
        if block is not None:
            lengths = block.lengths
        else:
            lengths = [v for n, v in headers if n.lower() == "content-length"] or None
            block = _remember_block(headers, lengths, False)
    else:
        lengths, block = check_fields(headers)
    # Looked up once: the framing writes the block's lines (unless the
    # fields change before, which sets it back to None).
    response._block = block
    body, stream = response.body, response.stream
    if stream is not None:
        if not hasattr(stream, "__aiter__"):
            raise ResponseMistake(f"stream is a {type(stream).__name__}, not an async "
                                  f"iterable of bytes (write an async generator)")
        if body:
            raise ResponseMistake("both body and stream given; give one")
        if type(stream) is not _CheckedChunks:     # (checked once already)
            response.stream = _CheckedChunks(stream, owner or "a plugin")
    elif response.raw:
        raise ResponseMistake("raw=True needs the response in stream")
    elif not isinstance(body, BODY_TYPES) and not _is_file_body(body):
        hint = " (encode it: text.encode('utf-8'))" if isinstance(body, str) else ""
        raise ResponseMistake(f"body is a {type(body).__name__}, not bytes{hint}")
    elif type(body) is memoryview:
        response.body = body = body.tobytes()
    if lengths is not None:
        _check_length(lengths, None if stream is not None else body)
    return response


def _check_length(lengths, body):
    """Check the Content-Length values ``lengths`` (str) against ``body``."""
    if len(lengths) > 1:
        raise ResponseMistake(f"{len(lengths)} Content-Length headers; give one")
    declared = lengths[0].strip()
    if not (declared.isascii() and declared.isdigit()):
        raise ResponseMistake(f"Content-Length {_clip(declared)!r} is not a number")
    if body:
        size = len(body) if isinstance(body, BODY_TYPES) else body.length
        if int(declared) != size:
            raise ResponseMistake(f"Content-Length {declared} but the body has {size} bytes")


def check_headers(headers):
    """Raise :class:`ResponseMistake` unless ``headers`` is a list of valid
    fields.  Returns the values of its Content-Length fields (a list of
    str), or None when it has none: counted on the way, not in a second
    pass."""
    return check_fields(headers)[0]


def check_fields(headers):
    """``check_headers``, returning its Content-Length values and the
    FieldBlock of ``headers`` (None when it is not kept)."""
    if type(headers) is not list and type(headers) is not CheckedFields:
        hint = " (list(d.items()) turns a dict into one)" if isinstance(headers, dict) else ""
        raise ResponseMistake(f"headers is a {type(headers).__name__}, not a list of "
                              f"(name, value) pairs{hint}")
    block = known_block(headers)
    if block is not None and block.verified:
        return block.lengths, block
    lengths = None
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise ResponseMistake(f"header {_clip(repr(item))} is not a (name, value) tuple")
        name, value = item
        # A name known to be a token with a value of printable ASCII (the
        # usual field) is fine: two string scans and a lookup, no call.
        lower = _TOKENS.get(name) if type(name) is str else None
        if lower is None or type(value) is not str or not (
                value.isascii() and value.isprintable()):
            problem = field_error(name, value)
            if problem is not None:
                raise ResponseMistake(problem)
            lower = name.lower()
        if lower == "content-length":
            lengths = [value] if lengths is None else lengths + [value]
    if block is not None:
        block.verified = True
    else:
        block = _remember_block(headers, lengths, True)
    return lengths, block


def is_async_handler(handler):
    """True if calling ``handler`` gives a coroutine: an ``async def``
    function or method, a ``functools.partial`` of one, or an object whose
    ``__call__`` is one."""
    return (inspect.iscoroutinefunction(handler)
            or inspect.iscoroutinefunction(getattr(handler, "__call__", None)))


class _CheckedChunks:
    """A plugin's stream, each chunk checked as it comes.

    A class, not an async generator: the kernel may ``aclose()`` it before
    the first chunk (HEAD, client gone), when an unstarted generator would
    skip its ``finally`` and never close the plugin's stream (a CGI
    process would be left running).
    """

    __slots__ = ("_stream", "_chunks", "_owner", "_sent")

    def __init__(self, stream, owner):
        self._stream = stream
        self._chunks = stream.__aiter__()
        self._owner = owner
        self._sent = 0

    def __aiter__(self):
        return self

    @property
    def owner(self):
        """The plugin the stream is from, for the error log."""
        return self._owner

    async def __anext__(self):
        try:
            chunk = await self._chunks.__anext__()
        except (StopAsyncIteration, ResponseMistake):
            raise
        except (Exception, SystemExit) as exc:      # (sys.exit(): as in a handler)
            # The plugin's own failure, after the status line went out: cut
            # off, and said as a handler's failure is, naming the plugin.
            from flashplug.supervisor import describe
            raise ResponseMistake(
                f"{self._owner} failed after {self._sent} bytes of its stream: "
                f"{describe(exc)}; the response was cut off", self._owner) from exc
        if type(chunk) is not bytes:
            if not isinstance(chunk, BODY_TYPES):
                raise ResponseMistake(
                    f"{self._owner} streamed a {type(chunk).__name__} after {self._sent} "
                    f"bytes, not bytes; the response was cut off", self._owner)
            chunk = bytes(chunk)
        self._sent += len(chunk)
        return chunk

    async def aclose(self):
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


def _is_file_body(body):
    # Imported here: the static handler is a layer above this module.
    from flashplug.static import FileBody
    return type(body) is FileBody


def _char(ch):
    if ord(ch) > 0xff:
        return f"U+{ord(ch):04X}, which is no ISO-8859-1 octet (percent-encode it)"
    return f"a control character ({_NAMES.get(ch) or f'U+{ord(ch):04X}'}; RFC 9110 §5.5)"


def _clip(text, limit=60):
    return text if len(text) <= limit else text[:limit] + "..."

"""Request and Response: the objects handlers and hooks see.

Theory of operation: the connection builds a ``Request`` from the parser's
callbacks and hands it to a handler; the handler returns a ``Response``.
Both are plain data.  The body of a request is read through
``request.body`` (an async iterator fed by the connection with backpressure),
so a handler never needs to hold it whole.  A response body is either
``bytes`` or ``stream``, an async iterator of bytes that the connection
drains as the client reads.
"""
from flashplug.http.h1_checks import host_name

#: RFC 9110 §9.2.2's idempotent methods: a gateway may send one of these
#: again after a kept-alive connection to its backend closed under it,
#: never another (the backend may have acted on it before closing; "A
#: proxy MUST NOT automatically retry non-idempotent requests").
IDEMPOTENT_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))


class Headers:
    """Header fields in arrival order; names compared case-insensitively.

    Stored as a list of ``(lowercase-name, value)`` pairs of ``str`` (values
    decoded as ISO-8859-1, as RFC 9110 §5.5 allows for field content).
    """

    __slots__ = ("_items",)

    def __init__(self, items=()):
        self._items = [(k.lower(), v) for k, v in items]

    def get(self, name, default=None):
        """The value of ``name``; repeated fields are joined with ``", "``."""
        name = name.lower()
        values = [v for k, v in self._items if k == name]
        if not values:
            return default
        return values[0] if len(values) == 1 else ", ".join(values)

    def get_all(self, name):
        name = name.lower()
        return [v for k, v in self._items if k == name]

    def add(self, name, value):
        self._items.append((name.lower(), value))

    def __contains__(self, name):
        name = name.lower()
        return any(k == name for k, _ in self._items)

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __repr__(self):
        return f"Headers({self._items!r})"


class Request:
    """One HTTP request, as the kernel parsed and checked it.

    Attributes (read them; only ``state``, ``user`` and ``auth_type`` are
    for plugins to set):
        method (str): ``"GET"``, ``"POST"``, ... (RFC 9110 §9), as sent.
        target (str): the request-target exactly as sent (RFC 9112 §3.2).
        raw_path (str): the path part of the target, still percent-encoded.
        path (str): the path, percent-decoded once (as UTF-8, other bytes
            kept by surrogateescape) and normalised (no ``.`` or ``..``
            segments, no ``//``); what routes match against.
        query (str): the query string without ``?``, verbatim and still
            percent-encoded; ``""`` when absent.  Parse it with
            ``urllib.parse.parse_qs(request.query)`` (a dict of lists).
        version (str): ``"1.0"``, ``"1.1"``, or ``"2.0"`` over HTTP/2
            (docs/http2.md).
        headers (Headers): the header fields; ``get(name)`` is
            case-insensitive and joins repeated fields with ``", "``.
        body: the request content as an async iterator of ``bytes`` chunks
            (``async for chunk in request.body``), or ``await
            request.body.read()`` for all of it; empty when there is none.
        content_length (int | None): the declared length, or None (chunked
            or no body).
        chunked (bool): the body's length is known only at its end: chunked
            transfer coding, or over HTTP/2 DATA frames without a
            Content-Length.
        remote_addr (str), remote_port (int): the client's address: the
            peer's, or the one its PROXY protocol header or a trusted proxy's
            forwarded header names (``flashplug.http.forwarded``); port 0
            when unknown (``X-Forwarded-For`` gives none).
        server_addr (str), server_port (int): the local address the request
            arrived on.
        server (flashplug.facade.Server): the running server: ``config``
            (settings, ``config.get(name)``), ``helpers``, ``stats``, ``loop``,
            ``dispatch`` (see "The server object" in docs/plugins.md).
        user, auth_type (str | None): set by an authentication plugin.
        state (dict): per-request data shared between plugins.
        scheme (str): ``"http"``, or ``"https"`` over TLS.
        start_time (float): ``time.monotonic()`` seconds when the request
            line arrived.
        keep_alive (bool): the client allows another request after this one.
        host (str): the request's host: the authority of an absolute-form
            target, else the ``Host`` header (RFC 9112 §3.2.2), lowercased,
            without its port (``"example.org"``, ``"[::1]"``); ``""`` when
            there is neither.  With an absolute-form target the ``Host``
            field itself is replaced by the target's authority.
    """

    __slots__ = ("method", "target", "raw_path", "path", "query", "version",
                 "headers", "body", "content_length", "chunked",
                 "remote_addr", "remote_port", "server_addr", "server_port",
                 "server", "user", "auth_type", "state", "scheme", "start_time",
                 "keep_alive", "conditional", "complete", "_cycle")

    def __init__(self, method, target, raw_path, path, query, version, headers):
        self.method = method
        self.target = target
        self.raw_path = raw_path
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = None
        self.content_length = None
        self.chunked = False
        self.remote_addr = self.server_addr = ""
        self.remote_port = self.server_port = 0
        self.server = None
        self.user = self.auth_type = None
        self.state = {}
        self.scheme = "http"
        self.start_time = 0.0
        self.keep_alive = True      # the client allows another request after this one
        self.conditional = True     # it may carry conditional or Range headers
                                    # (the parser clears it when it saw none)
        self.complete = False       # its whole message (body included) has arrived

    def send_interim(self, status, headers):
        """Send an interim (1xx) response now, ahead of the final one: a
        ``103 Early Hints`` (RFC 8297) with ``Link`` fields, say, so that
        the client preloads while the answer is made.  Over HTTP/1.1 it is
        a head of its own; over HTTP/2 a HEADERS frame without END_STREAM.

        Args:
            status (int): 102 to 199 (not 100, which the kernel sends for
                ``Expect: 100-continue``, nor 101, an upgrade).
            headers (list of (str, str)): its fields, checked as a
                response's are (no CR, LF or NUL); no framing field
                (``Content-Length``, ``Transfer-Encoding``) nor
                ``Connection``: a 1xx has no content.

        Returns:
            bool: True when sent; False when it cannot be: the client
            speaks HTTP/1.0 (RFC 9110 §15.2: a server MUST NOT send it a
            1xx), the final response has begun, or the connection is gone.

        Raises:
            flashplug.http.validate.ResponseMistake: a bad status or field.
        """
        cycle = getattr(self, "_cycle", None)     # set by the connection that parsed it
        return cycle is not None and cycle.send_interim(self, status, headers)

    @property
    def host(self):
        value = self.headers.get("host")
        return "" if value is None else host_name(value) or ""

    def __repr__(self):
        return f"<Request {self.method} {self.target}>"


class CheckedFields(list):
    """Response header fields a gateway has checked already, each with
    ``flashplug.http.validate.field_error`` as it read them (the cgi
    plugin's header-block parser does): ``check_response`` does not check
    them again, but for their Content-Length values, which it still weighs
    against the body.  A :class:`Response` keeps one as given (not a copy:
    give each Response its own).

    Adding to it (``append``, ``extend``, ``insert``, ``+=``, assigning an
    item or a slice) makes it unchecked again (``checked`` False), and the
    kernel checks it whole, as any list: a response-headers hook may add
    fields as it always could.
    """

    __slots__ = ("checked",)

    def __init__(self, fields=()):
        super().__init__(fields)
        self.checked = True

    def append(self, field):
        self.checked = False
        super().append(field)

    def extend(self, fields):
        self.checked = False
        super().extend(fields)

    def insert(self, index, field):
        self.checked = False
        super().insert(index, field)

    def __iadd__(self, fields):
        self.checked = False
        return super().__iadd__(fields)

    def __setitem__(self, index, field):
        self.checked = False
        super().__setitem__(index, field)


class Response:
    """What a handler returns.

    The kernel checks a plugin's Response before anything of it is sent
    (:mod:`flashplug.http.validate`); a mistake gives the client a 500 and
    the error log a line naming the plugin and the mistake.

    Args:
        status (int): the status code, 200 to 599 (RFC 9110 §15).
        headers (list[tuple[str, str]]): ``(name, value)`` pairs, in order;
            repeat a name to send a field twice (``Set-Cookie``).  Not a
            dict.  Names are tokens (RFC 9110 §5.1); values hold no CR, LF,
            NUL or other control character but HTAB (RFC 9110 §5.5), and
            only ISO-8859-1 characters.  The kernel adds ``Date``,
            ``Server``, ``Connection`` and the framing headers
            (``Content-Length`` or ``Transfer-Encoding``) unless given,
            and never a ``Content-Type`` (RFC 9110 §8.3).
        body (bytes | bytearray | memoryview): the whole body; not ``str``
            (encode it).
        stream: an async iterable of ``bytes`` chunks (an async generator),
            for a body produced over time; give it instead of ``body``.
            Without a ``Content-Length`` header it is sent chunked to
            HTTP/1.1 clients and delimited by closing the connection for
            HTTP/1.0.  The kernel calls its ``aclose()`` if the client goes
            away, so a ``finally:`` in an async generator runs.  A chunk
            that is not bytes cuts the response off: the connection closes.
        raw (bool): the stream is a complete HTTP response (status line,
            headers, body) written as is, then the connection closes (CGI
            NPH scripts).
        reason (str | None): the reason phrase; None for the standard one.
        upgrade: with status 101, to a request that asked for an
            ``Upgrade`` (a WebSocket handshake): an ``async def
            upgrade(tunnel)`` that the kernel awaits once the 101 is sent,
            with a :class:`flashplug.tunnel.Tunnel` (the client's bytes in,
            ours out).  The connection closes when it returns.  RFC 9110
            §7.8, §15.2.2.
    """

    __slots__ = ("status", "headers", "body", "stream", "raw", "reason", "close", "upgrade",
                 "_block")

    def __init__(self, status=200, headers=None, body=b"", *, stream=None,
                 raw=False, reason=None, upgrade=None):
        self.status = status
        # A dict is kept as given, so that the check at the API boundary
        # (flashplug.http.validate) can refuse it by name.
        self.headers = headers if type(headers) is CheckedFields or isinstance(headers, dict) \
            else list(headers or ())
        self.body = body
        self.stream = stream
        self.raw = raw
        self.reason = reason
        self.close = False
        self.upgrade = upgrade
        # The FieldBlock the check found for ``headers`` (flashplug.http.
        # validate), for the framing to write its lines; None once anything
        # changes the fields after the check, or when it found none.
        self._block = None

    def get_header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def set_header(self, name, value):
        lname = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lname]
        self.headers.append((name, value))
        self._block = None

    def __repr__(self):
        return f"<Response {self.status}>"

"""The proxy's HTTP/1.1 messages to and from an upstream, sans I/O.

Theory of operation: nothing a client sends reaches an upstream as raw
bytes.  ``request_head`` writes a new request head from the kernel's
parsed ``Request``: the target, the end-to-end fields, the forwarding
fields, and framing of our own (``Content-Length`` of the body the kernel
parsed, or ``Transfer-Encoding: chunked`` which ``chunk`` writes), so an
ambiguous request the kernel let through (it lets none) could still not
mean two things upstream.  Hop-by-hop fields (RFC 9110 §7.6.1) are dropped
both ways: ``Connection`` and every field it names, ``Keep-Alive``,
``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade`` and ``Proxy-*``.

A client's own ``X-Forwarded-*``, ``X-Real-IP`` and ``Forwarded`` fields
are dropped and ours sent instead (Caddy does the same): an upstream can
trust them to name the peer flashplug saw.  ``Proxy`` (httpoxy) is dropped.  Field names with ``_`` are dropped too, as
nginx does (``underscores_in_headers off``): a WSGI or CGI application
would read ``X_Forwarded_For`` as ``X-Forwarded-For``.

``ResponseReader`` parses an upstream's response with httptools (llhttp,
strict) and checks what the kernel will send on: a status from 100 to
599, field lines llhttp accepts (no CR, LF, NUL or other control
character: the kernel checks the fields again, as every plugin's, before
they reach the wire), framing that is one of Content-Length, chunked or
the end of the connection.  Anything else is
an :class:`UpstreamError` (the handler answers 502).  Interim 1xx
responses are skipped; 101 ends the message when an upgrade was asked for.
"""
import re

import httptools

from flashplug.http.framing import strip_framing_for_status

#: Largest response head accepted from an upstream (nginx's
#: proxy_buffer_size is 4-8 KiB; apps send big cookies).
MAX_HEAD = 64 * 1024

#: Hop-by-hop fields (RFC 9110 §7.6.1), and fields we write ourselves.
HOP_BY_HOP = frozenset(("connection", "keep-alive", "te", "trailer", "transfer-encoding",
                        "upgrade", "proxy-connection", "proxy-authenticate",
                        "proxy-authorization"))
# HTTP2-Settings only ever goes with an h2c upgrade, which is not passed on
# (handler._upgrade_asked); RFC 9113 §3.1 deprecates both.  "Proxy" is no
# field of HTTP, only httpoxy's (CVE-2016-5385: HTTP_PROXY to a CGI app).
# X-Real-IP is ours, like X-Forwarded-For.
_REQUEST_DROP = HOP_BY_HOP | {"host", "content-length", "expect", "x-forwarded-for",
                              "x-forwarded-proto", "x-forwarded-host", "forwarded",
                              "x-real-ip", "http2-settings", "proxy"}
# What a reason phrase may hold (RFC 9112 §4): llhttp lets controls through.
_BAD_REASON = re.compile(r"[^\t\x20-\x7e\x80-\xff]")
_RESPONSE_DROP = HOP_BY_HOP
# The response fields that frame it or name hop-by-hop ones.
_FRAMING_NAMES = frozenset(("transfer-encoding", "content-length", "connection", "upgrade"))


class UpstreamError(Exception):
    """The upstream broke HTTP; the message names how (for the error log)."""


class _Stop(Exception):
    """Stops llhttp at the end of a message (raised in a callback)."""


def connection_tokens(values):
    """The lowercase options of ``Connection`` field values."""
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def request_head(request, target, upgrade, default_host):
    """The request head (bytes) to send upstream for ``request``.

    ``target``: the origin-form request-target to send.  ``upgrade``: the
    client's ``Upgrade`` value to pass on (a WebSocket handshake), or None.
    ``default_host``: the ``Host`` for an HTTP/1.0 request that had none
    (HTTP/1.1 needs one, RFC 9112 §3.2).
    The body, if any, follows as ``Content-Length`` bytes, or chunked
    (``chunk``) when the client sent it chunked.
    """
    headers = request.headers
    named = connection_tokens(headers.get_all("connection"))
    # The Host field as the client sent it, port and all (request.host is
    # the bare name the kernel picks a site by); with an absolute-form
    # target the kernel has already put the target's authority there.
    host = headers.get("host") or ""
    lines = [f"{request.method} {target} HTTP/1.1\r\nHost: {host or default_host}\r\n"]
    for name, value in headers:
        if name in _REQUEST_DROP or name in named or name.startswith("proxy-") \
                or "_" in name:
            continue
        lines.append(f"{name}: {value}\r\n")
    addr = request.remote_addr
    lines.append(f"X-Forwarded-For: {addr}\r\nX-Real-IP: {addr}\r\n"
                 f"X-Forwarded-Proto: {request.scheme}\r\n")
    node = f'"[{addr}]"' if ":" in addr else addr or "unknown"
    if host:
        lines.append(f"X-Forwarded-Host: {host}\r\n")
        lines.append(f'Forwarded: for={node};proto={request.scheme};host="{host}"\r\n')
    else:
        lines.append(f"Forwarded: for={node};proto={request.scheme}\r\n")
    if upgrade is not None:
        lines.append(f"Connection: upgrade\r\nUpgrade: {upgrade}\r\n")
    if request.chunked:
        lines.append("Transfer-Encoding: chunked\r\n")
    elif request.content_length is not None:
        lines.append(f"Content-Length: {request.content_length}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def chunk(data):
    """``data`` as one chunk of a chunked body; ``b""`` gives the last one."""
    if not data:
        return b"0\r\n\r\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class ResponseReader:
    """One upstream response, parsed as its bytes arrive.

    ``feed(data)`` returns ``True`` once the head is complete (``status``,
    ``reason``, ``headers`` are set); body bytes then collect in ``body``
    (a list the caller empties) until ``done``.  ``feed(b"")`` is the end
    of the connection: it ends a body delimited by it and is an error
    anywhere else.  ``reusable``: the connection may carry another request.

    :raises UpstreamError: the upstream broke HTTP/1.1.
    """

    def __init__(self, head_only, upgrading):
        self.head_only = head_only          # a HEAD request: no body follows
        self.upgrading = upgrading          # a 101 may come
        self.status = None
        self.reason = ""
        self.headers = None                 # [(name, value)] end-to-end fields
        self.content_length = None
        self.body = []
        self.done = False
        self.until_close = False            # the body ends with the connection
        self.reusable = False
        self.rest = b""                     # bytes after a 101's head (the tunnel's)
        self.upgrade = None                 # a 101's Upgrade value
        self._head = b""
        self._parser = None
        self._fields = []
        self._complete = False
        self._stray = False
        self._head_done = False
        self._keep = False

    # -- llhttp callbacks

    def on_status(self, reason):
        self.reason += reason.decode("latin-1")

    def on_headers_complete(self):
        self._head_done = True

    def on_header(self, name, value):
        self._fields.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_message_begin(self):
        if self._complete:
            # Bytes after the end of the message: an answer to no request.
            self._stray = True
            raise _Stop

    def on_body(self, data):
        self.body.append(data)

    def on_message_complete(self):
        self._complete = True

    # -- feeding

    @property
    def started(self):
        """Some of the response has arrived."""
        return bool(self._head) or self.status is not None

    def feed(self, data):
        if self.headers is None:
            if not data:
                raise UpstreamError("closed the connection before a whole response head"
                                    if self._head else "closed the connection without "
                                    "a response")
            self._head += data
            while self.headers is None:
                end = self._head.find(b"\r\n\r\n", 0, MAX_HEAD)
                if end < 0:
                    if len(self._head) >= MAX_HEAD:
                        raise UpstreamError(f"sent a response head over {MAX_HEAD} bytes")
                    return False
                head, self._head = self._head[:end + 4], self._head[end + 4:]
                self._parse_head(head)
            data, self._head = self._head, b""
            if self.done:
                self._after_end(data)
            elif data:
                self._feed_body(data)
            return True
        self._feed_body(data)
        return True

    def _parse_head(self, head):
        self._parser = httptools.HttpResponseParser(self)
        self._fields = []
        self.reason = ""
        self._complete = self._head_done = False
        try:
            self._parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError as e:
            # llhttp stops after a 101's head, with HttpParserUpgrade or,
            # when no "Connection: upgrade" came with it, an error.
            if not (self._head_done and self._parser.get_status_code() == 101):
                raise UpstreamError(f"sent an invalid response head ({e})") from None
        status = self._parser.get_status_code()
        if not 100 <= status <= 599:
            raise UpstreamError(f"sent status {status}")
        if _BAD_REASON.search(self.reason):
            raise UpstreamError("sent a reason phrase with a control character")
        if 100 <= status < 200 and status != 101:
            return       # interim (100 Continue, 103 Early Hints): skipped
        fields = self._fields
        lnames = [name.lower() for name, _ in fields]
        codings, length, named, upgrade = [], None, set(), None
        for (name, value), lname in zip(fields, lnames):
            if lname not in _FRAMING_NAMES:
                continue    # (most fields: one set lookup)
            if lname == "transfer-encoding":
                codings += [c.strip().lower() for c in value.split(",") if c.strip()]
            elif lname == "content-length":
                length = value    # llhttp checked: one number, at most once
            elif lname == "connection":
                named |= connection_tokens((value,))
            elif lname == "upgrade":
                upgrade = value
        if status == 101:
            if not self.upgrading:
                raise UpstreamError("switched protocols (101) unasked")
            if not upgrade:
                raise UpstreamError("switched protocols (101) without naming one")
            self.upgrade = upgrade
        if codings and codings != ["chunked"]:
            raise UpstreamError(f"sent Transfer-Encoding {', '.join(codings)}: "
                                f"only chunked is understood")
        self.status = status
        if length is not None:
            self.content_length = int(length)
        self._keep = self._parser.should_keep_alive() and "close" not in named
        drop = _RESPONSE_DROP | named if named else _RESPONSE_DROP
        if codings:
            drop = drop | {"content-length"}
        self.headers = strip_framing_for_status(status, [
            field for field, lname in zip(fields, lnames)
            if lname not in drop and not lname.startswith("proxy-")])
        if status == 101 or self.head_only or status in (204, 304) or self._complete:
            # (llhttp completes a "Content-Length: 0" message at its head.)
            self.done = True
            self.reusable = self._keep and status != 101
        elif not codings and length is None:
            self.until_close = True

    def _feed_body(self, data):
        if not data:
            if self.until_close and not self.done:
                self.done = True      # the end of the connection ends the body
                return
            if not self.done:
                raise UpstreamError("closed the connection in the middle of the body")
            return
        if self.done:
            self._after_end(data)
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            if not self._stray:
                raise UpstreamError(f"sent an invalid body ({e})") from None
        if self._complete:
            self.done = True
            self.reusable = self._keep and not self._stray

    def _after_end(self, data):
        if self.status == 101:
            self.rest += data
        elif data:
            self.reusable = False

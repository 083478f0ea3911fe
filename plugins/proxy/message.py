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
``Via`` gets our entry (RFC 9110 §7.6.3), and an OPTIONS
request's ``Max-Forwards`` one less (§7.6.2; at 0 the handler answers).

A client's own ``X-Forwarded-*`` (every one: -Port and -Prefix too),
``X-Real-IP`` and ``Forwarded`` fields are dropped and ours sent instead
(Caddy does the same for those it sets, Traefik for all): an upstream can
trust them to name the peer flashplug saw.  ``Proxy`` (httpoxy) is
dropped.  Field names with ``_`` are dropped too, as nginx does
(``underscores_in_headers off``): a WSGI or CGI application would read
``X_Forwarded_For`` as ``X-Forwarded-For``.

``ResponseReader`` parses an upstream's response with httptools (llhttp,
strict) and checks what the kernel will send on: a status from 100 to
599, field lines llhttp accepts (no CR, LF, NUL or other control
character: the kernel checks the fields again, as every plugin's, before
they reach the wire), framing that is one of Content-Length, chunked or
the end of the connection.  A head whose lines end in a bare LF is
read as if they ended in CRLF (RFC 9112 §2.2 allows it; nginx and Go do
it).  Anything else is an :class:`UpstreamError` (the handler answers 502), as
is Transfer-Encoding in an HTTP/1.0 response (RFC 9112 §6.1).  Interim 1xx
responses are skipped, but for the ``Link`` fields of a ``103 Early Hints``
(RFC 8297), which the handler passes on (``hints``); 101 ends the message
when an upgrade was asked for, to one of the protocols asked for (RFC 9110
§7.8).
"""
import re

import httptools

from flashplug.http.framing import must_be_empty, strip_framing_for_status
from flashplug.http.validate import CheckedFields, field_error
from flashplug.memo import Memo

#: Largest response head accepted from an upstream (nginx's
#: proxy_buffer_size is 4-8 KiB; apps send big cookies).
MAX_HEAD = 64 * 1024
#: 103 Early Hints passed on per response; an upstream's further ones are
#: dropped (counted in ``hints_dropped``): a page needs a few preloads, and
#: each 103 costs the client a write and a parse.
MAX_HINTS = 10
#: Bytes of interim (1xx) heads one response may be preceded by; past it
#: the upstream is broken (a 502), as one over-long head is: otherwise an
#: endless stream of 1xx would hold the exchange until its timeout.
MAX_INTERIM_BYTES = 64 * 1024

#: Hop-by-hop fields (RFC 9110 §7.6.1), and fields we write ourselves.
HOP_BY_HOP = frozenset(("connection", "keep-alive", "te", "trailer", "transfer-encoding",
                        "upgrade", "proxy-connection", "proxy-authenticate",
                        "proxy-authorization"))
# HTTP2-Settings only ever goes with an h2c upgrade, which is not passed on
# (handler._upgrade_asked); RFC 9113 §3.1 deprecates both.  "Proxy" is no
# field of HTTP, only httpoxy's (CVE-2016-5385: HTTP_PROXY to a CGI app).
# X-Real-IP is ours, like X-Forwarded-For.
# Max-Forwards is looked at (and decremented for OPTIONS); the
# client's Via goes out in one line with ours.
_REQUEST_DROP = HOP_BY_HOP | {"host", "content-length", "expect", "x-forwarded-for",
                              "x-forwarded-proto", "x-forwarded-host", "forwarded",
                              "x-real-ip", "http2-settings", "proxy", "max-forwards", "via"}
# Any Proxy-* field is hop-by-hop; any X-Forwarded-* the client sent
# (-Port, -Prefix, -Server, -Ssl...) is a claim about a proxy it is not:
# apps behind a proxy trust them to build their URLs (Traefik drops them
# all too).
_DROP_PREFIXES = ("proxy-", "x-forwarded-")
#: The ``Via`` entry flashplug adds upstream (RFC 9110 §7.6.3: a gateway
#: MUST send one in each request it forwards), by the client's version:
#: received-protocol and a pseudonym, not the host name.
VIA = {"1.0": "1.0 flashplug", "1.1": "1.1 flashplug", "2.0": "2 flashplug"}
#: Methods whose Max-Forwards a proxy honours (RFC 9110 §7.6.2): OPTIONS,
#: and TRACE, which never reaches a route (the kernel answers it 405).
MAX_FORWARDS_METHODS = ("OPTIONS",)
#: Response heads remembered with their parse, per worker (``_KNOWN``): an
#: upstream serving the same resource sends the same head again, byte for
#: byte, until its Date moves on a second; then the checks and the field
#: filter (most of a small response's cost here) need not run again.
#: At most KNOWN_HEADS heads of at most KNOWN_HEAD_SIZE bytes each.
KNOWN_HEADS = 256
KNOWN_HEAD_SIZE = 4096
_KNOWN = Memo(KNOWN_HEADS)
#: What ``_filter`` made of a request's method and fields, for the next
#: request with the same (a client sends the same fields again and
#: again), up to FILTERED_KEPT of up to FILTERED_SIZE characters of
#: lines, forgotten at once when full.
FILTERED_KEPT = 256
FILTERED_SIZE = 4096
_FILTERED = Memo(FILTERED_KEPT)
# The blank line that ends a head, and a line end that is a bare LF.
_LF_HEAD_END = re.compile(rb"\n\r?\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")
# A Link field value passed on in a 103 (RFC 8288 §3): a "<URI-Reference>"
# first, then its parameters and further links; printable ASCII only.
_LINK = re.compile(rb"<[\x21-\x3b\x3d\x3f-\x7e]*>[\t\x20-\x7e]*")
# What a reason phrase may hold (RFC 9112 §4): llhttp lets controls through.
_BAD_REASON = re.compile(rb"[^\t\x20-\x7e\x80-\xff]")
# Response fields looked at while the head is filtered (bytes, lowercase):
# the hop-by-hop ones and Date and Server, dropped (the kernel writes its
# own Date and Server, as nginx's proxy_hide_header does by default), and
# Content-Length, kept.
_HOP_BY_HOP_B = frozenset(name.encode() for name in HOP_BY_HOP)
_SPECIAL_B = _HOP_BY_HOP_B | {b"content-length", b"date", b"server"}


class UpstreamError(Exception):
    """The upstream broke HTTP; the message names how (for the error log)."""


class _Stop(Exception):
    """Stops llhttp at the end of a message (raised in a callback)."""


def connection_tokens(values):
    """The lowercase options of ``Connection`` field values."""
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def max_forwards(request):
    """The ``Max-Forwards`` of an OPTIONS request (an int), or
    None: another method, no field, or a value that is no number (passed
    on as it is).  At 0 the proxy is the final recipient (RFC 9110
    §7.6.2) and answers itself; ``request_head`` sends one less."""
    if request.method not in MAX_FORWARDS_METHODS:
        return None
    value = request.headers.get("max-forwards")
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def request_head(request, target, upgrade, default_host, length=None):
    """The request head (bytes) to send upstream for ``request``.

    ``target``: the origin-form request-target to send.  ``upgrade``: the
    client's ``Upgrade`` value to pass on (a WebSocket handshake), or None.
    ``default_host``: the ``Host`` for an HTTP/1.0 request that had none
    (HTTP/1.1 needs one, RFC 9112 §3.2).
    The body, if any, follows as ``Content-Length`` bytes, or chunked
    (``chunk``) when the client sent it chunked, unless ``length`` gives
    the length of a chunked body read whole already (then it goes as
    ``Content-Length`` bytes: RFC 9112 §7 lets a client send chunked only
    to a server known to read HTTP/1.1).
    A ``Via`` entry is appended to the client's, in one field line (RFC
    9110 §7.6.3; an upstream reading a field's first line reads it all), and an
    OPTIONS request's ``Max-Forwards`` is decremented (§7.6.2).
    """
    # What is sent of the client's fields depends on them and the method
    # alone: worked out once for each (``_filter``).
    key = (request.method, tuple(request.headers))
    filtered = _FILTERED.data.get(key)
    if filtered is None:
        filtered = _filter(request)
        if len(filtered[2]) <= FILTERED_SIZE:
            _FILTERED.put(key, filtered)
    host, via, kept = filtered
    addr = request.remote_addr
    scheme = request.scheme
    node = f'"[{addr}]"' if ":" in addr else addr or "unknown"
    lines = [f"{request.method} {target} HTTP/1.1\r\nHost: {host or default_host}\r\n", kept,
             f"Via: {via}{VIA[request.version]}\r\n"
             f"X-Forwarded-For: {addr}\r\nX-Real-IP: {addr}\r\n"
             f"X-Forwarded-Proto: {scheme}\r\n"]
    if host:
        lines.append(f"X-Forwarded-Host: {host}\r\n"
                     f'Forwarded: for={node};proto={scheme};host="{host}"\r\n')
    else:
        lines.append(f"Forwarded: for={node};proto={scheme}\r\n")
    if upgrade is not None:
        lines.append(f"Connection: upgrade\r\nUpgrade: {upgrade}\r\n")
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n\r\n")
    elif request.chunked:
        lines.append("Transfer-Encoding: chunked\r\n\r\n")
    elif request.content_length is not None:
        lines.append(f"Content-Length: {request.content_length}\r\n\r\n")
    else:
        lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def _filter(request):
    """``(host, via, kept)``: the client's Host and Via values (Via with a
    trailing ", ", or "") and the field lines (str) of the end-to-end
    fields ``request_head`` passes on, Max-Forwards decremented.  They
    depend on the method and the fields alone (``_FILTERED``)."""
    # One pass over the fields (the kernel lowercased their names): the
    # ones we drop or write ourselves are set aside on one set lookup.
    # The Host field is kept as the client sent it, port and all
    # (request.host is the bare name the kernel picks a site by); with an
    # absolute-form target the kernel has already put the target's
    # authority there.  The kernel lets one Host field through, at most.
    host = ""
    named = None
    via = ""
    kept = []
    for field in request.headers:
        name = field[0]
        if name in _REQUEST_DROP or "_" in name or name.startswith(_DROP_PREFIXES):
            if name == "host":
                host = field[1]
            elif name == "connection":
                named = connection_tokens((field[1],)) | (named or set())
            elif name == "via" and field[1]:
                via += field[1] + ", "
            elif name == "max-forwards":
                hops = max_forwards(request)
                kept.append(field if hops is None else (name, str(hops - 1)))
            continue
        kept.append(field)
    if named and not named <= HOP_BY_HOP:
        kept = [field for field in kept if field[0] not in named]
        if "via" in named:
            via = ""
    return host, via, "".join([f"{name}: {value}\r\n" for name, value in kept])


def chunk(data):
    """``data`` as one chunk of a chunked body; ``b""`` gives the last one."""
    if not data:
        return b"0\r\n\r\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class ResponseReader:
    """One upstream response, parsed as its bytes arrive.

    ``feed(data)`` returns ``True`` once the head is complete (``status``,
    ``reason``, ``headers`` are set); body bytes then collect in ``body``
    (a list the caller empties, ``pending`` bytes in all) until ``done``.
    ``feed(b"")`` is the end of the connection: it ends a body delimited by
    it and is an error anywhere else.  ``upgrading``: the ``Upgrade`` value
    of the request, when it asks for one; a 101 may then switch to those
    protocols, and only those (RFC 9110 §7.8).  ``http10``: the response
    said HTTP/1.0 (so the upstream may not read a chunked request).
    ``reusable``: the connection may carry another request.  ``reset``
    readies the reader for the next response on the same connection,
    keeping llhttp's parser when the last message ended cleanly (a new
    parser costs as much as parsing a head).

    :raises UpstreamError: the upstream broke HTTP/1.1.
    """

    def __init__(self, head_only=False, upgrading=None):
        self._parser = None
        self._complete = False
        self._stray = False
        self.reset(head_only, upgrading)

    def reset(self, head_only, upgrading):
        if not self._complete or self._stray:
            self._parser = None       # mid-message or broken: a new one
        self.head_only = head_only          # a HEAD request: no body follows
        self.upgrading = upgrading          # the Upgrade asked for: a 101 may come
        self.http10 = False                 # the response was HTTP/1.0
        self.hints = ()                     # the Link fields of each 103 not passed on yet
        self.hints_taken = 0                # 103s kept for passing on (at most MAX_HINTS)
        self.hints_dropped = 0              # 103s past MAX_HINTS, dropped
        self.interim_bytes = 0              # bytes of 1xx heads so far
        self.status = None
        self.reason = ""
        self.headers = None                 # [(name, value)] end-to-end fields
        self.content_length = None
        self.body = []
        self.pending = 0                    # bytes in body
        self.done = False
        self.until_close = False            # the body ends with the connection
        self.reusable = False
        self.rest = b""                     # bytes after a 101's head (the tunnel's)
        self.upgrade = None                 # a 101's Upgrade value
        self._head = b""
        self._reason = b""
        self._fields = []
        self._complete = False
        self._stray = False
        self._head_done = False
        self._keep = False
        self._left = None                   # body bytes to count (a known head's)

    # -- llhttp callbacks (raw bytes: decoded once, for the fields kept)

    def on_status(self, reason):
        self._reason += reason

    def on_headers_complete(self):
        self._head_done = True

    def on_header(self, name, value):
        self._fields.append((name, value))

    def on_message_begin(self):
        if self._complete:
            # Bytes after the end of the message: an answer to no request.
            self._stray = True
            raise _Stop

    def on_body(self, data):
        self.body.append(data)
        self.pending += len(data)

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
            head = self._head + data if self._head else data
            while self.headers is None:
                end = head.find(b"\r\n\r\n", 0, MAX_HEAD)
                if end >= 0 and head.find(b"\n\n", 0, end) < 0:
                    end += 4
                    known = None if self.head_only else _KNOWN.data.get(head[:end])
                    if known is None:
                        self._parse_head(head[:end])
                    else:
                        self._known(known)
                else:
                    # Lines that end in LF alone (RFC 9112 §2.2: a recipient
                    # MAY take them; nginx and Go do), or no blank line yet.
                    blank = _LF_HEAD_END.search(head, 0, MAX_HEAD)
                    if blank is None:
                        if len(head) >= MAX_HEAD:
                            raise UpstreamError(f"sent a response head over {MAX_HEAD} bytes")
                        self._head = head
                        return False
                    end = blank.end()
                    self._parse_head(_BARE_LF.sub(b"\r\n", head[:end]))   # llhttp wants CRLF
                head = head[end:]
            self._head = b""
            if self.done:
                self._after_end(head)
            elif head:
                self._feed_body(head)
            return True
        self._feed_body(data)
        return True

    def _parse_head(self, head):
        parser = self._parser
        if parser is None:
            parser = self._parser = httptools.HttpResponseParser(self)
        self._fields = []
        self._reason = b""
        self._complete = self._head_done = False
        try:
            parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError as e:
            self._stray = True      # the parser is spent
            # llhttp stops after a 101's head, with HttpParserUpgrade or,
            # when no "Connection: upgrade" came with it, an error.
            if not (self._head_done and parser.get_status_code() == 101):
                raise UpstreamError(f"sent an invalid response head ({e})") from None
        status = parser.get_status_code()
        if not 100 <= status <= 599:
            raise UpstreamError(f"sent status {status}")
        if self._reason and _BAD_REASON.search(self._reason):
            raise UpstreamError("sent a reason phrase with a control character")
        if 100 <= status < 200 and status != 101:
            # Interim (100 Continue, 103 Early Hints): skipped, but for a
            # 103's Link fields that are well formed, MAX_HINTS of them.
            self.interim_bytes += len(head)
            if self.interim_bytes > MAX_INTERIM_BYTES:
                raise UpstreamError(f"sent over {MAX_INTERIM_BYTES} bytes of interim (1xx) "
                                    f"responses")
            if status == 103:
                links = [("Link", value.decode("ascii")) for name, value in self._fields
                         if name.lower() == b"link" and _LINK.fullmatch(value)]
                if links and self.hints_taken < MAX_HINTS:
                    self.hints += (links,)
                    self.hints_taken += 1
                elif links:
                    self.hints_dropped += 1
            return
        # One pass: most fields cost one set lookup and their decoding.
        headers = []
        codings, length, named, upgrade = [], None, set(), None
        for name, value in self._fields:
            lname = name.lower()
            if lname in _SPECIAL_B or lname[:6] == b"proxy-":
                if lname == b"content-length":
                    length = value    # llhttp checked: one number, at most once
                    headers.append((name.decode("latin-1"), value.decode("latin-1")))
                elif lname == b"transfer-encoding":
                    codings += [c.strip() for c in value.lower().split(b",") if c.strip()]
                elif lname == b"connection":
                    named |= {t.strip() for t in value.lower().split(b",")}
                elif lname == b"upgrade":
                    upgrade = value.decode("latin-1")
                continue
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if status == 101:
            if not self.upgrading:
                raise UpstreamError("switched protocols (101) unasked")
            if not upgrade:
                raise UpstreamError("switched protocols (101) without naming one")
            if not connection_tokens((upgrade,)) <= connection_tokens((self.upgrading,)):
                # (Go's ReverseProxy refuses it too: a tunnel to a protocol
                # the client never asked for, h2c say, is no WebSocket.)
                raise UpstreamError(f"switched protocols (101) to {upgrade!r}, "
                                    f"not to the {self.upgrading!r} asked for")
            self.upgrade = upgrade
        self.http10 = http10 = parser.get_http_version() == "1.0"
        if codings and codings != [b"chunked"]:
            raise UpstreamError(f"sent Transfer-Encoding {b', '.join(codings).decode('latin-1')}: "
                                f"only chunked is understood")
        if codings and http10:
            # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding
            # has faulty framing (an HTTP/1.0 recipient would read the
            # chunks as content): a 502, as a bad Content-Length is.
            raise UpstreamError("sent Transfer-Encoding in an HTTP/1.0 response")
        self.status = status
        self.reason = self._reason.decode("latin-1")
        if length is not None:
            self.content_length = int(length)
        self._keep = parser.should_keep_alive() and b"close" not in named
        # Fields the Connection field names are hop-by-hop too (rare but
        # for the standard ones, already gone).
        drop = {t.decode("latin-1") for t in named - _HOP_BY_HOP_B if t}
        if codings:
            drop.add("content-length")
        if drop:
            headers = [field for field in headers if field[0].lower() not in drop]
        headers = strip_framing_for_status(status, headers)
        # Checked here, once per head (a remembered one is not checked
        # again), so the kernel need not (CheckedFields); a field it could
        # not send is the upstream's fault, a 502 (as nginx answers it).
        for name, value in headers:
            problem = field_error(name, value)
            if problem is not None:
                raise UpstreamError(f"sent a header field that cannot be passed on: {problem}")
        self.headers = CheckedFields(headers)
        if length is not None and not codings and not self.head_only \
                and not must_be_empty(status) and len(head) <= KNOWN_HEAD_SIZE:
            _KNOWN.put(head, (status, self.reason, headers, self.content_length, self._keep,
                              http10))
        if status == 101 or self.head_only or status in (204, 304) or self._complete:
            # (llhttp completes a "Content-Length: 0" message at its head.)
            self.done = True
            self.reusable = self._keep and status != 101
        elif not codings and length is None:
            self.until_close = True

    def _known(self, known):
        """A head byte for byte like one parsed lately: its parse again.

        llhttp does not see this message: its Content-Length body is
        counted here (``_left``), and the parser stays where the last
        message ended, ready for the next one."""
        self.status, self.reason, headers, length, self._keep, self.http10 = known
        self.headers = CheckedFields(headers)
        self.content_length = length
        self._left = length
        self._count(b"")

    def _count(self, data):
        """Body bytes of a known head's response, counted to its length."""
        left = self._left
        if len(data) > left:
            self._stray = True        # bytes after the body: no reuse
            data = data[:left]
        if data:
            self.body.append(data)
            self.pending += len(data)
        self._left = left = left - len(data)
        if not left:
            self.done = self._complete = True
            self.reusable = self._keep and not self._stray

    def _feed_body(self, data):
        if self._left is not None and data and not self.done:
            self._count(data)
            return
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
                self._stray = True
                raise UpstreamError(f"sent an invalid body ({e})") from None
        if self._complete:
            self.done = True
            self.reusable = self._keep and not self._stray

    def _after_end(self, data):
        if self.status == 101:
            self.rest += data
        elif data:
            self.reusable = False
            self._stray = True

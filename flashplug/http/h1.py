"""HTTP/1.1 requests from bytes: the protocol half of a connection.

Theory of operation: ``H1Protocol`` turns bytes into ``Request`` objects
with httptools (llhttp, strict) and every check RFC 9112 and our limits ask
for: request-line and header sizes, exactly one valid Host, message framing
(Content-Length, chunked), the request target, keep-alive, ``100-continue``
and Upgrade.  It touches no socket, no loop and no clock: the time comes in
with the bytes (``feed(data, now)``), and what it finds goes out through
methods its connection provides (``_start``, ``_queue_error``,
``_finish_request``, ``_target_entry``, ``_target_variant``, ``_answer_by_target``,
``pause_reading``).

A request head that arrives whole, on its own, is first checked by llhttp
with a single callback (the target) and scanned once for the few fields the
cached path needs (``_answer_scanned``); a plain GET/HEAD or a revalidation
of a cached target is answered from there.  Anything else is parsed again,
the same bytes, with a callback per field: the answer is always the one the
full parse gives.  Before either, a whole head is looked up among the heads
this worker parsed before for a plugin's handler
(``flashplug.http.known_requests``): a known one is not parsed again, its
Request is made from what its first parse left (``_replay``).

Every protocol error is a ``ProtocolError`` that carries its HTTP status;
an error llhttp finds itself is classified from the bytes of the message
that failed (``classify``), never from the text of llhttp's message.

Pipelining is bounded: bytes are parsed one request head at a time, and
parsing stops, keeping the unparsed rest, once ``MAX_PIPELINE`` requests
wait or more than ``HIGH_WATER`` bytes of output are queued; it goes on when
the connection calls ``resume_parsing``.  So a client that sends thousands
of requests and reads nothing costs at most one read buffer of input plus
the bounded output, whatever it sends.

The connection's states and what each may do are in ``STATES`` and
``TRANSITIONS``; ``state_tables()`` renders them for docs/architecture.md,
and a test checks the page shows them and the code sets no other state.

Size: longer than the ~400 lines of its neighbours because the scanned-head
path (one llhttp pass, then one scan for the few fields the cached path
needs) sits beside the full parse it falls back to; apart, the two halves of
one decision would live in two files.
"""
import re
import threading

import httptools

from flashplug.http.body import EMPTY_BODY, BodyReader
from flashplug.http.chunks import ChunkSizes
from flashplug.http.forwarded import request_client
from flashplug.http.h1_checks import (MAX_REQUEST_TARGET, ProtocolError, as_http11, classify,
                                      content_length, expects_continue, keep_alive,
                                      request_line_unended, set_target, valid_host)
from flashplug.http.known_requests import KNOWN_REQUEST_SIZE, ParsedHead
from flashplug.http.message import Headers, Request

# Limits in the spirit of Apache's LimitRequestLine / LimitRequestFieldSize /
# LimitRequestFields and nginx's large_client_header_buffers (8 KiB lines).
MAX_FIELD_SIZE = 8190
MAX_FIELDS = 100
MAX_HEAD_BYTES = 64 * 1024
# What a chunked body may spend on its framing (chunk-size lines with their
# extensions, CRLFs, the trailer section): this many bytes, plus
# CHUNK_LINE_ALLOWANCE per chunk.  RFC 9112 §7.1.1 asks servers to
# limit chunk extensions; Apache stops a chunk line at 8 KiB, lighttpd at
# 1 KiB, and Node.js and Go were open to a slow flood of extension bytes
# (CVE-2024-22019, CVE-2023-39326) before they bounded them.
MAX_CHUNK_OVERHEAD = 4096
CHUNK_LINE_ALLOWANCE = 32
CHUNK_SLICE = 4096
# Requests parsed ahead of the one being answered before parsing stops.
MAX_PIPELINE = 32
# Parsing (and so reading) stops while this much output is queued, so a
# client that does not read holds at most about this much of our memory.
HIGH_WATER = 256 * 1024

# Why reading is paused (bits of pause_reasons; PAUSE_BODY is body.py's).
PAUSE_PIPELINE, PAUSE_ERROR, PAUSE_UPGRADE, PAUSE_TIMEOUT, PAUSE_REVALIDATE = 2, 4, 8, 16, 32

# The states of a connection: what each means, and which deadline runs in it
# ("header": --header-timeout from the last progress; "idle":
# --keepalive-timeout once the output is all sent; "handler": none of the
# connection's own, the handler's (e.g. --cgi-timeout) and --send-timeout
# while output waits; "linger": LINGER_SECONDS).
STATES = {
    "idle": ("between requests (keep-alive)", "idle"),
    "head": ("a request head is arriving", "header"),
    "body": ("its body is arriving", "header"),
    "busy": ("the whole request is in; it is being answered", "handler"),
    "lingering": ("answered with an error; input is read and dropped", "linger"),
    "tunnel": ("switched protocols (101): bytes piped both ways by a plugin", "handler"),
}
# How long to keep draining a client's input after an error response, so the
# response is not destroyed by a TCP reset (nginx's lingering close).
LINGER_SECONDS = 2.0
# While a handler works for a client that half-closed, how often to look
# whether it reset the connection (see connection.py).
HALF_CLOSE_CHECK = 1.0

# (state, event) -> next state.  Anything else is a bug.
TRANSITIONS = {
    ("idle", "message begins"): "head",
    ("idle", "remembered head, file due for its stat"): "busy",
    ("busy", "stat done"): "idle",               # then answered, or parsed after all
    ("head", "head complete"): "body",
    ("head", "answered from cache"): "busy",     # inside the head callback, no Request
    ("body", "message complete"): "busy",
    ("busy", "message complete"): "idle",        # after an answer from the cache
    ("busy", "response done"): "idle",
    ("body", "response done"): "body",           # answered before its body ended
    ("idle", "error"): "lingering",
    ("head", "error"): "lingering",
    ("body", "error"): "lingering",
    ("busy", "error"): "lingering",
    ("busy", "101 Switching Protocols sent"): "tunnel",
    ("tunnel", "tunnel closed"): "lingering",
}

# Header fields the parser callbacks note as they pass, so that a plain
# request skips the framing checks and takes the cached path.
_HOST, _FRAMING, _CONDITIONAL, _UPGRADE = 1, 2, 4, 8
# Not a field: an Upgrade request with a body, whose body llhttp skipped
# (see _read_skipped_body).
_SKIPPED_BODY = 16
_NOTED_FIELDS = {b"host": _HOST, b"content-length": _FRAMING,
                 b"transfer-encoding": _FRAMING, b"expect": _FRAMING,
                 b"if-match": _CONDITIONAL, b"if-none-match": _CONDITIONAL,
                 b"if-modified-since": _CONDITIONAL, b"if-unmodified-since": _CONDITIONAL,
                 b"range": _CONDITIONAL, b"if-range": _CONDITIONAL, b"upgrade": _UPGRADE}
_HEAD_END = b"\r\n\r\n"
# The fields a whole head is scanned for when llhttp checks it without a
# callback per field (H1Protocol._answer_scanned).  llhttp (strict) has then
# accepted it: every line ends in CRLF, no obs-fold, no space before the
# colon, so each field line starts right after a CRLF, with its name.  The
# value is group 2 without the spaces and tabs around it (RFC 9110 §5.5: they
# are not part of it), as ``on_header`` takes it: llhttp drops the leading
# ones, the trailing ones cost a backtrack over just themselves.  It runs on
# the lowercased head (a case-insensitive pattern costs half as much again).
_SCANNED = re.compile(rb"\r\n(host|connection|referer|user-agent|content-length|"
                      rb"transfer-encoding|expect|upgrade|range|if-match|if-none-match|"
                      rb"if-modified-since|if-unmodified-since|if-range|accept-encoding):"
                      rb"[ \t]*((?:[^\r]*[^\r \t])?)")


# The holes of a remembered head (``known_key``): bytes that may differ from
# one request to the next while the answer is still the one remembered for
# the rest.  An origin-form target of the characters RFC 3986 allows
# unescaped in a path and a query, and a Cookie value of printable ASCII and
# HTAB: llhttp (strict) accepts all of them there.  Anything else takes the
# parser, which decides.
_PATH_CHARS = rb"[-A-Za-z0-9._~!$&'()*+,;=:@/%]"
_REQUEST_LINE = re.compile(rb"[^ ]+ ((/" + _PATH_CHARS + rb"*)(?:\?[-A-Za-z0-9._~!$&'()*+,;=:@/%?]*)?) ")
# The Cookie hole is found with bytes.find and checked with translate (the
# bytes it deletes are the hole's): a regular expression searching the head
# for it cost about 6,000 instructions per browser head, a tenth of the
# whole answer on workload r-zipf (bench/instructions.py zipf).
_COOKIE_LINE = b"\r\nCookie:"
_COOKIE_BYTES = bytes([9, *range(0x20, 0x7f)])


def known_key(head):
    """The shape of a whole request head (bytes), its key among remembered
    heads (``StaticFiles.known_shapes``), with the path of its target (its
    key in ``by_target``, see ``flashplug.static.target_key``) and the
    target itself: ``(shape, path, target)``.  The shape is the head with
    the target and the value of a ``Cookie`` field each cut out and a NUL
    in its place.  None when the head has no such shape (a NUL in it, or a
    target of other characters): then it is parsed.

    A browser sends the same head for many targets, and again and again
    but for its cookies; a cache-busting query changes the target too.  No
    cookie changes the answer of the cached path (no hook runs there, the
    access log does not show them), and the target is looked up in
    ``by_target`` on every answer.  A head of a remembered shape is the
    remembered head with another target and Cookie value, each of bytes
    llhttp accepts there: llhttp parses it field for field as it did the
    remembered one, so the answer is the one the parser leads to.  No valid
    head holds a NUL (llhttp refuses one anywhere), so the NULs mark the
    cuts exactly: two heads share a shape only if they differ in those two
    places alone.
    """
    # The byte 0 as an int: a bytes operand of ``in`` is tried as an int
    # first, a TypeError made and dropped (about 1,800 instructions).
    if 0 in head:
        return None
    line = _REQUEST_LINE.match(head)
    if line is None:
        return None
    start, end = line.span(1)
    path, target = head[start:line.end(2)], head[start:end]
    # The first Cookie line whose value is all printable ASCII and HTAB:
    # the value ends at the line's CRLF, and neither CR nor LF is one of
    # those bytes, so the check sees exactly the value.
    line = head.find(_COOKIE_LINE, end)
    while line >= 0:
        cut = line + len(_COOKIE_LINE)
        rest = head.find(b"\r\n", cut)
        if not head[cut:rest].translate(None, _COOKIE_BYTES):
            return b"".join((head[:start], b"\0", head[end:cut], b"\0", head[rest:])), \
                path, target
        line = head.find(_COOKIE_LINE, cut)
    return head[:start] + b"\0" + head[end:], path, target


def _log_fields(fields):
    """The Referer and User-Agent values (bytes, or None) of parsed
    ``fields`` (lowercased name, value pairs), for the access log."""
    referer = agent = None
    for name, value in fields:
        if name == b"referer":
            referer = _joined(referer, value)
        elif name == b"user-agent":
            agent = _joined(agent, value)
    return referer, agent


def _joined(value, more):
    """A repeated field's values as the log shows them (``Headers.get``)."""
    return more if value is None else value + b", " + more


class _Scanner:
    """llhttp with one callback, the request-target's, for whole heads.

    One per thread (``_scanners``), reused from head to head: a parser costs
    about as much to make as a head costs to check.  It is kept only while
    each head it took ended a message on a connection llhttp would keep
    open, so the next head finds it in the state a fresh one has; after
    anything else (an error, a body to come, a close) it is replaced.
    """

    __slots__ = ("url", "complete", "parser")

    def __init__(self):
        self.url = b""
        self.complete = False
        self.parser = httptools.HttpRequestParser(self)

    def on_url(self, url):
        self.url += url

    def on_message_complete(self):
        self.complete = True

    def check(self, head):
        """Feed one whole head; its (method, version) as llhttp read them,
        or None when llhttp refused it or met an Upgrade."""
        self.url = b""
        self.complete = False
        parser = self.parser
        try:
            parser.feed_data(head)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self.parser = httptools.HttpRequestParser(self)
            return None
        found = parser.get_method(), parser.get_http_version()
        if not self.complete or not parser.should_keep_alive():
            self.parser = httptools.HttpRequestParser(self)
        return found


_scanners = threading.local()
# What _SkippedBody's parser is reading.
_MADE_UP_HEAD, _SKIPPED, _NEXT_MESSAGES = range(3)


class _SkippedBody:
    """The callbacks of the parser that reads an Upgrade request's body
    (``H1Protocol._read_skipped_body``): its own head is made up, then the
    body, chunk lines and trailer fields go to the connection's callbacks,
    and so do all of the messages after it, which this parser reads as
    the connection's own until it is dropped (when the connection idles)."""

    __slots__ = ("conn", "part")

    def __init__(self, conn):
        self.conn = conn
        self.part = _MADE_UP_HEAD

    def on_message_begin(self):
        if self.part == _NEXT_MESSAGES:
            self.conn.on_message_begin()

    def on_url(self, url):
        if self.part == _NEXT_MESSAGES:
            self.conn.on_url(url)

    def on_header(self, name, value):
        if self.part != _MADE_UP_HEAD:
            self.conn.on_header(name, value)      # a trailer field, or a next message's

    def on_headers_complete(self):
        if self.part == _NEXT_MESSAGES:
            self.conn.on_headers_complete()
        else:
            self.part = _SKIPPED

    def on_body(self, body):
        self.conn.on_body(body)

    def on_chunk_header(self):
        self.conn.on_chunk_header()

    def on_message_complete(self):
        self.part = _NEXT_MESSAGES
        self.conn.on_message_complete()


class H1Protocol:
    """The parse side of one HTTP/1.1 connection (a base of each driver's
    connection class, which supplies the fields and methods named above)."""

    __slots__ = ()

    def feed(self, data, now):
        """Parse ``data`` (bytes, or a view that starts a buffer) received
        at ``now``, one request head at a time; a rest kept for later (the
        pipelining bound) is copied."""
        self.now = now
        self.feeding = True
        end = len(data)
        start = 0
        base = data.obj if type(data) is memoryview else data
        try:
            while start < end:
                if self.closed or (self.closing and not self.m_open):
                    return      # no request after this one will be answered
                if len(self.pending) >= MAX_PIPELINE or self.out_bytes > HIGH_WATER:
                    # Parse no further ahead: keep the rest, read no more.
                    self.unparsed = bytes(data[start:end])
                    self.pause_reading(PAUSE_PIPELINE)
                    return
                cut = base.find(_HEAD_END, start, end)
                cut = end if cut == -1 or cut + 4 >= end else cut + 4
                request = self.m_request
                if request is not None and self.m_body is not None and not request.chunked \
                        and start + request.content_length - self.m_body.received < cut:
                    # A body that ends before the cut is cut off where it
                    # ends: the next message then begins a piece, as after
                    # a head, and an error in it is told from its own bytes.
                    cut = start + request.content_length - self.m_body.received
                if not self._parse(data if start == 0 and cut == end else data[start:cut]):
                    if self.upgrade_rest is not None:
                        # After an Upgrade head: the new protocol's bytes.
                        self.upgrade_rest += bytes(data[cut:end])
                    return
                start = cut
        finally:
            self.feeding = False

    def deadline_for(self, now):
        """When the deadline of the current state falls (STATES), or None.
        The one place that turns a state into a deadline; the remembered-
        head path and ``_dispatch`` inline its "idle" case."""
        kind = STATES[self.state][1]
        if kind == "header":
            return now + self.header_timeout
        if kind == "idle":
            return now + self.keepalive_timeout
        if kind == "linger":
            return now + LINGER_SECONDS
        return now + HALF_CLOSE_CHECK if self.eof else None

    def resume_parsing(self):
        """Room again (a request answered, output sent): parse what was kept."""
        data = self.unparsed
        if data is None or self.feeding or self.closed:
            return
        if len(self.pending) >= MAX_PIPELINE or self.out_bytes > HIGH_WATER:
            return
        self.unparsed = None
        self.feed(data, self.now)
        if self.unparsed is None and not self.closed:
            if self.eof and self.active is None and not self.pending and not self.m_open:
                self._close_when_flushed()   # a half-closed client has had its answers
            self.resume_reading(PAUSE_PIPELINE)

    def _parse(self, piece):
        """Feed one piece to llhttp; False once parsing must stop."""
        if not self.m_open and (self.m_held is not None or piece[-4:] != _HEAD_END):
            piece = self._line_whole(piece)
            if piece is None:
                return True
        uncached = whole = None
        if not self.m_open and len(piece) <= MAX_FIELD_SIZE and piece[-4:] == _HEAD_END:
            # One whole head (pieces are cut after each): parsed before?
            head = bytes(piece)
            known = self.app.known_requests.get(head)
            if known is not None and self._kept_alive():
                self._replay(known)
                return True
            if len(head) <= KNOWN_REQUEST_SIZE:
                whole = head
            if self.active is None and self.target_path_ok:
                if head is self.uncached or self._not_cached(head):
                    uncached = head     # on_headers_complete need not look either
                elif self._answer_scanned(head):
                    return True
        self.uncached = uncached
        self.m_whole = whole
        self.m_known = None
        parser = self.parser
        if parser is None:
            parser = self.parser = httptools.HttpRequestParser(self)
        # Pieces are cut after each head, so a piece that begins outside a
        # message begins the next one: an error in it is classified from it.
        fresh = not self.m_open
        # A chunked body's framing bytes are counted per piece: what llhttp
        # took that was neither body nor trailer fields.  (A piece that holds
        # a head ends with it, so it never holds body bytes too.)
        request = self.m_request
        newer = None
        try:
            if request is not None and request.chunked and self.m_body is not None:
                self._feed_chunked(parser, piece, request)
            else:
                parser.feed_data(piece)
        except httptools.HttpParserUpgrade as e:
            self.m_answer = None    # not a plain request: never remembered
            rest = piece[e.args[0]:] if e.args else b""
            if self.m_noted & _SKIPPED_BODY:
                return self._read_skipped_body(rest)
            return self._after_upgrade(parser, bytes(rest))
        except httptools.HttpParserError as e:
            self.m_answer = None
            cause = e.__cause__ or e.__context__
            if isinstance(cause, ProtocolError):
                error = cause
            elif isinstance(cause, Exception):
                self.log_internal_error(cause)
                error = ProtocolError(500, "Internal Server Error")
            else:
                newer = as_http11(piece) if fresh else None
                error = classify(e, piece if fresh else b"")
            if newer is None:
                self.pause_reading(PAUSE_ERROR)
                if self.m_body is not None:
                    self.m_body.fail(ConnectionError("malformed request body"))
                line = self._line_read(parser, piece)
                # A HEAD whose request line was cut short (a 414) is still
                # a HEAD: its answer has no content (RFC 9110 §9.3.2).
                head = line is None and fresh and \
                    bytes(piece[:64]).lstrip(b"\r\n").startswith(b"HEAD ")
                self._queue_error(error.status, error.message, line, "HEAD" if head else None)
                return False
        if newer is not None:
            # llhttp stopped at a later HTTP/1 minor version: the message
            # begins again, read as HTTP/1.1 (outside the except clause, so
            # that an error in it is not chained to this one).
            self.parser = None
            self.m_open = False
            return self._parse(newer)
        if self.m_known is not None and not self.m_open:
            # The head was one whole message, answered by a handler.
            self.app.known_requests.remember(whole, self.m_known)
        if self.state == "idle":
            # Between requests the parser holds nothing: drop it, so an
            # idle keep-alive connection does not pay for one (a new parser
            # costs well under a microsecond).
            self.parser = None
        return True

    def _line_whole(self, piece):
        """``piece``, the first bytes of a message, after those held before
        it, once its request line has ended; None while it has not (they
        are held).

        What follows the method tells 501 from 400, and the version 505
        from 400 (``h1_checks.classify``), and a later HTTP/1 minor version
        is read as 1.1 (``as_http11``): all from the line's bytes at hand
        when llhttp refuses one.  So that the answer does not hang on how
        TCP cut the line, llhttp gets it whole.  The header deadline runs
        from the first byte held; a line past MAX_REQUEST_LINE is fed as
        it is (414, or 501 for a method longer than any)."""
        held = self.m_held
        if held is not None:
            held += piece
            piece = held
        if not request_line_unended(piece):
            self.m_held = None
            return piece if held is None else bytes(held)
        if held is None:
            self.m_held = bytearray(piece)
            if self.state == "idle":
                self.state = "head"
                self.deadline = self.deadline_for(self.now)
        return None

    def _kept_alive(self):
        """Did the last message parsed on this connection allow another?
        (llhttp refuses bytes after one that did not: so must a replay.)"""
        last = self.pending[-1] if self.pending else self.active
        return last is None or type(last) is not Request or last.keep_alive

    def _replay_whole(self, head, now):
        """``feed`` of ``head`` (bytes, all the input there is: one whole
        head, as a key of ``known_requests`` is) when it is a head parsed
        before and ``feed`` would parse it now: its request is queued
        (``_replay``) and True returned; else False, nothing done."""
        known = self.app.known_requests.get(head)
        if known is None or self.m_open or self.closing or self.closed \
                or len(self.pending) >= MAX_PIPELINE or self.out_bytes > HIGH_WATER \
                or not self._kept_alive():
            return False
        self.now = now
        self._replay(known)
        return True

    def _replay(self, known):
        """Queue the request of a head parsed before (``known``, its
        ``ParsedHead``), through the parser's callbacks but those of its
        fields: the same states, deadlines and queue as its parse.  (Its
        message begins as ``on_message_begin`` begins one, but for the
        "head" state and its deadline, which ``_queue_request`` replaces
        at once.)"""
        self._reset_message()
        self.m_open = True
        self._queue_request(known.request())
        self.on_message_complete()

    def _after_upgrade(self, parser, rest):
        """llhttp stopped after a bodiless request with "Upgrade:" (or a
        CONNECT); ``rest``: the bytes after its head.  False once parsing
        waits for its answer.

        The request was queued and is answered normally.  A plugin may
        answer it with 101 and take the connection over (cycle's
        send_response, the driver's tunnel): then what follows its head is
        the new protocol's, kept in ``upgrade_rest`` and read no further
        until the answer.  Any other answer ignores the Upgrade (RFC 9110
        §7.8, as nginx and Apache do), and ``RequestCycle._dispatch`` parses
        what follows as the next requests, on the same connection.  An
        HTTP/1.0 request's Upgrade is ignored at once (§7.8: MUST), and so
        is one answered already (from the cache; the blocking drivers,
        which have no tunnel, always have).  A CONNECT still ends the
        connection: a client may send its tunnel's bytes (a TLS hello)
        before our refusal."""
        self.parser = None      # llhttp reads nothing after it: a new one for the next
        if parser.get_method() == b"CONNECT":
            if parser.get_http_version() != "1.0":
                self.upgrade_rest = rest
            self.pause_reading(PAUSE_UPGRADE)
            self.closing = True
            if self.active is None:
                self._close_when_flushed()
            return False
        if parser.get_http_version() == "1.0" or (self.active is None and not self.pending):
            return self._parse(rest) if rest and not self.closing else True
        self.upgrade_rest = rest
        self.pause_reading(PAUSE_UPGRADE)
        return False

    def _read_skipped_body(self, rest):
        """Read the body of an Upgrade request as HTTP/1.1, ``rest`` first.

        httptools has llhttp skip the body of a request that asks for an
        Upgrade, taking what follows the head for the new protocol.  But a
        body is sent before any switch (RFC 9110 §7.8; RFC 7540 §3.2: "sent
        in their entirety"), and we ignore an Upgrade that comes with one,
        as nginx does (curl offers h2c on its POSTs): a second parser, told
        the request's framing, reads the body into the request's reader,
        then goes on with the requests after it."""
        self.m_noted &= ~_SKIPPED_BODY
        request = self.m_request
        # (A "Connection: close" has llhttp refuse what follows the body, as
        # after any message that closes the connection.)
        parser = self.parser = httptools.HttpRequestParser(_SkippedBody(self))
        parser.feed_data(b"POST / HTTP/1.1\r\n"
                         + (b"" if request.keep_alive else b"Connection: close\r\n")
                         + (b"Transfer-Encoding: chunked\r\n\r\n" if request.chunked else
                            b"Content-Length: %d\r\n\r\n" % request.content_length))
        return self._parse(rest) if rest else True

    def _line_read(self, parser, piece):
        """What the access log shows of a message that failed in ``piece``
        (``ErrorItem``'s ``line``): its request line once read whole, with
        Referer and User-Agent as far as read; else None.

        llhttp keeps a message's version until the next one's is read, so
        the line counts as read when it stands in the piece with it, or
        when its head made a Request (its body failed).
        """
        version = parser.get_http_version()
        if self.m_request is None and (
                not self.m_url or version == "0.0"
                or self.m_url + b" HTTP/" + version.encode() not in bytes(piece)):
            return None
        referer, agent = _log_fields(self.m_headers)
        return (parser.get_method().decode("latin-1"), self.m_url.decode("latin-1"), version,
                referer and referer.decode("latin-1"), agent and agent.decode("latin-1"))

    def _answer_scanned(self, head):
        """Answer ``head``, one whole request head, from the cache if it is a
        plain GET/HEAD of a cached target; False (nothing done) otherwise,
        and the caller parses it with a callback per field after all.

        llhttp checks the head with only the request-target called back;
        then one regex pass picks out the fields the cached path needs.  The
        head is no longer than one field may be and has no more lines than
        fields are allowed, so no limit of ``on_header`` can fail, and the
        fields found are those ``on_header`` would see: the answer is the one
        the full parse leads to (``tests/unit/test_scanned_heads.py``).
        """
        try:
            scanner = _scanners.scanner
        except AttributeError:
            scanner = _scanners.scanner = _Scanner()
        found = scanner.check(head)
        if found is None:
            return False        # the full parse finds the same error, or the Upgrade
        method, version = found
        if head.count(b"\n") > MAX_FIELDS + 2:     # llhttp let no LF but a CRLF's in
            return False
        host = connection = referer = agent = validators = accept = None
        hosts = 0
        # Host and Connection are read without regard to case (valid_host,
        # keep_alive), so their lowercased values do; the log's fields are
        # taken from the head as sent.
        for m in _SCANNED.finditer(head.lower()):
            name = m.group(1)
            if name == b"host":
                hosts += 1
                host = m.group(2)
            elif name == b"connection":
                connection = m.group(2) if connection is None else \
                    connection + b"," + m.group(2)
            elif name == b"user-agent":
                agent = _joined(agent, head[m.start(2):m.end(2)])
            elif name == b"referer":
                referer = _joined(referer, head[m.start(2):m.end(2)])
            elif name == b"accept-encoding":
                accept = _joined(accept, head[m.start(2):m.end(2)])
            elif name == b"if-none-match" or name == b"if-modified-since":
                # A browser revalidating: answered here too, 304 or 200.
                field = name.decode("ascii")
                if validators is None:
                    validators = {}
                elif field in validators:
                    return False    # repeated: the full path joins them
                validators[field] = head[m.start(2):m.end(2)].decode("latin-1")
            else:
                return False    # framing, Upgrade, If-Match, Range...: the full path
        if hosts != 1:
            return False
        url = scanner.url
        entry = self._target_entry(method, version, url, host)
        if entry is not None and entry.variants is not None:
            entry = self._target_variant(entry, accept)
        if entry is None:
            return False
        self.on_message_begin()
        self.m_url = url
        self.m_connection = connection
        self._answer_by_target(entry, method, version, referer, agent, validators)
        self.on_message_complete()
        return True

    def _accept_field(self):
        """The Accept-Encoding field of the message parsed so far (bytes,
        repeated fields joined), or None."""
        accept = None
        for name, value in self.m_headers:
            if name == b"accept-encoding":
                accept = _joined(accept, value)
        return accept

    def _feed_chunked(self, parser, piece, request):
        """Feed a piece of ``request``'s chunked body in slices, and refuse
        the request once a chunk-size line declares more than
        --max-body-size in all (``flashplug.http.chunks``), or its framing
        (chunk lines, extensions, trailers) outgrows its budget.  Slices bound what one call can take
        before the count is checked, also when the message ends in it."""
        reader = self.m_body
        sizes = self.m_sizes
        for at in range(0, len(piece), CHUNK_SLICE):
            part = piece[at:at + CHUNK_SLICE]
            before = reader.received + self.m_head_bytes
            try:
                sizes.feed(part)        # a chunk too large is refused before its data
            except ProtocolError as e:
                raise httptools.HttpParserError("chunk size refused") from e
            parser.feed_data(part)
            if self.m_request is not request:     # the message ended in this slice
                rest = piece[at + CHUNK_SLICE:]
                if rest:
                    parser.feed_data(rest)
                return
            self.m_overhead += len(part) - (reader.received + self.m_head_bytes - before)
            if self.m_overhead > MAX_CHUNK_OVERHEAD + CHUNK_LINE_ALLOWANCE * self.m_chunks:
                raise httptools.HttpParserError("chunk framing too long") from \
                    ProtocolError(400, "Bad Request: chunk extensions or trailers too long")

    # -- parser callbacks --------------------------------------------------------

    def _reset_message(self):
        """Forget the last message's parse state (per-message fields ``m_*``)."""
        self.m_url = b""
        self.m_headers = []
        self.m_head_bytes = self.m_hosts = self.m_noted = self.m_chunks = self.m_overhead = 0
        self.m_rate_start = None        # the body's MinRate window (see _body_deadline)
        self.m_rate_base = 0
        self.m_request = self.m_body = self.m_connection = self.m_host = None
        self.m_answer = self.m_known = None

    def on_message_begin(self):
        self._reset_message()
        self.m_open = True
        if self.state == "idle":
            self.state = "head"
            self.deadline = self.deadline_for(self.now)

    def on_url(self, url):
        self.m_url = self.m_url + url if self.m_url else url
        if len(self.m_url) > MAX_REQUEST_TARGET:
            raise ProtocolError(414, "URI Too Long")

    def on_header(self, name, value):
        size = len(name) + len(value)
        self.m_head_bytes += size
        if size > MAX_FIELD_SIZE or len(self.m_headers) >= MAX_FIELDS \
                or self.m_head_bytes > MAX_HEAD_BYTES:
            raise ProtocolError(431, "Request Header Fields Too Large")
        # llhttp keeps the spaces and tabs that end a field line, which are
        # not part of the value (RFC 9110 §5.5, a MUST): "Host: t " must
        # name host t, "Expect: 100-continue " ask for a 100.  (Counted
        # above with them: they were sent, and the limits are on bytes.)
        value = value.rstrip(b" \t")
        name = name.lower()
        noted = _NOTED_FIELDS.get(name)
        if noted is not None:
            if noted == _HOST:
                self.m_hosts += 1
                self.m_host = value
            self.m_noted |= noted
        elif name == b"connection":
            self.m_connection = value if self.m_connection is None else \
                self.m_connection + b"," + value
        self.m_headers.append((name, value))

    def on_headers_complete(self):
        parser = self.parser
        if self.m_noted == _HOST and self.m_hosts == 1 and self.active is None \
                and self.target_path_ok and self.uncached is None:
            method, version = parser.get_method(), parser.get_http_version()
            entry = self._target_entry(method, version, self.m_url, self.m_host)
            if entry is not None and entry.variants is not None:
                entry = self._target_variant(entry, self._accept_field())
            if entry is not None:
                referer, agent = _log_fields(self.m_headers)
                self._answer_by_target(entry, method, version, referer, agent)
                return
        version = parser.get_http_version()
        if version == "0.9":
            # llhttp reads a request line without a version (HTTP/0.9's
            # "GET /") as 0.9, like "HTTP/0.9" itself: no request-line of
            # RFC 9112 §3 either way, so 400 (nginx and Apache: 400 to
            # "HTTP/0.9", lighttpd to no version).
            raise ProtocolError(400, "Bad Request: no HTTP/1 version")
        if version not in ("1.1", "1.0"):
            raise ProtocolError(505, "HTTP Version Not Supported")
        method = parser.get_method().decode("ascii")
        headers = Headers.__new__(Headers)
        headers._items = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.m_headers]
        target = self.m_url.decode("latin-1")
        request = Request(method, target, "", "", "", version, headers)
        if self.m_hosts != 1 and (version == "1.1" or self.m_hosts > 1):
            raise ProtocolError(400, "Bad Request: exactly one Host header is required")
        if self.m_noted & _HOST and not valid_host(self.m_host):
            raise ProtocolError(400, "Bad Request: invalid Host header")
        request.keep_alive = keep_alive(version, self.m_connection)
        upgrade = (self.m_noted & _UPGRADE or method == "CONNECT") and parser.should_upgrade()
        if method == "CONNECT":
            request.keep_alive = False      # see _after_upgrade
        if self.m_noted & _FRAMING:
            self._check_framing(request)
            if upgrade and self.m_body is not None:
                self.m_noted |= _SKIPPED_BODY
        else:
            request.body = EMPTY_BODY
        authority = set_target(request, target)
        if authority is not None:
            # RFC 9112 §3.2.2: the target's authority wins over Host.  The
            # field is replaced (as a proxy would), so that whoever reads
            # the request (request.host, CGI's HTTP_HOST, a plugin) sees
            # one host.
            headers._items = [item for item in headers._items if item[0] != "host"]
            headers._items.append(("host", authority))
        app = self.app
        if app.misdirect is not None:
            app.misdirect(request.host)     # 421 Misdirected Request
        request.server = app.default_site.facade if app.sites is None \
            else app.sites.choose(request.host).facade
        request.conditional = bool(self.m_noted & _CONDITIONAL)
        whole = self.m_whole
        parsed = None
        if whole is not None and request.keep_alive and request.path is not None \
                and not self.m_noted & (_FRAMING | _UPGRADE) and method != "CONNECT" \
                and app.known_requests.seen_before(whole):
            parsed = ParsedHead(request)    # before a route hook can touch it
        self._queue_request(request)
        if parsed is not None and self.active is request:
            if self.active_handler is not None:
                self.m_known = parsed      # remembered if the message ends with the piece
            else:
                app.known_requests.refuse(whole)    # the static files'

    def _queue_request(self, request):
        """Set the per-connection fields of a parsed ``request`` and answer
        it now, or queue it behind the one being answered."""
        request.remote_addr, request.remote_port = request_client(
            self.app, (self.peer_addr, self.peer_port), request.headers)
        request.server_addr = self.local_addr
        request.server_port = self.local_port
        request.scheme = self.scheme
        request._cycle = self       # for Request.send_interim
        now = request.start_time = self.now
        self.m_request = request
        self.state = "body"
        self.deadline = self.deadline_for(now)
        if self.active is None:
            self._start(request)
        else:
            self.pending.append(request)

    def _check_framing(self, request):
        headers = request.headers
        te = headers.get("transfer-encoding")
        if te is not None:
            codings = [c.strip().lower() for c in te.split(",") if c.strip()]
            if codings.count("chunked") != 1 or codings[-1] != "chunked":
                # RFC 9112 §6.3: chunked must be applied once, last.
                raise ProtocolError(400, "Bad Request: chunked must be the final transfer coding")
            if len(codings) > 1:
                raise ProtocolError(501, "Not Implemented: unsupported transfer coding")
            request.chunked = True
            if request.version == "1.0":
                # RFC 9112 §6.1: a 1.0 message with Transfer-Encoding has
                # faulty framing; answer it, then close.
                request.keep_alive = False
        request.content_length = content_length(headers, self.app.config.max_body_size)
        expect = expects_continue(headers.get("expect"))
        if request.chunked:
            # (Only _feed_chunked reads it, only for a chunked message: a
            # stale one is never read, so _reset_message leaves it.)
            self.m_sizes = ChunkSizes(self.app.config.max_body_size)
        if request.content_length or request.chunked:
            request.body = self.m_body = BodyReader(self)
            if expect and request.version == "1.1":
                self.continue_for = request
        else:
            request.body = EMPTY_BODY

    def on_chunk_header(self):
        self.m_chunks += 1

    def on_body(self, body):
        reader = self.m_body
        if reader is not None:
            # (A chunked body's size is checked on its chunk-size lines.)
            reader.feed(body)
            self.deadline = self._body_deadline(reader.received, len(body))

    def _body_deadline(self, received, n):
        """The deadline once ``n`` more body bytes (``received`` in all)
        came in: --header-timeout after this progress, or sooner when, past
        --min-rate-grace, the body has come at under --min-rate bytes/s
        since reading it began (or last resumed after the handler caught
        up), as Apache's mod_reqtimeout body MinRate."""
        now = self.now
        deadline = now + self.header_timeout
        config = self.app.config
        if config.min_rate:
            if self.m_rate_start is None:
                self.m_rate_start, self.m_rate_base = now, received - n
            deadline = min(deadline, self.m_rate_start + config.min_rate_grace
                           + (received - self.m_rate_base) / config.min_rate)
        return deadline

    def on_message_complete(self):
        if self.m_noted & _SKIPPED_BODY:
            return      # llhttp skipped the body, which is still to come
        if self.m_body is not None:
            self.m_body.finish()
        request = self.m_request
        self.m_request = None
        self.m_body = None
        self.m_headers = None   # an idle connection keeps nothing of its last request
        self.m_url = self.m_connection = self.m_host = self.uncached = self.m_whole = None
        self.m_open = False
        if request is None and self.state == "busy" and self.active is None:
            # answered by _answer_by_target
            if self.closing:
                self._close_when_flushed()
            else:
                self.state = "idle"
                self.deadline = self.deadline_for(self.now)
        elif request is not None:
            request.complete = True
            if self.active is request and self.deferred:
                self.deferred = False
                self._start(request)
            elif self.active is request and self._answered:
                self._finish_request()
            elif self.state == "body":
                self.state = "busy"
                self.deadline = self.deadline_for(self.now)


def state_tables():
    """STATES and TRANSITIONS as the Markdown tables docs/architecture.md shows."""
    lines = ["| state | meaning | deadline |", "|---|---|---|"]
    lines += [f"| `{name}` | {meaning} | {deadline} |"
              for name, (meaning, deadline) in STATES.items()]
    lines += ["", "| from | event | to |", "|---|---|---|"]
    lines += [f"| `{old}` | {event} | `{new}` |" for (old, event), new in TRANSITIONS.items()]
    return "\n".join(lines) + "\n"

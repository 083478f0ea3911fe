"""One HTTP/1.1 connection, driven by the event loop.

Theory of operation: the connection owns its non-blocking socket and watches
it with ``loop.add_reader``/``add_writer`` (uvloop will not let us
``sendfile`` on a socket a transport owns).  Bytes read go to the httptools
(llhttp, strict) parser; its callbacks build a ``Request`` per message and
queue it.  Requests are answered one at a time, in order, so pipelined
responses leave in request order.

A request for a fresh cached file is answered inside the parser callback:
one prebuilt buffer, no coroutine, no hook.  Anything else runs as a task
(``_serve``) that awaits the handler and then writes the response.

Output is a queue of ``bytes`` and file ranges.  ``_flush`` sends as much as
the socket takes; file ranges go out with ``os.sendfile`` once the
residency probe says their pages are in memory; a window that is not goes
out from a helper's own ``sendfile`` (``flashplug.residency``).  When the
queue grows past ``HIGH_WATER`` a streaming handler waits in ``drain()``.

Deadlines (header, keep-alive idle, body, send) are plain timestamps; the
server sweeps all connections once a second, which costs nothing per request.
"""
import collections
import logging
import re
import socket
import time

import httptools

from flashplug.cache import still_fresh
from flashplug.errors import HTTPError
from flashplug.helpers import run_sync
from flashplug.http.message import Headers, Request
from flashplug.http.paths import decode_path
from flashplug.http.status import reason
from flashplug.residency import WINDOW
from flashplug.static import FileBody

log = logging.getLogger("flashplug.connection")

RECV_SIZE = 256 * 1024
# A streaming handler waits once this much output is queued, so a slow
# client holds at most about this much of a response in our memory.
HIGH_WATER = 256 * 1024
# Limits in the spirit of Apache's LimitRequestLine / LimitRequestFieldSize /
# LimitRequestFields and nginx's large_client_header_buffers (8 KiB lines).
MAX_REQUEST_TARGET = 8190
MAX_FIELD_SIZE = 8190
MAX_FIELDS = 100
MAX_HEAD_BYTES = 64 * 1024
# Request heads up to this size that were answered from the cache are
# remembered whole (StaticFiles.known_heads), so the same bytes again skip
# the parser.  A browser's or a load generator's heads are a few hundred bytes.
KNOWN_HEAD_MAX = 2048
# A body in memory smaller than this is copied behind its header and sent
# with one send(); a bigger one goes out with sendmsg() of the two buffers,
# which costs a little more per call but copies nothing in user space.
JOIN_MAX = 16 * 1024
# Requests parsed ahead of the one being answered before we stop reading.
MAX_PIPELINE = 32
# Body bytes buffered for a handler that has not read them yet.
BODY_BUFFER = 256 * 1024
# How long to keep draining a client's input after an error response, so the
# response is not destroyed by a TCP reset (nginx's lingering close).
LINGER_SECONDS = 2.0

# Header fields the parser callbacks note as they pass, so that a plain
# request skips the framing checks and takes the cached path.
_HOST, _FRAMING, _CONDITIONAL, _UPGRADE = 1, 2, 4, 8
_NOTED_FIELDS = {b"host": _HOST, b"content-length": _FRAMING,
                 b"transfer-encoding": _FRAMING, b"expect": _FRAMING,
                 b"if-match": _CONDITIONAL, b"if-none-match": _CONDITIONAL,
                 b"if-modified-since": _CONDITIONAL, b"if-unmodified-since": _CONDITIONAL,
                 b"range": _CONDITIONAL, b"if-range": _CONDITIONAL, b"upgrade": _UPGRADE}
_STATUS_LINES = {}
MSG_MORE = getattr(socket, "MSG_MORE", 0)
_RECV_BUFFER = bytearray(RECV_SIZE)
_RECV_VIEW = memoryview(_RECV_BUFFER)
# Why reading is paused (bits of Connection.pause_reasons).
_PAUSE_BODY, _PAUSE_PIPELINE, _PAUSE_ERROR, _PAUSE_UPGRADE, _PAUSE_TIMEOUT = 1, 2, 4, 8, 16
_PAUSE_REVALIDATE = 32
# RFC 3986 host (IP-literal, IPv4 or reg-name) and an optional port.
_HOST_RE = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(:[0-9]*)?")
_VALID_HOSTS = set()    # values already checked; bounded, cleared when full


def status_line(status, phrase=None):
    if phrase is None:
        line = _STATUS_LINES.get(status)
        if line is None:
            line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {reason(status)}\r\n".encode()
        return line
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1", "replace")


class _Reject(Exception):
    """Raised inside a parser callback to answer with an error and close."""

    def __init__(self, status, message):
        super().__init__(status, message)
        self.status = status
        self.message = message


class BodyReader:
    """The request body as an async iterator, fed by the parser.

    The connection stops reading the socket while more than BODY_BUFFER
    bytes wait here, so a handler that reads slowly slows the client down
    instead of filling our memory.
    """

    __slots__ = ("_conn", "_chunks", "_buffered", "_done", "_waiter", "_error",
                 "received", "abandoned")

    def __init__(self, conn):
        self._conn = conn
        self._chunks = collections.deque()
        self._buffered = 0
        self._done = False
        self._waiter = None
        self._error = None
        self.received = 0
        self.abandoned = False

    def feed(self, chunk):
        self.received += len(chunk)
        if self.abandoned:
            return
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > BODY_BUFFER:
            self._conn.pause_reading(_PAUSE_BODY)
        self._wake()

    def finish(self):
        self._done = True
        self._wake()

    def fail(self, error):
        self._error = error
        self._wake()

    def _wake(self):
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                raise StopAsyncIteration
            self._conn.send_continue()
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered <= BODY_BUFFER // 2:
            self._conn.resume_reading(_PAUSE_BODY)
        return chunk

    async def read(self):
        """The whole body as bytes (mind the size: prefer iterating)."""
        return b"".join([c async for c in self])


class Connection:
    """One client connection on the event loop."""

    # Slots, a list for each queue and a bit mask for pause reasons: an idle
    # keep-alive connection should cost as little memory as possible.
    __slots__ = ("app", "loop", "sock", "fd", "peer_addr", "peer_port", "local_addr",
                 "local_port", "parser", "out", "out_bytes", "writer_on", "reading",
                 "pause_reasons", "drain_waiter", "closed", "closing", "pending", "active",
                 "task", "eof", "offloading", "header_timeout", "keepalive_timeout",
                 "target_path_ok", "deadline", "send_deadline", "state", "continue_for",
                 "_answered", "deferred", "active_handler", "m_url", "m_headers",
                 "m_head_bytes", "m_hosts", "m_noted", "m_request", "m_body",
                 "m_connection", "m_host", "m_answer", "__weakref__")

    def __init__(self, app, sock, peer):
        self.app = app
        self.loop = app.loop
        self.sock = sock
        self.fd = sock.fileno()
        self.peer_addr = peer[0] if isinstance(peer, tuple) else ""
        self.peer_port = peer[1] if isinstance(peer, tuple) else 0
        local = app.listen_addr
        if local is None:  # bound to a wildcard address: ask which one this is
            local = sock.getsockname()
        self.local_addr, self.local_port = (local[0], local[1]) if isinstance(local, tuple) else ("", 0)
        self.parser = None           # made when bytes arrive, dropped when idle
        self.out = []
        self.out_bytes = 0
        self.writer_on = False
        self.reading = True
        self.pause_reasons = 0        # _PAUSE_* bits: why the socket is not read
        self.drain_waiter = None
        self.closed = False
        self.closing = False          # close once the output queue drains
        self.pending = []
        self.active = None           # the request being answered
        self.task = None
        self.eof = False
        self.offloading = False      # a helper is reading file pages in for us
        self.header_timeout = app.config.header_timeout
        self.keepalive_timeout = app.config.keepalive_timeout
        self.target_path_ok = app.fast_path_ok and app.router.route_hook is None
        self.deadline = time.monotonic() + self.header_timeout
        self.send_deadline = None
        self.state = "idle"
        self.continue_for = None     # request that may still need "100 Continue"
        self._answered = False       # the active request's response is queued
        self.deferred = False        # the active request waits for its body's end
        self.active_handler = None   # the route chosen for the active request
        self._reset_message()
        app.connections.add(self)
        self.loop.add_reader(self.fd, self._on_readable)

    # -- reading -----------------------------------------------------------------

    def _on_readable(self):
        # One receive buffer per loop, shared by all connections: the parser
        # copies out what it keeps, so nothing is allocated per read.
        try:
            n = self.sock.recv_into(_RECV_BUFFER)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()
            return
        if not n:
            self._on_eof()
            return
        state = self.state
        if state == "idle" and n <= KNOWN_HEAD_MAX \
                and _RECV_BUFFER.endswith(b"\r\n\r\n", 0, n):
            # Between requests, a short complete head: maybe one we know.
            data = bytes(_RECV_VIEW[:n])
            known = self.app.static.known_heads.get(data)
            if known is None or not self._answer_known(known, data):
                self.m_answer = None
                self.feed(data)
                if self.m_answer is not None:
                    self._remember_head(data)
            return
        if state == "lingering":
            return
        self.feed(_RECV_VIEW[:n])

    def _remember_head(self, data):
        known = self.m_answer
        self.m_answer = None
        # One message exactly: a plain GET/HEAD has no body, so its head's
        # blank line is the end of the message, and there is only one.
        if data.count(b"\r\n\r\n") == 1:
            self.app.static.remember_head(data, known)

    def _answer_known(self, known, data):
        """Answer request bytes seen before (``_answer_by_target`` remembered
        them), without parsing them again.  False: the cache no longer has
        the entry, so the request takes the full path."""
        app = self.app
        static = app.static
        entry = static.by_target.get(known.target)
        if entry is None or entry.dead:
            return False
        if not static.cache.is_fresh(entry, time.monotonic()):
            self._revalidate_known(known, entry, data)
            return True
        entry.used = True
        size = self._write_entry(known.head_only, known.version, known.keep_alive, entry)
        stats = app.stats
        stats.cache_hits += 1
        stats.count_response(200, size)
        if app.access_log is not None:
            app.access_log.log(self.peer_addr, None, known.method, known.target_text,
                               known.version, 200, size, known.referer, known.agent)
        if self.closing:
            self._close_when_flushed()
        else:
            self.deadline = time.monotonic() + self.keepalive_timeout
        return True

    def _revalidate_known(self, known, entry, data):
        """The file behind a known head is due for its stat (--cache-valid):
        one helper trip, then the answer.  If the file changed, the bytes are
        parsed after all, and the full path reloads it."""
        self.state = "busy"
        self.deadline = None
        self.pause_reading(_PAUSE_REVALIDATE)   # a pipelined request waits its turn
        started = time.monotonic()
        self.app.stats.cache_revalidations += 1

        def done(fresh, error):
            if self.closed:
                return
            self.state = "idle"
            self.resume_reading(_PAUSE_REVALIDATE)
            if fresh and not entry.dead:
                entry.checked = max(entry.checked, started)
                if self._answer_known(known, data):
                    return
            self.m_answer = None
            self.feed(data)
        self.app.helpers.call(still_fresh, (entry,), done)

    def feed(self, data):
        parser = self.parser
        if parser is None:
            parser = self.parser = httptools.HttpRequestParser(self)
        try:
            parser.feed_data(data)
            if self.state == "idle":
                # Between requests the parser holds nothing: drop it, so an
                # idle keep-alive connection does not pay for one (a new
                # parser costs well under a microsecond).
                self.parser = None
        except httptools.HttpParserUpgrade:
            self.m_answer = None    # not a plain request: never remembered
            # CONNECT, or a request with "Upgrade:": we speak plain HTTP/1.1
            # only, and the parser stops at such a message.  It was queued
            # and is answered normally; then the connection closes.
            self.pause_reading(_PAUSE_UPGRADE)
            self.closing = True
            if self.active is None:
                self._close_when_flushed()
        except httptools.HttpParserError as e:
            self.m_answer = None
            self._on_parse_error(e, data)

    def _on_parse_error(self, e, data):
        cause = e.__cause__ or e.__context__
        if isinstance(cause, _Reject):
            status, message = cause.status, cause.message
        elif isinstance(cause, Exception):
            log.error("error while parsing a request from %s: %r", self.peer_addr, cause)
            status, message = 500, "Internal Server Error"
        else:
            status, message = self._classify_parse_error(e, data)
        self.pause_reading(_PAUSE_ERROR)
        if self.m_body is not None:
            self.m_body.fail(ConnectionError("malformed request body"))
        self._queue_error(status, message)

    def _classify_parse_error(self, e, data):
        text = str(e)
        if isinstance(e, httptools.HttpParserInvalidMethodError):
            # An unknown but well-formed method ("FOO / HTTP/1.1") is 501;
            # bytes that are not HTTP at all (a TLS ClientHello) are 400.
            method, _, rest = bytes(data[:64]).lstrip(b"\r\n").partition(b" ")
            if method and method.isalpha() and method.isupper() and rest.startswith(b"/"):
                return 501, "Not Implemented"
            return 400, "Bad Request"
        if "HTTP version" in text:
            return 505, "HTTP Version Not Supported"
        if "Content-Length" in text:
            return 400, "Bad Request"   # e.g. with Transfer-Encoding: bad framing
        if "Transfer-Encoding" in text:
            te = self._header_value(b"transfer-encoding")
            if te is not None and b"content-length" not in (n for n, _ in self.m_headers or ()):
                return 501, "Not Implemented"
        return 400, "Bad Request"

    def _header_value(self, name):
        for n, v in self.m_headers or ():
            if n == name:
                return v
        return None

    def _on_eof(self):
        self.eof = True
        self.loop.remove_reader(self.fd)
        self.reading = False
        if self.state in ("head", "body"):
            self.abort()  # a request cut off half-way can never be answered
        elif self.state == "lingering" or (self.active is None and not self.pending
                                           and not self.out):
            self.close()
        elif self.active is not None and self.task is not None and not self.out:
            # The client went away while a handler works for it (a CGI
            # script, say): stop the work.
            self.abort()
        else:
            self.closing = True

    def pause_reading(self, why):
        self.pause_reasons |= why
        if self.reading and not self.closed:
            self.loop.remove_reader(self.fd)
            self.reading = False

    def resume_reading(self, why):
        self.pause_reasons &= ~why
        if not self.pause_reasons and not self.reading and not self.closed and not self.eof:
            self.loop.add_reader(self.fd, self._on_readable)
            self.reading = True

    # -- parser callbacks ------------------------------------------------------------

    def _reset_message(self):
        """Forget the last message's parse state (per-message fields ``m_*``)."""
        self.m_url = b""
        self.m_headers = []
        self.m_head_bytes = self.m_hosts = self.m_noted = 0
        self.m_request = self.m_body = self.m_connection = self.m_host = None
        self.m_answer = None

    def on_message_begin(self):
        self._reset_message()
        if self.state == "idle":
            self.state = "head"
            self.deadline = time.monotonic() + self.header_timeout

    def on_url(self, url):
        self.m_url = self.m_url + url if self.m_url else url
        if len(self.m_url) > MAX_REQUEST_TARGET:
            raise _Reject(414, "URI Too Long")

    def on_header(self, name, value):
        size = len(name) + len(value)
        self.m_head_bytes += size
        if size > MAX_FIELD_SIZE or len(self.m_headers) >= MAX_FIELDS \
                or self.m_head_bytes > MAX_HEAD_BYTES:
            raise _Reject(431, "Request Header Fields Too Large")
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
        if self.m_noted == _HOST and self.m_hosts == 1 and self.active is None \
                and self.target_path_ok \
                and self._answer_by_target():
            return
        parser = self.parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise _Reject(505, "HTTP Version Not Supported")
        method = parser.get_method().decode("ascii")
        headers = Headers.__new__(Headers)
        headers._items = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.m_headers]
        target = self.m_url.decode("latin-1")
        request = Request(method, target, "", "", "", version, headers)
        if self.m_hosts != 1 and (version == "1.1" or self.m_hosts > 1):
            raise _Reject(400, "Bad Request: exactly one Host header is required")
        if self.m_noted & _HOST and not self._valid_host():
            raise _Reject(400, "Bad Request: invalid Host header")
        request.keep_alive = self._keep_alive()
        if (self.m_noted & _UPGRADE or method == "CONNECT") and parser.should_upgrade():
            # The parser stops after this message (see feed): say so.
            request.keep_alive = False
        if self.m_noted & _FRAMING:
            self._check_framing(request)
        else:
            request.body = _EMPTY_BODY
        self._set_target(request, target)
        request.remote_addr = self.peer_addr
        request.remote_port = self.peer_port
        request.server_addr = self.local_addr
        request.server_port = self.local_port
        request.server = self.app
        now = request.start_time = time.monotonic()
        request.conditional = bool(self.m_noted & _CONDITIONAL)
        self.m_request = request
        self.state = "body"
        self.deadline = now + self.header_timeout
        if self.active is None:
            self._start(request)
        else:
            self.pending.append(request)
            if len(self.pending) >= MAX_PIPELINE:
                self.pause_reading(_PAUSE_PIPELINE)

    def _keep_alive(self):
        """May the connection carry another request after this one?

        llhttp's own answer misses a "close" beside "keep-alive" in
        HTTP/1.0, so the Connection options are read here (RFC 9112 §9.3).
        """
        options = self.m_connection
        if options is None:
            return self.parser.get_http_version() == "1.1"
        tokens = {t.strip() for t in options.lower().split(b",")}
        if b"close" in tokens:
            return False
        return self.parser.get_http_version() == "1.1" or b"keep-alive" in tokens

    def _valid_host(self):
        """Is the Host value a URI host with an optional port (RFC 9112 §3.2)?

        An empty one is not: our target URIs are "http" URIs, whose host must
        not be empty (RFC 9110 §4.2.1).
        """
        host = self.m_host
        if host is None or host in _VALID_HOSTS:
            return True
        if not host or _HOST_RE.fullmatch(host) is None:
            return False
        if len(_VALID_HOSTS) >= 1024:
            _VALID_HOSTS.clear()
        _VALID_HOSTS.add(host)
        return True

    def _check_framing(self, request):
        headers = request.headers
        te = headers.get("transfer-encoding")
        if te is not None:
            codings = [c.strip().lower() for c in te.split(",") if c.strip()]
            if codings.count("chunked") != 1 or codings[-1] != "chunked":
                # RFC 9112 §6.3: chunked must be applied once, last.
                raise _Reject(400, "Bad Request: chunked must be the final transfer coding")
            if len(codings) > 1:
                raise _Reject(501, "Not Implemented: unsupported transfer coding")
            request.chunked = True
            if request.version == "1.0":
                # RFC 9112 §6.1: a 1.0 message with Transfer-Encoding has
                # faulty framing; answer it, then close.
                request.keep_alive = False
        lengths = headers.get_all("content-length")
        if lengths:
            values = {v.strip() for v in ",".join(lengths).split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise _Reject(400, "Bad Request: invalid Content-Length")
            request.content_length = int(next(iter(values)))
            if request.content_length > self.app.config.max_body_size:
                raise _Reject(413, "Content Too Large")
        if request.content_length or request.chunked:
            request.body = self.m_body = BodyReader(self)
            expect = headers.get("expect")
            if expect is not None:
                if expect.lower() != "100-continue":
                    raise _Reject(417, "Expectation Failed")
                if request.version == "1.1":
                    self.continue_for = request
        else:
            request.body = _EMPTY_BODY

    def _set_target(self, request, target):
        if target.startswith("/"):
            raw_path, _, query = target.partition("?")
            query = query.partition("#")[0]  # a fragment is the client's business
            raw_path = raw_path.partition("#")[0]
        elif target == "*" and request.method == "OPTIONS":
            raw_path, query = "*", ""
        elif "://" in target:
            # absolute-form (RFC 9112 §3.2.2): the path comes from the URI.
            try:
                url = httptools.parse_url(target.encode("latin-1"))
            except httptools.HttpParserInvalidURLError:
                raise _Reject(400, "Bad Request: invalid request target") from None
            if url.userinfo:
                # RFC 9110 §4.2.4: userinfo in an http URI is an error.
                raise _Reject(400, "Bad Request: userinfo in request target")
            raw_path = (url.path or b"/").decode("latin-1")
            query = (url.query or b"").decode("latin-1")
        elif request.method == "CONNECT":
            raw_path, query = "*", ""
        else:
            raise _Reject(400, "Bad Request: invalid request target")
        request.query = query
        request.raw_path = raw_path
        if raw_path == "*":
            request.path = "*"
            return
        try:
            request.path = decode_path(raw_path)
        except HTTPError as e:
            request.path = None
            request.state["path_error"] = e

    def on_body(self, body):
        reader = self.m_body
        if reader is not None:
            request = self.m_request
            if request.chunked and reader.received + len(body) > self.app.config.max_body_size:
                raise _Reject(413, "Content Too Large")
            reader.feed(body)
            self.deadline = time.monotonic() + self.header_timeout

    def on_message_complete(self):
        if self.m_body is not None:
            self.m_body.finish()
        request = self.m_request
        self.m_request = None
        self.m_body = None
        self.m_headers = None   # an idle connection keeps nothing of its last request
        self.m_url = self.m_connection = self.m_host = None
        if request is None and self.state == "busy" and self.active is None:
            # answered by _answer_by_target
            if self.closing:
                self._close_when_flushed()
            else:
                self.state = "idle"
                self.deadline = time.monotonic() + self.keepalive_timeout
        elif request is not None:
            request.complete = True
            if self.active is request and self.deferred:
                self.deferred = False
                self._start(request)
            elif self.active is request and self._answered:
                self._finish_request()
            elif self.state == "body":
                self.state = "busy"
                self.deadline = None

    # -- answering -------------------------------------------------------------------------

    def _start(self, request):
        """Answer ``request`` now; it is the oldest unanswered one."""
        app = self.app
        if type(request) is _ErrorItem:
            self.active = request
            self.task = self.loop.create_task(self._send_error(None, request.status, request.message))
            return
        if self.deferred:
            self.deferred = False        # its body is now read: the route is known
            handler = self.active_handler
        else:
            self.active = request
            self._answered = False
            try:
                handler = app.router.match(request)
            except Exception as exc:  # noqa: BLE001 - a failing route hook fails this request
                handler = _raising(exc)
            self.active_handler = handler
        if handler is None and request.body is not _EMPTY_BODY and not request.complete:
            # The static handler ignores bodies; they are read and thrown away.
            request.body.abandoned = True
            if self.continue_for is None:
                # Answer once the body is over, so a broken body still gets
                # its 400 instead of a 200 followed by garbage.
                self.deferred = True
                return
            # A client waiting for "100 Continue" gets the final answer now
            # instead (RFC 9110 §10.1.1); a body it sends anyway is discarded.
            self.continue_for = None
        if handler is None and request.path is not None and request.method in ("GET", "HEAD"):
            entry = app.static.fast_entry(request)
            if entry is not None:
                # A fresh cache entry needs no helper: answer now, no Task.
                app.stats.cache_hits += 1
                if app.fast_path_ok and not request.conditional:
                    self._send_cached(request, entry)
                else:
                    self._send_cached_response(request, entry)
                return
        self.task = self.loop.create_task(self._serve(request, handler))

    def _send_cached_response(self, request, entry):
        """A cached file for a request with conditionals or ranges, or while
        hooks want to see each Response: built and sent without suspending."""
        app = self.app
        try:
            response = app.static.respond_with(request, entry)
        except HTTPError as e:
            response = app.error_response(request, e.status, e.message, e.headers, e.close)
        response, sent = run_sync(self.send_response(request, response))
        self._log(request, response.status, sent)
        self._answered = True
        if request.complete:
            self._finish_request()

    def _send_cached(self, request, entry):
        self.app.static.remember_target(request.target.encode("latin-1"), entry)
        size = self._write_entry(request.method == "HEAD", request.version,
                                 request.keep_alive, entry)
        self._log(request, 200, size)
        self._answered = True
        if request.complete:
            self._finish_request()

    def _write_entry(self, head_only, version, keep, entry):
        """Write a 200 for a cached file: prebuilt header lines, then the body."""
        keep = keep and not self.closing
        conn_line = b"" if keep and version == "1.1" else (
            b"Connection: keep-alive\r\n" if keep else b"Connection: close\r\n")
        if not keep:
            self.closing = True
        data = entry.data
        if data is not None and not head_only and len(data) < JOIN_MAX:
            # One buffer, one send for header and body.
            self.write(b"".join((b"HTTP/1.1 200 OK\r\n", self.app.date_server_lines,
                                 entry.head_tail, conn_line, b"\r\n", data)))
            return entry.size
        head = b"".join((b"HTTP/1.1 200 OK\r\n", self.app.date_server_lines,
                         entry.head_tail, conn_line, b"\r\n"))
        if head_only:
            self.write(head)
            return 0
        if data is None:
            self.write(head, MSG_MORE)
            sent = 0
            if entry.size <= WINDOW and not self.out and not self.offloading and not self.closed:
                sent = self.app.sender.send_now(self, entry)
            self.write_file(entry, sent, entry.size - sent)
        else:
            self.write_pair(head, data)  # too big to copy: one sendmsg
        return entry.size

    def _answer_by_target(self):
        """The quickest path: a plain GET/HEAD whose exact target was served
        from the cache before.  No Request object is built."""
        parser = self.parser
        method = parser.get_method()
        if method != b"GET" and method != b"HEAD":
            return False
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            return False
        entry = self.app.static.entry_for_target(self.m_url)
        if entry is None:
            return False
        if not self._valid_host():
            return False
        referer = agent = None
        for name, value in self.m_headers:
            if name == b"referer":
                referer = value.decode("latin-1")
            elif name == b"user-agent":
                agent = value.decode("latin-1")
        known = self.m_answer = KnownHead(self.m_url, method == b"HEAD", version,
                                          self._keep_alive(), referer, agent)
        size = self._write_entry(known.head_only, version, known.keep_alive, entry)
        app = self.app
        stats = app.stats
        stats.cache_hits += 1
        stats.count_response(200, size)
        if app.access_log is not None:
            app.access_log.log(self.peer_addr, None, known.method, known.target_text,
                               version, 200, size, referer, agent)
        self.state = "busy"
        self.deadline = None
        return True

    async def _serve(self, request, handler):
        app = self.app
        try:
            response = await app.respond(request, handler)
        except Exception as exc:  # noqa: BLE001 - one request fails, not the server
            response = app.failure_response(request, exc)
        if self.closed:
            await _close_stream(response)
            return
        try:
            response, sent = await self.send_response(request, response)
        except ConnectionError:
            await _close_stream(response)
            self.abort()
            return
        except Exception as exc:  # noqa: BLE001
            log.error("error while sending the response to %s %s: %r",
                      request.method, request.target, exc)
            await _close_stream(response)
            self.abort()
            return
        self._log(request, response.status, sent)
        self.task = None
        self._answered = True
        if request.complete:
            self._finish_request()
        elif request.body is not _EMPTY_BODY:
            # The handler answered without reading the whole body: the rest
            # will be read and thrown away, so the connection stays usable.
            request.body.abandoned = True
            request.body._chunks.clear()
            self.resume_reading(_PAUSE_BODY)

    def _finish_request(self):
        self.active = None
        self.continue_for = None
        if self.closing or self.closed:
            self._close_when_flushed()
            return
        if self.pending:
            self.resume_reading(_PAUSE_PIPELINE)
            self._start(self.pending.pop(0))
        else:
            self.state = "idle" if self.m_request is None else self.state
            if self.state == "idle":
                self.deadline = time.monotonic() + self.app.config.keepalive_timeout

    def _queue_error(self, status, message):
        """Answer, in turn, a request that could not be parsed; then close.

        Requests parsed before it are still answered first, in order.
        """
        request = self.m_request
        if request is not None:
            # Its head was parsed and queued, but the message is broken.
            if request in self.pending:
                self.pending.remove(request)
            elif request is self.active:
                if self.task is not None:
                    self.task.cancel()
                self.active = None
                self.deferred = False
        item = _ErrorItem(status, message)
        if self.active is None:
            self._start(item)
        else:
            self.pending.append(item)

    async def _send_error(self, request, status, message):
        self.closing = True
        response = self.app.error_response(request, status, message)
        try:
            response, sent = await self.send_response(request, response, force_close=True)
        except (ConnectionError, OSError):
            self.abort()
            return
        self._log(request, status, sent)
        self.active = None
        self.pending.clear()
        self._close_when_flushed()

    def send_continue(self):
        request = self.continue_for
        if request is not None and request is self.active:
            self.continue_for = None
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- response framing ------------------------------------------------------------------

    async def send_response(self, request, response, force_close=False):
        """Frame and write ``response``.

        Returns the response actually sent (a 500 replaces it when a
        response-headers hook fails) and the number of body bytes sent.
        """
        app = self.app
        if request is not None and app.response_headers_hook is not None and not response.raw:
            try:
                app.response_headers_hook(request=request, response=response)
            except Exception as exc:  # noqa: BLE001 - a failing hook fails this response
                app.log_plugin_error(exc, request)
                await _close_stream(response)
                response = app.error_response(request, 500, "Internal Server Error")
        if response.raw:
            self.closing = True
            return response, await self._send_stream(response.stream, chunked=False)
        status = response.status
        method = request.method if request is not None else "GET"
        keep = (not force_close and not response.close and not self.closing
                and request is not None and request.keep_alive)
        head_only = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        body = response.body
        stream = response.stream
        lines = [status_line(status, response.reason), app.date_server_lines]
        has_length = False
        has_type = False
        for name, value in response.headers:
            lname = name.lower()
            if lname in ("connection", "transfer-encoding", "date", "server", "keep-alive"):
                continue
            if lname == "content-length":
                has_length = True
            elif lname == "content-type":
                has_type = True
            lines.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
        chunked = False
        if stream is not None:
            if not has_length and not head_only:
                if request is not None and request.version == "1.1":
                    chunked = True
                    lines.append(b"Transfer-Encoding: chunked\r\n")
                else:
                    keep = False  # HTTP/1.0: the end of the body is the close
        elif status not in (204, 304) and not (100 <= status < 200):
            length = body.length if type(body) is FileBody else len(body)
            if not has_length:
                lines.append(b"Content-Length: %d\r\n" % length)
            if not has_type and length and type(body) is not FileBody:
                lines.append(b"Content-Type: application/octet-stream\r\n")
        if keep:
            if request.version == "1.0":
                lines.append(b"Connection: keep-alive\r\n")
        else:
            lines.append(b"Connection: close\r\n")
            self.closing = True
        lines.append(b"\r\n")
        head = b"".join(lines)
        if head_only:
            self.write(head)
            await _close_stream(response)
            return response, 0
        if stream is not None:
            self.write(head)
            return response, await self._send_stream(stream, chunked)
        if type(body) is FileBody:
            entry = body.entry
            parts = body.parts
            if len(parts) == 1 and entry.data is not None and body.length < JOIN_MAX:
                offset, count = parts[0]  # small, in memory: one write for all
                self.write(head + entry.data[offset:offset + count])
                return response, count
            self.write(head, MSG_MORE if entry.data is None else 0)
            for part in body.parts:
                if type(part) is bytes:
                    self.write(part)
                elif entry.data is not None:
                    offset, count = part
                    self.write(entry.data[offset:offset + count])
                else:
                    self.write_file(entry, part[0], part[1])
            return response, body.length
        self.write(head + body if body else head)
        return response, len(body)

    async def _send_stream(self, stream, chunked):
        sent = 0
        try:
            async for chunk in stream:
                if not chunk:
                    continue
                if self.closed:
                    raise ConnectionError("client went away")
                if chunked:
                    self.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                else:
                    self.write(chunk)
                sent += len(chunk)
                if self.out_bytes > HIGH_WATER:
                    await self.drain()
            if chunked:
                self.write(b"0\r\n\r\n")
        finally:
            await _close_stream_obj(stream)
        return sent

    def _log(self, request, status, size):
        app = self.app
        app.stats.count_response(status, size)
        if app.access_log is not None:
            if request is None:
                app.access_log.log(self.peer_addr, None, None, None, None, status, size,
                                   None, None)
            else:
                headers = request.headers
                app.access_log.log(self.peer_addr, request.user, request.method,
                                   request.target, request.version, status, size,
                                   headers.get("referer"), headers.get("user-agent"))
        if app.request_done_hook is not None and request is not None:
            try:
                app.request_done_hook(request=request, status=status, bytes_sent=size,
                                      duration=time.monotonic() - request.start_time)
            except Exception as exc:  # noqa: BLE001
                app.log_plugin_error(exc, request)

    # -- writing -----------------------------------------------------------------------------

    def write(self, data, more=0):
        """Send ``data`` now if the socket takes it, else queue it.

        ``more=MSG_MORE`` says a file body follows at once: the kernel holds
        a short header back to fill its first segment with file data (what
        TCP_CORK does for nginx and lighttpd, in one flag).
        """
        if self.closed:
            return
        if not self.out and not self.offloading:
            try:
                n = self.sock.send(data, more)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self.abort()
                return
            if n == len(data):
                return
            data = memoryview(data)[n:]
        self.out.append(data)
        self.out_bytes += len(data)
        self._want_write()

    def write_pair(self, head, body):
        """Write two buffers with one ``sendmsg`` (gather), without joining them."""
        if self.closed:
            return
        if self.out or self.offloading:
            self.write(head)
            self.write(body)
            return
        try:
            n = self.sock.sendmsg((head, body))
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.abort()
            return
        if n < len(head):
            self.out.append(memoryview(head)[n:])
            self.out_bytes += len(head) - n
            n = 0
        else:
            n -= len(head)
        if n < len(body):
            self.out.append(memoryview(body)[n:])
            self.out_bytes += len(body) - n
            self._want_write()

    def write_file(self, entry, offset, count):
        """Queue ``count`` bytes of ``entry``'s open file from ``offset``."""
        if self.closed or count <= 0:
            return
        entry.retain()
        self.out.append(FileRange(entry, offset, count))
        self.out_bytes += min(count, HIGH_WATER)
        if not self.offloading:
            self._flush()

    def _want_write(self):
        if not self.writer_on and not self.closed:
            self.loop.add_writer(self.fd, self._flush)
            self.writer_on = True
            self.send_deadline = time.monotonic() + self.app.config.send_timeout

    def _flush(self):
        out = self.out
        while out and not self.closed and not self.offloading:
            item = out[0]
            if type(item) is FileRange:
                done = self.app.sender.send(self, item)
                if done is None:      # error: already aborted
                    return
                if not done:
                    break             # socket full, or a helper is reading pages in
                del out[0]
                self.out_bytes -= min(item.total, HIGH_WATER)
                item.entry.release()
                continue
            try:
                n = self.sock.send(item)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.abort()
                return
            self.send_deadline = time.monotonic() + self.app.config.send_timeout
            self.out_bytes -= n
            if n < len(item):
                out[0] = memoryview(item)[n:]
                break
            del out[0]
        if self.closed:
            return
        if out and not self.offloading:
            self._want_write()
        elif self.writer_on:
            self.loop.remove_writer(self.fd)
            self.writer_on = False
            self.send_deadline = None
        if not out:
            if self.state == "idle":
                # The keep-alive wait begins once the response is all sent.
                self.deadline = time.monotonic() + self.keepalive_timeout
            w = self.drain_waiter
            if w is not None and not w.done():
                w.set_result(None)
            if self.closing and self.active is None and not self.pending:
                self._close_when_flushed()

    async def drain(self):
        while self.out_bytes > HIGH_WATER // 2 and not self.closed:
            self.drain_waiter = self.loop.create_future()
            try:
                await self.drain_waiter
            finally:
                self.drain_waiter = None
        if self.closed:
            raise ConnectionError("client went away")

    def offload_done(self):
        """A helper finished its part of a file: carry on sending."""
        self.offloading = False
        if not self.closed:
            self._flush()

    # -- closing -----------------------------------------------------------------------------

    def _close_when_flushed(self):
        if self.closed:
            return
        self.closing = True
        if self.out:
            return  # _flush calls back when the queue is empty
        if self.eof:
            self.close()
            return
        # Lingering close: stop sending, read and drop what the client still
        # sends for a moment, so our response is not lost to a reset.
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.state = "lingering"
        self.deadline = time.monotonic() + LINGER_SECONDS
        self.pause_reasons = 0
        if not self.reading:
            self.loop.add_reader(self.fd, self._on_readable)
            self.reading = True

    def on_timeout(self, now):
        """Called by the server's sweep when a deadline has passed."""
        if self.send_deadline is not None and now > self.send_deadline:
            self.abort()
        elif self.deadline is not None and now > self.deadline:
            if self.state == "head" and self.active is None:
                self.pause_reading(_PAUSE_TIMEOUT)
                self._queue_error(408, "Request Timeout")
            elif self.state in ("head", "body") and self.m_request is not None:
                self.abort()
            elif self.out or self.offloading:
                # Idle between requests, but the last response is still
                # going out (a long download): --send-timeout watches that.
                # The idle clock starts again when the queue drains.
                self.deadline = now + self.keepalive_timeout
            else:
                self.close()

    def abort(self):
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.m_body is not None:
            self.m_body.fail(ConnectionError("client went away"))
        self.close()

    def close(self):
        if self.closed:
            return
        self.closed = True
        loop = self.loop
        if self.reading:
            loop.remove_reader(self.fd)
        if self.writer_on:
            loop.remove_writer(self.fd)
        w = self.drain_waiter
        if w is not None and not w.done():
            w.set_result(None)
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.app.connections.discard(self)
        if not self.offloading:
            self.release()
        # else a helper is sending from our socket and file right now: the
        # offload's callback releases them, so no descriptor is closed (and
        # its number reused) under the helper's feet.

    def release(self):
        """Close the socket and let go of queued files (after ``close``)."""
        for item in self.out:
            if type(item) is FileRange:
                item.entry.release()
        self.out.clear()
        try:
            self.sock.close()
        except OSError:
            pass


class KnownHead:
    """What a remembered request head asks for, and what its log line needs."""

    __slots__ = ("target", "head_only", "version", "keep_alive", "referer", "agent",
                 "method", "target_text")

    def __init__(self, target, head_only, version, keep_alive, referer, agent):
        self.target = target            # the raw request-target (bytes)
        self.head_only = head_only      # HEAD rather than GET
        self.version = version          # "1.1" or "1.0"
        self.keep_alive = keep_alive    # the request allows another after it
        self.referer = referer
        self.agent = agent
        self.method = "HEAD" if head_only else "GET"
        self.target_text = target.decode("latin-1")


class FileRange:
    """Part of an open file still to be sent."""

    __slots__ = ("entry", "offset", "left", "total")

    def __init__(self, entry, offset, count):
        self.entry = entry
        self.offset = offset
        self.left = count
        self.total = count


def _raising(exc):
    """A handler that fails with ``exc`` (raised by a route hook)."""
    async def handler(request):
        raise exc
    return handler


class _ErrorItem:
    """Stands in the request queue for a message that failed to parse."""

    __slots__ = ("status", "message")

    def __init__(self, status, message):
        self.status = status
        self.message = message


class _EmptyBody:
    """The body of a request that has none."""

    received = 0
    abandoned = True

    def __aiter__(self):
        return self

    async def __anext__(self):
        raise StopAsyncIteration

    async def read(self):
        return b""


_EMPTY_BODY = _EmptyBody()


async def _close_stream(response):
    if response is not None and response.stream is not None:
        await _close_stream_obj(response.stream)


async def _close_stream_obj(stream):
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - the stream's own cleanup failing is logged by it
            pass

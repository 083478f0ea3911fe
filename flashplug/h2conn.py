"""The HTTP/2 driver: one connection's streams on the event loop.

Theory of operation: ``H2Connection`` owns the transport (TLS after ALPN
chose ``h2``, or a plain socket that began with the HTTP/2 preface under
``--h2c``) and a sans-I/O ``h2.connection.H2Connection`` (python-hyper's
``h2``), which frames, checks flow control and keeps the HPACK state.  Its
events become requests on streams (``flashplug.h2stream.H2Stream``), each
answered by the same request cycle, handlers and plugins as over HTTP/1.1.

Output (``flashplug.h2output``): ready streams take turns under flow
control; while the socket will not take more, the connection is not read
either, so a client that does not read costs at most one round of frames.

Input: DATA frames feed each request's ``BodyReader``; their window is
given back as they arrive, unless the handler's buffer is full, then when
it drains, so a slow handler slows its own stream only.

Limits and defenses (each has a test in tests/integration/test_h2_attacks.py):
``SETTINGS_MAX_CONCURRENT_STREAMS`` 100 (more are refused, REFUSED_STREAM), a
64 KiB header list (an HPACK bomb fails decoding), 16 KiB frames, at most
64 CONTINUATION frames per header block (h2's own bound), at most
``MAX_REQUESTS`` streams per connection (then GOAWAY, as nginx's
``keepalive_requests``), and per second at most ``RESET_LIMIT`` streams
reset by the client (Rapid Reset, CVE-2023-44487) and ``FLOOD_LIMIT``
frames that carry no request (SETTINGS, PING, PRIORITY, empty DATA,
unknown types); past one, the connection gets GOAWAY ENHANCE_YOUR_CALM.
A response that makes no progress for ``--send-timeout`` (a zero window
held open, a client that does not read) ends the connection; so does an
idle one after ``--keepalive-timeout``.

Size: over ~400 lines because the h2 state machine's events, the
flood and reset counters that judge them and the connection's closing
read and write the same state; output is ``flashplug.h2output``, a
stream ``flashplug.h2stream``.
"""
import collections
import logging
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from flashplug.cycle import ErrorItem
from flashplug.http.body import EMPTY_BODY, BodyReader
from flashplug.http.h1_checks import (ProtocolError, content_length, expects_continue,
                                      same_authority, set_target, valid_host)
from flashplug.http.h2_checks import StreamError, check_trailers, request_parts
from flashplug.http.forwarded import request_client
from flashplug.http.message import Headers, Request
from flashplug.h2output import H2Output, ResponseEncoder
from flashplug.h2proto import BodyLengthMismatch, MalformedFields, Refused, ServerConnection
from flashplug.h2stream import H2Stream

log = logging.getLogger("flashplug.connection")

MAX_CONCURRENT_STREAMS = 100
MAX_HEADER_LIST_SIZE = 64 * 1024     # as the whole head over HTTP/1.1
MAX_REQUESTS = 1000                  # streams per connection (nginx keepalive_requests)
RESET_LIMIT = 100                    # streams the client may reset per second
FLOOD_LIMIT = 1000                   # frames without a request per second
LINGER_SECONDS = 2.0
# The connection's receive window: every stream's window at once, so one
# stream whose handler reads slowly never shuts the others out.
CONNECTION_WINDOW = MAX_CONCURRENT_STREAMS * 65535
_CONDITIONAL = frozenset(("if-match", "if-none-match", "if-modified-since",
                          "if-unmodified-since", "range", "if-range"))
_RECV_BUFFER = bytearray(256 * 1024)
_RECV_VIEW = memoryview(_RECV_BUFFER)


def h2_settings():
    """Our SETTINGS (RFC 9113 §6.5.2)."""
    return {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
            h2.settings.SettingCodes.ENABLE_PUSH: 0}


class H2Connection(H2Output):
    """One HTTP/2 connection on the event loop."""

    __slots__ = ("app", "loop", "transport", "fd", "h2", "peer_addr", "peer_port",
                 "local_addr", "local_port", "scheme", "now", "streams", "ready_q",
                 "blocked", "starved", "pending_out", "closed", "_closing", "lingering", "reading",
                 "writer_on", "receiving", "flush_soon", "deadline", "send_deadline",
                 "requests", "window_start", "control", "resets", "goaway_sent", "shut", "last_stream",
                 "draining", "__weakref__")

    pending = ()        # what the worker's drain and the status page look at
    unparsed = None

    def __init__(self, app, transport, peer, local, data):
        self.app = app
        self.loop = app.loop
        self.transport = transport
        self.fd = transport.fileno()
        self.peer_addr = peer[0] if isinstance(peer, tuple) else ""
        self.peer_port = peer[1] if isinstance(peer, tuple) else 0
        self.local_addr, self.local_port = (local[0], local[1]) if isinstance(local, tuple) \
            else ("", 0)
        self.scheme = transport.scheme
        self.now = time.monotonic()
        self.streams = {}
        self.ready_q = collections.deque()
        self.blocked = []            # streams waiting for the client to open a window
        self.starved = []            # of those, the ones that sent nothing last turn
        self.pending_out = b""       # frames the socket has not taken yet
        self.closed = self._closing = self.lingering = False
        self.reading = self.writer_on = self.receiving = self.flush_soon = False
        self.deadline = self.now + app.config.header_timeout   # the preface must come
        self.send_deadline = None
        self.requests = 0
        self.window_start = self.now
        self.control = self.resets = 0
        self.goaway_sent = False
        self.last_stream = 0         # the last stream taken, for GOAWAY
        self.draining = {}           # answered stream id -> request body bytes still to drop
        self.shut = False            # our side of the socket is shut (lingering)
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None,
            # request_parts checks requests (a malformed one is a stream
            # error, not the connection's); our own fields are checked
            # before they reach a stream (response_fields, validate.py).
            validate_inbound_headers=False, normalize_inbound_headers=False,
            validate_outbound_headers=False, normalize_outbound_headers=False)
        conn = self.h2 = ServerConnection(config)
        conn.local_settings = h2.settings.Settings(client=False, initial_values=h2_settings())
        conn.encoder = ResponseEncoder()
        conn.initiate_connection()
        conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        if not transport.zero_copy:
            transport.on_backlog = self._set_interest
        app.connections.add(self)
        self._set_interest()
        if data:
            self._received(data)
        else:
            self._flush()

    # -- what the worker and the status page see -----------------------------------------

    @property
    def active(self):
        return self.streams or None

    @property
    def out(self):
        return self.pending_out

    @property
    def state(self):
        return "busy" if self.streams else "idle"

    @property
    def closing(self):
        return self._closing

    @closing.setter
    def closing(self, value):
        if value:
            self._go_away()   # the worker stops: finish, take no more

    # -- reading ----------------------------------------------------------------------------

    def _on_readable(self):
        try:
            n = self.transport.recv_into(_RECV_BUFFER)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not n:
            self.close()
            return
        if self.lingering:
            return
        self._received(bytes(_RECV_VIEW[:n]))

    def _received(self, data):
        self.now = time.monotonic()
        self.receiving = True
        try:
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                self._fail(f"protocol error: {e}")      # h2 queued its GOAWAY
                return
            handlers = _HANDLERS
            for event in events:
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(self, event)
                if self.lingering or self.closed:
                    break
        except Exception as e:  # noqa: BLE001 - one connection fails, not the worker
            log.error("HTTP/2 connection from %s failed: %r", self.peer_addr, e)
            self._fail(None, ErrorCodes.INTERNAL_ERROR)
        finally:
            self.receiving = False
        self._flush()

    def _on_request(self, event):
        sid = event.stream_id
        self.requests += 1
        if self._closing:
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        stream = self.streams[sid] = H2Stream(self, sid)
        self.last_stream = sid
        if event.stream_ended is not None:
            stream.remote_ended = True
            if self.deadline is not None and not self._body_awaited():
                self.deadline = None
        else:
            self.deadline = self.now + self.app.config.header_timeout   # its body must come
        try:
            request = self._request(stream, event.headers)
        except StreamError as e:
            log.info("HTTP/2 stream %d from %s reset: malformed request: %s",
                     sid, self.peer_addr, e)
            self.reset(stream, ErrorCodes.PROTOCOL_ERROR)
            self._count(resets=1)      # a stream opened to be reset, like Rapid Reset
            return
        except ProtocolError as e:
            stream._start(ErrorItem(e.status, e.message, _line_read(event.headers)))
        else:
            stream.request = request
            stream._start(request)
        if self.requests >= MAX_REQUESTS:
            self._go_away()

    def _request(self, stream, fields):
        """The Request a stream's field block asks for (RFC 9113 §8.3)."""
        method, target, authority, regular = request_parts(fields)
        hosts = [v for n, v in regular if n == b"host"]
        if authority is not None:
            if hosts and hosts != [authority] and not (
                    len(hosts) == 1 and same_authority(hosts[0], authority, self.scheme)):
                raise StreamError("Host differs from :authority")
            if not hosts:
                regular.insert(0, (b"host", authority))
                hosts = [authority]
        headers = Headers.__new__(Headers)
        headers._items = items = [(n.decode("latin-1"), v.decode("latin-1"))
                                  for n, v in regular]
        request = Request(method, target, "", "", "", "2.0", headers)
        if len(hosts) != 1:
            raise ProtocolError(400, "Bad Request: exactly one Host header is required")
        if not valid_host(hosts[0]):
            raise ProtocolError(400, "Bad Request: invalid Host header")
        set_target(request, target)
        app = self.app
        request.remote_addr, request.remote_port = request_client(
            app, (self.peer_addr, self.peer_port), headers)
        request.server_addr = self.local_addr
        request.server_port = self.local_port
        # The site by the request's host (:authority, else Host), as over
        # HTTP/1.1, after the same 421 check.
        if app.misdirect is not None:
            app.misdirect(request.host)
        request.server = app.default_site.facade if app.sites is None \
            else app.sites.choose(request.host).facade
        request.scheme = self.scheme
        request._cycle = stream     # for Request.send_interim
        request.start_time = self.now
        request.conditional = any(n in _CONDITIONAL for n, _ in items)
        request.content_length = content_length(headers, self.app.config.max_body_size)
        expect = expects_continue(headers.get("expect"))
        if stream.remote_ended:
            if request.content_length:
                # No DATA can follow: the content-length is wrong (§8.1.1).
                raise StreamError(f"content-length {request.content_length} with no DATA")
            request.body = EMPTY_BODY
            request.complete = True
        else:
            # A body in DATA frames: without a Content-Length, its length is
            # known at its end, as with chunked over HTTP/1.1.
            request.chunked = request.content_length is None
            request.body = stream.body = BodyReader(stream)
            if expect:
                stream.continue_for = request
        return request

    def _on_data(self, event):
        sid = event.stream_id
        size = event.flow_controlled_length
        stream = self.streams.get(sid)
        if not event.data and event.stream_ended is None:
            self._count_flood()
        if stream is None or stream.body is None or stream.closed:
            if size:
                self.h2.acknowledge_received_data(size, sid)
            if sid in self.draining:
                self._drain(sid, len(event.data))
            return
        self.deadline = self.now + self.app.config.header_timeout   # progress
        body = stream.body
        body.feed(event.data)
        if body.received > self.app.config.max_body_size:
            self._too_large(stream)
            return
        if stream.paused:
            stream.held += size
        elif size:
            self.h2.acknowledge_received_data(size, sid)

    def _on_bad_length(self, event):
        """DATA past or short of the stream's content-length: the request
        is malformed, a stream error (RFC 9113 §8.1.1), as nginx has it."""
        self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.draining.pop(event.stream_id, None)
        stream = self.streams.get(event.stream_id)
        log.info("HTTP/2 stream %d from %s reset: %d bytes of DATA for a content-length "
                 "of %d", event.stream_id, self.peer_addr, event.actual, event.expected)
        if stream is not None:
            self.reset(stream, ErrorCodes.PROTOCOL_ERROR)
        else:
            self._reset_id(event.stream_id, ErrorCodes.PROTOCOL_ERROR)
        self._count(resets=1)      # a stream opened to be reset, like Rapid Reset

    def _on_malformed(self, event):
        """A field block h2 refused once the stream was open; h2 has
        reset the stream (RFC 9113 §8.1.1)."""
        log.info("HTTP/2 stream %d from %s reset: malformed request: %s",
                 event.stream_id, self.peer_addr, event.reason)
        self._count(resets=1)      # a stream opened to be reset, like Rapid Reset

    def _on_refused(self, event):
        """A stream past SETTINGS_MAX_CONCURRENT_STREAMS; h2 has reset it
        (REFUSED_STREAM, RFC 9113 §5.1.2), so the client may retry it."""
        log.info("HTTP/2 stream %d from %s refused: more than %d streams at once",
                 event.stream_id, self.peer_addr, MAX_CONCURRENT_STREAMS)
        self._count(resets=1)      # a stream opened to be reset, like Rapid Reset

    def _on_trailers(self, event):
        """Trailers are read and dropped, but a malformed section makes
        the request malformed: the stream is reset (RFC 9113 §8.1)."""
        stream = self.streams.get(event.stream_id)
        try:
            check_trailers(event.headers)
        except StreamError as e:
            if stream is not None:
                log.info("HTTP/2 stream %d from %s reset: malformed request: %s",
                         event.stream_id, self.peer_addr, e)
                self.reset(stream, ErrorCodes.PROTOCOL_ERROR)

    def _drain(self, sid, size):
        """``size`` bytes of an answered stream's body were dropped: past
        its allowance (--max-body-size in all) the stream is reset."""
        left = self.draining[sid] - size
        if left >= 0:
            self.draining[sid] = left
            self.deadline = self.now + self.app.config.header_timeout   # progress
            return
        del self.draining[sid]
        self._reset_id(sid, ErrorCodes.NO_ERROR)

    def _body_awaited(self):
        """Some stream still waits for its request body."""
        return any(not s.remote_ended for s in self.streams.values())

    def _too_large(self, stream):
        """A body past --max-body-size: 413, as over HTTP/1.1, if the
        response has not begun; else the stream is reset."""
        if stream.head_sent or stream.ended:
            self.reset(stream, ErrorCodes.CANCEL)
            return
        if stream.task is not None:
            stream.task.cancel()
        stream.body.fail(ConnectionError("request body too large"))
        stream.body = None
        stream.active = None
        request = stream.request
        headers = request.headers
        stream._start(ErrorItem(413, "Content Too Large", (
            request.method, request.target, "2.0", headers.get("referer"),
            headers.get("user-agent"))))

    def acknowledge(self, stream):
        """A paused body drained: give its held window back."""
        held, stream.held = stream.held, 0
        if held and not stream.closed and not self.closed:
            self.h2.acknowledge_received_data(held, stream.id)
            self._flush_soon()

    def _on_stream_ended(self, event):
        stream = self.streams.get(event.stream_id)
        if stream is None:
            self.draining.pop(event.stream_id, None)
            return
        stream.remote_ended = True
        request = stream.request
        if stream.body is not None:
            stream.body.finish()
        if request is None:
            if stream.ended:
                self.finished(stream)
            return
        request.complete = True
        if stream.active is request and stream.deferred:
            stream.deferred = False
            stream._start(request)
        elif stream.active is request and stream._answered:
            stream._finish_request()

    def _on_reset(self, event):
        stream = self.streams.get(event.stream_id)
        self.draining.pop(event.stream_id, None)
        self._count(resets=1)
        if stream is not None:
            stream.closed = True       # the client's reset: none is sent back
            self._forget(stream)

    def _on_window(self, event):
        waiting = self.starved + self.blocked
        if waiting:
            self.starved = []
            self.blocked = []
            for stream in waiting:
                self.ready(stream)

    def _on_settings(self, event):
        self._count_flood()
        self._on_window(event)     # the initial window may have changed

    def _on_goaway(self, event):
        self._closing = True
        self.goaway_sent = True    # the client is leaving: no GOAWAY of ours
        if not self.streams:
            self._close_when_flushed()

    def _count_flood(self, event=None):
        self._count(control=1)

    def _count(self, control=0, resets=0):
        now = self.now
        if now - self.window_start >= 1.0:
            self.window_start = now
            self.control = self.resets = 0
        self.control += control
        self.resets += resets
        if self.control > FLOOD_LIMIT:
            self._fail("flood of control frames", ErrorCodes.ENHANCE_YOUR_CALM)
        elif self.resets > RESET_LIMIT:
            self._fail("too many streams reset (Rapid Reset)", ErrorCodes.ENHANCE_YOUR_CALM)

    # -- streams ----------------------------------------------------------------------------

    def finished(self, stream):
        """The cycle is done with ``stream``; it goes once its END_STREAM is out."""
        if stream.ended and stream.active is None:
            self._forget(stream)

    def reset(self, stream, code):
        """Reset ``stream`` (RST_STREAM ``code``) and forget it."""
        if stream.closed:
            return
        stream.closed = True
        self._reset_id(stream.id, code)
        self._forget(stream)
        self._flush_soon()

    def _reset_id(self, sid, code):
        """Frame RST_STREAM ``code`` for stream ``sid``, unless h2 has
        closed it already."""
        try:
            self.h2.reset_stream(sid, code)
        except h2.exceptions.H2Error:
            pass

    def _forget(self, stream):
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]
        stream.closed = True
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()
        if stream.body is not None and not stream.remote_ended:
            stream.body.fail(ConnectionError("stream reset"))
        if stream.line is not None:
            stream.log_held()
        if not stream.reading_in:
            stream.release()
        stream.wake()
        if not self.streams:
            if self._closing:
                self._close_when_flushed()
            else:
                self.deadline = self.now + self.app.config.keepalive_timeout

    # -- the end ----------------------------------------------------------------------------

    def _go_away(self):
        """Graceful close: new streams are refused (REFUSED_STREAM, which
        clients retry elsewhere), the open ones finish, then GOAWAY
        (NO_ERROR, naming the last stream served) and the close.  The
        GOAWAY goes last because h2-based clients take no frame after it."""
        if self.closed or self._closing:
            return
        self._closing = True
        if not self.streams:
            self._close_when_flushed()
        self._flush_soon()

    def _fail(self, why, code=None):
        """A connection error: GOAWAY (``code``, unless h2 sent its own),
        every stream stops, and the connection closes once that is sent."""
        if self.lingering or self.closed:
            return
        if why is not None:
            log.warning("HTTP/2: closing the connection from %s: %s", self.peer_addr, why)
        if code is not None and not self.goaway_sent:
            self.goaway_sent = True
            try:
                self.h2.close_connection(error_code=code, last_stream_id=self.last_stream)
            except h2.exceptions.H2Error:
                pass
        self.goaway_sent = self._closing = True
        for stream in list(self.streams.values()):
            self._forget(stream)
        self.ready_q.clear()
        self.blocked = []
        self.starved = []
        self._close_when_flushed()

    def _close_when_flushed(self):
        """Close once our frames are out; meanwhile the client's input is
        read and dropped for up to LINGER_SECONDS, so that it reads our
        GOAWAY instead of a TCP reset (nginx's lingering close)."""
        if self.closed or self.shut:
            return
        self._closing = True
        if not self.goaway_sent:
            self.goaway_sent = True
            self.h2.close_connection(error_code=ErrorCodes.NO_ERROR,
                                     last_stream_id=self.last_stream)
        data = self.h2.data_to_send()
        if data:
            self.pending_out = bytes(self.pending_out) + data
        self.lingering = True
        self.deadline = self.now + LINGER_SECONDS
        if self.pending_out and not self._push_quietly():
            self._set_interest()
            return
        if self.transport.backlog:
            self._set_interest()
            return
        self.shut = True
        try:
            self.transport.shutdown_write()
        except OSError:
            self.close()
            return
        self._set_interest()

    def _push_quietly(self):
        try:
            return self._push()
        except OSError:
            self.pending_out = b""
            return True

    def _set_interest(self):
        if self.closed:
            return
        waiting = bool(self.pending_out) or self.transport.backlog > 0
        read = not waiting or self.lingering
        if read != self.reading:
            if read:
                self.loop.add_reader(self.fd, self._on_readable)
            else:
                self.loop.remove_reader(self.fd)
            self.reading = read
        if waiting != self.writer_on:
            if waiting:
                self.loop.add_writer(self.fd, self._on_writable)
            else:
                self.loop.remove_writer(self.fd)
            self.writer_on = waiting

    def _on_writable(self):
        self.now = time.monotonic()
        if self.lingering:
            self._close_when_flushed()
        else:
            self._flush()

    def on_timeout(self, now):
        """The sweep's call once a deadline passed: a stalled send, a
        lingering close over, an idle connection."""
        self.now = now
        if self.lingering:
            self.close()
        elif self.send_deadline is not None and now > self.send_deadline:
            self._fail("no progress sending for --send-timeout (a window held shut?)",
                       ErrorCodes.ENHANCE_YOUR_CALM)
            self.deadline = now + LINGER_SECONDS
        elif self.deadline is not None and now > self.deadline:
            # No request body progress for --header-timeout (as over
            # HTTP/1.1): those streams are reset; or idle: GOAWAY.
            self.deadline = None
            waiting = [s for s in self.streams.values() if not s.remote_ended]
            for stream in waiting:
                log.info("HTTP/2 stream %d from %s reset: no request body for "
                         "--header-timeout", stream.id, self.peer_addr)
                self.reset(stream, ErrorCodes.CANCEL)
            if not waiting and not self.streams:
                self._go_away()

    def abort(self):
        self.close()

    def close(self):
        if self.closed:
            return
        for stream in list(self.streams.values()):
            self._forget(stream)
        self.closed = True
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False
        if self.writer_on:
            self.loop.remove_writer(self.fd)
            self.writer_on = False
        self.app.connections.discard(self)
        try:
            self.transport.close()
        except OSError:
            pass


_HANDLERS = {
    h2.events.RequestReceived: H2Connection._on_request,
    h2.events.DataReceived: H2Connection._on_data,
    BodyLengthMismatch: H2Connection._on_bad_length,
    MalformedFields: H2Connection._on_malformed,
    Refused: H2Connection._on_refused,
    h2.events.TrailersReceived: H2Connection._on_trailers,
    h2.events.StreamEnded: H2Connection._on_stream_ended,
    h2.events.StreamReset: H2Connection._on_reset,
    h2.events.WindowUpdated: H2Connection._on_window,
    h2.events.RemoteSettingsChanged: H2Connection._on_settings,
    h2.events.PingReceived: H2Connection._count_flood,
    h2.events.PriorityUpdated: H2Connection._count_flood,
    h2.events.UnknownFrameReceived: H2Connection._count_flood,
    h2.events.ConnectionTerminated: H2Connection._on_goaway,
}


_LOGGED = (b":method", b":path", b":authority", b"referer", b"user-agent")


def _line_read(fields):
    """What the access log shows of a stream refused with a ProtocolError
    (``ErrorItem``'s ``line``), as over HTTP/1.1: its method and path (a
    CONNECT's authority), Referer and User-Agent; None without a method."""
    got = {}
    for name, value in fields:
        if name in _LOGGED:
            got.setdefault(name, value.decode("latin-1"))
    method = got.get(b":method")
    if method is None:
        return None
    target = got.get(b":path") or got.get(b":authority") or "-"
    return method, target, "2.0", got.get(b"referer"), got.get(b"user-agent")

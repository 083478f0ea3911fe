"""The event-loop driver: one HTTP/1.1 connection on uvloop (amped, sped).

Theory of operation: the connection owns its non-blocking socket and watches
it with ``loop.add_reader``/``add_writer`` (uvloop will not let us
``sendfile`` on a socket a transport owns).  Bytes read go to the protocol
(``flashplug.http.h1``); requests it finds are answered in order by the
request cycle (``flashplug.cycle``); this module only moves bytes and keeps
time.

Output is a queue of ``bytes`` and file ranges.  ``_flush`` sends as much as
the socket takes; file ranges go through ``FileSender``, which says what
happened (done, would block, offload to a helper, failed) and this driver
acts on it.  Whether the socket is read or watched for writing is worked
out in one place, ``_set_interest``, from why reading is paused (a bit per
reason), the output queue and the offload; deadlines come from the
protocol's state through ``deadline_for`` (``flashplug.http.h1``).

Deadlines (header, keep-alive idle, body, send, linger) are plain
timestamps; ``App.tick`` sweeps all connections once a second and calls
``on_timeout``, which costs nothing per request.

A client that half-closes (``shutdown(SHUT_WR)``) after a whole request
still gets its answers (RFC 9112 §9.6); only a request cut off half-way is
dropped.  While a handler works for such a client, an HTTP/1.1 client gets
a ``100 Continue`` (any 1.1 client must accept one, RFC 9110 §15.2): if it
has in fact closed for good its kernel answers with a reset, which the
once-a-second sweep notices, and the handler is stopped.

Size: over ~400 lines because reading, the output queue, file sends
with their offload, deadlines, the Upgrade tunnel hand-off and closing
share the socket's interest (``_set_interest``), which must be worked out
in one place.
"""
import logging
import time

from flashplug.cycle import SESSION_SLOTS, KnownHead, RequestCycle, init_session
from flashplug.h2conn import H2Connection
from flashplug.http.body import PAUSE_BODY, BodyReader
from flashplug.http.h1 import HIGH_WATER, PAUSE_TIMEOUT, PAUSE_UPGRADE, H1Protocol, known_key
from flashplug.misdirect import checked_view
from flashplug.residency import DONE, FAILED, OFFLOAD, WINDOW, WOULD_BLOCK, FileRange
from flashplug.transport import PlainHTTP
from flashplug.tunnel import Tunnel

RECV_SIZE = 256 * 1024
#: After the 100 Continue that asks a half-closed client whether it is
#: still there, look for its reset this soon, then at doubling intervals
#: (about 1.3 s in all; the sweep's check goes on after that).  A client
#: that closed answers the probe with a reset within a round trip.
PROBE_FIRST = 0.02
PROBE_TRIES = 7

log = logging.getLogger("flashplug.connection")
# Request heads up to this size that were answered from the cache are
# remembered by their shape (StaticFiles.known_shapes, flashplug.http.h1's
# known_key: all but the target and a Cookie value), so a head of that shape
# skips the parser; a head of a known shape that comes again byte for byte
# is remembered whole too (StaticFiles.known_heads).  A browser's or a load
# generator's heads are a few hundred bytes.
KNOWN_HEAD_MAX = 2048
_RECV_BUFFER = bytearray(RECV_SIZE)
_RECV_VIEW = memoryview(_RECV_BUFFER)

class Connection(H1Protocol, RequestCycle):
    """One client connection on the event loop."""

    # Slots, a list for each queue and a bit mask for pause reasons: an idle
    # keep-alive connection should cost as little memory as possible.
    __slots__ = SESSION_SLOTS + ("loop", "transport", "fd", "out", "writer_on", "reading",
                                 "pause_reasons", "drain_waiter", "offloading",
                                 "send_deadline", "rate_start", "rate_sent", "rate_queued",
                                 "rate_taken", "rate_progress", "queued", "held", "lost",
                                 "__weakref__")
    holds_lines = True

    def __init__(self, app, transport, peer):
        local = app.listen_addr
        if local is None:  # bound to a wildcard address: ask which one this is
            local = transport.local_address()
        init_session(self, app, peer, local, time.monotonic())
        self.loop = app.loop
        self.transport = transport
        self.fd = transport.fileno()
        self.out = []
        self.writer_on = False
        self.reading = True
        self.pause_reasons = 0        # PAUSE_* bits: why the socket is not read
        self.drain_waiter = None
        self.offloading = False      # a helper is sending file pages for us
        self.send_deadline = None
        # While output waits on the client (see _send_deadline): since when,
        # bytes we wrote since, bytes the kernel held then, bytes the client
        # has taken by the last check and when it last took any.
        self.rate_start = None
        self.rate_sent = self.rate_queued = self.rate_taken = 0
        self.rate_progress = 0.0
        # Bytes ever put in ``out``; the access-log lines of responses
        # still in it, each with the ``queued`` count at its end; bytes of
        # a response not logged yet that the connection dropped unsent.
        self.queued = 0
        self.held = None
        self.lost = 0
        self.scheme = transport.scheme
        if not transport.zero_copy:
            # A copying transport (TLS) may keep a backlog: it says when.
            # (Not set on a plain socket: the cycle would outlive close.)
            transport.on_backlog = self._set_interest
        app.connections.add(self)
        # HTTP/2 is chosen by the first bytes: ALPN over TLS, the preface
        # under --h2c.  Once known, the plain reader takes over.
        h2 = app.h2_tls if transport.scheme == "https" else app.h2c
        self.loop.add_reader(self.fd, self._on_first_readable if h2 else self._on_readable)

    clock = staticmethod(time.monotonic)

    def spawn(self, coro):
        return self.loop.create_task(coro)

    # -- reading -----------------------------------------------------------------

    def _on_readable(self, n=None):
        # One receive buffer per loop, shared by all connections: the parser
        # copies out what it keeps, so nothing is allocated per read.
        # ``n``: bytes _on_first_readable already read into it.
        if n is None:
            try:
                n = self.transport.recv_into(_RECV_BUFFER)
            except (BlockingIOError, InterruptedError):
                return
            except PlainHTTP as e:
                self._plain_http(e)
                return
            except OSError:
                self.abort()
                return
        if not n:
            self._on_eof()
            return
        now = self.now = time.monotonic()
        state = self.state
        if state == "idle" and n <= KNOWN_HEAD_MAX and _RECV_BUFFER.endswith(b"\r\n\r\n", 0, n):
            # Between requests, a short complete head: maybe one we know,
            # byte for byte or by its shape.
            data = bytes(_RECV_VIEW[:n])
            if not self.target_path_ok:
                # No quickest path here (a route takes every path, a hook
                # sees each request, or forwarded addresses are believed):
                # a head parsed before for a handler is still not parsed.
                if not self._replay_whole(data, now):
                    self.feed(data, now)
                return
            static = self.app.static
            found = static.known_heads.data.get(data)
            shape = None
            if found is not None:
                # Unpacked, not ``*found``: a call with a star argument is
                # not one CPython 3.11 specializes (nor runs in the same
                # interpreter frame loop).
                known, path, target = found
                if self._answer_known(known, path, target, data):
                    self.app.stats.heads_known += 1
                    return
            elif self._not_cached(data):
                # A routed head, maybe one parsed before: then no feed.
                if not self._replay_whole(data, now):
                    self.uncached = data    # (the parser need not ask again)
                    self.feed(data, now)
                return
            else:
                shape = known_key(data)
                known = None if shape is None else static.known_shapes.data.get(shape[0])
                if known is not None:
                    # The target as logged, decoded once for a head remembered whole.
                    target = shape[2].decode("latin-1")
                    if self._answer_known(known, shape[1], target, data):
                        self.app.stats.heads_shaped += 1
                        if static.seen_before(data):
                            static.known_heads.put(data, (known, shape[1], target))
                        return
            self.m_answer = None
            self.feed(data, now)
            if self.m_answer is not None and shape is not None:
                self._remember_shape(shape[0], data)
            return
        if state == "lingering":
            return
        if state == "tunnel":
            self.m_body.feed(bytes(_RECV_VIEW[:n]))
            return
        self.feed(_RECV_VIEW[:n], now)

    def _on_first_readable(self):
        """Before the protocol is known: read the TLS handshake (its ALPN
        answer) or the first bytes (the HTTP/2 preface, with ``--h2c``);
        then hand the connection to HTTP/2, or go on as HTTP/1.1."""
        transport = self.transport
        try:
            n = transport.recv_into(_RECV_BUFFER)
        except (BlockingIOError, InterruptedError):
            return
        except PlainHTTP as e:
            self._plain_http(e)
            return
        except OSError:
            self.abort()
            return
        if transport.zero_copy:
            h2 = _RECV_BUFFER.startswith(b"PRI", 0, n)
        else:
            h2 = transport.alpn == "h2"
            self.app = checked_view(self.app, transport)   # (421 Misdirected Request)
        if h2:
            self._hand_over(bytes(_RECV_VIEW[:n]))
            return
        self.loop.add_reader(self.fd, self._on_readable)
        # The first request too may be one whose head is known (a new
        # connection per request: load generators, HTTP/1.0 clients).
        self._on_readable(n)

    def _plain_http(self, refusal):
        """Plain HTTP came to the TLS port: the transport answered nginx's
        400; it gets its access-log line (with its request line, as nginx
        logs it), then the connection closes."""
        line = refusal.log_fields() or (None, None, None, None, None)
        self._account(400, refusal.answered, *line, self.app.default_site)
        self.abort()

    def _hand_over(self, data):
        """The connection speaks HTTP/2: the transport goes to an
        ``H2Connection``; this object is done, without closing it."""
        self.loop.remove_reader(self.fd)
        self.reading = False
        self.closed = True
        self.app.connections.discard(self)
        H2Connection(self.app, self.transport, (self.peer_addr, self.peer_port),
                     (self.local_addr, self.local_port), data)

    def _remember_shape(self, shape, data):
        answer = self.m_answer
        self.m_answer = None
        static = self.app.static
        # One message exactly: a plain GET/HEAD has no body, so its head's
        # blank line is the end of the message, and there is only one.
        if static.seen_before(shape) and data.count(b"\r\n\r\n") == 1:
            static.known_shapes.put(shape, KnownHead(*answer))

    def _on_eof(self):
        self.eof = True
        self._set_interest()
        if self.state == "lingering":
            self.close()
        elif self.state == "tunnel":
            if self.m_body is not None:
                self.m_body.finish()    # the plugin reads b"" and may still write
        elif self.m_open:
            self.abort()  # a request cut off half-way can never be answered
        elif self.active is None and not self.pending and self.unparsed is None:
            if self.out or self.offloading or self.transport.backlog:
                self.closing = True
            else:
                self.close()
        elif self.task is not None and not self.head_sent and self.active is not None \
                and getattr(self.active, "version", None) == "1.1":
            # Half-closed or gone for good?  Only a write can tell.
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.deadline = self.deadline_for(self.now)
            self.loop.call_later(PROBE_FIRST, self._probe_answered, PROBE_FIRST, PROBE_TRIES)

    def _probe_answered(self, delay, tries):
        """Did the client reset the connection after the probe of
        ``_on_eof``?  Then it is gone: the handler (a CGI script, a FastCGI
        or proxy exchange) is cancelled now, as nginx ends an upstream
        request when its client closes (``*_ignore_client_abort off``),
        rather than at the handler's next write or timeout."""
        if self.closed or self.task is None or self.task.done() or self.head_sent:
            return
        if self.transport.pending_error():
            active = self.active
            log.info("%s %s: the client closed the connection before the response began; "
                     "its handler is stopped", getattr(active, "method", "?"),
                     getattr(active, "target", "?"))
            self.abort()
        elif tries > 1:
            self.loop.call_later(delay * 2, self._probe_answered, delay * 2, tries - 1)

    def pause_reading(self, why):
        if why == PAUSE_BODY:
            self.m_rate_start = None   # the handler is slow, not the client: a new window
        self.pause_reasons |= why
        if self.reading:
            self._set_interest()

    def resume_reading(self, why):
        self.pause_reasons &= ~why
        if not self.reading:
            self._set_interest()

    def _set_interest(self):
        """Watch the socket for what the connection needs now, worked out in
        this one place (lighttpd's connection_set_fdevent_interest): read
        unless some reason pauses reading (``PAUSE_*`` bits) or the client
        sent its last byte; write while output waits (in our queue or the
        transport's backlog) and no helper is sending for us.  The send
        deadline runs while writing is watched."""
        if self.closed:
            return
        read = not self.pause_reasons and not self.eof
        if read != self.reading:
            if read:
                self.loop.add_reader(self.fd, self._on_readable)
            else:
                self.loop.remove_reader(self.fd)
            self.reading = read
        write = (bool(self.out) or self.transport.backlog > 0) and not self.offloading
        if write != self.writer_on:
            if write:
                self.loop.add_writer(self.fd, self._flush)
                self.rate_start = self.rate_progress = now = time.monotonic()
                self.rate_sent = self.rate_taken = 0
                self.rate_queued = self.transport.unsent()
                self.send_deadline = self._send_deadline(now)
            else:
                self.loop.remove_writer(self.fd)
                self.send_deadline = self.rate_start = None
            self.writer_on = write

    def _sent(self, n):
        """``n`` more bytes went into the socket while output waits."""
        self.rate_sent += n
        self.rate_progress = now = time.monotonic()
        self.send_deadline = self._send_deadline(now)

    def _send_deadline(self, now):
        """When to look at a waiting client again: --send-timeout after its
        last progress, or sooner when, past --min-rate-grace since output
        began to wait, it has taken under --min-rate bytes/s on average
        (Apache mod_reqtimeout's MinRate), so a client that reads a few
        bytes now and then cannot hold a connection and its buffers."""
        config = self.app.config
        deadline = self.rate_progress + config.send_timeout
        if config.min_rate:
            deadline = min(deadline, self.rate_start + config.min_rate_grace
                           + self.rate_taken / config.min_rate)
        return deadline

    def _too_slow(self, now):
        """At the send deadline: has the client fallen behind for good?
        What it took is what we wrote less what the kernel still holds (a
        socket buffer of megabytes drains long before the socket reports
        room again, so our own writes alone would undercount)."""
        taken = self.rate_sent + self.rate_queued - self.transport.unsent()
        if taken > self.rate_taken:
            self.rate_taken = taken
            self.rate_progress = now
        self.send_deadline = self._send_deadline(now)
        return now > self.send_deadline

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
                n = self.transport.send(data, more)
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
        self.queued += len(data)
        self._set_interest()

    def write_pair(self, head, body):
        """Write two buffers with one ``sendmsg`` (gather), without joining them."""
        if self.closed:
            return
        if self.out or self.offloading:
            self.write(head)
            self.write(body)
            return
        try:
            n = self.transport.sendmsg((head, body))
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.abort()
            return
        if n < len(head):
            self.out.append(memoryview(head)[n:])
            self.out_bytes += len(head) - n
            self.queued += len(head) - n
            n = 0
        else:
            n -= len(head)
        if n < len(body):
            self.out.append(memoryview(body)[n:])
            self.out_bytes += len(body) - n
            self.queued += len(body) - n
        if self.out:
            self._set_interest()

    def write_file(self, entry, offset, count):
        """Send ``count`` bytes of ``entry``'s open file from ``offset``."""
        if self.closed or count <= 0:
            return
        if offset == 0 and count == entry.size and count <= WINDOW and not self.out \
                and not self.offloading:
            # A whole file of one window right after its header: one call.
            offset = self.app.sender.send_now(self.transport, entry)
            count -= offset
            if not count:
                return
        entry.retain()
        self.out.append(FileRange(entry, offset, count))
        self.out_bytes += min(count, HIGH_WATER)
        self.queued += count
        if not self.offloading:
            self._flush()

    def _flush(self):
        out = self.out
        if self.transport.backlog:
            # A copying transport's ciphertext goes first.
            try:
                self.transport.flush()
            except OSError:
                self.abort()
                return
        while out and not self.closed and not self.offloading:
            item = out[0]
            if type(item) is FileRange:
                left = item.left
                outcome = self.app.sender.send(self.transport, item)
                if item.left != left and self.writer_on:
                    self._sent(left - item.left)
                if outcome is DONE:
                    del out[0]
                    self.out_bytes -= min(item.total, HIGH_WATER)
                    item.entry.release()
                    continue
                if outcome is WOULD_BLOCK:
                    break
                if outcome is OFFLOAD:
                    self._offload(item)
                    return
                self.abort()   # FAILED
                return
            try:
                n = self.transport.send(item)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.abort()
                return
            if self.writer_on:
                self._sent(n)
            self.out_bytes -= n
            if n < len(item):
                out[0] = memoryview(item)[n:]
                break
            del out[0]
        if self.closed:
            return
        self._set_interest()
        if out:
            if self.unparsed is not None and self.out_bytes <= HIGH_WATER // 2:
                self.resume_parsing()
            return
        if self.held is not None:
            self._log_held(0)
        if self.state == "idle":
            # The keep-alive wait begins once the response is all sent.
            self.deadline = self.deadline_for(time.monotonic())
        w = self.drain_waiter
        if w is not None and not w.done():
            w.set_result(None)
        if self.closing and self.active is None and not self.pending:
            self._close_when_flushed()
        elif self.unparsed is not None:
            self.resume_parsing()

    def _hold_line(self, *line):
        """Keep a response's access-log line (``RequestCycle._account``'s
        fields) until its bytes have left the queue."""
        if self.held is None:
            self.held = []
        self.held.append((self.queued, line))

    def _log_held(self, unsent):
        """Write the held lines, ``unsent`` bytes of the queue's end never
        having gone: each line's body bytes less those of its own that are
        among them.  What is left of them belongs to the response being
        written, which is logged after (``lost``)."""
        held, self.held = self.held, None
        sent_to = self.queued - unsent     # the queue position the socket took up to
        for end, (status, size, *rest) in held:
            if end > sent_to:
                size = max(0, size - (end - sent_to))
                sent_to = end              # the next response's bytes begin here
            self._write_line(status, size, *rest)
        self.lost = min(unsent, self.queued - held[-1][0])

    def _offload(self, item):
        """The next window is not in memory: a helper sends it.  Until it is
        done, the socket and the file stay open even if the connection
        closes meanwhile (``close``), so no descriptor is reused under it."""
        self.offloading = True
        self._set_interest()

        def done(outcome):
            self.offloading = False
            if self.closed:
                self.release()
            elif outcome is FAILED:
                self.abort()
            else:
                self._flush()
        self.app.sender.offload(self.transport, item, done)

    async def drain(self):
        while self.out_bytes > HIGH_WATER // 2 and not self.closed:
            self.drain_waiter = self.loop.create_future()
            try:
                await self.drain_waiter
            finally:
                self.drain_waiter = None
        if self.closed:
            raise ConnectionError("client went away")

    async def tunnel(self, upgrade):
        """After a 101: pipe this connection through the plugin's
        ``upgrade(tunnel)`` (``flashplug.tunnel``) until it returns.
        Returns the bytes it sent."""
        self.state = "tunnel"
        self.deadline = self.deadline_for(self.now)
        incoming = self.m_body = BodyReader(self)
        rest, self.upgrade_rest = self.upgrade_rest, b""
        if rest:
            incoming.feed(rest)
        if self.eof:
            incoming.finish()
        self.resume_reading(PAUSE_UPGRADE)
        tunnel = Tunnel(self, incoming)
        try:
            await upgrade(tunnel)
        finally:
            # Nothing more is read until the close ("tunnel closed").
            self.m_body = None
            self.pause_reading(PAUSE_UPGRADE)
        return tunnel.sent

    # -- closing -----------------------------------------------------------------------------

    def _close_when_flushed(self):
        if self.closed:
            return
        self.closing = True
        if self.out or self.offloading or self.transport.backlog:
            return  # _flush calls back when the queue is empty
        if self.eof:
            self.close()
            return
        # Lingering close: stop sending, read and drop what the client still
        # sends for a moment, so our response is not lost to a reset.
        try:
            self.transport.shutdown_write()
        except OSError:
            self.close()
            return
        if self.last_asked and self.unparsed is None and not self.transport.unread():
            # Unless the client said its request was its last and sent
            # nothing after it: it sends no more requests (RFC 9112 §9.6),
            # so close now, as nginx does; no read of its own close.
            self.close()
            return
        self.state = "lingering"
        self.deadline = self.deadline_for(time.monotonic())
        self.unparsed = None
        self.pause_reasons = 0
        self._set_interest()

    def on_timeout(self, now):
        """Called by the server's sweep when a deadline has passed."""
        if self.send_deadline is not None and now > self.send_deadline:
            if self._too_slow(now):
                self.transport.reset_on_close()   # what the send buffer holds goes too
                self.abort()
        elif self.eof and self.task is not None and not self.task.done():
            # A handler works for a half-closed client: did it reset?
            if self.transport.pending_error():
                self.abort()
            else:
                self.deadline = self.deadline_for(now)
        elif self.deadline is not None and now > self.deadline:
            if self.state == "head" and self.active is None:
                self.pause_reading(PAUSE_TIMEOUT)
                self._queue_error(408, "Request Timeout")
            elif self.state in ("head", "body") and self.m_request is not None:
                self.abort()
            elif self.out or self.offloading or self.transport.backlog:
                # Idle between requests, but the last response is still
                # going out (a long download): --send-timeout watches that.
                # The idle clock starts again when the queue drains.
                self.deadline = self.deadline_for(now)
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
            self.reading = False
        if self.writer_on:
            loop.remove_writer(self.fd)
        w = self.drain_waiter
        if w is not None and not w.done():
            w.set_result(None)
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.unparsed = None
        self.pending.clear()
        self.app.connections.discard(self)
        if self.out:
            # Dropped with output queued: the responses it belonged to are
            # logged with the bytes that went (nginx's $body_bytes_sent).
            unsent = sum(item.left if type(item) is FileRange else len(item)
                         for item in self.out)
            if self.held is not None:
                self._log_held(unsent)
            else:
                self.lost = unsent
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
            self.transport.close()
        except OSError:
            pass

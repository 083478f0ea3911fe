"""The proxy request handler: pick, send, parse, stream.

Theory of operation, for one request:

1. **Pick.**  The prefix's :class:`~.upstream.Group` picks a peer that is
   not out; a parked keep-alive connection to it is reused, else one is
   opened (``--proxy-connect-timeout``).  A peer that cannot be reached
   counts a failure and the next peer is tried: nothing was sent yet.
2. **Send.**  A new request head (``message.request_head``), then the body
   as the kernel parsed it, with our framing, copied by a feeder task that
   waits on the upstream (``drain``, ``--proxy-send-timeout``): a slow
   upstream slows the client's upload down.  A chunked body is read ahead
   first (``CHUNKED_AHEAD``), to go with a Content-Length if it ends.  An
   OPTIONS with ``Max-Forwards: 0`` is answered here instead.
3. **Head.**  The response is parsed as it arrives (``ResponseReader``),
   each wait bounded by ``--proxy-read-timeout`` (504).  A broken
   response is a 502.  A request of an idempotent method without a body
   that meets a closed keep-alive connection before any answer (the
   upstream closed it as we sent) is sent once more on a new connection;
   any other is a 502, since the upstream may have acted on it (RFC 9110
   §9.2.2: a proxy MUST NOT retry a non-idempotent request).
4. **Answer.**  A response that arrived whole with its head goes out in
   one write with its Content-Length; a longer one streams, read from the
   upstream only as fast as the client takes it.  The kernel frames it
   again (Content-Length, chunked, or the close for HTTP/1.0).
5. **Upgrade.**  A WebSocket handshake answered ``101`` becomes a tunnel
   (``tunnel.py``): the kernel switches the client connection over and the
   two sockets are piped to each other.

Every failure is logged with its cause, naming the upstream.  A client that
goes away (the kernel cancels the handler or closes the body stream)
closes the upstream connection, which ends the request there.
"""
import asyncio
import functools
import logging
from urllib.parse import quote

from flashplug import HTTPError, Response
from flashplug.http.message import IDEMPOTENT_METHODS

from .message import MAX_FORWARDS_METHODS, MAX_HINTS, chunk, connection_tokens, max_forwards, request_head
from .tunnel import tunnel_response
from .upstream import ConnectFailed

log = logging.getLogger("flashplug.proxy")

#: A response complete with its head, and no larger than this, goes out
#: with a Content-Length in one write.
SMALL_BODY = 64 * 1024
#: A chunked request body is read this far before anything goes upstream:
#: one that ends by then goes with a Content-Length (what every upstream
#: reads; nginx buffers whole bodies by default), a longer one chunked.
CHUNKED_AHEAD = 64 * 1024
#: What flashplug answers OPTIONS with, as the final recipient (a
#: Max-Forwards of 0): the methods it passes upstream (TRACE never reaches
#: a route: the kernel answers it 405, as nginx does).
FINAL_ALLOW = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"


class UpstreamFailed(Exception):
    """The upstream broke its response after the head went out; the kernel
    cuts the client connection so the client sees a cut response."""


def _encode(path):
    """A decoded path percent-encoded for the request line; an encoded
    slash (``ENCODED_SLASH``, NUL: no other decoded path holds one) is
    sent as ``%2F``."""
    encoded = quote(path, safe="/!$&'()*+,;=:@~", errors="surrogateescape")
    return encoded.replace("%00", "%2F")


class ProxyHandler:
    """Answers the requests of one ``--proxy`` prefix in one worker."""

    def __init__(self, mapping, group, settings):
        self.mapping = mapping
        self.group = group
        self.settings = settings
        self._authority = mapping.upstreams[0].authority

    def target(self, request):
        """The origin-form request-target to send upstream."""
        rewrite = self.mapping.rewrite
        slashed = request.path is None    # a path with %2F (Route.encoded_slashes)
        if rewrite is None and not slashed:
            path = request.raw_path
        elif rewrite is None:
            # Normalised (no ".." can climb out of the prefix), re-encoded,
            # each encoded slash sent as %2F again.
            path = _encode(request.state["slashed_path"])
        else:
            # nginx's proxy_pass with a URI: the matched prefix of the
            # normalised path is replaced; the rest is sent re-encoded.
            full = request.state["slashed_path"] if slashed else request.path
            path = rewrite + _encode(full[len(self.mapping.prefix) - 1:].lstrip("/"))
        return path + "?" + request.query if request.query else path

    async def __call__(self, request, fresh=False):
        """Answer ``request`` from an upstream; ``fresh``: on new
        connections only (a parked one was just found closed)."""
        if max_forwards(request) == 0:
            # RFC 9110 §7.6.2: not forwarded; answered as the final recipient.
            return Response(200, [("Allow", FINAL_ALLOW)], b"")
        upgrade = _upgrade_asked(request)
        body = request.body
        length = None
        if request.chunked:
            length, body = await self._chunked_body(request)
        head = request_head(request, self.target(request), upgrade, self._authority, length)
        has_body = bool(request.content_length) or request.chunked
        # The worker's loop as the kernel gives it: asyncio.get_running_loop()
        # costs a getpid() system call on Python before 3.12.
        loop = request.server.loop
        s = self.settings
        tried = ()
        while True:
            peer = self.group.pick(loop.time(), tried)
            if peer is None:
                if not tried:
                    log.error("%s: 502: no live upstream (all out after failures)",
                              self.mapping.prefix)
                raise HTTPError(502, "Bad Gateway")
            try:
                if fresh:
                    peer.idle, parked = [], peer.idle
                    for conn in parked:
                        conn.close()
                conn = peer.parked()
                reused = conn is not None
                if conn is None:
                    conn = await peer.connect(loop, s.connect_timeout)
            except ConnectFailed as e:
                tried = (*tried, peer)
                self._failed(peer, loop, e, 504 if e.timeout else 502)
                if len(tried) < len(self.group.peers):
                    continue
                raise HTTPError(504 if e.timeout else 502,
                                "Gateway Timeout" if e.timeout else "Bad Gateway") from None
            try:
                return await self._exchange(request, peer, conn, head, body, has_body,
                                            upgrade, length is None)
            except _Stale:
                if reused and not fresh:
                    self._stale(peer)
                    fresh = True
                    continue
                self._failed(peer, loop, "closed the connection without a response")
                raise HTTPError(502, "Bad Gateway") from None

    def start_reply(self, request, reply):
        """The usual request without a task (``flashplug.reply``): no body,
        no Upgrade, no Max-Forwards method, one upstream with a parked
        connection.  It is sent here and answered from the connection's
        wake-ups through ``reply``.  False, with nothing done, for anything
        else: then the coroutine answers."""
        if request.content_length or request.chunked or len(self.group.peers) != 1 \
                or request.method in MAX_FORWARDS_METHODS \
                or request.headers.get("upgrade") is not None:
            return False
        peer = self.group.pick(request.server.loop.time(), ())
        conn = None if peer is None else peer.parked()
        if conn is None:
            return False
        head = request_head(request, self.target(request), None, self._authority, None)
        exchange = self._send(request, peer, conn, head, None, False, None, True)
        reply.on_cancel = functools.partial(exchange.end, reusable=False)
        self._reply_when_ready(request, reply, exchange)
        return True

    def _reply_when_ready(self, request, reply, exchange, waiter=None):
        """Answer through ``reply`` once the response head is in; until
        then, wait again (``waiter``: the wait that just ended)."""
        if reply.done():
            return    # the client went away (``on_cancel`` ended the exchange)
        try:
            if waiter is not None and waiter.exception() is not None:
                self._timed_out(exchange)
            response = self._response(request, exchange, False)
        except _Stale:
            self._stale(exchange.peer)
            reply.follow(self(request, fresh=True))
            return
        except Exception as exc:  # noqa: BLE001 - answered as the coroutine's failure
            exchange.end(reusable=False)
            reply.fail(exc)
            return
        if response is None:
            exchange.conn.waiter(self.settings.read_timeout).add_done_callback(
                functools.partial(self._reply_when_ready, request, reply, exchange))
            return
        reply.send(response)

    def _stale(self, peer):
        log.info("%s: a kept-alive connection was closed; trying a new one", peer.name)

    async def _chunked_body(self, request):
        """``(length, chunks)`` of a chunked request body, read ahead up to
        CHUNKED_AHEAD bytes: its length if it ended by then (it goes with a
        Content-Length), else None (it goes chunked), and the body to send.

        RFC 9112 §7: a client may send chunked only to a server it knows
        reads HTTP/1.1.  An upstream that answered HTTP/1.0 gets the long
        body refused with 411, as nginx did before it buffered bodies.
        """
        body = request.body.__aiter__()
        held, size = [], 0
        while size <= CHUNKED_AHEAD:
            try:
                data = await body.__anext__()
            except StopAsyncIteration:
                return size, _replay(held, None)
            held.append(data)
            size += len(data)
        if self.group.http10:
            log.error("%s: 411: a chunked request body over %d bytes for an HTTP/1.0 "
                      "upstream", self.mapping.prefix, CHUNKED_AHEAD)
            raise HTTPError(411, "Length Required", close=True)
        return None, _replay(held, body)

    def _failed(self, peer, loop, cause, status=502):
        out = self.group.failed(peer, loop.time())
        log.error("%s: %d: %s%s", peer.name, status, cause,
                  f"; out for {self.group.fail_timeout:g}s" if out else "")

    def _send(self, request, peer, conn, head, body, has_body, upgrade, chunked):
        """Send the request head on ``conn`` (and start the feeder of
        ``body``, its chunks; ``chunked``: sent chunked): the exchange.
        The peer's ``active`` count is taken back when the exchange ends,
        whichever way."""
        peer.active += 1
        peer.requests += 1
        exchange = _Exchange(peer, conn)
        conn.begin(request.method == "HEAD", upgrade)
        conn.write(head)
        if has_body:
            exchange.feeder = conn.loop.create_task(
                _feed(conn, body, request.chunked and chunked, self.settings.send_timeout))
        return exchange

    async def _exchange(self, request, peer, conn, head, body, has_body, upgrade, chunked):
        """Send the request on ``conn`` and return the Response."""
        exchange = self._send(request, peer, conn, head, body, has_body, upgrade, chunked)
        try:
            # The connection parses the response as it arrives; this waits
            # until its head is in (usually with all of it: one wait).
            while True:
                response = self._response(request, exchange, has_body)
                if response is not None:
                    return response
                try:
                    await conn.wait(self.settings.read_timeout)
                except asyncio.TimeoutError:
                    self._timed_out(exchange)
        except BaseException:
            exchange.end(reusable=False)
            raise

    def _timed_out(self, exchange):
        """Raise the 504 of a response head that did not come in time."""
        timeout = self.settings.read_timeout
        self._failed(exchange.peer, exchange.conn.loop, f"no response within {timeout:g}s", 504)
        raise HTTPError(504, "Gateway Timeout") from None

    def _response(self, request, exchange, has_body):
        """The Response once the upstream's head is in, else None.

        :raises _Stale: a kept-alive connection closed before any answer.
        :raises HTTPError: the response broke (502) or the body's sending
            failed (502, 504).
        """
        conn = exchange.conn
        reader = conn.reader
        peer = exchange.peer
        if conn.eof and not reader.started and not has_body \
                and request.method in IDEMPOTENT_METHODS:
            # Only these: a closed connection cannot tell "closed while
            # idle" from "acted on the request, then died" (nginx's
            # proxy_next_upstream without non_idempotent).
            exchange.end(reusable=False)
            raise _Stale
        if conn.error is not None:
            status, cause = exchange.feeder_error() or (502, str(conn.error))
            self._failed(peer, conn.loop, cause, status)
            raise HTTPError(status, "Bad Gateway" if status == 502
                            else "Gateway Timeout") from None
        if reader.hints:
            # 103 Early Hints (RFC 8297): passed on as they come, to a client
            # that may have them (the kernel refuses them to HTTP/1.0).
            for links in reader.hints:
                request.send_interim(103, links)
            reader.hints = ()
        if reader.hints_dropped and reader.headers is not None:
            log.info("%s: %d 103 (Early Hints) responses past the first %d dropped",
                     peer.name, reader.hints_dropped, MAX_HINTS)
        if reader.headers is None:
            return None
        peer.succeeded()
        peer.http10 = reader.http10
        if reader.status == 101:
            return tunnel_response(reader, exchange, self.settings)
        if reader.done and reader.pending <= SMALL_BODY:
            body = conn.take_body()
            exchange.end(reader.reusable and exchange.body_sent())
            if request.method == "HEAD" and reader.content_length is None:
                # No length to state: the kernel frames an empty
                # stream without a Content-Length of 0 the GET lacks.
                return Response(reader.status, reader.headers, stream=_Body.empty(),
                                reason=reader.reason)
            return Response(reader.status, reader.headers, body, reason=reader.reason)
        stream = _Body(exchange, reader, conn.take_body(), self)
        return Response(reader.status, reader.headers, stream=stream, reason=reader.reason)


class _Stale(Exception):
    """A reused connection was closed under a bodiless idempotent request."""


class _Exchange:
    """One request on one upstream connection, until it is given back."""

    def __init__(self, peer, conn):
        self.peer = peer
        self.conn = conn
        self.feeder = None
        self.over = False

    def body_sent(self):
        """The whole request body went out (so the connection is in step)."""
        f = self.feeder
        return f is None or (f.done() and not f.cancelled() and f.result() is None)

    def feeder_error(self):
        """``(status, cause)`` when sending the body failed, else None."""
        f = self.feeder
        if f is not None and f.done() and not f.cancelled():
            return f.result()
        return None

    def end(self, reusable):
        if self.over:
            return
        self.over = True
        if self.feeder is not None and not self.feeder.done():
            self.feeder.cancel()
            reusable = False
        self.peer.active -= 1
        self.peer.release(self.conn, reusable)


class _Body:
    """The rest of an upstream response as the client's body stream.

    A class, not an async generator: the kernel may ``aclose()`` it before
    the first ``__anext__`` (client gone), and an unstarted generator would
    skip its ``finally``.
    """

    def __init__(self, exchange, reader, first, handler):
        self._exchange = exchange
        self._reader = reader
        self._first = first
        self._handler = handler

    @classmethod
    def empty(cls):
        return cls(None, None, b"", None)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._exchange is None:
            raise StopAsyncIteration
        if self._first:
            data, self._first = self._first, b""
            return data
        reader = self._reader
        exchange = self._exchange
        conn = exchange.conn
        timeout = self._handler.settings.read_timeout
        while not reader.body:
            if conn.error is not None:
                exchange.end(reusable=False)
                self._handler._failed(exchange.peer, conn.loop,
                                      f"{conn.error}; response cut short")
                raise UpstreamFailed(str(conn.error))
            if reader.done:
                exchange.end(reader.reusable and exchange.body_sent())
                raise StopAsyncIteration
            if exchange.over:
                raise StopAsyncIteration
            try:
                await conn.wait(timeout)
            except asyncio.TimeoutError:
                exchange.end(reusable=False)
                self._handler._failed(exchange.peer, conn.loop,
                                      f"silent for {timeout:g}s inside its response; "
                                      f"response cut short", 504)
                raise UpstreamFailed("upstream timed out") from None
        return conn.take_body()

    async def aclose(self):
        # Read to its end: the connection goes back to the pool (done in
        # __anext__); otherwise the client went away: close it.
        if self._exchange is not None:
            self._exchange.end(reusable=False)


def _upgrade_asked(request):
    """The ``Upgrade`` value to pass on for a WebSocket handshake (an
    HTTP/1.1 GET without a body that lists ``upgrade`` in Connection), else
    None.

    HTTP/2 is never asked for: an upstream that switched to h2c would take
    requests inside the tunnel that the proxy never sees (h2c smuggling),
    and RFC 9113 §3.1 has deprecated that upgrade anyway."""
    value = request.headers.get("upgrade")
    if value is None or request.method != "GET" or request.content_length \
            or request.chunked or request.version != "1.1":
        return None     # (RFC 9110 §7.8: an HTTP/1.0 request's Upgrade is ignored)
    if "upgrade" not in connection_tokens(request.headers.get_all("connection")):
        return None
    protocols = [p.strip() for p in value.split(",")
                 if p.strip() and p.strip().partition("/")[0].lower() not in _HTTP2]
    return ", ".join(protocols) or None


# The protocol names of HTTP/2 in an Upgrade field (RFC 9113 §3.1).
_HTTP2 = ("h2c", "h2")


async def _replay(held, rest):
    """The chunks read ahead (``held``), then those of ``rest`` if any."""
    for data in held:
        yield data
    if rest is not None:
        async for data in rest:
            yield data


async def _feed(conn, body, chunked, timeout):
    """Copy the request body upstream, framed our way.  Returns None, or
    ``(status, cause)`` when it failed; then the connection is closed, so
    the response reader stops waiting and reports the cause."""
    try:
        async for data in body:
            if not data:
                continue
            conn.write(chunk(data) if chunked else data)
            await conn.drain(timeout)
        if chunked:
            conn.write(chunk(b""))
        await conn.drain(timeout)
        return None
    except asyncio.TimeoutError:
        failure = (504, f"took no request body for {timeout:g}s")
    except ConnectionError as e:
        failure = (502, f"sending the request body failed: {e}")
    conn.close()
    return failure

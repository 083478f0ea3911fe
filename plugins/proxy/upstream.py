"""Upstreams on the loop: connections, the keep-alive pool, balancing, health.

Theory of operation
-------------------
A :class:`Peer` is one upstream address in one worker.  It keeps up to
``keepalive`` idle connections (newest first: the one most likely still
open on the other side) and counts the requests in flight on it, which
``least-conn`` balancing reads.

A :class:`Group` is the peers of one ``--proxy`` prefix and picks one per
request, round-robin or by fewest requests in flight, skipping peers that
are out.  Health is passive, as nginx's ``max_fails``/``fail_timeout``: a
peer that fails (refuses, times out, breaks HTTP) ``max_fails`` times
within ``fail_timeout`` seconds is out for ``fail_timeout`` seconds, then
gets requests again.  A group of one peer never takes it out: there would
be nothing to send to instead.

:class:`Connection` is an ``asyncio.Protocol`` rather than a stream pair:
it must see bytes that arrive while it is idle (the upstream closing, or
sending what answers no request), and close itself then, so a reused
connection is one that was quiet.  Flow control is the protocol's own:
past ``HIGH_WATER`` unread response bytes it pauses reading the socket, so
a slow client slows the upstream down (TCP does the rest); ``drain`` waits
while the transport's write buffer is over its limit, so a slow upstream
slows the client's upload down.
"""
import asyncio
import collections
import socket

from .message import ResponseReader, UpstreamError

#: Unread response bytes held for a slow client before reading pauses.
HIGH_WATER = 256 * 1024
#: Seconds an idle keep-alive connection is kept (nginx's upstream
#: keepalive_timeout is 60 s; many app servers close theirs sooner).
IDLE_TIMEOUT = 30.0


def _expire(waiter):
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


class ConnectFailed(Exception):
    """No connection to a peer; ``timeout`` tells a timeout (504) from a
    refusal (502)."""

    def __init__(self, cause, timeout=False):
        super().__init__(cause)
        self.timeout = timeout


class Connection(asyncio.Protocol):
    """One connection to an upstream.

    Its response is parsed as bytes arrive (``data_received`` feeds the
    connection's :class:`~.message.ResponseReader`, kept from one request
    to the next), and the handler waits on it (``wait``) only until
    something it acts on has come: the head, the whole response, more body,
    the end, an error.  So a small response costs the handler one wait.
    After a 101 the connection carries raw bytes (``raw``, ``read``).

    One timer serves the connection's whole life, not one per wait: it is
    due at the earliest of the handler's deadline (``wait``) and the end
    of the idle keep-alive time (``park``), and looks again when it fires.
    """

    def __init__(self, peer, loop):
        self.peer = peer
        self.loop = loop
        self.transport = None
        self.reader = ResponseReader()
        self.error = None              # the UpstreamError the response broke with
        self.raw = False               # a tunnel: bytes go to chunks, unparsed
        self.chunks = collections.deque()
        self.buffered = 0
        self.eof = False
        self.closed = False
        self.idle = False
        self._paused = False           # we paused reading the socket
        self._write_paused = False     # the transport asked us to wait
        self._waiter = None
        self._drain_waiter = None
        self._timer = None
        self._timer_at = 0.0
        self._deadline = 0.0
        self.parked_at = 0.0

    # -- asyncio.Protocol

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        if self.idle:
            self.close()     # an idle connection that speaks is not reused
            return
        if self.raw:
            self.chunks.append(data)
            self.buffered += len(data)
        elif self.error is None:
            reader = self.reader
            try:
                reader.feed(data)
            except UpstreamError as e:
                self.error = e
            self.buffered = reader.pending
        if self.buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self):
        self._ended()
        if self.idle:
            self.close()
        self._wake()
        return False

    def connection_lost(self, exc):
        self.closed = True
        self._ended()
        self.peer.forget(self)
        self._wake()
        w = self._drain_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def pause_writing(self):
        self._write_paused = True

    def resume_writing(self):
        self._write_paused = False
        w = self._drain_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _ended(self):
        """The end of the connection, which may end a response (or break it)."""
        if self.eof:
            return
        self.eof = True
        if not self.raw and self.error is None:
            try:
                self.reader.feed(b"")
            except UpstreamError as e:
                self.error = e

    def _wake(self):
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- the handler's side

    def begin(self, head_only, upgrading):
        """Ready for the response to the request about to be written
        (``upgrading``: the Upgrade value asked for, or None)."""
        self.reader.reset(head_only, upgrading)
        self.error = None

    async def wait(self, timeout):
        """Until bytes arrive, the connection ends or the response breaks.

        :raises asyncio.TimeoutError: none of those within ``timeout`` seconds.
        """
        try:
            await self.waiter(timeout)
        finally:
            self._waiter = None

    def waiter(self, timeout):
        """:meth:`wait` as a future, for a callback: done when bytes
        arrive, the connection ends or the response breaks; failed with
        ``asyncio.TimeoutError`` after ``timeout`` seconds of none."""
        waiter = self._waiter = self.loop.create_future()
        deadline = self._deadline = self.loop.time() + timeout
        if self._timer is None or self._timer_at > deadline:
            self._arm(deadline)
        return waiter

    def take_body(self):
        """The response body bytes parsed so far (reading resumes if paused)."""
        reader = self.reader
        data = b"".join(reader.body)
        reader.body.clear()
        reader.pending = self.buffered = 0
        if self._paused and not self.closed:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def read(self, timeout):
        """The next raw bytes from the upstream (after ``raw`` is set);
        ``b""`` at its end.

        :raises asyncio.TimeoutError: nothing within ``timeout`` seconds.
        """
        while not self.chunks:
            if self.eof:
                return b""
            await self.wait(timeout)
        data = self.chunks.popleft()
        self.buffered -= len(data)
        if self._paused and self.buffered <= HIGH_WATER // 2 and not self.closed:
            self._paused = False
            self.transport.resume_reading()
        return data

    def write(self, data):
        if not self.closed:
            self.transport.write(data)

    async def drain(self, timeout):
        """Wait while the upstream is not taking what we sent.

        :raises ConnectionError: the connection is gone.
        :raises asyncio.TimeoutError: still full after ``timeout`` seconds.
        """
        if self._write_paused and not self.closed:
            waiter = self._drain_waiter = self.loop.create_future()
            timer = self.loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._drain_waiter = None
        if self.closed:
            raise ConnectionError("the upstream closed the connection")

    def close(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.idle = False
        self._ended()
        if not self.closed:
            self.closed = True
            self.peer.forget(self)
            # abort, not close: close would first send what is queued, and
            # an upstream that reads nothing would keep the socket open.
            self.transport.abort()
        self._wake()

    def park(self):
        """Back to the pool, quiet, for the next request; closed once it
        has been parked IDLE_TIMEOUT seconds on end."""
        self.idle = True
        self.parked_at = now = self.loop.time()
        if self._timer is None or self._timer_at > now + IDLE_TIMEOUT:
            self._arm(now + IDLE_TIMEOUT)

    def unpark(self):
        self.idle = False

    def _arm(self, when):
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._watch)
        self._timer_at = when

    def _watch(self):
        """The timer fired: time out the handler's wait, or close an idle
        connection, if due; else look again when one is."""
        self._timer = None
        now = self.loop.time()
        w = self._waiter
        if w is not None and not w.done():
            if now >= self._deadline:
                w.set_exception(asyncio.TimeoutError())
            else:
                self._arm(self._deadline)
        elif self.idle:
            if now >= self.parked_at + IDLE_TIMEOUT:
                self.close()
            else:
                self._arm(self.parked_at + IDLE_TIMEOUT)


class Peer:
    """One upstream, as one worker sees it."""

    def __init__(self, upstream, keepalive):
        self.upstream = upstream
        self.name = upstream.text
        self.keepalive = keepalive
        self.idle = []                 # parked connections, newest last
        self.active = 0                # requests in flight
        self.requests = 0
        self.failures = 0              # in all, for the status page
        self.fails = 0                 # within the current window
        self.window_end = 0.0
        self.down_until = 0.0
        self.http10 = False            # its last response said HTTP/1.0

    def parked(self):
        """A parked connection, quiet since, taken from the pool; or None."""
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and not conn.eof:
                conn.unpark()
                return conn
            conn.close()
        return None

    async def connect(self, loop, timeout):
        """A new connection.

        :raises ConnectFailed: refused, unreachable, or not in ``timeout`` s.
        """
        u = self.upstream
        try:
            if u.path is not None:
                opening = loop.create_unix_connection(lambda: Connection(self, loop), u.path)
            else:
                opening = loop.create_connection(lambda: Connection(self, loop), u.host, u.port)
            _, conn = await asyncio.wait_for(opening, timeout)
        except asyncio.TimeoutError:
            raise ConnectFailed(f"no connection to {u.text} within {timeout:g}s",
                                timeout=True) from None
        except OSError as e:
            raise ConnectFailed(f"cannot connect to {u.text}: {e.strerror or e}") from None
        return conn

    def release(self, conn, reusable):
        """A request on ``conn`` is over: park it, or close it."""
        if reusable and not conn.closed and not conn.eof and not conn.chunks \
                and len(self.idle) < self.keepalive:
            conn.park()
            self.idle.append(conn)
        else:
            conn.close()

    def forget(self, conn):
        if conn in self.idle:
            self.idle.remove(conn)

    def close(self):
        for conn in list(self.idle):
            conn.close()

    # -- passive health

    def available(self, now):
        return now >= self.down_until

    def failed(self, now, max_fails, fail_timeout):
        """Count a failure; True when it takes the peer out."""
        self.failures += 1
        if max_fails == 0:
            return False
        if now >= self.window_end:
            self.fails = 0
            self.window_end = now + fail_timeout
        self.fails += 1
        if self.fails >= max_fails:
            self.fails = 0
            self.down_until = now + fail_timeout
            return True
        return False

    def succeeded(self):
        self.fails = 0


class Group:
    """The peers of one prefix, and how one is picked."""

    def __init__(self, peers, balance, max_fails, fail_timeout):
        self.peers = peers
        self.least_conn = balance == "least-conn"
        # One peer is never taken out: there is no other to send to.
        self.max_fails = max_fails if len(peers) > 1 else 0
        self.fail_timeout = fail_timeout
        self._next = 0

    @property
    def http10(self):
        """A peer of the group answers HTTP/1.0: it may not read a chunked
        request body (RFC 9112 §7)."""
        return any(peer.http10 for peer in self.peers)

    def pick(self, now, tried):
        """The peer for the next attempt, or None when every one is out
        or already ``tried`` (a collection)."""
        peers = self.peers
        n = len(peers)
        if n == 1:
            peer = peers[0]
            return peer if peer not in tried and peer.available(now) else None
        start = self._next
        best = None
        for i in range(n):
            peer = peers[(start + i) % n]
            if peer in tried or not peer.available(now):
                continue
            if not self.least_conn:
                self._next = (start + i + 1) % n
                return peer
            if best is None or peer.active < best.active:
                best = peer
        if best is not None:
            self._next = (peers.index(best) + 1) % n
        return best

    def failed(self, peer, now):
        return peer.failed(now, self.max_fails, self.fail_timeout)

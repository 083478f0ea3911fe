"""Connections to one FastCGI backend, pooled and multiplexed on the loop.

Theory of operation
-------------------
A :class:`Pool` belongs to one backend address in one worker.  It admits
requests through a :class:`flashplug.procs.Slots` limit (the same bounded
FIFO queue the CGI plugin waits in: 503 when it is full), then puts each
admitted request on a connection with room for it, opening one when none
has room:

* Before the first request the pool asks the backend for its limits with
  ``FCGI_GET_VALUES``, on a connection of its own, closed once answered (a
  php-fpm child serves one connection until it closes, even this one).  ``FCGI_MAX_CONNS`` caps the connections,
  ``FCGI_MPXS_CONNS=1`` lets several requests share one connection, up to
  ``FCGI_MAX_REQS`` in all.  A backend that does not answer (in time) is
  taken to allow one request per connection, as php-fpm does.
* Every request asks for ``FCGI_KEEP_CONN``: a connection goes back to the
  pool at the request's ``END_REQUEST`` and is closed after
  ``IDLE_TIMEOUT`` unused (a single-process backend such as ``php-cgi -b``
  accepts no other connection while we hold one).
* Each connection is an ``asyncio.Protocol``: ``data_received`` decodes
  bytes (``protocol.ClientConnection.receive_into``, the connection being
  the sink of its events) and hands each to its :class:`Exchange` at
  once, with no reader task to wake in between and no event objects.
  The exchange cuts the header block out of ``STDOUT`` itself and wakes
  its handler once the block is whole (or the output ends): one wait per
  request, whatever the pieces the head came in.
  When an exchange holds more than ``HIGH_WATER`` bytes that its client
  has not taken, the connection pauses reading its socket until it has
  taken half: the socket buffer fills and the backend blocks in
  ``write``, which is backpressure from a slow client to the backend (on
  a multiplexed connection the other requests wait too, as with any
  FastCGI multiplexer).
* Request bodies go out as ``STDIN`` records; while the transport's write
  buffer is over its limit (``pause_writing``) the sender waits, up to the
  timeout: backpressure from a slow backend to the client.
* A handler waiting for output sets a deadline (``Exchange.ready``): one
  timer per pool (``_sweep``), every tenth of the timeout, fails the waits
  past theirs, so no request sets and cancels a timer of its own; a
  timeout fires up to a tenth of itself (at most 1 s) late.
* Free connections are found in ``spare``, most recently used first (no
  scan of every connection per request).
* ``abort()`` (the client went away) sends ``FCGI_ABORT_REQUEST``.  On a
  connection that carries only this request the pool then closes it as
  well: php-fpm reads nothing while a script runs, and notices a gone
  client only when its next write fails.
* A protocol violation, an unexpected close or a read error ends the
  connection and fails every exchange on it with :class:`BackendError`.
"""
import asyncio
import collections
import logging
import socket

from flashplug.procs import MAX_STDERR_LINE, Slots, stderr_text
from flashplug_plugins.cgi.response import MAX_HEADER_BLOCK, find_header_end

from . import protocol as fcgi

log = logging.getLogger("flashplug.fastcgi")

#: Response bytes an exchange may hold for a slow client before its
#: connection stops reading its socket.
HIGH_WATER = 256 * 1024
#: Seconds an unused keep-alive connection stays open.
IDLE_TIMEOUT = 5.0
#: Seconds to wait for a GET_VALUES answer before assuming defaults.
PROBE_TIMEOUT = 2.0
#: Bounds (seconds) of the interval at which waits meet their deadlines.
SWEEP_MIN = 0.05
SWEEP_MAX = 1.0
#: Request ids per multiplexed connection, whatever the backend says (one
#: record header's id field allows 65535).
MAX_IDS = 1024


class _Expired(Exception):
    """A send's own timer went off."""


def _expire(waiter):
    if not waiter.done():
        waiter.set_exception(_Expired())


class _Closed(Exception):
    """The connection closed while its bytes were being decoded: stop."""


class BackendError(Exception):
    """The backend refused, broke the protocol or went away (502).

    ``status`` is the HTTP status to answer with: 502, or 503 when the
    backend said it is overloaded.
    """

    def __init__(self, cause, status=502):
        super().__init__(cause)
        self.status = status


class BackendTimeout(Exception):
    """The backend did not connect or answer in time (504)."""


class Address:
    """``unix:/path`` or ``host:port`` (``[v6]:port``)."""

    def __init__(self, text):
        self.text = text
        if text.startswith("unix:"):
            self.path = text[5:]
            self.host = self.port = None
            if not self.path:
                raise ValueError("unix: needs a socket path")
        else:
            host, sep, port = text.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("expected unix:PATH or HOST:PORT")
            self.path = None
            self.host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
            self.port = int(port)

    def __str__(self):
        return self.text

    #: How many backend processes stand behind the address (see supervisor).
    processes = 1

    async def connect(self, timeout, factory):
        """``(protocol, origin)``: a connection made by ``factory`` (an
        ``asyncio.Protocol``), and None for the process (a
        :class:`~.supervisor.Supervisor` names one).

        :raises BackendError: refused or unreachable.
        :raises BackendTimeout: no connection within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        try:
            if self.path is not None:
                opening = loop.create_unix_connection(factory, self.path)
            else:
                opening = loop.create_connection(factory, self.host, self.port)
            _, protocol = await asyncio.wait_for(opening, timeout)
        except asyncio.TimeoutError:
            raise BackendTimeout(f"no connection to {self} within {timeout:g}s") from None
        except OSError as e:
            raise BackendError(f"cannot connect to {self}: {e.strerror or e}") from None
        return protocol, None


class Exchange:
    """One request on one connection: the response as it arrives.

    The header block is cut out of STDOUT as it arrives (``head``: the
    block without its blank line, None until it is whole), so the handler
    waits once for it, not once per chunk; what follows it is the body,
    read with ``read(timeout)`` until ``b""``, or taken whole with
    ``read_nowait()`` once the request has ended.  The handler calls
    ``finish()`` when it needs nothing more, and ``abort()`` when the
    client went away.  Each exchange holds one pool slot until its
    ``END_REQUEST`` (or the connection's end), then gives it back.
    """

    __slots__ = ("conn", "request_id", "chunks", "buffered", "received", "stdout_done",
                 "ended", "error", "discarding", "stdin_done", "app_status", "deadline",
                 "head", "_headbuf", "_waiter", "_errbuf")

    def __init__(self, conn, request_id):
        self.conn = conn
        self.request_id = request_id
        self.chunks = collections.deque()   # the body's bytes, after the head
        self.buffered = 0
        self.received = 0            # STDOUT bytes so far
        self.stdout_done = False
        self.ended = False
        self.error = None
        self.discarding = False
        self.stdin_done = False      # the empty STDIN record went out
        self.app_status = None
        self.deadline = 0.0          # loop time the handler's wait ends (see Pool._sweep)
        self.head = None             # the header block, once it has all arrived
        self._headbuf = b""          # STDOUT so far, while the head has not
        self._waiter = None          # the handler waits for data
        self._errbuf = b""

    # -- the connection's side (called from data_received)

    def on_stdout(self, data):
        if not data:
            self.stdout_done = True
            self._wake()
            return
        self.received += len(data)
        if self.discarding:
            return
        if self.head is None:
            # The handler is woken once the whole head is here (or the
            # stream ends), not for each piece of it.
            searched = len(self._headbuf)
            if searched:
                data = self._headbuf + data
            end = find_header_end(data, searched)
            if end is None:
                if len(data) > MAX_HEADER_BLOCK:
                    self.discarding = True
                    self.error = BackendError(
                        f"sent a header block over {MAX_HEADER_BLOCK} bytes")
                    self._headbuf = b""
                    self._wake()
                else:
                    self._headbuf = data
                return
            self._headbuf = b""
            self.head = data[:end[0]]
            data = data[end[1]:]
        if data:
            self.chunks.append(data)
            self.buffered += len(data)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        if self.buffered > HIGH_WATER:
            self.conn.hold(self)

    def on_stderr(self, data):
        self._errbuf += data
        *lines, self._errbuf = self._errbuf.split(b"\n")
        if len(self._errbuf) > MAX_STDERR_LINE or (not data and self._errbuf):
            lines.append(self._errbuf)
            self._errbuf = b""
        for line in lines:
            log.warning("%s: %s", self.conn.pool.name, stderr_text(line.rstrip(b"\r")))

    def on_end(self, app_status, protocol_status, cause=None):
        if self.ended:
            return
        self.ended = True
        self.app_status = app_status
        if cause is not None:
            self.error = BackendError(cause)
        elif protocol_status != fcgi.REQUEST_COMPLETE:
            name = fcgi.PROTOCOL_STATUS_NAMES.get(protocol_status, str(protocol_status))
            self.error = BackendError(f"refused the request: {name}",
                                      503 if protocol_status == fcgi.OVERLOADED else 502)
        if self._errbuf:
            self.on_stderr(b"")
        self.stdout_done = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        conn = self.conn
        if conn.holding is self:
            conn.release_hold()
        pool = conn.pool
        pool.slots.release()
        if pool._room:
            pool.notify()

    def _wake(self):
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _make_room(self):
        if self.conn.holding is self:
            self.conn.release_hold()

    @property
    def head_cause(self):
        """Why no head came, for a request whose output ended without one."""
        cause = ("ended the request inside its header block" if self._headbuf
                 else "ended the request without output")
        return f"{cause} (app status {self.app_status})"

    # -- the handler's side

    def ready(self, deadline):
        """A future done when output or the end arrives, or failed with
        :class:`BackendTimeout` once the loop's clock passes ``deadline``.
        No timer of its own: the pool's sweep looks at every waiting
        exchange's deadline (see ``Pool._sweep``)."""
        waiter = self._waiter = self.conn.loop.create_future()
        self.deadline = deadline
        pool = self.conn.pool
        if pool._sweeper is None:
            pool.sweep_soon()
        return waiter

    async def read(self, timeout):
        """The next STDOUT bytes; ``b""`` at the end of the stream.

        :raises BackendError: the backend broke the connection or refused.
        :raises BackendTimeout: nothing arrived within ``timeout`` seconds.
        """
        if not self.chunks:
            deadline = self.conn.loop.time() + timeout
            while not self.chunks:
                if self.error is not None:
                    raise self.error
                if self.stdout_done:
                    return b""
                await self.ready(deadline)
        data = self.chunks.popleft()
        self.buffered -= len(data)
        if self.buffered <= HIGH_WATER // 2:
            self._make_room()
        return data

    def read_nowait(self):
        """Whatever has arrived, joined (without waiting)."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        self._make_room()
        return data

    async def send_stdin(self, data, timeout):
        """STDIN records for ``data``; ``b""`` ends the body.  Waits while
        the connection's write buffer is full (a slow backend).

        :raises BackendError: the connection is gone.
        :raises BackendTimeout: the backend took nothing for ``timeout`` seconds.
        """
        if self.ended:
            raise BackendError("the request already ended")
        await self.conn.send(fcgi.encode_stdin(self.request_id, data), timeout)
        if not data:
            self.stdin_done = True

    def finish(self):
        """The handler is done with a response it read to its end; a
        request still running (HEAD) runs on with its output dropped."""
        self.discarding = True
        self.chunks.clear()
        self.buffered = 0
        self._make_room()

    def abort(self):
        """The client went away: FCGI_ABORT_REQUEST (see the module notes)."""
        self.finish()
        if not self.ended:
            self.conn.abort(self)


class Connection(asyncio.Protocol):
    """One socket to the backend and the exchanges on it.

    An ``asyncio.Protocol``, not a stream pair: bytes are decoded and
    handed to their exchange in ``data_received``, with no reader task to
    wake in between (one task step less per response).
    """

    def __init__(self, pool):
        self.pool = pool
        self.origin = None           # the supervised process, if any
        self.loop = pool.loop
        self.transport = None
        self.proto = fcgi.ClientConnection()
        self.exchanges = {}
        self.closed = False
        self.retiring = False        # takes no new request; closes when empty
        self.served = 0
        self.holding = None          # the exchange reading is paused for
        self.spare = False           # in pool.spare
        self._write_paused = False   # the transport's buffer is over its limit
        self._drain_waiters = []
        # One timer for the connection's life, not one per request: it
        # looks at last_end (when the last request ended) each time it
        # fires, and closes the connection IDLE_TIMEOUT after it.
        self.last_end = 0.0
        self._idle_timer = None

    @property
    def load(self):
        return len(self.exchanges)

    # -- asyncio.Protocol

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.last_end = self.loop.time()
        self._idle_timer = self.loop.call_later(IDLE_TIMEOUT, self._idle_check)

    def data_received(self, data):
        if self.closed:
            return
        try:
            self.proto.receive_into(data, self)
        except fcgi.ProtocolError as e:
            self.close(f"protocol error: {e}")
        except _Closed:
            pass

    # -- the events of data_received (protocol.ClientConnection.receive_into)

    def stdout(self, request_id, data):
        self.exchanges[request_id].on_stdout(data)

    def stderr(self, request_id, data):
        self.exchanges[request_id].on_stderr(data)

    def end(self, request_id, app_status, protocol_status):
        exchange = self.exchanges.pop(request_id)
        exchange.on_end(app_status, protocol_status)
        if not exchange.stdin_done:
            # Part of its body may still be on the way: the next
            # request would follow stray STDIN records.
            self.retiring = True
        if not self.exchanges:
            if self.retiring or (self.origin is not None
                                 and self.origin.state != "running"):
                self.close("retired")
                raise _Closed   # the rest of the bytes are not ours to read
            self.last_end = self.loop.time()
        if not self.spare:
            self.spare = True
            self.pool.spare.append(self)

    def values(self, values):
        self._unexpected("Values")

    def unknown_type(self, rtype):
        self._unexpected("UnknownType")

    def _unexpected(self, kind):
        self.close(f"protocol error: unexpected {kind} on a request connection")
        raise _Closed

    def eof_received(self):
        try:
            self.proto.receive(b"")
        except fcgi.ProtocolError as e:
            self.close(f"protocol error: {e}")
        else:
            self.close("the backend closed the connection")
        return False

    def connection_lost(self, exc):
        self.close(f"read failed: {exc}" if exc is not None
                   else "the backend closed the connection")
        self._wake_writers()

    def pause_writing(self):
        self._write_paused = True

    def resume_writing(self):
        self._write_paused = False
        self._wake_writers()

    def _wake_writers(self):
        waiters, self._drain_waiters = self._drain_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    # -- backpressure from a slow client (see the module notes)

    def hold(self, exchange):
        """``exchange`` holds too much its client has not taken: stop
        reading this connection until it has."""
        if self.holding is None and not self.closed:
            self.transport.pause_reading()
        self.holding = exchange

    def release_hold(self):
        self.holding = None
        if not self.closed:
            self.transport.resume_reading()

    # -- requests

    def start(self, params, body):
        """Begin a request; with ``body`` False its STDIN ends at once."""
        exchanges = self.exchanges
        rid = 1 if not exchanges else next(
            i for i in range(1, MAX_IDS + 1) if i not in exchanges)
        exchange = exchanges[rid] = Exchange(self, rid)
        self.served += 1
        if self.origin is not None:
            self.origin.served()
        data = self.proto.begin(rid, params, True, not body)   # keep_conn, end_stdin
        if not body:
            exchange.stdin_done = True
        self.transport.write(data)
        return exchange

    async def send(self, data, timeout):
        if self.closed:
            raise BackendError("the backend closed the connection")
        self.transport.write(data)
        if not self._write_paused:
            return
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        timer = self.loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        except _Expired:
            raise BackendTimeout(f"the backend took no request body for {timeout:g}s") \
                from None
        finally:
            timer.cancel()
        if self.closed:
            raise BackendError(f"write to {self.pool.address} failed: the connection closed")

    def abort(self, exchange):
        if self.closed:
            return
        self.transport.write(self.proto.abort(exchange.request_id))
        if self.load == 1:
            self.close("the client went away")
        else:
            # Wait for the END_REQUEST, but not forever.
            self.loop.call_later(self.pool.timeout, self._abort_overdue, exchange)

    def _abort_overdue(self, exchange):
        if not exchange.ended and not self.closed:
            self.close("no END_REQUEST after FCGI_ABORT_REQUEST")

    def _idle_check(self):
        delay = IDLE_TIMEOUT
        if not self.exchanges:
            delay -= self.loop.time() - self.last_end
            if delay <= 0:
                self._idle_timer = None
                self.close("idle")
                return
        self._idle_timer = self.loop.call_later(delay, self._idle_check)

    def _cancel_idle(self):
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def close(self, cause):
        if self.closed:
            return
        self.closed = True
        self._cancel_idle()
        self.pool.conns.discard(self)
        if self.spare:
            self.spare = False
            self.pool.spare.remove(self)
        self.pool.notify()
        if self.transport is not None:
            self.transport.close()
        if self.origin is not None:
            self.origin.released()
        for exchange in list(self.exchanges.values()):
            exchange.on_end(None, None, cause)
        self.exchanges.clear()
        self._wake_writers()


class _Probe(asyncio.Protocol):
    """The connection that asks a backend for its limits (GET_VALUES):
    ``answer`` is the values, ``{}`` when the backend said it did not
    understand, None when it closed first."""

    def __init__(self, loop):
        self.answer = loop.create_future()
        self.proto = fcgi.ClientConnection()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            events = self.proto.receive(data)
        except fcgi.ProtocolError as e:
            self._done(exc=e)
            return
        for event in events:
            if isinstance(event, fcgi.Values):
                self._done(event.values)
            elif isinstance(event, fcgi.UnknownType):
                self._done({})

    def eof_received(self):
        self._done(None)

    def connection_lost(self, exc):
        self._done(None)

    def _done(self, values=None, exc=None):
        if not self.answer.done():
            if exc is not None:
                self.answer.set_exception(exc)
            else:
                self.answer.set_result(values)


class Pool:
    """Every connection of one worker to one backend."""

    def __init__(self, loop, address, name, max_conns, queue, timeout):
        self.loop = loop
        self.address = address
        self.name = name
        self.max_conns = max_conns
        self.timeout = timeout
        # How often waits are checked against their deadlines: a timeout
        # fires up to a tenth of itself late (at most a second).
        self.sweep_every = max(SWEEP_MIN, min(SWEEP_MAX, timeout / 10))
        self._sweeper = None         # the sweep's timer, while anything waits
        self.per_conn = 1
        self.learned = None          # the backend's GET_VALUES answer, once known
        self._learning = None
        self.slots = Slots(max_conns, queue)
        self.conn_limit = max_conns  # connections at once, once learned
        self.conns = set()
        self.spare = []              # connections that may have room (spare_connection)
        self.requests = 0
        self._opening = 0            # connections being opened
        self._room = []              # futures of requests waiting for a connection

    def begin_now(self, params, has_body):
        """Begin a request without waiting: an :class:`Exchange` on a spare
        connection when the backend's limits are known, a slot is free
        with nobody queued, and a connection has room; else None (the
        caller takes the waiting way)."""
        if self.learned is None:
            return None
        conn = self.spare_connection()
        if conn is None or not self.slots.try_acquire():
            return None
        self.requests += 1
        return conn.start(params, has_body)

    def sweep_soon(self):
        self._sweeper = self.loop.call_later(self.sweep_every, self._sweep)

    def _sweep(self):
        """Fail each wait whose deadline has passed; look again later while
        any exchange waits.  One timer per pool, not one per wait."""
        self._sweeper = None
        now = self.loop.time()
        waiting = False
        for conn in self.conns:
            for exchange in conn.exchanges.values():
                waiter = exchange._waiter
                if waiter is None or waiter.done():
                    continue
                if now >= exchange.deadline:
                    waiter.set_exception(BackendTimeout("the backend was silent too long"))
                else:
                    waiting = True
        if waiting:
            self.sweep_soon()

    async def learn(self):
        """Ask the backend for its limits, once (see the module notes)."""
        if self.learned is not None:
            return
        if self._learning is None:
            self._learning = self.loop.create_task(self._probe())
        task = self._learning
        try:
            await asyncio.shield(task)
        finally:
            # A failed probe (backend down) is tried again by the next request.
            if task.done() and self._learning is task:
                self._learning = None

    async def _probe(self):
        probe, origin = await self.address.connect(self.timeout,
                                                   lambda: _Probe(self.loop))
        values = {}
        try:
            probe.transport.write(fcgi.encode_get_values())
            values = await asyncio.wait_for(asyncio.shield(probe.answer),
                                            min(self.timeout, PROBE_TIMEOUT)) or {}
        except (asyncio.TimeoutError, fcgi.ProtocolError) as e:
            log.info("%s: no FCGI_GET_VALUES answer (%s); one request per connection",
                     self.name, e or type(e).__name__)
        finally:
            probe.transport.close()
            if origin is not None:
                origin.released()
        # The backend's limits are per process; a supervised process that
        # does not say is taken to serve one connection at a time.
        processes = self.address.processes
        default = self.max_conns if processes == 1 else 1
        max_conns, max_reqs, mpx = fcgi.limits(values, default, default)
        conns = min(self.max_conns, max_conns * processes)
        max_reqs *= processes
        self.conn_limit = conns
        self.per_conn = max(1, min(MAX_IDS, max_reqs // conns)) if mpx else 1
        self.slots.limit = min(conns * self.per_conn, max_reqs) if mpx else conns
        self.learned = values
        log.info("%s: %d connection(s), %d request(s) each (backend said %s)",
                 self.name, conns, self.per_conn,
                 ", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "nothing")
        if processes == 1 and fcgi.MAX_CONNS not in values and conns > 1:
            # php-fpm never says: its children each serve one kept-alive
            # connection until it closes, and a connection beyond them
            # waits in its listen queue, its request unanswered (504).
            log.info("%s: the backend gave no FCGI_MAX_CONNS: keep --fastcgi-max-conns "
                     "(times --workers) at most its process count (php-fpm: "
                     "pm.max_children)", self.name)

    async def connection(self, fresh=False):
        """A connection with room for one more request (a new one when
        ``fresh``, if the limit allows).  The caller holds a slot, so there
        is room, or will be once a connection being opened is open; never
        more than ``conn_limit`` connections exist at once."""
        while True:
            if not fresh:
                conn = self.spare_connection()
                if conn is not None:
                    return conn
            if len(self.conns) + self._opening < self.conn_limit:
                break
            waiter = self.loop.create_future()
            self._room.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._room:
                    self._room.remove(waiter)
        self._opening += 1
        try:
            conn, origin = await self.address.connect(self.timeout,
                                                      lambda: Connection(self))
        except BaseException:
            self._opening -= 1
            self.notify()
            raise
        self._opening -= 1
        conn.origin = origin
        self.conns.add(conn)
        conn.spare = True
        self.spare.append(conn)
        # Waiters run after our caller has begun its request on it (no
        # await in between), so they see its true load.
        self.notify()
        return conn

    def spare_connection(self):
        """The most recently used connection with room for a request, or
        None.  ``spare`` holds each connection that may have room, once;
        one found full or out of service leaves it (``Connection._end``
        puts it back when a request ends)."""
        spare = self.spare
        while spare:
            conn = spare[-1]
            if (conn.load < self.per_conn and not conn.retiring
                    and (conn.origin is None or conn.origin.state == "running")):
                return conn
            spare.pop()
            conn.spare = False
        return None

    def notify(self):
        """A connection opened, closed or finished a request: requests
        waiting for one look again."""
        waiters, self._room = self._room, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def close(self):
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.conns):
            conn.close("the server is stopping")

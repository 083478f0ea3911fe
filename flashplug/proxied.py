"""Reading the PROXY protocol header of a new connection on the loop.

Theory of operation: on a ``--proxy-protocol`` listener every accepted
socket first gets a ``ProxyHeaderReader``, before any TLS or HTTP.  It
peeks at what has arrived (``MSG_PEEK``), asks the sans-I/O parser
(``flashplug.http.proxy_protocol``) and consumes exactly the header's
bytes, so what follows it (a TLS ClientHello, an HTTP request) stays in
the kernel for the layer that reads next: neither TLS nor the HTTP
driver needs to know a header was there.  While a header is incomplete,
every byte seen so far is part of it (the parser's promise), so those are
consumed too and the socket is not left readable to spin on.

The header then hands the socket on (``done(sock, peer)``), with the
client's address from the header as its peer, or the socket's own peer
when the header carries none (a balancer's LOCAL health check, UNKNOWN).

A slow header is timed out like a slow request head (``--header-timeout``,
one timer per waiting socket, cancelled when it completes); a socket
without a valid header is closed with no response, as the protocol asks
(a receiver "must not try to guess"), and the error log says why at most
once per ``LOG_INTERVAL``.  Listeners without the option never get here.
"""
import logging
import socket
import time

from flashplug.http.proxy_protocol import ProxyProtocolError, parse

log = logging.getLogger("flashplug.server")

# The spec's advice for a receiver's first read: a v2 header with the
# usual TLVs fits; a larger one is read in more turns.
PEEK_SIZE = 536
# A balancer left without its send-proxy line would make every connection
# fail: say so, but not once per connection.
LOG_INTERVAL = 10.0


class _Complaints:
    """One error-log line per LOG_INTERVAL for refused connections."""

    next_log = 0.0
    skipped = 0

    @classmethod
    def note(cls, peer, why):
        now = time.monotonic()
        if now < cls.next_log:
            cls.skipped += 1
            return
        more = f" ({cls.skipped} more since the last report)" if cls.skipped else ""
        log.warning("closed a connection from %s on a --proxy-protocol listener: %s "
                    "(the balancer must send a PROXY header, e.g. HAProxy's "
                    "send-proxy-v2)%s", peer[0] if isinstance(peer, tuple) else peer,
                    why, more)
        cls.next_log = now + LOG_INTERVAL
        cls.skipped = 0


class ProxyHeaderReader:
    """Waits for one socket's PROXY header, then calls ``done(sock, peer)``.

    ``waiting`` is the set of readers still waiting (a graceful stop
    closes them); the reader leaves it when done or closed.
    """

    __slots__ = ("loop", "sock", "peer", "done", "waiting", "got", "timer")

    def __init__(self, loop, sock, peer, timeout, waiting, done):
        self.loop = loop
        self.sock = sock
        self.peer = peer
        self.done = done
        self.waiting = waiting
        self.got = b""           # header bytes consumed so far
        waiting.add(self)
        loop.add_reader(sock.fileno(), self._on_readable)
        self.timer = loop.call_later(timeout, self._expire)

    def _on_readable(self):
        sock = self.sock
        try:
            data = sock.recv(PEEK_SIZE, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()         # gone before it said who it was for
            return
        seen = self.got + data
        try:
            header = parse(seen)
        except ProxyProtocolError as e:
            _Complaints.note(self.peer, e)
            self.close()
            return
        try:
            if header is None:
                sock.recv(len(data))          # all of it is header: take it
                self.got = seen
                return
            sock.recv(header.length - len(self.got))   # exactly the rest of the header
        except OSError:
            self.close()
            return
        self._leave()
        peer = header.source if header.source is not None else self.peer
        self.done(sock, peer)

    def _expire(self):
        self.timer = None
        _Complaints.note(self.peer, "no complete PROXY header within --header-timeout")
        self.close()

    def _leave(self):
        self.loop.remove_reader(self.sock.fileno())
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.waiting.discard(self)

    def close(self):
        """Drop the connection without a response."""
        self._leave()
        self.sock.close()

"""One HTTP/2 stream as the request cycle sees a connection.

Theory of operation: the request cycle (``flashplug.cycle``) answers a
request through a handful of driver calls (``write``, ``write_pair``,
``write_file``, ``drain``, ``spawn``, ``abort``...).  ``H2Stream`` offers
them for one stream of an HTTP/2 connection (``flashplug.h2conn``), so the
cycle, the handlers and the plugins run unchanged, whichever protocol
carried the request.

The cycle frames a response as HTTP/1.1 (``flashplug.framing``); the first
bytes written are its head, which becomes the stream's HEADERS
(``response_fields``: lowercase names, no connection-specific fields); a
1xx head (``100 Continue``) goes out at once as an informational HEADERS.
Everything after the head is the body: bytes and file ranges queue on the
stream, and the connection sends them as DATA frames, as flow control and
its round-robin allow.  The response is over when the cycle counts it
(``_account``, called once per response on every path): the last DATA
frame then carries END_STREAM.
"""
import collections
import logging
import time

from h2.errors import ErrorCodes

from flashplug.cycle import RequestCycle
from flashplug.framing import STREAM_HIGH_WATER
from flashplug.http.h2_checks import response_fields
from flashplug.memo import Memo
from flashplug.residency import FileRange

log = logging.getLogger("flashplug.connection")

# A response head longer than this is refused (the stream is reset).
MAX_RESPONSE_HEAD = 64 * 1024
# Heads translated lately (bytes -> (status, fields)): a file asked for
# again within the same second has the same head, Date line included, so
# the translation is done once.  Emptied when full.
_FIELDS_BY_HEAD = Memo(512)


class H2Stream(RequestCycle):
    """A stream: its request's cycle fields and its queued response."""

    __slots__ = ("driver", "id", "app", "loop", "peer_addr", "local_port", "now", "closed",
                 "closing", "last_asked",
                 "active", "task", "_answered", "deferred", "active_handler", "head_sent",
                 "continue_for", "pending", "dispatching", "request", "body", "head",
                 "fields", "out", "out_bytes", "ending", "ended", "remote_ended", "queued",
                 "paused", "held", "waiter", "reading_in", "line")
    holds_lines = True

    clock = staticmethod(time.monotonic)

    def __init__(self, driver, stream_id):
        self.driver = driver
        self.id = stream_id
        self.app = driver.app
        self.loop = driver.loop
        self.peer_addr = driver.peer_addr
        self.local_port = driver.local_port   # the access log's site:port (vhost_combined)
        self.now = driver.now
        self.closed = False          # reset, or the connection went away
        self.closing = False         # (framing's flags; a stream ends anyway)
        self.last_asked = False
        self.active = None           # the request being answered (the cycle's)
        self.task = None
        self._answered = False
        self.deferred = False
        self.active_handler = None
        self.head_sent = False
        self.continue_for = None
        self.pending = []            # never more than one request on a stream
        self.dispatching = False
        self.request = None
        self.body = None             # the BodyReader its DATA frames feed
        self.head = bytearray()      # response head bytes until its blank line
        self.fields = None           # the HEADERS not yet sent
        self.out = collections.deque()   # bytes and FileRange items after the head
        self.out_bytes = 0
        self.ending = False          # the response is all queued
        self.ended = False           # END_STREAM sent
        self.remote_ended = False    # the client's END_STREAM received
        self.queued = False          # in the connection's ready queue
        self.paused = False          # the body buffer is full: hold window updates
        self.held = 0                # flow-controlled bytes not yet acknowledged
        self.waiter = None
        self.reading_in = False      # a helper reads file pages for us
        self.line = None             # the access-log line, held while DATA is queued

    def spawn(self, coro):
        return self.loop.create_task(coro)

    # -- what the cycle writes ---------------------------------------------------------

    def write(self, data, more=0):
        if self.closed or self.ended:
            return
        head = self.head
        if head is not None:
            head += data
            while True:
                end = head.find(b"\r\n\r\n")
                if end == -1:
                    if len(head) > MAX_RESPONSE_HEAD:
                        self._refuse("response head too long")
                    return
                key = bytes(head[:end + 4])
                known = _FIELDS_BY_HEAD.data.get(key)
                if known is None:
                    try:
                        known = _FIELDS_BY_HEAD.put(key, response_fields(key))
                    except ValueError as e:
                        self._refuse(e)
                        return
                status, fields = known
                fields = fields.copy()
                del head[:end + 4]
                if status == 101:
                    self._refuse("101 Switching Protocols has no HTTP/2 form")
                    return
                fields.insert(0, (b":status", b"%d" % status))
                if status >= 200:
                    break
                self.driver.send_informational(self, fields)
            self.fields = fields
            self.head = None
            if not head:
                self.driver.ready(self)
                return
            data = bytes(head)
        self.out.append(data)
        self.out_bytes += len(data)
        self.driver.ready(self)

    def write_pair(self, head, body):
        self.write(head)
        self.write(body)

    def write_file(self, entry, offset, count):
        if self.closed or self.ended or count <= 0:
            return
        entry.retain()
        self.out.append(FileRange(entry, offset, count))
        self.driver.ready(self)

    async def drain(self):
        while self.out_bytes > STREAM_HIGH_WATER // 2 and not self.closed:
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.closed:
            raise ConnectionError("stream reset")

    def wake(self):
        """Room again (or the stream closed): a waiting ``drain`` goes on."""
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _refuse(self, why):
        log.error("HTTP/2 stream %d: cannot send the response to %s: %s",
                  self.id, self.peer_addr, why)
        self.abort()

    # -- the cycle's calls back ---------------------------------------------------------

    def _account(self, status, size, method, target, version, referer, agent, site,
                 user=None, client=None):
        RequestCycle._account(self, status, size, method, target, version, referer, agent,
                              site, user, client)
        if self.head is not None:
            # A raw response (an NPH script's) ended before its blank line:
            # there are no HEADERS to send, and waiting would hang the stream.
            self._refuse("the response ended inside its head")
            return
        self.ending = True    # everything of the response is queued
        self.driver.ready(self)

    def _finish_request(self):
        self.active = None
        self.driver.finished(self)

    def _close_when_flushed(self):
        self.active = None
        self.driver.finished(self)

    def _answered_early(self, request):
        # The stream's end drains the rest of the body, or resets the
        # stream when none can come (h2output's _ended): the connection
        # goes on either way.
        request.body.discard()

    def abort(self):
        self.driver.reset(self, ErrorCodes.INTERNAL_ERROR)

    def pause_reading(self, why):
        self.paused = True        # the body buffer is full: the window stays shut

    def resume_reading(self, why):
        if self.paused:
            self.paused = False
            self.driver.acknowledge(self)

    def _hold_line(self, *line):
        self.line = line

    def log_held(self):
        """The stream is gone (its END_STREAM framed, or reset): its held
        access-log line, less the body bytes never framed as DATA."""
        status, size, *rest = self.line
        self.line = None
        unsent = sum(item.left if type(item) is FileRange else len(item) for item in self.out)
        self._write_line(status, max(0, size - unsent), *rest)

    def log_internal_error(self, exc):
        log.error("error on HTTP/2 stream %d from %s: %r", self.id, self.peer_addr, exc)

    def release(self):
        """Let go of queued file ranges (the stream is gone)."""
        for item in self.out:
            if type(item) is FileRange:
                item.entry.release()
        self.out.clear()
        self.out_bytes = 0

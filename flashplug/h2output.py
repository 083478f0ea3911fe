"""The output half of the HTTP/2 driver: streams' responses to frames.

Theory of operation: streams with something to send wait in the
connection's ready queue (``ready``); ``_flush`` takes them in turn, at
most ``QUANTUM`` bytes each per turn (round-robin, so one big download does
not hold the small ones back), as far as each stream's and the
connection's flow-control window allow.  A stream whose window is shut
waits aside (``blocked``, or ``starved`` when it got nothing last turn, so
it goes first when the window opens) and nothing of it is read meanwhile.
Frames are made only once the socket took the previous ones
(``ROUND_MAX`` at a time), and at most ``FLUSH_MAX`` bytes of DATA per
turn of the loop.  File bodies are read on the loop only from resident
pages (``FileSender.read_resident``: ``preadv(RWF_NOWAIT)``, as the TLS
copying path does); a cold window is read in by a helper (``read_in``)
first.

Response heads are HPACK-encoded by ``ResponseEncoder``, without the
dynamic table, so that a header list's block is made once and reused.

A base of ``flashplug.h2conn.H2Connection``, which supplies the fields
(``h2``, ``transport``, ``ready_q``, ``blocked``, ``starved``,
``pending_out``...) and ``reset``, ``finished``, ``_fail``, ``_set_interest``.
"""
import logging
import time

import h2.exceptions
import hpack
from h2.errors import ErrorCodes

from flashplug.framing import STREAM_HIGH_WATER
from flashplug.http.h1_checks import expects_continue
from flashplug.memo import Memo
from flashplug.residency import OFFLOAD, READ_CHUNK, WINDOW, FileRange, read_in

log = logging.getLogger("flashplug.connection")

QUANTUM = 64 * 1024                  # a stream's DATA bytes per turn
ROUND_MAX = 256 * 1024               # frames made before the socket must take them
FLUSH_MAX = 1024 * 1024              # DATA framed per turn of the loop, so that one fast
                                     # download does not keep the loop from the others


class ResponseEncoder(hpack.Encoder):
    """HPACK for our responses, without the dynamic table: every field is
    sent never-indexed (or by its static-table index), so a header list
    always encodes to the same bytes and the block is kept and reused, for
    every connection (a file's head is the same all through its second).
    The blocks are a little larger; encoding them was the costliest step
    of an answer from the cache.  A table size change the client asks for
    is still signalled first (RFC 7541 §4.2)."""

    blocks = Memo(1024)     # a header list (tuple) -> its block, for every connection

    def encode(self, headers, huffman=True):
        if self.header_table.resized:
            return super().encode([(n, v, True) for n, v in headers], huffman)
        key = tuple(headers)
        block = self.blocks.data.get(key)
        if block is None:
            block = self.blocks.put(key, super().encode([(n, v, True) for n, v in headers],
                                                        huffman))
        return block


class H2Output:
    """Stream output for one HTTP/2 connection (a base of H2Connection)."""

    __slots__ = ()

    def ready(self, stream):
        """``stream`` has something to send: take it in turn."""
        if not stream.queued and not stream.closed:
            stream.queued = True
            self.ready_q.append(stream)
        self._flush_soon()

    def _flush_soon(self):
        if not self.receiving and not self.flush_soon and not self.closed:
            self.flush_soon = True
            self.loop.call_soon(self._flush)

    def send_informational(self, stream, fields):
        """A 1xx response (``100 Continue``) goes out at once."""
        self.h2.send_headers(stream.id, fields)
        self._flush_soon()

    def _flush(self):
        """Send what the socket takes; make frames, stream by stream, while
        it keeps taking them."""
        self.flush_soon = False
        if self.closed:
            return
        self.now = time.monotonic()
        h2conn = self.h2
        transport = self.transport
        made = 0
        try:
            while True:
                if self.pending_out and not self._push():
                    break
                if transport.backlog and transport.flush():
                    break
                data = h2conn.data_to_send()
                if not data and self.ready_q and not self.lingering:
                    if made >= FLUSH_MAX:
                        self._flush_soon()     # the rest after the loop's other work
                        break
                    try:
                        made += self._round()
                    except h2.exceptions.H2Error as e:
                        log.error("HTTP/2 connection from %s: %r", self.peer_addr, e)
                        self._fail(None, ErrorCodes.INTERNAL_ERROR)
                        return
                    data = h2conn.data_to_send()
                if not data:
                    break
                self.pending_out = data
        except OSError:
            self.close()
            return
        self._set_interest()
        waiting = self.pending_out or transport.backlog or self.blocked or self.starved
        if not waiting:
            self.send_deadline = None
        elif self.send_deadline is None:
            self.send_deadline = self.now + self.app.config.send_timeout
        if self._closing and not self.streams and not waiting:
            self._close_when_flushed()

    def _push(self):
        data = self.pending_out
        try:
            n = self.transport.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        if n == len(data):
            self.pending_out = b""
            return True
        self.pending_out = memoryview(data)[n:]
        return False

    def _round(self):
        """One turn of the ready streams, until ROUND_MAX bytes are framed;
        the DATA bytes framed."""
        queue = self.ready_q
        made = 0
        for _ in range(len(queue)):
            if made >= ROUND_MAX:
                break
            stream = queue.popleft()
            stream.queued = False
            if not stream.closed:
                made += self._emit(stream)
        if made:
            self.send_deadline = None   # progress: the send clock starts again
        return made

    def _emit(self, stream):
        """Frame up to QUANTUM bytes of ``stream``'s response; the DATA
        bytes framed."""
        h2conn = self.h2
        sid = stream.id
        out = stream.out
        if stream.fields is not None:
            end = stream.ending and not out
            h2conn.send_headers(sid, stream.fields, end_stream=end)
            stream.fields = None
            if end:
                self._ended(stream)
                return 0
        elif stream.head is not None:
            return 0      # the head is not all written yet
        sent = 0
        while out and sent < QUANTUM:
            window = h2conn.local_flow_control_window(sid)
            if window <= 0:
                # A stream that got nothing this turn goes first when the
                # window opens, so a download that keeps the connection's
                # window full does not starve the others.
                (self.starved if not sent else self.blocked).append(stream)
                return sent
            n = min(window, QUANTUM - sent, h2conn.max_outbound_frame_size)
            item = out[0]
            if type(item) is FileRange:
                chunk = self._read_file(stream, item, n)
                if chunk is None:
                    return sent
                item.offset += len(chunk)
                item.left -= len(chunk)
                if not item.left:
                    out.popleft()
                    item.entry.release()
            else:
                if len(item) <= n:
                    chunk = item
                    out.popleft()
                else:
                    chunk = memoryview(item)[:n]
                    out[0] = memoryview(item)[n:]
                stream.out_bytes -= len(chunk)
            end = stream.ending and not out
            h2conn.send_data(sid, chunk, end_stream=end)
            sent += len(chunk)
            if end:
                self._ended(stream)
                return sent
        if stream.out_bytes <= STREAM_HIGH_WATER // 2:
            stream.wake()
        if out:
            self.ready(stream)      # more than one turn's worth: back of the queue
        elif stream.ending and not stream.ended:
            h2conn.end_stream(sid)
            self._ended(stream)
        return sent

    def _read_file(self, stream, item, count):
        """Up to ``count`` bytes of a file range from resident pages, or
        None while a helper reads the window in."""
        sender = self.app.sender
        buf = sender.scratch_view
        count = min(count, item.left, READ_CHUNK)
        try:
            got = sender.read_resident(item.entry, item.offset, count, buf)
        except OSError as e:
            log.error("%s: read failed: %s", item.entry.fspath, e)
            self.reset(stream, ErrorCodes.INTERNAL_ERROR)
            return None
        if got is OFFLOAD:
            self._read_in(stream, item)
            return None
        if got == 0:
            log.warning("%s shrank while being sent; resetting the stream", item.entry.fspath)
            self.reset(stream, ErrorCodes.INTERNAL_ERROR)
            return None
        return bytes(buf[:got])

    def _read_in(self, stream, item):
        """A helper brings the next window into memory; the stream waits."""
        stream.reading_in = True
        self.app.stats.residency_offloads += 1

        def done(got, error):
            stream.reading_in = False
            if stream.closed:
                stream.release()     # kept open for the helper until now
            elif error is not None or not got:
                log.warning("%s: reading it in failed (%s); resetting the stream",
                            item.entry.fspath, error or "the file shrank")
                self.reset(stream, ErrorCodes.INTERNAL_ERROR)
            else:
                self.ready(stream)
        self.app.helpers.call(read_in, (item.entry.fd, item.offset, min(item.left, WINDOW)),
                              done)

    def _ended(self, stream):
        """END_STREAM is framed.  A request body still coming is not wanted
        any more.  It is read and dropped up to --max-body-size in all
        (``draining``), as nginx and we over HTTP/1.1 discard an unread
        body: clients such as curl and httpx take RST_STREAM while they are
        still sending for a failed request, even after a whole response.
        RST_STREAM(NO_ERROR) (RFC 9113 §8.1) goes at once when nothing can
        be drained: the body was refused (413, a bad request) or never
        started (a client waiting for "100 Continue" sends none)."""
        stream.ended = True
        if not stream.remote_ended:
            stream.remote_ended = True
            left = self._drain_allowance(stream)
            if left > 0:
                self.draining[stream.id] = left
            else:
                self.h2.reset_stream(stream.id, ErrorCodes.NO_ERROR)
            if stream.body is not None:
                stream.body.finish()
        self.finished(stream)

    def _drain_allowance(self, stream):
        """Bytes of the request body still to read and drop, 0 for none."""
        body, request = stream.body, stream.request
        if body is None or request is None:
            return 0
        if body.received == 0 and expects_continue(request.headers.get("expect")):
            return 0
        return self.app.config.max_body_size - body.received

"""Both drivers, the event loop's and the blocking one, over an in-memory
transport: the same bytes in give the same responses out, whatever the
transport accepts per write.  (In the manner of uvicorn's
tests/protocols/test_http.py.)"""
import re

import pytest

from flashplug.blocking import BlockingConnection
from flashplug.cli import build_serve
from flashplug.connection import RECV_SIZE, Connection
from flashplug.http.h1 import MAX_PIPELINE
from flashplug.app import App
from tests.memory_transport import ManualLoop, MemoryTransport

PEER = ("127.0.0.1", 40000)
DRIVERS = ["loop", "blocking"]


@pytest.fixture
def docroot(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("hello\n")
    (root / "big.bin").write_bytes(bytes(range(256)) * 400)   # 100 KiB, in memory
    return root


def make_app(docroot, *flags):
    config = build_serve([str(docroot), "--arch", "sped", "--access-log", "off", *flags])
    return App(config, ManualLoop())


def exchange(app, driver, data, chunk=None, window=None, eof=True, pieces=1):
    """Send ``data`` (in ``pieces`` parts) on a new connection; the server's
    bytes and the transport."""
    t = MemoryTransport(chunk=chunk, window=window)
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        t.push(data[i:i + step])
    t.eof = eof
    if driver == "loop":
        Connection(app, t, PEER)
        app.loop.run(t)
    else:
        BlockingConnection(app, t, PEER).serve()
    return bytes(t.sent), t


def responses(data):
    """(status, headers dict, body) of each response in ``data``."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data[:300]
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        if 100 <= status < 200:
            out.append((status, headers, b""))
            data = rest
            continue
        length = int(headers.get("content-length", 0))
        out.append((status, headers, rest[:length]))
        data = rest[length:]
    return out


def no_date(data):
    return re.sub(rb"Date: [^\r]*\r\n", b"", data)


GET_A = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_get_is_answered(docroot, driver):
    out, t = exchange(make_app(docroot), driver, GET_A)
    [(status, headers, body)] = responses(out)
    assert status == 200 and body == b"hello\n"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert t.closed


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_partial_writes_give_the_same_bytes(docroot, driver, chunk):
    request = GET_A + b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n" + GET_A
    whole, _ = exchange(make_app(docroot), driver, request)
    parts, _ = exchange(make_app(docroot), driver, request, chunk=chunk)
    assert no_date(parts) == no_date(whole)
    assert [r[0] for r in responses(whole)] == [200, 200, 200]
    assert responses(whole)[1][2] == bytes(range(256)) * 400


@pytest.mark.parametrize("driver", DRIVERS)
def test_request_bytes_split_anywhere(docroot, driver):
    request = GET_A * 3
    whole, _ = exchange(make_app(docroot), driver, request)
    split, _ = exchange(make_app(docroot), driver, request, pieces=len(request))
    assert no_date(split) == no_date(whole)
    assert len(responses(split)) == 3


@pytest.mark.parametrize("driver", DRIVERS)
def test_deep_pipelining_is_answered_in_order_by_iteration(docroot, driver):
    app = make_app(docroot)
    request = b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n" + GET_A * 2000
    out, _ = exchange(app, driver, request, chunk=4096)
    got = responses(out)
    assert len(got) == 2001
    assert got[0][0] == 404 and all(r[0] == 200 for r in got[1:])


def test_a_client_that_does_not_read_is_not_parsed_ahead(docroot):
    # The loop driver parses at most MAX_PIPELINE requests, or up to the
    # output high-water mark, ahead of what the client has read.
    app = make_app(docroot)
    t = MemoryTransport(window=0)
    t.push(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n" * 20000)
    conn = Connection(app, t, PEER)
    app.loop.run(t)
    assert len(conn.pending) <= MAX_PIPELINE
    assert conn.fd not in app.loop.readers          # reading has stopped
    assert len(conn.unparsed) <= RECV_SIZE          # one read kept back at most
    assert t.inbound                                # the rest stays with the client
    t.open_window(None)
    t.eof = True
    app.loop.run(t)
    assert len(responses(bytes(t.sent))) == 20000


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_bad_request_behind_a_good_one_gets_400(docroot, driver):
    out, _ = exchange(make_app(docroot), driver, GET_A + b"8000 / HTTP/1.1\r\nHost: x\r\n\r\n")
    got = responses(out)
    assert [r[0] for r in got] == [200, 400]
    assert got[1][1]["connection"] == "close"


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("request_bytes, status", [
    (b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET / HTTP/1.10\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nExpect: bogus\r\nContent-Length: 1\r\n\r\nx", 417),
])
def test_protocol_errors_carry_their_status(docroot, driver, request_bytes, status):
    out, t = exchange(make_app(docroot), driver, request_bytes)
    [(got, headers, _)] = responses(out)
    assert got == status and headers["connection"] == "close"
    assert t.closed


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_later_http1_minor_version_is_read_as_http11(docroot, driver):
    """RFC 9110 §2.5: HTTP/1.2 is answered as HTTP/1.1 would be (nginx,
    Apache and Go do), kept alive, and a pipelined request behind it too."""
    request = b"GET /a.txt HTTP/1.2\r\nHost: x\r\n\r\n" + GET_A
    out, t = exchange(make_app(docroot), driver, request)
    got = responses(out)
    assert [r[0] for r in got] == [200, 200]
    assert out.startswith(b"HTTP/1.1 200 ") and "connection" not in got[0][1]
    # Still no Host: the 400 of HTTP/1.1.
    out, t = exchange(make_app(docroot), driver, b"GET /a.txt HTTP/1.9\r\n\r\n")
    assert [r[0] for r in responses(out)] == [400] and t.closed


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_body_to_the_static_handler_is_read_and_dropped(docroot, driver):
    request = (b"POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
               + b"POST /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n0\r\n\r\n" + GET_A)
    got = responses(exchange(make_app(docroot), driver, request, pieces=7)[0])
    assert [r[0] for r in got] == [405, 405, 200]


def chunked_post(body):
    return b"POST /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("pieces", [1, 3, 500])
@pytest.mark.parametrize("body, status", [
    # Within the framing budget: many tiny chunks with short extensions, one
    # 3 KiB extension, a few trailers.
    (b"".join(b"1;n=%d\r\nx\r\n" % i for i in range(5000)) + b"0\r\n\r\n", 405),
    (b"3;e=" + b"v" * 3000 + b"\r\nabc\r\n0\r\n\r\n", 405),
    (b"3\r\nabc\r\n0\r\nX-A: 1\r\nX-B: " + b"b" * 1000 + b"\r\n\r\n", 405),
    # Beyond it (issue #13 fault 3): one long extension, many extensions on
    # one line, a long trailer section, however the bytes arrive.
    (b"1;e=" + b"a" * 70000 + b"\r\nA\r\n0\r\n\r\n", 400),
    (b"1" + b";a" * 5000 + b"\r\nA\r\n0\r\n\r\n", 400),
    (b"3\r\nabc\r\n0\r\nX-T: " + b"t" * 9000 + b"\r\n\r\n", 400),
])
def test_a_chunked_bodys_framing_is_bounded(docroot, driver, pieces, body, status):
    out, t = exchange(make_app(docroot), driver, chunked_post(body) + GET_A, pieces=pieces)
    got = [r[0] for r in responses(out)]
    assert got == ([405, 200] if status == 405 else [400])


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_half_closed_client_gets_every_answer(docroot, driver):
    out, t = exchange(make_app(docroot), driver,
                      b"GET /a.txt HTTP/1.0\r\n\r\n" + b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r[0] for r in responses(out)] == [200]     # 1.0 without keep-alive: then close
    out, t = exchange(make_app(docroot), driver, GET_A * 3 + b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r[0] for r in responses(out)] == [200, 200, 200, 404]
    assert t.closed


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_request_cut_off_half_way_gets_nothing(docroot, driver):
    out, t = exchange(make_app(docroot), driver, GET_A + b"GET /a.txt HTTP/1.1\r\nHo")
    assert [r[0] for r in responses(out)] == [200]
    assert t.closed


def test_loop_driver_head_timeout_is_408(docroot):
    app = make_app(docroot)
    t = MemoryTransport()
    t.push(b"GET /a.txt HTTP/1.1\r\nHo")
    conn = Connection(app, t, PEER)
    app.loop.run(t)
    conn.on_timeout(conn.deadline + 1)
    app.loop.run(t)
    [(status, headers, _)] = responses(bytes(t.sent))
    assert status == 408 and headers["connection"] == "close"
    assert t.shut_write and not t.closed    # lingering close: the server chose to close


def test_blocking_driver_head_timeout_is_408(docroot):
    app = make_app(docroot)
    t = MemoryTransport()
    t.push(b"GET /a.txt HTTP/1.1\r\nHo")
    t.timeout_next = True
    BlockingConnection(app, t, PEER).serve()
    [(status, _, _)] = responses(bytes(t.sent))
    assert status == 408 and t.closed


def test_loop_driver_idle_timeout_closes_quietly(docroot):
    app = make_app(docroot)
    t = MemoryTransport()
    t.push(GET_A)
    conn = Connection(app, t, PEER)
    app.loop.run(t)
    assert conn.state == "idle" and not t.closed
    conn.on_timeout(conn.deadline + 1)
    assert t.closed and len(responses(bytes(t.sent))) == 1


def test_loop_driver_send_timeout_aborts(docroot):
    app = make_app(docroot)
    t = MemoryTransport(window=1000)
    t.push(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    conn = Connection(app, t, PEER)
    app.loop.run(t)
    assert conn.out and conn.fd in app.loop.writers
    conn.on_timeout(conn.send_deadline + 1)
    assert t.closed


def test_every_response_is_counted_once(docroot):
    app = make_app(docroot)
    exchange(app, "loop", GET_A * 3 + b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\nBAD\r\n\r\n")
    assert app.stats.requests == 5
    assert app.stats.status_counts == {200: 3, 404: 1, 400: 1}


class CopyingTransport(MemoryTransport):
    """Takes every byte at once, like TLS encrypting into its buffer, but
    lets only ``step`` bytes a call reach the client: the rest is backlog
    the driver must flush when the socket is writable."""

    def __init__(self, step):
        super().__init__()
        self.step = step
        self.held = bytearray()
        self.on_backlog = None
        self.backlog_at_close = None

    @property
    def backlog(self):
        return len(self.held)

    def send(self, data, flags=0):
        if self.held and self.flush():
            raise BlockingIOError
        self.held += bytes(data)
        if self.flush() and self.on_backlog is not None:
            self.on_backlog()
        return len(data)

    def sendmsg(self, buffers):
        return self.send(b"".join(bytes(b) for b in buffers))

    def flush(self):
        self.sent += self.held[:self.step]
        del self.held[:self.step]
        return len(self.held)

    def shutdown_write(self):
        self.backlog_at_close = self.backlog
        super().shutdown_write()

    def close(self):
        if self.backlog_at_close is None:
            self.backlog_at_close = self.backlog
        super().close()


@pytest.mark.parametrize("close", [False, True])
def test_loop_driver_flushes_a_copying_transports_backlog(docroot, close):
    app = make_app(docroot)
    t = CopyingTransport(step=7000)
    t.push(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n" + (b"Connection: close\r\n" if close else b"")
           + b"\r\n" + GET_A)
    conn = Connection(app, t, PEER)
    app.loop.run(t)
    got = responses(bytes(t.sent))
    assert [r[0] for r in got] == ([200] if close else [200, 200])
    assert got[0][2] == bytes(range(256)) * 400
    assert t.backlog == 0
    if close:
        assert t.backlog_at_close == 0      # nothing cut off by the close
    else:
        assert got[1][2] == b"hello\n" and not conn.closed


def test_blocking_driver_sends_from_an_entry_another_thread_closed(docroot):
    # mt: a thread may find its cache entry replaced, and its descriptor
    # closed, by another thread between building the head and sending the
    # body.  It sends the same file, opened again, never a reused descriptor.
    app = make_app(docroot)
    t = MemoryTransport()
    conn = BlockingConnection(app, t, PEER)
    t.push(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    t.eof = True
    conn.serve()
    entry = app.static.cache.get("/big.bin")
    assert entry is not None and entry.fd is not None
    app.static.cache.remove("/big.bin")           # evicted: its descriptor closes
    assert entry.fd is None
    again = BlockingConnection(app, MemoryTransport(), PEER)
    again.write_file(entry, 100, 1000)
    assert bytes(again.transport.sent) == (bytes(range(256)) * 400)[100:1100]
    assert not again.closed
    (docroot / "big.bin").write_bytes(b"changed")  # not the file the head described
    last = BlockingConnection(app, MemoryTransport(), PEER)
    last.write_file(entry, 0, 1000)
    assert last.transport.sent == b"" and last.closed


@pytest.mark.parametrize("request_bytes", [
    b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /a.txt HTTP/1.0\r\n\r\n",
    b"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
])
def test_a_last_request_closes_at_once(docroot, request_bytes):
    """The client said its request was its last (RFC 9112 §9.6) and sent
    nothing more: no lingering read, as nginx (on the cached path and the
    full one alike, a head remembered or not)."""
    app = make_app(docroot)
    for _ in range(3):
        out, t = exchange(app, "loop", request_bytes, eof=False)
        assert responses(out)[0][1]["connection"] == "close"
        assert t.shut_write and t.closed


def test_a_last_request_with_bytes_behind_it_lingers(docroot):
    """Bytes that came after the client's last request are still read
    and dropped before the close, so a reset cannot take the response."""
    app = make_app(docroot)
    t = MemoryTransport()
    t.push(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    conn = Connection(app, t, PEER)
    t.unread = lambda: 7                  # the kernel holds more of the client's bytes
    app.loop.run(t)
    assert responses(bytes(t.sent))[0][0] == 200
    assert t.shut_write and not t.closed and conn.state == "lingering"


def test_the_first_request_of_a_connection_may_be_a_known_head(docroot, monkeypatch):
    """Before the protocol is known (ALPN over TLS, the preface with
    --h2c) the first read goes through _on_first_readable; its request
    takes the known-head path too, so a client that opens a connection
    per request skips the parser once its head is known."""
    app = make_app(docroot, "--h2c")
    parsed = []
    feed = Connection.feed
    monkeypatch.setattr(Connection, "feed", lambda self, data, now: (parsed.append(1),
                                                                      feed(self, data, now)))
    for _ in range(6):
        t = MemoryTransport()
        t.zero_copy = True                  # a plain socket: --h2c looks for the preface
        t.push(GET_A)
        Connection(app, t, PEER)
        app.loop.run(t)
        assert responses(bytes(t.sent))[0][0] == 200
    assert len(parsed) < 6

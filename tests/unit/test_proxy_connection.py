"""An upstream connection of the proxy (plugins/proxy/upstream.py) on a
real event loop with an in-memory transport: the response parsed as it
arrives, and the one timer that serves read deadlines and the idle time."""
import asyncio

import pytest

from flashplug_plugins.proxy import upstream
from flashplug_plugins.proxy.options import Upstream

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test-Conn: 1\r\n\r\nhello"


class Transport:
    def __init__(self):
        self.written = []
        self.aborted = False
        self.paused = False

    def get_extra_info(self, name):
        return None

    def write(self, data):
        self.written.append(data)

    def abort(self):
        self.aborted = True

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False


def connection(loop):
    peer = upstream.Peer(Upstream("127.0.0.1", 9, None, "http://127.0.0.1:9"), 4)
    conn = upstream.Connection(peer, loop)
    conn.connection_made(Transport())
    return peer, conn


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_the_response_is_parsed_as_it_arrives_and_wakes_one_wait():
    async def go():
        loop = asyncio.get_running_loop()
        _, conn = connection(loop)
        conn.begin(False, False)
        loop.call_soon(conn.data_received, RESPONSE[:20])
        loop.call_soon(conn.data_received, RESPONSE[20:])
        while conn.reader.headers is None:
            await conn.wait(5)
        while not conn.reader.done:
            await conn.wait(5)
        return conn
    conn = run(go())
    assert conn.reader.status == 200 and conn.take_body() == b"hello"
    assert conn.reader.reusable and conn.error is None


def test_a_broken_response_or_the_end_is_kept_for_the_handler():
    async def go():
        loop = asyncio.get_running_loop()
        _, conn = connection(loop)
        conn.begin(False, False)
        loop.call_soon(conn.data_received, b"\x16\x03\x01garbage\r\n\r\n")
        await conn.wait(5)
        broken = conn.error
        _, conn = connection(loop)
        conn.begin(False, False)
        loop.call_soon(conn.eof_received)
        await conn.wait(5)
        return broken, conn
    broken, conn = run(go())
    assert "invalid response head" in str(broken)
    assert conn.eof and not conn.reader.started and "without a response" in str(conn.error)


def test_a_read_deadline_before_the_idle_one_is_kept():
    """A parked connection's timer is due when its idle time ends (30 s);
    a request on it with a shorter read timeout moves the timer up."""
    async def go():
        loop = asyncio.get_running_loop()
        peer, conn = connection(loop)
        conn.park()
        assert peer.idle == [] and conn.idle
        peer.idle.append(conn)
        assert peer.parked() is conn and not conn.idle
        conn.begin(False, False)
        with pytest.raises(asyncio.TimeoutError):
            await conn.wait(0.05)
        # The timer goes on serving the connection: a later wait times out too.
        with pytest.raises(asyncio.TimeoutError):
            await conn.wait(0.05)
        return conn
    conn = run(go())
    assert not conn.closed


def test_an_idle_connection_is_closed_after_its_idle_time(monkeypatch):
    monkeypatch.setattr(upstream, "IDLE_TIMEOUT", 0.05)

    async def go():
        loop = asyncio.get_running_loop()
        peer, conn = connection(loop)
        conn.begin(False, False)
        loop.call_soon(conn.data_received, RESPONSE)
        await conn.wait(5)      # arms the timer at the read deadline, 5 s on
        peer.release(conn, True)
        assert peer.idle == [conn]
        while not conn.closed:
            await asyncio.sleep(0.01)
        return peer, conn
    peer, conn = run(go())
    assert conn.transport.aborted and peer.idle == []


def test_a_slow_client_pauses_the_upstream_until_it_takes_the_body():
    async def go():
        loop = asyncio.get_running_loop()
        _, conn = connection(loop)
        conn.begin(False, False)
        size = upstream.HIGH_WATER + 1
        conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (2 * size))
        conn.data_received(b"x" * size)
        paused = conn.transport.paused
        body = conn.take_body()
        return paused, conn.transport.paused, len(body)
    assert run(go()) == (True, False, upstream.HIGH_WATER + 1)

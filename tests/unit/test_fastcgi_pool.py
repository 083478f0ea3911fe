"""The FastCGI pool's waits on the loop, with an in-memory transport."""
import asyncio

import pytest

from flashplug_plugins.fastcgi import protocol as p
from flashplug_plugins.fastcgi.pool import BackendTimeout, Connection, Pool


class Transport:
    """Takes writes; there is no socket behind it."""

    def __init__(self):
        self.sent = []

    def write(self, data):
        self.sent.append(data)

    def get_extra_info(self, name):
        return None

    def close(self):
        pass


def pool_with_one_connection(loop, timeout):
    pool = Pool(loop, None, "test", 4, 8, timeout)
    pool.learned, pool.per_conn = {}, 4      # as if GET_VALUES said: 4 per connection
    conn = Connection(pool)
    conn.connection_made(Transport())
    pool.conns.add(conn)
    conn.spare = True
    pool.spare.append(conn)
    return pool, conn


def test_waits_meet_their_deadlines_through_one_sweep_timer():
    async def main():
        loop = asyncio.get_running_loop()
        pool, conn = pool_with_one_connection(loop, timeout=0.5)
        # begin_now: a free slot and a spare connection, no coroutine.
        exchanges = [pool.begin_now(b"", has_body=False) for _ in range(3)]
        assert pool.slots.active == 3 and conn.load == 3
        start = loop.time()
        waits = [exchanges[0].ready(start + 0.2)]
        sweeper = pool._sweeper
        waits += [ex.ready(start + 0.2) for ex in exchanges[1:]]
        assert sweeper is not None and pool._sweeper is sweeper   # one timer for all
        # Output for one of them wakes it at once; the others time out.
        conn.data_received(p.encode_record(p.STDOUT, exchanges[1].request_id, b"X: y\r\n\r\n"))
        await waits[1]
        results = await asyncio.gather(waits[0], waits[2], return_exceptions=True)
        elapsed = loop.time() - start
        assert all(isinstance(r, BackendTimeout) for r in results)
        assert 0.2 <= elapsed < 2.0
        # With nothing waiting the sweep stops re-arming itself.
        await asyncio.sleep(pool.sweep_every * 3)
        assert pool._sweeper is None
        await pool.close()
        assert pool.slots.active == 0
    asyncio.run(main())


def test_begin_now_declines_when_the_request_would_wait():
    async def main():
        loop = asyncio.get_running_loop()
        pool, conn = pool_with_one_connection(loop, timeout=1)
        pool.learned = None                    # limits not known yet: learn() first
        assert pool.begin_now(b"", has_body=False) is None
        pool.learned = {}
        pool.slots.limit = 1
        assert pool.begin_now(b"", has_body=False) is not None
        assert pool.begin_now(b"", has_body=False) is None   # no free slot
        assert pool.slots.active == 1
        await pool.close()
    asyncio.run(main())


@pytest.mark.parametrize("limit,active,expected", [(2, 0, True), (2, 1, True), (2, 2, False)])
def test_slots_try_acquire(limit, active, expected):
    from flashplug.procs import Slots
    slots = Slots(limit, 4)
    slots.active = active
    assert slots.try_acquire() is expected
    assert slots.active == active + expected


def test_the_head_is_cut_out_as_it_arrives_and_wakes_the_handler_once():
    async def main():
        loop = asyncio.get_running_loop()
        pool, conn = pool_with_one_connection(loop, timeout=5)
        ex = pool.begin_now(b"", has_body=False)
        rid = ex.request_id
        waiter = ex.ready(loop.time() + 5)
        for piece in (b"Content-Type: a/b\r", b"\nX: y\r\n", b"\r", b"\nbody"):
            assert not waiter.done()          # no wake-up for part of a head
            conn.data_received(p.encode_record(p.STDOUT, rid, piece))
        assert waiter.done() and ex.head == b"Content-Type: a/b\r\nX: y\r"   # (its CR: a line end)
        conn.data_received(p.encode_record(p.STDOUT, rid, b" more")
                           + p.encode_end_request(rid))
        assert ex.ended and ex.error is None and ex.read_nowait() == b"body more"
        assert pool.slots.active == 0
        await pool.close()
    asyncio.run(main())


def test_a_head_over_the_limit_or_missing_is_an_error():
    from flashplug_plugins.cgi.response import MAX_HEADER_BLOCK
    async def main():
        loop = asyncio.get_running_loop()
        pool, conn = pool_with_one_connection(loop, timeout=5)
        big, empty, cut = (pool.begin_now(b"", has_body=False) for _ in range(3))
        conn.data_received(p.encode_record(p.STDOUT, big.request_id, b"X: y\r\n")
                           + p.encode_stream(p.STDOUT, big.request_id,
                                             b"x" * MAX_HEADER_BLOCK))
        assert big.head is None and "header block over" in str(big.error)
        conn.data_received(p.encode_end_request(empty.request_id))
        assert empty.head is None and "without output" in empty.head_cause
        conn.data_received(p.encode_record(p.STDOUT, cut.request_id, b"X: y\r\n")
                           + p.encode_end_request(cut.request_id))
        assert cut.head is None and "inside its header block" in cut.head_cause
        await pool.close()
    asyncio.run(main())

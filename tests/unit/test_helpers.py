"""The helper pool: results, errors and callbacks come back on the loop."""
import asyncio
import threading
import time

import pytest

from flashplug.helpers import InlineHelpers, ThreadHelpers, run_sync
from flashplug.stats import Stats


def fail(message):
    raise ValueError(message)


def test_results_and_errors_arrive_on_the_loop():
    async def main():
        loop = asyncio.get_running_loop()
        helpers = ThreadHelpers(loop, size=4, stats=Stats())
        try:
            threads = await asyncio.gather(*(helpers.run(lambda: threading.get_ident())
                                             for _ in range(20)))
            assert threading.get_ident() not in threads
            assert await helpers.run(sum, [1, 2, 3]) == 6
            with pytest.raises(ValueError, match="boom"):
                await helpers.run(fail, "boom")
            assert len(helpers._threads) <= 4            # never more than size
            assert helpers.stats.helper_calls == 22
        finally:
            helpers.close()
    asyncio.run(main())


def test_callbacks_run_on_the_loop_thread_even_when_one_fails():
    async def main():
        loop = asyncio.get_running_loop()
        helpers = ThreadHelpers(loop, size=2)
        seen = []
        done = loop.create_future()

        def bad(result, error):
            raise RuntimeError("a broken callback")

        def good(result, error):
            seen.append((result, type(error), threading.get_ident()))
            if len(seen) == 2:
                done.set_result(None)
        try:
            helpers.call(time.sleep, (0.01,), bad)
            helpers.call(pow, (2, 10), good)
            helpers.call(fail, ("x",), good)
            await asyncio.wait_for(done, 5)
        finally:
            helpers.close()
        me = threading.get_ident()
        assert sorted(seen, key=repr) == sorted([(1024, type(None), me), (None, ValueError, me)],
                                                key=repr)
    asyncio.run(main())


def test_a_cancelled_wait_is_skipped():
    async def main():
        loop = asyncio.get_running_loop()
        helpers = ThreadHelpers(loop, size=1)
        try:
            slow = helpers.run(time.sleep, 0.05)
            slow.cancel()
            assert await helpers.run(len, "abc") == 3    # the pool carries on
        finally:
            helpers.close()
    asyncio.run(main())


def test_threads_start_only_when_needed():
    async def main():
        loop = asyncio.get_running_loop()
        helpers = ThreadHelpers(loop, size=8)
        assert helpers._threads == []
        for _ in range(5):
            await helpers.run(len, "a")
            await asyncio.sleep(0.01)                    # the helper is idle again
        assert len(helpers._threads) == 1                # one at a time: one thread
        helpers.close()
    asyncio.run(main())


def test_inline_helpers_run_in_place():
    helpers = InlineHelpers(Stats())
    got = []
    helpers.call(pow, (3, 2), lambda r, e: got.append((r, e)))
    assert got == [(9, None)]

    async def coro():
        return await helpers.run(len, "abcd")
    assert run_sync(coro()) == 4
    assert helpers.stats.inline_calls == 2

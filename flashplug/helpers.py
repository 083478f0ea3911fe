"""The helper pool: where blocking file-system work runs.

Theory of operation: the Flash paper's helpers are processes that do the
disk work (stat, open, read of cold pages) so the event loop never waits on
the disk.  Ours are threads: every blocking call they make (stat, open,
pread, listdir, fadvise) releases the GIL, so a thread blocked on the disk
costs the loop nothing, and passing results back needs no serialisation.
The loop hands work over with ``await helpers.run(fn, *args)``.

``InlineHelpers`` is the SPED architecture's "pool": it runs the call on the
spot, blocking the caller, and returns an awaitable that is already done.
Because such an awaitable never suspends, a coroutine that only awaits
inline helpers can also be driven to completion without an event loop
(the blocking ``mt`` and ``mp`` architectures rely on that).
"""
import concurrent.futures

# Enough threads to keep a disk's queue deep while the loop carries on
# (nginx's `aio threads` pool has 32 too); an idle helper costs only its
# stack, and a cold file read releases the GIL.
DEFAULT_HELPERS = 32


class ThreadHelpers:
    """Run blocking calls on helper threads; the loop awaits the result."""

    def __init__(self, loop, size=DEFAULT_HELPERS, stats=None):
        self.loop = loop
        self.size = size
        self.stats = stats
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=size, thread_name_prefix="flashplug-helper")

    def run(self, fn, *args):
        if self.stats is not None:
            self.stats.helper_calls += 1
        return self.loop.run_in_executor(self._pool, fn, *args)

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Done:
    """An awaitable whose result is already known: awaiting it never yields."""

    __slots__ = ("value", "error")

    def __init__(self, value=None, error=None):
        self.value = value
        self.error = error

    def __await__(self):
        if self.error is not None:
            raise self.error
        return self.value
        yield  # pragma: no cover - makes this a generator; never reached


class InlineHelpers:
    """SPED and the blocking architectures: do the work now, in the caller."""

    size = 0

    def __init__(self, stats=None):
        self.stats = stats

    def run(self, fn, *args):
        if self.stats is not None:
            self.stats.inline_calls += 1
        try:
            return _Done(fn(*args))
        except BaseException as e:  # delivered to whoever awaits, like a future
            return _Done(error=e)

    def close(self):
        pass


def run_sync(coro):
    """Drive a coroutine that never suspends (it awaits only inline helpers).

    Raises RuntimeError if it does suspend: such a coroutine needs a loop.
    """
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("coroutine suspended; it needs an event loop")

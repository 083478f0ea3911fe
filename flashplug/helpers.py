"""The helper pool: where blocking file-system work runs.

Theory of operation: the Flash paper's helpers are processes that do the
disk work (stat, open, read of cold pages) so the event loop never waits on
the disk.  Ours are threads: every blocking call they make (stat, open,
pread, listdir, fadvise) releases the GIL, so a thread blocked on the disk
costs the loop nothing, and passing results back needs no serialisation.
The loop hands work over with ``await helpers.run(fn, *args)``, or with
``helpers.call(fn, args, callback)`` where no coroutine waits.

The pool is ours rather than ``concurrent.futures``: under a disk-bound load
every request makes a helper trip, and ``run_in_executor`` spends a Python
future, an asyncio future, a lock and a loop wake-up on each.  Here a job is
one tuple on a ``SimpleQueue``; a finished job is appended to a deque, and
the loop is woken once for however many finished while it was busy.

``InlineHelpers`` is the SPED architecture's "pool": it runs the call on the
spot, blocking the caller, and returns an awaitable that is already done.
Because such an awaitable never suspends, a coroutine that only awaits
inline helpers can also be driven to completion without an event loop
(the blocking ``mt`` and ``mp`` architectures rely on that).
"""
import collections
import logging
import os
import queue
import threading

# Enough threads to keep a disk's queue deep while the loop carries on
# (nginx's `aio threads` pool has 32 too); an idle helper costs only its
# stack, and a cold file read releases the GIL.
DEFAULT_HELPERS = 32

log = logging.getLogger("flashplug.helpers")


class ThreadHelpers:
    """Run blocking calls on helper threads; results come back on the loop."""

    def __init__(self, loop, size=DEFAULT_HELPERS, stats=None):
        self.loop = loop
        self.size = size
        self.stats = stats
        self._jobs = queue.SimpleQueue()
        self._finished = collections.deque()
        self._wake_pending = False    # a _deliver call is already scheduled
        self._threads = []
        # One token per thread waiting for a job: deque appends and pops are
        # atomic, where "+= 1" from several threads is not.
        self._idle = collections.deque()
        self._closed = False

    def run(self, fn, *args):
        """Start ``fn(*args)`` on a helper; returns a future for its result."""
        future = self.loop.create_future()
        self._submit((fn, args, future, None))
        return future

    def call(self, fn, args, callback):
        """Start ``fn(*args)``; then ``callback(result, error)`` on the loop."""
        self._submit((fn, args, None, callback))

    def _submit(self, job):
        if self.stats is not None:
            self.stats.helper_calls += 1
        self._jobs.put(job)
        # Threads start as work needs them, up to ``size`` (an idle server
        # keeps none but the ones it once needed).
        if not self._idle and len(self._threads) < self.size and not self._closed:
            t = threading.Thread(target=self._work, daemon=True,
                                 name=f"flashplug-helper-{len(self._threads)}")
            self._threads.append(t)
            t.start()

    def _work(self):
        # SCHED_BATCH: a helper woken by a job does not preempt the loop on
        # its core (CFS and EEVDF skip wake-up preemption for batch tasks);
        # it runs when the loop waits, or at the end of the loop's slice.
        # As SCHED_OTHER, each job's wake-up switched to the helper at once,
        # which then waited for the GIL the loop held, and back.
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except (AttributeError, OSError):
            pass    # not Linux: ordinary threads
        get = self._jobs.get
        finished = self._finished
        while True:
            self._idle.append(None)
            job = get()
            self._idle.pop()
            if job is None or self._closed:
                return
            fn, args, future, callback = job
            try:
                result, error = fn(*args), None
            except BaseException as e:  # noqa: BLE001 - handed to whoever waits
                result, error = None, e
            finished.append((future, callback, result, error))
            if not self._wake_pending:
                self._wake_pending = True
                try:
                    self.loop.call_soon_threadsafe(self._deliver)
                except RuntimeError:  # the loop is closed: we are shutting down
                    return

    def _deliver(self):
        """On the loop: hand every finished job's result to its waiter."""
        # Cleared before draining: a job finishing meanwhile schedules
        # another call rather than being missed.
        self._wake_pending = False
        finished = self._finished
        while finished:
            future, callback, result, error = finished.popleft()
            if callback is not None:
                try:
                    callback(result, error)
                except Exception:  # noqa: BLE001 - the others must still be delivered
                    log.exception("helper callback %r failed", callback)
            elif future.cancelled():
                continue
            elif error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def close(self):
        """Stop taking work; jobs not yet started are dropped."""
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)


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

    def call(self, fn, args, callback):
        if self.stats is not None:
            self.stats.inline_calls += 1
        try:
            result, error = fn(*args), None
        except BaseException as e:  # noqa: BLE001 - handed to the callback
            result, error = None, e
        callback(result, error)

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

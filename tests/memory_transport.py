"""Test-only: an in-memory transport and a loop double to drive connections.

``MemoryTransport`` stands where a socket would: the test pushes the
client's bytes in and reads what the server sent.  ``chunk`` caps how much
one send takes (partial writes); ``window`` is how much more the client
will take before a send would block (None: no limit).  ``ManualLoop``
records the readers and writers a loop driver registers, and ``run`` calls
them while they can make progress, so a test steps the event-loop driver
deterministically.
"""
import collections
import itertools
import socket

_fds = itertools.count(10_000)


class MemoryTransport:
    zero_copy = False
    scheme = "http"
    backlog = 0

    def __init__(self, chunk=None, window=None):
        self.fd = next(_fds)
        self.inbound = collections.deque()
        self.eof = False
        self.timeout_next = False    # the blocking driver's next recv times out
        self.sent = bytearray()
        self.chunk = chunk
        self.window = window
        self.send_calls = 0
        self.shut_write = False
        self.closed = False
        self.reset = False

    # -- the client's side --------------------------------------------------------
    def push(self, data):
        self.inbound.append(bytes(data))

    def open_window(self, n=None):
        self.window = n

    # -- the transport interface ------------------------------------------------
    def fileno(self):
        return self.fd

    def local_address(self):
        return ("127.0.0.1", 8080)

    def recv_into(self, buf):
        data = self._take(len(buf))
        buf[:len(data)] = data
        return len(data)

    def recv(self, size):
        if self.timeout_next and not self.inbound:
            raise socket.timeout("timed out")
        return self._take(size)

    def _take(self, size):
        if self.inbound:
            data = self.inbound.popleft()
            if len(data) > size:
                self.inbound.appendleft(data[size:])
                data = data[:size]
            return data
        if self.eof or self.shut_write and self.closed:
            return b""
        raise BlockingIOError

    def send(self, data, flags=0):
        self.send_calls += 1
        n = len(data)
        if self.chunk is not None:
            n = min(n, self.chunk)
        if self.window is not None:
            n = min(n, self.window)
            if n == 0:
                raise BlockingIOError
            self.window -= n
        self.sent += bytes(data[:n])
        return n

    def sendmsg(self, buffers):
        return self.send(b"".join(bytes(b) for b in buffers))

    def sendall(self, data):
        view = memoryview(bytes(data))
        while view:
            view = view[self.send(view):]

    def settimeout(self, seconds):
        pass

    def flush(self):
        return 0

    def shutdown_write(self):
        self.shut_write = True

    def pending_error(self):
        return 0

    def reset_on_close(self):
        self.reset = True

    def unsent(self):
        return 0

    def unread(self):
        return sum(map(len, self.inbound))

    def close(self):
        self.closed = True


class ManualLoop:
    """The parts of an event loop the loop driver uses, stepped by hand."""

    def __init__(self):
        self.readers = {}
        self.writers = {}

    def add_reader(self, fd, callback):
        self.readers[fd] = callback

    def remove_reader(self, fd):
        self.readers.pop(fd, None)

    def add_writer(self, fd, callback):
        self.writers[fd] = callback

    def remove_writer(self, fd):
        self.writers.pop(fd, None)

    def create_task(self, coro):
        """Run a coroutine that does not suspend (inline helpers) to its end."""
        try:
            coro.send(None)
        except StopIteration:
            return _DoneTask()
        coro.close()
        raise AssertionError("a handler suspended under ManualLoop")

    def call_later(self, delay, callback):
        pass

    def run(self, transport, rounds=100_000):
        """Call ready callbacks until nothing more can happen."""
        for _ in range(rounds):
            progressed = False
            reader = self.readers.get(transport.fd)
            if reader is not None and (transport.inbound or transport.eof):
                reader()
                progressed = True
            writer = self.writers.get(transport.fd)
            if writer is not None and (transport.window is None or transport.window > 0):
                before = len(transport.sent)
                writer()
                progressed = progressed or len(transport.sent) != before
            if not progressed:
                return


class _DoneTask:
    def done(self):
        return True

    def cancel(self):
        pass

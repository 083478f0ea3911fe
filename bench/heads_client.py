"""A fixed list of request heads, sent over keep-alive connections.

Theory of operation: a load generator that runs for a time (wrk) answers
"how many per second", but a count of instructions or system calls per
request needs the same requests, every one of them answered, on every
build.  ``send`` takes a list of whole request heads (bytes), sends them
over ``connections`` keep-alive connections (each takes the next head when
its previous response is read whole), and returns the status counts.  The
heads of workload (r-zipf) are made by ``zipf_plan``: ``traffic.many``'s
1,000 clients over ``docroot``'s Zipf sample, picked with a fixed seed as
wrk's script picks them, so two builds get the same bytes in the same order.

Responses are read by their Content-Length (the static path always sends
one); a 304 or a HEAD would need more and is not sent here.
"""
from __future__ import annotations

import random
import selectors
import socket
import time
from collections import Counter

import traffic

WARM_SHAPES = 2000   # two sights of each of traffic.N_CLIENTS heads: shapes remembered


class _Conn:
    __slots__ = ("sock", "buf", "need")

    def __init__(self, sock):
        self.sock, self.buf, self.need = sock, bytearray(), None


def send(port: int, heads: list[bytes], connections: int, timeout: float = 600.0) -> Counter:
    """Send every head in ``heads`` to 127.0.0.1:``port`` and read its
    response; the status codes and how often each came back."""
    codes: Counter = Counter()
    todo = iter(heads)
    sel = selectors.DefaultSelector()
    live = 0
    deadline = time.monotonic() + timeout

    def next_on(conn):
        head = next(todo, None)
        if head is None:
            sel.unregister(conn.sock)
            conn.sock.close()
            return False
        conn.sock.sendall(head)
        return True

    for _ in range(min(connections, len(heads))):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock)
        sel.register(sock, selectors.EVENT_READ, conn)
        if next_on(conn):
            live += 1
    while live:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(codes.values())} of {len(heads)} answered in {timeout}s")
        for key, _ in sel.select(5):
            conn = key.data
            data = conn.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the server closed a keep-alive connection")
            conn.buf += data
            while True:
                if conn.need is None:
                    end = conn.buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head = bytes(conn.buf[:end]).decode("latin-1")
                    status = head[9:12]
                    length = 0
                    for line in head.split("\r\n")[1:]:
                        name, _, value = line.partition(":")
                        if name.lower() == "content-length":
                            length = int(value)
                    codes[status] += 1
                    conn.need = end + 4 + length
                if len(conn.buf) < conn.need:
                    break
                del conn.buf[:conn.need]
                conn.need = None
                if not next_on(conn):
                    live -= 1
                break
    sel.close()
    return codes


def _join(t: traffic.Template, path: str) -> bytes:
    return (t.before + path + t.after).encode("latin-1")


def zipf_plan(kind: str, port: int, zipf_list, n: int, seed: int = traffic.SEED):
    """``(warm_up, measured)`` heads for ``kind``:

    ``zipf``  the measured requests are r-zipf's mix (a client and a path
              from the Zipf sample, both picked at random); the warm-up
              loads every file they name and shows each client's head
              twice, so all measured requests are cache hits on heads of
              a known shape, as in a long run with the cache warm;
    ``miss``  every measured request names a file not asked for before
              (a first load: open, fstat, read or the open-fd cache, the
              helper hand-off); the warm-up shows the clients' heads on
              other files.
    """
    clients = traffic.many(f"127.0.0.1:{port}")
    rng = random.Random(seed)
    if kind == "zipf":
        sample = zipf_list.read_text().split()
        picks = [(rng.choice(clients), rng.choice(sample)) for _ in range(n)]
        distinct = list(dict.fromkeys(path for _, path in picks))
        warm = [_join(clients[i % len(clients)], p) for i, p in enumerate(distinct)]
        warm += [_join(clients[i % len(clients)], distinct[i % len(distinct)])
                 for i in range(WARM_SHAPES)]
        return warm, [_join(t, p) for t, p in picks]
    if kind == "miss":
        files = sorted(path.name for path in (zipf_list.parent / "root" / "set").iterdir())
        shown, fresh = files[:200], files[200:200 + n]
        if len(fresh) < n:
            raise SystemExit(f"miss: only {len(fresh)} files for {n} requests")
        warm = [_join(clients[i % len(clients)], f"/set/{shown[i % len(shown)]}")
                for i in range(WARM_SHAPES)]
        return warm, [_join(rng.choice(clients), f"/set/{name}") for name in fresh]
    raise ValueError(kind)

"""Request heads parsed before (``flashplug.http.known_requests``) against
the full parse, over many varied requests to a plugin's handler.

A whole head a worker parsed before for a plugin's route is not parsed
again: its Request is made from what the first parse left.  Each request
here goes to two Apps: one as configured, and one that never remembers a
head.  A handler echoes everything of its Request; the bytes sent (but the
Date line) must be the same, repeated heads included, on one connection
and across connections.
"""
import random

import pytest

from flashplug.http.known_requests import KnownRequests, ParsedHead
from flashplug.http.message import Headers, Request
from flashplug.connection import Connection
from tests.memory_transport import MemoryTransport
from tests.unit.test_drivers import DRIVERS, PEER, exchange, make_app, no_date

ECHO = '''
from flashplug import Response, Route, hookimpl


async def echo(request):
    seen = (request.method, request.target, request.raw_path, request.path, request.query,
            request.version, list(request.headers), request.keep_alive, request.conditional,
            request.content_length, request.chunked, request.remote_addr, request.remote_port,
            request.server_addr, request.server_port, request.scheme, request.host,
            request.server._site.name, sorted(request.state), request.complete, request.user)
    # A handler may change its Request: the next one of the same head must
    # not see it.
    request.headers.add("x-touched", "1")
    request.state["touched"] = True
    return Response(200, [("Content-Type", "text/plain")], repr(seen).encode())


@hookimpl
def flashplug_routes():
    return [Route(prefix=PREFIX, handler=echo)]
'''

TARGETS = [b"/app", b"/app/x?q=1", b"/app/%41b", b"/app/../app/y", b"/app/a%2Fb",
           b"http://h:81/app/z?x", b"/app/%ff", b"/app/x#f", b"/app//y/./z", b"/app?",
           b"/a.txt", b"/none", b"*"]
FIELDS = [b"User-Agent: probe/1", b"Cookie: a=1", b"Cookie: a=2", b"Accept: */*",
          b"Connection: keep-alive", b"Connection: close", b"connection: Keep-Alive, x",
          b"If-None-Match: \"a\"", b"Range: bytes=0-1", b"X-Forwarded-For: 10.0.0.1",
          b"X:  spaced  ", b"Accept-Encoding: gzip", b"X-Dup: 1", b"X-Dup: 2"]
# Heads never remembered: a body, an Upgrade, or a broken head.
OTHER = [b"Content-Length: 0", b"Content-Length: 3", b"Transfer-Encoding: chunked",
         b"Expect: 100-continue", b"Upgrade: websocket", b"Host: second", b"Bad Field: y"]
HOSTS = [b"Host: x", b"host: 127.0.0.1:8080", b"Host: [::1]", b"Host: bad host", None]


@pytest.fixture
def docroot(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("hello\n")
    return root


def apps(docroot, tmp_path, prefix):
    """The App as configured, and one that remembers no head."""
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "echo.py").write_text(ECHO.replace("PREFIX", repr(prefix)))
    made = [make_app(docroot, "--plugins-dir", str(plugins), "--plugins", "echo",
                     "--cache-valid", "3600") for _ in range(2)]
    made[1].known_requests = Forgetful()
    return made


class Forgetful(KnownRequests):
    __slots__ = ()

    def remember(self, head, parsed):
        pass


def random_message(rng):
    method = rng.choice([b"GET"] * 5 + [b"HEAD", b"POST", b"DELETE", b"OPTIONS"])
    version = rng.choice([b"HTTP/1.1"] * 5 + [b"HTTP/1.0"])
    fields = rng.sample(FIELDS, rng.randint(0, 4))
    host = rng.choice(HOSTS)
    if host is not None:
        fields.insert(rng.randint(0, len(fields)), host)
    body = b""
    if rng.random() < 0.2:
        other = rng.choice(OTHER)
        fields.append(other)
        body = {b"Content-Length: 3": b"abc",
                b"Transfer-Encoding: chunked": b"3\r\nabc\r\n0\r\n\r\n"}.get(other, b"")
    line = b" ".join((method, rng.choice(TARGETS), version))
    return b"\r\n".join([line] + fields) + b"\r\n\r\n" + body


def same_answers(fast, full, driver, data, pieces=1):
    got = exchange(fast, driver, data, pieces=pieces)[0]
    want = exchange(full, driver, data, pieces=pieces)[0]
    assert no_date(got) == no_date(want), data
    assert b"HTTP/1.1 500" not in got     # no handler failed
    return got


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("prefix", ["/app", "/"])
def test_a_known_head_gives_the_request_its_parse_gives(docroot, tmp_path, driver, prefix):
    fast, full = apps(docroot, tmp_path, prefix)
    rng = random.Random(16)
    messages = [random_message(rng) for _ in range(150)]
    for message in messages:
        # Three times on one connection, each its own piece as a client
        # waiting for each answer sends it, then all in one piece.
        same_answers(fast, full, driver, message * 3, pieces=3)
        same_answers(fast, full, driver, message * 3)
    # And again on new connections: heads remembered on others.
    for message in messages:
        same_answers(fast, full, driver, message)
    assert len(fast.known_requests.heads.data) > 20
    assert not full.known_requests.heads


@pytest.mark.parametrize("driver", DRIVERS)
def test_only_a_plain_message_answered_by_a_handler_is_remembered(docroot, tmp_path, driver):
    fast, _ = apps(docroot, tmp_path, "/app")
    plain = b"GET /app/x HTTP/1.1\r\nHost: x\r\n\r\n"
    others = [b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",                  # static
              b"GET /app/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
              b"GET /app/x HTTP/1.0\r\nHost: x\r\n\r\n",                   # not kept alive
              b"POST /app/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
              b"GET /app/x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: upgrade\r\n\r\n",
              b"GET /app/%2e%2e/%2e%2e/x HTTP/1.1\r\nHost: x\r\n\r\n"]
    for head in [plain] + others:
        for _ in range(3):
            exchange(fast, driver, head)
    assert list(fast.known_requests.heads.data) == [plain]


@pytest.mark.parametrize("driver", DRIVERS)
def test_pipelined_heads_in_one_read(docroot, tmp_path, driver):
    # The second waits behind the first (the pending queue), and is
    # answered the same whether its head was remembered or not.
    fast, full = apps(docroot, tmp_path, "/app")
    data = b"GET /app/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /app/2 HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(3):
        same_answers(fast, full, driver, data)
    assert set(fast.known_requests.heads.data) <= {b"GET /app/1 HTTP/1.1\r\nHost: x\r\n\r\n",
                                               b"GET /app/2 HTTP/1.1\r\nHost: x\r\n\r\n"}


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("last", [b"GET /app/0 HTTP/1.0\r\nHost: x\r\n\r\n",
                                  b"GET /app/0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
def test_no_head_is_replayed_after_a_connections_last_message(docroot, tmp_path, driver, last):
    # llhttp refuses what comes after a message that closes the connection;
    # a known head in the same read is refused too, not answered.
    fast, full = apps(docroot, tmp_path, "/app")
    known = b"GET /app/1 HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(3):
        same_answers(fast, full, driver, known)
    assert known in fast.known_requests.heads.data
    same_answers(fast, full, driver, last + known)


def test_a_known_head_after_a_last_message_in_flight_is_refused(docroot, tmp_path):
    # On the loop, the first request is still being answered (its task has
    # not run) when the next head is parsed: llhttp refuses bytes after a
    # message that closes the connection, and a known head is no exception.
    fast, _ = apps(docroot, tmp_path, "/app")
    known = b"GET /app/1 HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(3):
        exchange(fast, "loop", known)
    assert known in fast.known_requests.heads.data
    held = []
    fast.loop.create_task = lambda coro: held.append(coro) or DoneTask()
    t = MemoryTransport()
    conn = Connection(fast, t, PEER)
    conn.feed(b"GET /app/0 HTTP/1.0\r\nHost: x\r\n\r\n" + known, 0.0)
    assert conn.active.target == "/app/0"
    assert [type(item).__name__ for item in conn.pending] == ["ErrorItem"]
    for coro in held:
        coro.close()


class DoneTask:
    def done(self):
        return True

    def cancel(self):
        pass


def test_heads_are_remembered_on_their_second_sight_and_bounded():
    known = KnownRequests(limit=2)
    assert not known.seen_before(b"a")
    assert known.seen_before(b"a")
    known.refuse(b"s")
    assert not known.seen_before(b"s") and not known.seen_before(b"s")
    for head in (b"a", b"b", b"c"):
        known.remember(head, head)
    assert list(known.heads.data) == [b"c"]      # full at two: forgotten at once
    assert known.get(b"c") == b"c" and known.get(b"a") is None


def test_a_parsed_head_makes_a_new_request_each_time():
    headers = Headers([("Host", "x"), ("Cookie", "a=1")])
    first = Request("GET", "/p?q", "/p", "/p", "q", "1.1", headers)
    first.conditional = False
    parsed = ParsedHead(first)
    one, two = parsed.request(), parsed.request()
    one.headers.add("x", "y")
    one.state["k"] = 1
    assert list(two.headers) == [("host", "x"), ("cookie", "a=1")]
    assert two.state == {} and two.user is None and not two.complete
    assert (two.method, two.target, two.path, two.query, two.conditional) == \
        ("GET", "/p?q", "/p", "q", False)


@pytest.mark.parametrize("prefix", ["/app", "/"])
def test_a_known_head_read_whole_between_requests_skips_the_parser(docroot, tmp_path, prefix,
                                                                   monkeypatch):
    """On the loop, a whole head read on its own is replayed from the read
    (``_replay_whole``), with or without a quickest path for static files
    ("/" claims every path); the answer is the parse's."""
    fast, full = apps(docroot, tmp_path, prefix)
    known = b"GET /app/1 HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(2):
        same_answers(fast, full, "loop", known)
    assert known in fast.known_requests.heads.data
    fed = []
    real = Connection.feed
    monkeypatch.setattr(Connection, "feed", lambda self, data, now: fed.append(self.app) or
                        real(self, data, now))
    same_answers(fast, full, "loop", known)
    assert full in fed and fast not in fed

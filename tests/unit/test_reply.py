"""A handler's answer given later from a callback (``flashplug.reply``).

A route handler with ``start_reply`` is started without a task and answers
through its ``Reply`` from any callback; what it answers is checked and
framed as a coroutine's return value is.  Driven in memory: the
handler's ``start_reply`` keeps its Reply, the test answers through it
between turns of the loop.
"""
import sys

from flashplug import HTTPError, Response
from flashplug.connection import Connection
from tests.memory_transport import MemoryTransport
from tests.unit.test_drivers import PEER, docroot, make_app, responses  # noqa: F401 (a fixture)

LATER = '''
from flashplug import Response, Route, hookimpl

REPLIES = []      # (request, reply) in the order they were started
CANCELLED = []
DECLINE = set()   # paths start_reply leaves to the coroutine


async def handler(request):
    return Response(200, [("Content-Type", "text/plain")], b"coroutine")


def start_reply(request, reply):
    if request.path in DECLINE:
        return False
    if request.path == "/raise":
        raise RuntimeError("broken start")
    reply.on_cancel = lambda: CANCELLED.append(request.path)
    REPLIES.append((request, reply))
    return True


handler.start_reply = start_reply


@hookimpl
def flashplug_routes():
    return [Route(prefix="/later", handler=handler), Route(path="/raise", handler=handler)]
'''


def setup(docroot, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "later.py").write_text(LATER)
    app = make_app(docroot, "--plugins-dir", str(plugins), "--plugins", "later")
    return app, sys.modules["flashplug_local_plugins.later"]


def send(app, data, transport=None):
    """``data`` on a connection (kept open); the transport."""
    t = transport or MemoryTransport()
    t.push(data)
    if transport is None:
        Connection(app, t, PEER)
    app.loop.run(t)
    return t


def get(path, more=b""):
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + more + b"\r\n"


def test_the_answer_goes_out_when_the_reply_is_sent(docroot, tmp_path):
    app, later = setup(docroot, tmp_path)
    t = send(app, get("/later/a"))
    assert t.sent == b"" and len(later.REPLIES) == 1      # started, not answered
    _, reply = later.REPLIES[0]
    reply.send(Response(201, [("X-From", "reply")], b"later"))
    app.loop.run(t)
    [(status, headers, body)] = responses(bytes(t.sent))
    assert (status, headers["x-from"], body) == (201, "reply", b"later")
    assert app.stats.requests == 1 and not t.closed


def test_pipelined_requests_wait_their_turn(docroot, tmp_path):
    app, later = setup(docroot, tmp_path)
    t = send(app, get("/later/1") + get("/later/2"))
    assert len(later.REPLIES) == 1                     # the second is not started yet
    later.REPLIES[0][1].send(Response(200, [], b"one"))
    app.loop.run(t)
    assert len(later.REPLIES) == 2
    later.REPLIES[1][1].send(Response(200, [], b"two"))
    app.loop.run(t)
    assert [r[2] for r in responses(bytes(t.sent))] == [b"one", b"two"]


def test_a_reply_is_checked_like_a_return_value(docroot, tmp_path, caplog):
    app, later = setup(docroot, tmp_path)
    t = send(app, get("/later/bad"))
    later.REPLIES[0][1].send(Response(200, [("X-Evil", "a\r\nSet-Cookie: x=1")], b"no"))
    app.loop.run(t)
    out = bytes(t.sent)
    [(status, _, _)] = responses(out)
    assert status == 500 and b"Set-Cookie" not in out and b"no" not in out.split(b"\r\n\r\n")[1]
    assert "plugin 'later' gave an invalid response" in caplog.text


def test_fail_answers_as_a_raised_error(docroot, tmp_path):
    app, later = setup(docroot, tmp_path)
    t = send(app, get("/later/slow"))
    later.REPLIES[0][1].fail(HTTPError(504, "Gateway Timeout"))
    app.loop.run(t)
    [(status, _, _)] = responses(bytes(t.sent))
    assert status == 504


def test_follow_runs_a_coroutine_for_the_answer(docroot, tmp_path):
    app, later = setup(docroot, tmp_path)
    t = send(app, get("/later/retry"))

    async def again():
        return Response(200, [], b"again")
    later.REPLIES[0][1].follow(again())
    app.loop.run(t)
    assert responses(bytes(t.sent))[0][2] == b"again"


def test_declined_requests_and_failing_starts_take_the_usual_way(docroot, tmp_path, caplog):
    app, later = setup(docroot, tmp_path)
    later.DECLINE.add("/later/own")
    t = send(app, get("/later/own") + get("/raise"))
    got = responses(bytes(t.sent))
    assert got[0][2] == b"coroutine"
    assert got[1][0] == 500 and "RuntimeError: broken start" in caplog.text


def test_a_client_that_leaves_cancels_and_a_late_answer_is_dropped(docroot, tmp_path):
    app, later = setup(docroot, tmp_path)
    t = send(app, get("/later/gone"))
    conn = later.REPLIES[0][0]   # (the request; its connection is the loop's only one)
    [connection] = app.connections
    connection.abort()
    assert later.CANCELLED == ["/later/gone"]
    later.REPLIES[0][1].send(Response(200, [], b"too late"))
    app.loop.run(t)
    assert t.sent == b"" and app.stats.requests == 0
    assert conn.path == "/later/gone"


def test_a_reply_is_answered_once(docroot, tmp_path):
    app, later = setup(docroot, tmp_path)
    t = send(app, get("/later/twice"))
    reply = later.REPLIES[0][1]
    reply.send(Response(200, [], b"first"))
    reply.send(Response(200, [], b"second"))
    app.loop.run(t)
    [(_, _, body)] = responses(bytes(t.sent))
    assert body == b"first" and reply.done()

"""``framing.send_now`` (a handler's whole-body answer framed without a
coroutine) against ``send_response``: the same bytes and the same
connection flags, over many responses; and what it leaves to
``send_response``."""
import itertools

import pytest

from flashplug.framing import send_now, send_response, status_line
from flashplug.http.message import Headers, Request, Response
from tests.unit.test_drivers import make_app


class Conn:
    """What framing needs of a connection: writes collected."""

    def __init__(self, app):
        self.app = app
        self.closing = self.last_asked = self.head_sent = False
        self.active = self.continue_for = None
        self.upgrade_rest = None
        self.sent = []

    def write(self, data, more=0):
        self.sent.append(bytes(data))

    def flags(self):
        return self.closing, self.last_asked, self.head_sent


def run(coro):
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("send_response waited")


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path)


def request(app, method, version, keep):
    req = Request(method, "/x", "/x", "/x", "", version, Headers([("host", "x")]))
    req.keep_alive = keep
    req.server = app.default_site.facade
    return req


FIELDS = [[], [("Content-Type", "text/plain")], [("Content-Length", "3")],
          [("Connection", "keep-alive"), ("X-A", "1"), ("Server", "theirs")],
          [("Transfer-Encoding", "chunked"), ("Content-Type", "a/b")]]


@pytest.mark.parametrize("status,reason", [(200, None), (200, "OK"), (200, "Fine"), (201, None),
                                           (204, None), (205, None), (304, None), (404, None)])
def test_the_same_bytes_as_send_response(app, status, reason):
    for method, version, keep, fields, body in itertools.product(
            ("GET", "HEAD"), ("1.1", "1.0"), (True, False), FIELDS,
            (b"", b"abc", bytearray(b"abc"))):
        got, want = Conn(app), Conn(app)
        sent = send_now(got, request(app, method, version, keep),
                        Response(status, list(fields), body, reason=reason))
        response, expected = run(send_response(want, request(app, method, version, keep),
                                               Response(status, list(fields), body,
                                                        reason=reason)))
        assert (b"".join(got.sent), sent, got.flags()) == \
            (b"".join(want.sent), expected, want.flags())


def test_a_stream_an_upgrade_or_a_hook_is_left_to_send_response(app):
    async def chunks():
        yield b"x"

    async def upgrade(tunnel):
        pass
    for response in (Response(200, stream=chunks()), Response(101, upgrade=upgrade)):
        conn = Conn(app)
        assert send_now(conn, request(app, "GET", "1.1", True), response) is None
        assert conn.sent == [] and not conn.head_sent
    app.default_site.response_headers_hook = lambda request, response: None
    conn = Conn(app)
    assert send_now(conn, request(app, "GET", "1.1", True), Response(200, [], b"x")) is None
    assert conn.sent == []


def test_a_standard_reason_takes_the_prebuilt_status_line():
    assert status_line(200, "OK") is status_line(200)
    assert status_line(200, "Fine") == b"HTTP/1.1 200 Fine\r\n"

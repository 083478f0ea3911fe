"""Request.send_interim: a 1xx head, checked, for the active request only."""
import pytest

from flashplug.cycle import RequestCycle
from flashplug.http.message import Headers, Request
from flashplug.http.validate import ResponseMistake


class Cycle(RequestCycle):
    def __init__(self):
        self.active = None
        self.head_sent = self.closed = False
        self.written = []

    def write(self, data, more=0):
        self.written.append(data)


def request(version="1.1"):
    cycle = Cycle()
    r = Request("GET", "/", "/", "/", "", version, Headers([("host", "t")]))
    cycle.active = r
    r._cycle = cycle
    return r, cycle


def test_a_103_is_one_head_with_its_fields():
    r, cycle = request()
    assert r.send_interim(103, [("Link", "</a.css>; rel=preload")])
    assert cycle.written == [b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"]


@pytest.mark.parametrize("version, state", [("1.0", {}), ("1.1", {"head_sent": True}),
                                            ("1.1", {"closed": True}), ("1.1", {"active": None})])
def test_not_sent_when_it_cannot_be(version, state):
    r, cycle = request(version)
    for name, value in state.items():
        setattr(cycle, name, value)
    assert not r.send_interim(103, [("Link", "</a>")])
    assert cycle.written == []


@pytest.mark.parametrize("status, headers", [
    (100, []), (101, []), (200, []), ("103", []),
    (103, [("Link", "</a>\r\nX: y")]), (103, [("Content-Length", "0")]),
    (103, [("connection", "close")]), (103, {"Link": "</a>"}),
])
def test_mistakes_are_refused(status, headers):
    r, cycle = request()
    with pytest.raises(ResponseMistake):
        r.send_interim(status, headers)
    assert cycle.written == []


def test_a_request_no_connection_parsed_sends_nothing():
    r = Request("GET", "/", "/", "/", "", "1.1", Headers([]))
    assert not r.send_interim(103, [("Link", "</a>")])

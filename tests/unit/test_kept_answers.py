"""The whole answer a small cached file keeps for one second
(``flashplug.framing._whole_answer``): the bytes are those a join would
make, with the current Date line and the entry's current header lines."""
import time

import pytest

from flashplug import framing
from tests.unit.test_drivers import DRIVERS, exchange, make_app, responses

GET_A = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
GET_B = b"GET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def docroot(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("hello\n")
    (root / "b.txt").write_text("other\n")
    return root


def answers(app, data, driver="loop"):
    return responses(exchange(app, driver, data)[0])


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_kept_answer_takes_the_new_date_line(docroot, driver, monkeypatch):
    app = make_app(docroot, "--cache-valid", "3600")
    first = answers(app, GET_A * 3, driver)
    assert [body for _, _, body in first] == [b"hello\n"] * 3
    entry = app.static.cache.get("/a.txt")
    assert entry.answer is not None and app.kept_answers == [entry]
    monkeypatch.setattr(time, "time", lambda: 86400.0)
    app._update_date()          # (App.tick, once a second)
    assert entry.answer is None and app.kept_answers == []
    [(status, headers, body)] = answers(app, GET_A, driver)
    assert (status, body) == (200, b"hello\n")
    assert headers["date"] == "Fri, 02 Jan 1970 00:00:00 GMT"


def test_new_header_lines_drop_the_kept_answer(docroot):
    app = make_app(docroot, "--cache-valid", "3600")
    answers(app, GET_A * 2)
    entry = app.static.cache.get("/a.txt")
    assert entry.answer is not None
    entry.set_rule_fields([("X-Rule", "1")], None)    # (an Expires refreshed by trust)
    [(_, headers, _)] = answers(app, GET_A)
    assert headers["x-rule"] == "1"


def test_answers_that_close_or_name_keep_alive_are_not_kept(docroot):
    app = make_app(docroot, "--cache-valid", "3600")
    answers(app, GET_A)       # cached
    for data, line in ((b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "keep-alive"),
                       (b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "close")):
        for _ in range(2):
            [(status, headers, body)] = answers(app, data)
            assert (status, headers["connection"], body) == (200, line, b"hello\n")
    [(_, headers, _)] = answers(app, GET_A)
    assert "connection" not in headers


def test_at_most_kept_answers_entries_keep_one(docroot, monkeypatch):
    monkeypatch.setattr(framing, "KEPT_ANSWERS", 1)
    app = make_app(docroot, "--cache-valid", "3600")
    out = answers(app, (GET_A + GET_B) * 3)
    assert [body for _, _, body in out] == [b"hello\n", b"other\n"] * 3
    assert len(app.kept_answers) == 1
    assert app.static.cache.get("/b.txt").answer is None

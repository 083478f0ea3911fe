"""Lists of response fields found valid are remembered
(``validate.FieldBlock``): the next equal list is not checked field by
field, and the framing writes its lines as they were written once.  The
bytes on the wire are those of a list never seen; a list that differs in
anything is checked whole."""
import itertools

import pytest

from flashplug.framing import send_now, send_response
from flashplug.http import validate
from flashplug.http.message import CheckedFields, Response
from flashplug.http.validate import ResponseMistake, check_headers, check_response, known_block
from flashplug.rules import Rules
from tests.unit.test_send_now import Conn, request, run

FIELDS = [[("Content-Type", "text/plain")], [("Content-Length", "3")],
          [("Connection", "keep-alive"), ("X-A", "1"), ("Server", "theirs"), ("date", "x")],
          [("content-length", "3"), ("Content-Type", "a/b"), ("Set-Cookie", "a=1"),
           ("Set-Cookie", "b=2")],
          [("X-Latin", "caf\xe9"), ("Keep-Alive", "timeout=5"), ("X-Tab", "a\tb")]]


@pytest.fixture(autouse=True)
def fresh_blocks():
    validate._BLOCKS.clear()
    yield
    validate._BLOCKS.clear()


def frame(app, status, method, version, keep, fields, body, checked=False):
    conn = Conn(app)
    response = Response(status, fields, body)
    if checked:
        response = check_response(response)
    sent = send_now(conn, request(app, method, version, keep), response)
    return b"".join(conn.sent), sent, conn.flags()


@pytest.fixture
def app(tmp_path):
    from tests.unit.test_drivers import make_app
    return make_app(tmp_path)


@pytest.mark.parametrize("status", [200, 204, 205, 304, 404])
def test_a_known_list_frames_as_an_unknown_one(app, status):
    for method, version, keep, fields, body in itertools.product(
            ("GET", "HEAD"), ("1.1", "1.0"), (True, False), FIELDS, (b"", b"abc")):
        validate._BLOCKS.clear()
        unknown = frame(app, status, method, version, keep, list(fields), body)
        check_headers(list(fields))
        assert known_block(list(fields)) is not None
        assert frame(app, status, method, version, keep, list(fields), body) == unknown
        assert frame(app, status, method, version, keep, list(fields), body,
                     checked=True) == unknown


def test_checked_fields_are_remembered_too():
    fields = [("Content-Type", "text/html"), ("Content-Length", "2")]
    assert known_block(fields) is None
    check_response(Response(200, CheckedFields(fields), b"hi"))
    block = known_block(list(fields))
    assert block.lengths == ["2"] and block.has_length
    assert block.lines == b"Content-Type: text/html\r\nContent-Length: 2\r\n"


@pytest.mark.parametrize("fields,match", [
    ([("Content-Type", "text/plain\r\nX-Evil: 1")], "CR"),
    ([("Content-Type", "text/plain"), ("Bad Name", "x")], "not a token"),
    ([("Content-Type", b"text/plain")], "must be str"),
    ([("Content-Type", "text/plain"), ["X", "y"]], "not a \\(name, value\\) tuple"),
    ([("Content-Type", "text/plain"), ("X", ["unhashable"])], "must be str"),
])
def test_a_list_that_differs_is_checked_whole(fields, match):
    check_headers([("Content-Type", "text/plain")])
    with pytest.raises(ResponseMistake, match=match):
        check_headers(fields)
    with pytest.raises(ResponseMistake, match=match):
        check_headers(fields)   # (and not remembered either)


def test_content_length_is_weighed_against_each_body():
    fields = [("Content-Length", "3")]
    check_response(Response(200, list(fields), b"abc"))
    with pytest.raises(ResponseMistake, match="body has 2 bytes"):
        check_response(Response(200, list(fields), b"ab"))
    two = [("Content-Length", "3"), ("Content-Length", "3")]
    for _ in range(2):
        with pytest.raises(ResponseMistake, match="2 Content-Length headers"):
            check_response(Response(200, list(two), b"abc"))


def test_the_memo_is_bounded():
    for n in range(validate._BLOCKS_MAX * 2 + 5):
        check_headers([("X-N", str(n))])
    assert len(validate._BLOCKS) <= validate._BLOCKS_MAX
    long = [("Set-Cookie", "a" * validate._BLOCK_BYTES_MAX)]
    check_headers(long)
    assert known_block(long) is None


def test_what_a_checked_fields_says_does_not_pass_a_plain_list():
    """A CheckedFields is taken at its word (its gateway checked each
    field), but an equal plain list from another plugin is still checked."""
    broken = [("X-A", "1\r\nX-Evil: 1")]          # a promise broken
    check_response(Response(200, CheckedFields(broken), b""))
    assert known_block(list(broken)) is not None
    with pytest.raises(ResponseMistake, match="CR"):
        check_headers(list(broken))
    good = [("X-A", "1")]
    check_response(Response(200, CheckedFields(good), b""))
    assert not known_block(good).verified
    check_headers(list(good))
    assert known_block(good).verified


def test_a_checked_fields_that_cannot_be_a_key_or_encoded_still_goes():
    for fields in ([["X-A", "1"]], [("X-A", "caf\u20ac")]):
        response = check_response(Response(200, CheckedFields(fields), b""))
        assert response.headers == fields and known_block(fields) is None


class CountingBlocks(dict):
    """``validate._BLOCKS``' dict, counting its lookups."""

    lookups = 0

    def get(self, key, default=None):
        self.lookups += 1
        return super().get(key, default)


def test_a_response_looks_its_fields_up_once(app, monkeypatch):
    """The check finds a list's FieldBlock; the framing writes the lines
    the check found, without a lookup of its own."""
    blocks = CountingBlocks()
    monkeypatch.setattr(validate._BLOCKS, "data", blocks)
    fields = [("Content-Type", "text/plain"), ("X-A", "1")]
    for n in range(3):
        conn = Conn(app)
        send_now(conn, request(app, "GET", "1.1", True),
                 check_response(Response(200, list(fields), b"abc")))
        assert b"\r\nX-A: 1\r\n" in b"".join(conn.sent)
        assert blocks.lookups == n + 1


def wire(app, response, hook=None):
    """What ``send_response`` writes for a checked ``response``."""
    conn = Conn(app)
    if hook is not None:
        app.default_site.response_headers_hook = app._checking_headers(hook)
    run(send_response(conn, request(app, "GET", "1.1", True), check_response(response)))
    return b"".join(conn.sent)


def test_fields_the_rules_add_after_the_check_are_sent(app):
    app.default_site.rules = Rules((("X-Frame-Options", "DENY"),), (), (), None, False)
    for _ in range(2):      # the list unknown, then known
        sent = wire(app, Response(200, [("Content-Type", "text/plain")], b"abc"))
        assert b"\r\nX-Frame-Options: DENY\r\n" in sent
        assert b"\r\nContent-Type: text/plain\r\n" in sent


def test_fields_a_hook_adds_after_the_check_are_sent(app):
    def hook(request, response):
        response.headers.append(("X-Hook", "1"))
    for _ in range(2):
        sent = wire(app, Response(200, [("Content-Type", "text/plain")], b"abc"), hook)
        assert b"\r\nX-Hook: 1\r\n" in sent


def test_fields_added_to_a_plugins_error_page_are_sent(app):
    """``error_response`` adds the kernel's fields (an Allow) to the page
    a plugin's ``flashplug_error_page`` gave, after its check."""
    page = [("Content-Type", "text/plain")]
    app.default_site.error_page_hook = lambda request, status, message: \
        Response(status, list(page), b"no")
    app.implementers = lambda name: "plugin 'pages'"
    for _ in range(2):
        response = app.error_response(None, 405, "Method Not Allowed", [("Allow", "GET")])
        conn = Conn(app)
        run(send_response(conn, None, response, method="POST"))
        assert b"\r\nAllow: GET\r\n" in b"".join(conn.sent)

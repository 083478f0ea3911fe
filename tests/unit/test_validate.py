"""flashplug.http.validate: what a plugin's response must be before the wire."""
import asyncio
import functools
import re

import pytest

from flashplug import Response
from flashplug.http.validate import (ResponseMistake, check_headers, check_response,
                                     field_error, is_async_handler)


@pytest.mark.parametrize("name,value", [
    ("Content-Type", "text/plain"),
    ("X-Weird_but.ok!~", ""),                    # every tchar; an empty value is allowed
    ("X-Tab", "a\tb"),                           # HTAB is field content
    ("X-Latin", "caf\xe9"),                      # obs-text: one octet on the wire
    ("X-Space", " padded "),                     # OWS around the value
])
def test_good_fields(name, value):
    assert field_error(name, value) is None


@pytest.mark.parametrize("name,value,match", [
    ("X-A", "a\r\nSet-Cookie: evil=1", r"control character \(CR"),   # response splitting
    ("X-A", "a\nb", r"control character \(LF"),
    ("X-A", "a\x00b", r"control character \(NUL"),
    ("X-A", "a\x1bb", r"U\+001B"),
    ("X-A", "a\x7f", r"DEL"),
    ("X-A", "\u20ac", r"U\+20AC, which is no ISO-8859-1 octet"),
    ("X A", "b", "not a token"),
    ("", "b", "not a token"),
    ("X:A", "b", "not a token"),
    ("X-\xe9", "b", "not a token"),
    ("X-A\r\n", "b", "not a token"),
    ("X-A", 5, "must be str"),
    (b"X-A", "b", "must be str"),
])
def test_bad_fields(name, value, match):
    problem = field_error(name, value)
    assert problem is not None
    assert re.search(match, problem), problem


def test_good_response_passes():
    r = Response(201, [("Content-Type", "text/plain")], b"ok", reason="Made")
    assert check_response(r) is r
    assert check_response(Response(204)).body == b""
    assert check_response(Response(200, [], bytearray(b"x"))).body == bytearray(b"x")


def test_content_length_that_fits():
    check_response(Response(200, [("Content-Length", "2")], b"ok"))
    check_response(Response(200, [("Content-Length", "10")], b""))     # HEAD, RFC 9110 §8.6

    async def chunks():
        yield b"ok"

    check_response(Response(200, [("Content-Length", "2")], stream=chunks()))


def test_memoryview_body_becomes_bytes():
    r = check_response(Response(200, [], memoryview(b"abc")))
    assert type(r.body) is bytes and r.body == b"abc"


@pytest.mark.parametrize("response,match", [
    ("not a response", "not a flashplug.Response"),
    (None, "not a flashplug.Response"),
    (Response(200, [], "text"), r"body is a str, not bytes \(encode it"),
    (Response(200, [], None), "body is a NoneType"),
    (Response(200, {"Content-Type": "text/plain"}, b""), r"headers is a dict.*list\(d.items\(\)\)"),
    (Response(200, [["A", "b"]], b""), "not a \\(name, value\\) tuple"),
    (Response(200, [("A", "b", "c")], b""), "not a \\(name, value\\) tuple"),
    (Response(200, [("X", "a\r\nb")], b""), "control character"),
    (Response("200", [], b""), "status '200' is not an int"),
    (Response(True, [], b""), "status True"),
    (Response(100, [], b""), "status 100"),
    (Response(600, [], b""), "status 600"),
    (Response(200, [], b"", reason="OK\r\nX: y"), "reason"),
    (Response(200, [], b"", reason=5), "reason"),
    (Response(200, [], stream=[b"a"]), "stream is a list, not an async iterable"),
    (Response(200, [], b"x", stream=object()), "not an async iterable"),
    (Response(200, raw=True), "raw=True needs"),
    (Response(200, [("Content-Length", "3")], b"x"), "Content-Length 3 but the body has 1"),
    (Response(200, [("content-length", "1"), ("Content-Length", "1")], b"x"),
     "2 Content-Length headers"),
    (Response(200, [("Content-Length", "-1")], b""), "Content-Length '-1' is not a number"),
    (Response(200, [("Content-Length", "\xb2")], b""), "is not a number"),  # a digit to isdigit()
])
def test_bad_responses(response, match):
    with pytest.raises(ResponseMistake, match=match):
        check_response(response, "plugin 'p'")


def test_headers_a_hook_left():
    check_headers([("A", "b")])
    with pytest.raises(ResponseMistake, match="tuple"):
        check_headers(["A"])
    with pytest.raises(ResponseMistake, match="headers is a tuple"):
        check_headers((("A", "b"),))


def test_stream_chunks_are_checked_as_they_come():
    closed = []

    async def chunks():
        try:
            yield b"ok"
            yield memoryview(b"mv")
            yield "oops"
            yield b"never"
        finally:
            closed.append(True)

    r = check_response(Response(200, [], stream=chunks()), "plugin 'p'")
    got = []

    async def send():       # what the kernel's write path does
        try:
            async for chunk in r.stream:
                got.append(chunk)
        finally:
            await r.stream.aclose()

    with pytest.raises(ResponseMistake, match=r"plugin 'p' streamed a str after 4 bytes"):
        asyncio.run(send())
    assert got == [b"ok", b"mv"] and type(got[1]) is bytes
    assert closed == [True]          # the plugin's generator was closed


class _Stream:
    """Like the cgi plugin's body: an iterator class whose aclose() matters."""

    def __init__(self):
        self.closed = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        return b"a"

    async def aclose(self):
        self.closed = True


def test_closing_before_the_first_chunk_closes_the_plugin_stream():
    """HEAD, or a client gone before the body: the kernel closes the stream
    without reading it, and the plugin must hear of it (a CGI process)."""
    stream = _Stream()
    r = check_response(Response(200, [], stream=stream))
    asyncio.run(r.stream.aclose())
    assert stream.closed


def test_closing_mid_stream_closes_the_plugin_stream():
    stream = _Stream()
    r = check_response(Response(200, [], stream=stream))

    async def run():
        first = await r.stream.__anext__()
        await r.stream.aclose()
        return first

    assert asyncio.run(run()) == b"a"
    assert stream.closed


class _AsyncCallable:
    async def __call__(self, request):
        return Response()


async def _handler(request, extra=None):
    return Response()


def _plain(request):
    return Response()


def test_is_async_handler():
    assert is_async_handler(_handler)
    assert is_async_handler(functools.partial(_handler, extra=1))
    assert is_async_handler(_AsyncCallable())
    assert is_async_handler(_AsyncCallable().__call__)
    assert not is_async_handler(_plain)
    assert not is_async_handler(lambda request: _handler(request))
    assert not is_async_handler(None)


def test_a_file_body_from_the_kernel_passes():
    """A plugin that re-dispatches to a static file (CGI local redirect)
    returns the kernel's FileBody."""
    from flashplug.static import FileBody

    class Entry:
        pass

    body = FileBody(Entry(), [(0, 10)])
    assert check_response(Response(200, [], body)).body is body


def test_status_101_needs_an_upgrade_function_and_the_reverse():
    async def pipe(tunnel):
        pass
    assert check_response(Response(101, [("Upgrade", "websocket")], upgrade=pipe)).status == 101
    with pytest.raises(ResponseMistake, match="status 101 is not an int from 200 to 599"):
        check_response(Response(101, []))
    with pytest.raises(ResponseMistake, match="upgrade needs status 101"):
        check_response(Response(200, [], upgrade=pipe))
    with pytest.raises(ResponseMistake, match="upgrade needs status 101"):
        check_response(Response(101, [], upgrade=lambda tunnel: None))


# -- CheckedFields: fields a gateway checked as it read them -----------------------------

def test_checked_fields_are_kept_and_not_checked_again():
    from flashplug.http.validate import CheckedFields
    fields = CheckedFields([("X-A", "1")])
    response = Response(200, fields, b"ok")
    assert response.headers is fields            # kept as given, still marked
    check_headers_calls = []
    import flashplug.http.validate as validate
    real = validate.check_fields
    validate.check_fields = lambda h: check_headers_calls.append(h) or real(h)
    try:
        check_response(response)
        check_response(Response(200, [("X-A", "1")], b"ok"))
    finally:
        validate.check_fields = real
    assert len(check_headers_calls) == 1         # the plain list only


ADDS = [
    lambda f, field: f.append(field),
    lambda f, field: f.extend([field]),
    lambda f, field: f.insert(0, field),
    lambda f, field: f.__iadd__([field]),
    lambda f, field: f.__setitem__(0, field),
    lambda f, field: f.__setitem__(slice(0, 1), [field]),
]


@pytest.mark.parametrize("add", ADDS)
@pytest.mark.parametrize("field,match", [
    (("X-B", "a\r\nSet-Cookie: x=1"), r"control character \(CR"),
    (("Bad Name", "1"), "is not a token"),
    (("X-B", "a\x00b"), r"control character \(NUL"),
])
def test_a_field_added_to_checked_fields_is_checked(add, field, match):
    from flashplug.http.validate import CheckedFields
    fields = CheckedFields([("X-A", "1")])
    add(fields, field)
    assert not fields.checked
    with pytest.raises(ResponseMistake, match=match):
        check_response(Response(200, fields, b"ok"))


@pytest.mark.parametrize("add", ADDS)
def test_a_good_field_added_to_checked_fields_goes_out(add):
    """A response-headers hook may add to the fields, as to any list."""
    from flashplug.http.validate import CheckedFields
    fields = CheckedFields([("X-A", "1")])
    add(fields, ("X-Added", "yes"))
    assert ("X-Added", "yes") in check_response(Response(200, fields, b"ok")).headers


def test_checked_fields_content_length_is_still_weighed_against_the_body():
    from flashplug.http.validate import CheckedFields
    with pytest.raises(ResponseMistake, match="Content-Length 5 but the body has 2 bytes"):
        check_response(Response(200, CheckedFields([("content-length", "5")]), b"ok"))
    with pytest.raises(ResponseMistake, match="2 Content-Length headers"):
        check_response(Response(200, CheckedFields([("Content-Length", "2")] * 2), b"ok"))
    check_response(Response(200, CheckedFields([("Content-Length", "2")]), b"ok"))

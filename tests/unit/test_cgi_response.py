"""Parsing CGI response header blocks (RFC 3875 §6): pure, bytes in."""
import pytest

from flashplug_plugins.cgi.response import (
    CLIENT_REDIRECT, DOCUMENT, LOCAL_REDIRECT, CGIError, find_header_end,
    parse_header_block)


def parse(output):
    """Split a whole script output and parse its header block."""
    end = find_header_end(output)
    assert end is not None, "no end of header block"
    return parse_header_block(output[:end[0]]), output[end[1]:]


@pytest.mark.parametrize("nl", [b"\n", b"\r\n"])
def test_document_with_lf_or_crlf(nl):
    r, body = parse(b"Content-Type: text/plain" + nl + b"X-A: 1" + nl + nl + b"body\n")
    assert (r.kind, r.status, r.content_type) == (DOCUMENT, 200, "text/plain")
    assert r.headers == [("Content-Type", "text/plain"), ("X-A", "1")]
    assert body == b"body\n"


def test_mixed_line_endings():
    r, body = parse(b"Content-Type: a/b\r\nX: y\n\r\nrest")
    assert r.headers == [("Content-Type", "a/b"), ("X", "y")] and body == b"rest"


def test_find_header_end_incremental():
    assert find_header_end(b"Content-Type: a/b\n") is None
    buf = b"Content-Type: a/b\n\n"
    assert find_header_end(buf, start=len(buf) - 1) == (17, 19)
    assert find_header_end(b"\nbody") == (0, 1)
    assert find_header_end(b"\r\nbody") == (0, 2)


@pytest.mark.parametrize("value,status,reason", [
    (b"404 Not Found", 404, "Not Found"),
    (b"200", 200, None),
    (b"599 Whatever it is", 599, "Whatever it is"),
])
def test_status(value, status, reason):
    r, _ = parse(b"Status: " + value + b"\nContent-Type: text/plain\n\n")
    assert (r.status, r.reason) == (status, reason)
    assert all(k.lower() != "status" for k, _ in r.headers)


@pytest.mark.parametrize("value", [b"abc", b"20", b"2000", b"99 x", b"600 Too big",
                                   b"100 Continue", b"200OK", b"200\x01", b""])
def test_malformed_status(value):
    with pytest.raises(CGIError, match="Status"):
        parse_header_block(b"Status: " + value + b"\nContent-Type: a/b")


def test_local_redirect():
    r, _ = parse(b"Location: /other/path?q=1\n\n")
    assert (r.kind, r.location) == (LOCAL_REDIRECT, "/other/path?q=1")
    r, _ = parse(b"Location: /x\nStatus: 200 OK\n\n")
    assert r.kind == LOCAL_REDIRECT


def test_client_redirect_defaults_to_302():
    r, _ = parse(b"Location: https://example.org/\n\n")
    assert (r.kind, r.status, r.location) == (CLIENT_REDIRECT, 302, "https://example.org/")
    assert ("Location", "https://example.org/") in r.headers


def test_client_redirect_with_status_200_is_302():
    """RFC 3875 §6.2.4: a client redirect's Status means redirection;
    Apache's mod_cgi makes a script's 200 with an absolute Location 302."""
    r, _ = parse(b"Status: 200 OK\nLocation: https://example.org/\n\n")
    assert (r.kind, r.status, r.reason) == (CLIENT_REDIRECT, 302, None)
    r, _ = parse(b"Status: 200\nLocation: https://example.org/\nContent-Type: text/html\n"
                 b"Content-Length: 3\nX-A: b\n\n<a>")
    assert (r.status, r.content_type, r.content_length) == (302, None, None)
    assert r.headers == [("Location", "https://example.org/"), ("X-A", "b")]
    r, _ = parse(b"Status: 201 Created\nLocation: https://example.org/n\n\n")
    assert r.status == 201      # a status of its own is kept


def test_fastcgi_keeps_status_200_with_location():
    """As nginx passes a FastCGI application's answer (local_redirects off)."""
    r = parse_header_block(b"Status: 200\nLocation: https://example.org/", local_redirects=False)
    assert r.status == 200


def test_client_redirect_with_document():
    r, body = parse(b"Status: 301 Moved\nLocation: http://a/\nContent-Type: text/html\n\n<a>")
    assert (r.kind, r.status, r.reason, r.content_type) == \
        (CLIENT_REDIRECT, 301, "Moved", "text/html")
    assert body == b"<a>"


def test_local_path_with_redirect_status_goes_to_client():
    r, _ = parse(b"Status: 303 See Other\nLocation: /done\n\n")
    assert (r.kind, r.status) == (CLIENT_REDIRECT, 303)


def test_network_path_is_not_local():
    r, _ = parse(b"Location: //evil.example/\n\n")
    assert r.kind == CLIENT_REDIRECT


def test_document_without_content_type_is_flagged():
    # Whether that is allowed depends on the body, which the handler sees.
    r, _ = parse(b"Status: 204 No Content\n\n")
    assert (r.kind, r.status, r.content_type) == (DOCUMENT, 204, None)


def test_content_length_kept_and_checked():
    r, _ = parse(b"Content-Type: a/b\nContent-Length: 12\n\n")
    assert r.content_length == 12
    with pytest.raises(CGIError, match="Content-Length"):
        parse_header_block(b"Content-Type: a/b\nContent-Length: -1")


def test_hop_by_hop_dropped():
    r, _ = parse(b"Content-Type: a/b\nConnection: close\nTransfer-Encoding: chunked\n"
                 b"Keep-Alive: 5\nSet-Cookie: a=1\nSet-Cookie: b=2\n\n")
    assert r.headers == [("Content-Type", "a/b"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]


def test_whitespace_around_values():
    r, _ = parse(b"Content-Type:text/plain  \nX-Y:\t v\n\n")
    assert r.headers == [("Content-Type", "text/plain"), ("X-Y", "v")]


@pytest.mark.parametrize("block,match", [
    (b"", "empty"),
    (b"  \n", "empty"),
    (b"this is not a header", "malformed header"),
    (b"<html><body>oops</body></html>", "malformed header"),
    (b"Content-Type: a/b\n continued", "malformed header"),   # obs-fold
    (b"Bad Name: x\nContent-Type: a/b", "malformed header"),
    (b"Content-Type: a/b\nX: a\x00b", r"control character \(NUL"),
    (b"Content-Type: a/b\nX: a\rSet-Cookie: b=1", r"control character \(CR"),  # bare CR
    (b"Content-Type: a/b\nX: a\x1bb", r"control character \(U\+001B"),
    (b"Content-Type: a/b\nContent-Type: c/d", "more than one Content-Type"),
    (b"Location: /a\nLocation: /b", "more than one Location"),
    (b"Status: 200\nStatus: 404", "more than one Status"),
    (b"Location:", "empty Location"),
])
def test_garbage(block, match):
    with pytest.raises(CGIError, match=match):
        parse_header_block(block)


@pytest.mark.parametrize("status", [b"204 No Content", b"205", b"304 Not Modified"])
@pytest.mark.parametrize("length", [b"5", b"0"])
def test_no_content_statuses_drop_content_length(status, length):
    r, _ = parse(b"Status: " + status + b"\r\nContent-Length: " + length +
                 b"\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nhello")
    assert r.content_length is None
    # (A 304 leaves out the Content-Type too: RFC 9110 §15.4.5.)
    assert r.headers == ([] if status.startswith(b"304") else [("Content-Type", "text/plain")])


def test_a_304_keeps_only_what_guides_a_cache():
    r, _ = parse(b"Status: 304\nContent-Type: a/b\nContent-Language: en\nContent-Encoding: br\n"
                 b"ETag: \"x\"\nLast-Modified: Sun, 13 Sep 2020 12:26:40 GMT\nVary: Accept\n"
                 b"Cache-Control: max-age=1\nExpires: Sun, 13 Sep 2020 12:26:41 GMT\n\n")
    assert r.content_type is None
    assert [name for name, _ in r.headers] == ["ETag", "Last-Modified", "Vary", "Cache-Control",
                                               "Expires"]


def test_content_length_kept_where_content_is_allowed():
    r, _ = parse(b"Status: 200\nContent-Length: 5\nContent-Type: a/b\n\nhello")
    assert r.content_length == 5 and ("Content-Length", "5") in r.headers


def test_nph_head_for_http2():
    from flashplug_plugins.cgi.response import parse_nph_head
    r = parse_nph_head(b"HTTP/1.1 404 Gone away\r\nContent-Type: text/plain\r\n"
                       b"Content-Length: 2\r\nConnection: close")
    assert (r.status, r.reason, r.content_length) == (404, "Gone away", 2)
    assert r.headers == [("Content-Type", "text/plain"), ("Content-Length", "2")]
    assert parse_nph_head(b"HTTP/1.0 204 No Content\nContent-Length: 5").headers == []
    for bad in (b"garbage", b"HTTP/2 200", b"HTTP/1.1 100 Continue",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
                b"HTTP/1.1 200 OK\r\nX-A: b\rSet-Cookie: c"):
        with pytest.raises(CGIError):
            parse_nph_head(bad)


@pytest.mark.parametrize("value", ["\u00b2", "1\u00b9", "\u00b3"])
def test_content_length_takes_ascii_digits_only(value):
    # The block is parsed as ISO-8859-1 text, where str.isdigit() is true
    # for superscript digits: they are no Content-Length.
    with pytest.raises(CGIError, match="bad Content-Length"):
        parse_header_block(b"Content-Type: text/plain\nContent-Length: "
                           + value.encode("latin-1"))


def test_a_content_length_past_18_digits_is_refused():
    # It reached clients as sent, past what a 64-bit length holds (RFC 9110
    # §8.6: recipients must expect overflows; nginx answers 502 to it).
    from flashplug_plugins.cgi.response import parse_nph_head
    assert parse_header_block(b"Content-Type: text/plain\nContent-Length: "
                              + b"9" * 18).content_length == 10 ** 18 - 1
    for head in (parse_header_block, parse_nph_head):
        block = b"Content-Type: text/plain\nContent-Length: " + b"9" * 23
        if head is parse_nph_head:
            block = b"HTTP/1.1 200 OK\r\n" + block
        with pytest.raises(CGIError, match="bad Content-Length"):
            head(block)


def test_reason_phrase_keeps_its_latin_1_octets():
    r = parse_header_block(b"Status: 404 Nicht gefunden \xe4\nContent-Type: text/plain")
    assert (r.status, r.reason) == (404, "Nicht gefunden \u00e4")


def test_a_line_seen_before_parses_the_same():
    # Lines are checked once and remembered: the second parse of the same
    # block gives the same answer, and a bad line is refused every time.
    block = b"Content-Type: text/plain\r\nX-Seen: twice\r\nStatus: 404 Gone"
    assert parse_header_block(block) == parse_header_block(block)
    for _ in range(2):
        with pytest.raises(CGIError, match="malformed header line"):
            parse_header_block(b"X-Seen: twice\r\nBad\x01: x")


def test_the_memory_of_lines_is_bounded():
    from flashplug_plugins.cgi import response
    long_line = "X-Long: " + "v" * response._LINE_KEPT
    parse_header_block(long_line.encode())
    assert long_line not in response._LINES.data
    for i in range(response._LINES_MAX + 10):
        parse_header_block(b"X-N: %d" % i)
    assert len(response._LINES) <= response._LINES_MAX


def test_parsed_fields_are_marked_checked():
    """Every field passed field_error as it was read: the kernel need not
    check them again (CheckedFields)."""
    from flashplug.http.validate import CheckedFields
    cgi = parse_header_block(b"Content-Type: text/plain\r\nX-A: 1")
    assert type(cgi.headers) is CheckedFields and cgi.headers.checked


BLOCKS = [b"X-Powered-By: PHP/8.2\r\nContent-type: text/html; charset=UTF-8",
          b"Status: 404 Gone\nContent-Type: text/plain\nContent-Length: 3",
          b"Location: /else", b"Location: http://x/\r\nStatus: 200", b"Status: 204\nContent-Length: 5",
          b"Location: /l\nContent-Type: text/plain\nConnection: close\nX-A: 1"]


def test_a_block_seen_before_parses_the_same_with_a_list_of_its_own():
    from flashplug.http.validate import CheckedFields
    from flashplug_plugins.cgi import response
    for local in (True, False):
        for block in BLOCKS:
            response._BLOCKS[local].clear()
            fresh = parse_header_block(block, local)
            again = parse_header_block(block, local)
            assert block in response._BLOCKS[local].data
            assert again == fresh
            if fresh.kind == LOCAL_REDIRECT:
                assert again.headers == ()     # (no list to share)
                continue
            assert again.headers is not fresh.headers
            assert type(again.headers) is CheckedFields and again.headers.checked
            again.headers.append(("X-Hook", "1"))     # a hook's: not in the next one
            assert parse_header_block(block, local) == fresh
    # The flag is part of what a block means.
    assert parse_header_block(b"Location: /else", True).kind == LOCAL_REDIRECT
    assert parse_header_block(b"Location: /else", False).kind == CLIENT_REDIRECT


def test_a_bad_block_is_refused_each_time_and_the_memory_is_bounded():
    from flashplug_plugins.cgi import response
    for _ in range(2):
        with pytest.raises(CGIError):
            parse_header_block(b"Content-Type: text/plain\r\nBad\x01: x")
    for i in range(response._BLOCKS_MAX + 10):
        parse_header_block(b"Content-Type: text/plain\r\nX-N: %d" % i)
    assert len(response._BLOCKS[True]) <= response._BLOCKS_MAX
    long_block = b"Content-Type: text/plain\r\nX-L: " + b"v" * response._BLOCK_KEPT
    parse_header_block(long_block)
    assert long_block not in response._BLOCKS[True].data

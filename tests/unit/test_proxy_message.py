"""The proxy's messages to and from an upstream (plugins/proxy/message.py),
sans I/O: exact request heads, and the checks on a response."""
import pytest

from flashplug.http.message import Headers, Request
from flashplug_plugins.proxy.message import ResponseReader, UpstreamError, chunk, request_head
from flashplug_plugins.proxy.options import parse_upstream


def request(method="GET", headers=(("host", "example.test"),), length=None, chunked=False,
            addr="192.0.2.7", scheme="http"):
    r = Request(method, "/", "/", "/", "", "1.1", Headers(headers))
    r.content_length = length
    r.chunked = chunked
    r.remote_addr = addr
    r.scheme = scheme
    return r


def test_request_head_exact_bytes():
    r = request("POST", (("host", "example.test"), ("content-type", "text/plain"),
                         ("content-length", "5"), ("connection", "keep-alive, x-hop"),
                         ("x-hop", "1"), ("keep-alive", "300"), ("te", "trailers"),
                         ("trailer", "x"), ("transfer-encoding", "chunked"),
                         ("upgrade", "h2c"), ("proxy-authorization", "Basic x"),
                         ("proxy-connection", "keep-alive"), ("expect", "100-continue"),
                         ("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6"),
                         ("x_forwarded_for", "6.6.6.6"), ("x-real-ip", "6.6.6.6"),
                         ("proxy", "http://evil.example"), ("http2-settings", "AAMA"),
                         ("cookie", "a=1")),
                length=5)
    assert request_head(r, "/app/x?y=1", None, "up") == (
        b"POST /app/x?y=1 HTTP/1.1\r\n"
        b"Host: example.test\r\n"
        b"content-type: text/plain\r\n"
        b"cookie: a=1\r\n"
        b"Via: 1.1 flashplug\r\n"
        b"X-Forwarded-For: 192.0.2.7\r\n"
        b"X-Real-IP: 192.0.2.7\r\n"
        b"X-Forwarded-Proto: http\r\n"
        b"X-Forwarded-Host: example.test\r\n"
        b'Forwarded: for=192.0.2.7;proto=http;host="example.test"\r\n'
        b"Content-Length: 5\r\n\r\n")


def test_request_head_chunked_ipv6_https_upgrade():
    r = request(addr="::1", scheme="https", chunked=True)
    head = request_head(r, "/", None, "up")
    assert b"Transfer-Encoding: chunked\r\n" in head and b"Content-Length" not in head
    assert b'Forwarded: for="[::1]";proto=https;host="example.test"\r\n' in head
    head = request_head(request(), "/", "websocket", "up")
    assert head.endswith(b"Connection: upgrade\r\nUpgrade: websocket\r\n\r\n")


def test_http10_request_without_host_gets_the_upstreams():
    head = request_head(request(headers=()), "/", None, "127.0.0.1:9000")
    assert head.startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n")
    assert b"X-Forwarded-Host" not in head
    assert b"Forwarded: for=192.0.2.7;proto=http\r\n" in head


def test_chunked_body_read_whole_goes_with_its_length():
    head = request_head(request("POST", chunked=True), "/", None, "up", 42)
    assert head.endswith(b"Content-Length: 42\r\n\r\n") and b"chunked" not in head


def test_chunk():
    assert chunk(b"hello") == b"5\r\nhello\r\n" and chunk(b"") == b"0\r\n\r\n"


def read(data, head_only=False, upgrading=None, pieces=1):
    r = ResponseReader(head_only, upgrading)
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        r.feed(data[i:i + step])
    return r


@pytest.mark.parametrize("pieces", [1, 3, 1000])
def test_content_length_response_in_any_pieces(pieces):
    r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: x-a\r\nX-A: 1\r\n"
             b"Keep-Alive: 5\r\nX-B: 2\r\n\r\nhello", pieces=pieces)
    assert (r.status, r.reason, b"".join(r.body), r.done, r.reusable) == \
        (200, "OK", b"hello", True, True)
    assert r.headers == [("Content-Length", "5"), ("X-B", "2")]


def test_chunked_response_loses_its_transfer_encoding():
    r = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n"
             b"5\r\nhello\r\n0\r\nX: 1\r\n\r\n", pieces=7)
    assert b"".join(r.body) == b"hello" and r.done and r.reusable and r.headers == []


def test_body_until_close_is_never_reused():
    r = read(b"HTTP/1.1 200 OK\r\n\r\nsome")
    assert r.until_close and not r.done
    r.feed(b"")
    assert r.done and not r.reusable and b"".join(r.body) == b"some"


def test_bytes_after_the_response_stop_reuse():
    r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n")
    assert r.done and not r.reusable and b"".join(r.body) == b"ok"


def test_interim_responses_are_skipped_and_bodiless_ones_end_at_the_head():
    r = read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
             b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n")
    assert (r.status, r.done, r.reusable, r.headers) == (204, True, True, [])
    r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", head_only=True)
    assert r.done and r.content_length == 9 and r.headers == [("Content-Length", "9")]


def test_connection_close_is_not_reused():
    r = read(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert r.done and not r.reusable
    r = read(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert r.done and not r.reusable


@pytest.mark.parametrize("data,match", [
    (b"\x16\x03\x01garbage\r\n\r\n", "invalid response head"),
    (b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "invalid response head"),
    (b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", "invalid response head"),
    (b"HTTP/1.1 200 OK\r\nX: a\x1bb\r\n\r\n", "invalid response head"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", "invalid"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", "invalid"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "only chunked"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid body"),
    (b"HTTP/1.1 099 Odd\r\n\r\n", "status"),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "unasked"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", "over 65536 bytes"),
])
def test_broken_responses(data, match):
    with pytest.raises(UpstreamError, match=match):
        read(data)


def test_closed_mid_body_or_before_a_head():
    r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
    with pytest.raises(UpstreamError, match="middle of the body"):
        r.feed(b"")
    with pytest.raises(UpstreamError, match="without a response"):
        ResponseReader(False, False).feed(b"")


def test_101_keeps_the_bytes_after_it():
    r = read(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\n\r\nframe", upgrading="websocket")
    assert (r.status, r.upgrade, r.rest, r.headers) == (101, "websocket", b"frame", [])


@pytest.mark.parametrize("text,host,port,path,rewrite", [
    ("http://127.0.0.1:9000", "127.0.0.1", 9000, None, None),
    ("http://127.0.0.1:9000/", "127.0.0.1", 9000, None, "/"),
    ("http://[::1]:8080/app", "::1", 8080, None, "/app"),
    ("http://localhost", "localhost", 80, None, None),
    ("unix:/run/app.sock", None, None, "/run/app.sock", None),
])
def test_upstream_addresses(text, host, port, path, rewrite):
    upstream, got_rewrite = parse_upstream(text, "usage")
    assert (upstream.host, upstream.port, upstream.path, got_rewrite) == \
        (host, port, path, rewrite)


KNOWN = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test-Known: %d\r\n\r\n"


@pytest.mark.parametrize("pieces", [1, 4, 100])
def test_a_head_seen_before_is_not_parsed_again(pieces):
    head = KNOWN % pieces
    first = read(head + b"hello")
    again = read(head + b"hello", pieces=pieces)
    assert again._parser is None     # llhttp never saw it: the parse was remembered
    for r in (first, again):
        assert (r.status, r.reason, b"".join(r.body), r.done, r.reusable) == \
            (200, "OK", b"hello", True, True)
        assert r.headers == [("Content-Length", "5"), ("X-Test-Known", str(pieces))]


def test_a_known_head_keeps_the_body_checks():
    head = KNOWN % 1000
    read(head + b"hello")
    r = read(head + b"helloHTTP/1.1 200 OK\r\n\r\n")
    assert r.done and not r.reusable and b"".join(r.body) == b"hello"
    r = read(head + b"hel")
    assert not r.done
    with pytest.raises(UpstreamError, match="middle of the body"):
        r.feed(b"")
    # The parser a connection keeps carries on after a known head's response.
    r = read(head + b"hello")
    r.reset(False, False)
    r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    assert r.done and r.reusable and b"".join(r.body) == b"ok"


def test_bodiless_and_head_responses_are_not_remembered():
    head = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\nX-Test-Known: 304\r\n\r\n"
    for _ in range(2):
        r = read(head)
        assert r.done and r.reusable and r.headers == [("X-Test-Known", "304")]
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nX-Test-Known: head\r\n\r\n"
    read(head, head_only=True)
    r = read(head + b"123456789")
    assert r._parser is not None and r.done and b"".join(r.body) == b"123456789"
    # Nor are big heads (the memory is bounded).
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Big: " + b"b" * 4096 + b"\r\n\r\n"
    for _ in range(2):
        r = read(head + b"ok")
        assert r._parser is not None and r.done and r.reusable


# RFC 9112 §2.2: a head whose lines end in LF alone waited for a CRLF CRLF
# that never came, until the upstream closed or --proxy-read-timeout (504);
# nginx and Go's ReverseProxy take it.
@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\nContent-Length: 5\nX-A: 1\n\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\nX-A: 1\n\r\nhello",
])
@pytest.mark.parametrize("pieces", [1, 1000])
def test_a_head_with_bare_lf_line_ends_is_read(data, pieces):
    r = read(data, pieces=pieces)
    assert (r.status, r.headers, b"".join(r.body), r.done) == \
        (200, [("Content-Length", "5"), ("X-A", "1")], b"hello", True)


def test_bare_lf_before_a_crlf_crlf_in_the_body_ends_the_head():
    r = read(b"HTTP/1.1 200 OK\nContent-Length: 8\n\nab\r\n\r\ncd")
    assert (r.status, b"".join(r.body), r.done) == (200, b"ab\r\n\r\ncd", True)


def test_a_bare_cr_is_still_refused_in_an_lf_head():
    with pytest.raises(UpstreamError, match="invalid response head"):
        read(b"HTTP/1.1 200 OK\nX: a\rb\n\n")


def test_response_fields_are_checked_once_per_head():
    """The fields are checked with field_error as the head is parsed, and
    marked so (CheckedFields): the kernel does not check them again; a head
    seen lately gives its own marked copy."""
    from flashplug.http.validate import CheckedFields
    head = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok"
    got = []
    for _ in range(2):
        r = ResponseReader()
        r.feed(head)
        assert type(r.headers) is CheckedFields and r.headers.checked
        assert r.headers == [("X-A", "1"), ("Content-Length", "2")]
        got.append(r.headers)
    assert got[0] is not got[1]


def test_the_fields_part_is_worked_out_once_per_method_and_fields():
    """A request with the method and fields of one before reuses what was
    made of them (``_FILTERED``); everything else is written anew."""
    from flashplug_plugins.proxy import message
    message._FILTERED.clear()
    fields = (("host", "example.test"), ("via", "1.0 fred"), ("cookie", "a=1"),
              ("connection", "x-hop"), ("x-hop", "1"), ("max-forwards", "5"))
    variants = [request("OPTIONS", fields), request("GET", fields), request("OPTIONS", fields,
                addr="::1", scheme="https"), request("GET", fields[1:], length=3),
                request("GET", fields, chunked=True)]
    fresh = []
    for r in variants:
        message._FILTERED.clear()
        fresh.append(request_head(r, "/x", None, "up"))
    for _ in range(2):
        assert [request_head(r, "/x", None, "up") for r in variants] == fresh
    assert len(message._FILTERED) == 3    # OPTIONS, GET, GET without Host
    assert b"Max-Forwards" not in fresh[0] and b"max-forwards: 4\r\n" in fresh[0]
    assert b"max-forwards: 5\r\n" in fresh[1] and b"x-hop" not in fresh[1]
    assert b"Via: 1.0 fred, 1.1 flashplug\r\n" in fresh[1]
    for n in range(message.FILTERED_KEPT + 5):
        request_head(request("GET", (("host", f"h{n}"),)), "/", None, "up")
    assert len(message._FILTERED) <= message.FILTERED_KEPT
    big = request("GET", (("host", "t"), ("cookie", "a" * message.FILTERED_SIZE)))
    message._FILTERED.clear()
    request_head(big, "/", None, "up")
    assert not message._FILTERED

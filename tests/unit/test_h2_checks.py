"""RFC 9113 §8.2-8.3 checks of HTTP/2 requests, and the translation of a
framed HTTP/1.1 response head to HEADERS fields (flashplug.http.h2_checks)."""
import pytest

from flashplug.http.h1_checks import ProtocolError
from flashplug.http.h2_checks import StreamError, request_parts, response_fields

BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/a?b=c"),
        (b":authority", b"example.com")]


def test_a_plain_request():
    method, target, authority, regular = request_parts(BASE + [(b"accept", b"*/*")])
    assert (method, target, authority) == ("GET", "/a?b=c", b"example.com")
    assert regular == [(b"accept", b"*/*")]


def test_cookies_are_joined():
    # §8.2.3: a client may split Cookie into several fields.
    _, _, _, regular = request_parts(BASE + [(b"cookie", b"a=1"), (b"x", b"y"),
                                             (b"cookie", b"b=2")])
    assert regular == [(b"x", b"y"), (b"cookie", b"a=1; b=2")]


@pytest.mark.parametrize("fields, why", [
    (BASE + [(b"Accept", b"*/*")], "uppercase"),
    (BASE + [(b"connection", b"close")], "connection-specific"),
    (BASE + [(b"keep-alive", b"5")], "connection-specific"),
    (BASE + [(b"proxy-connection", b"x")], "connection-specific"),
    (BASE + [(b"transfer-encoding", b"chunked")], "connection-specific"),
    (BASE + [(b"upgrade", b"h2c")], "connection-specific"),
    (BASE + [(b"te", b"gzip")], "TE"),
    (BASE + [(b"x", b" lead")], "value"),
    (BASE + [(b"x", b"trail\t")], "value"),
    (BASE + [(b"x", b"a\r\nb: c")], "value"),
    (BASE + [(b"x", b"a\x00")], "value"),
    (BASE + [(b"bad name", b"1")], "token"),
    (BASE + [(b"", b"1")], "token"),
    ([(b":method", b"GET"), (b"x", b"1"), (b":scheme", b"http"), (b":path", b"/")], "after"),
    (BASE + [(b":protocol", b"websocket")], "unknown"),
    (BASE + [(b":status", b"200")], "unknown"),
    (BASE[:1] + BASE, "repeated"),
    (BASE[1:], ":method"),
    ([BASE[0], BASE[2], BASE[3]], ":scheme"),
    ([BASE[0], BASE[1], BASE[3]], ":path"),
    ([BASE[0], BASE[1], (b":path", b""), BASE[3]], ":path"),
    ([BASE[0], BASE[1], (b":path", b"/a b"), BASE[3]], ":path"),
    # §8.3.1: the path and query of the target (or "*" for OPTIONS), never
    # the absolute form, whose authority could contradict :authority.
    ([BASE[0], BASE[1], (b":path", b"http://other.example/a"), BASE[3]], ":path"),
    ([BASE[0], BASE[1], (b":path", b"a/b"), BASE[3]], ":path"),
    ([BASE[0], BASE[1], (b":path", b"*"), BASE[3]], ":path"),
    ([(b":method", b"G T")] + BASE[1:], ":method"),
    ([(b":method", b"CONNECT"), (b":authority", b"a:443"), (b":path", b"/")], "CONNECT"),
])
def test_malformed_requests_are_stream_errors(fields, why):
    with pytest.raises(StreamError):
        request_parts(fields)


def test_options_asterisk_is_allowed():
    fields = [(b":method", b"OPTIONS"), BASE[1], (b":path", b"*"), BASE[3]]
    assert request_parts(fields)[1] == "*"


def test_te_trailers_is_allowed():
    assert request_parts(BASE + [(b"te", b"trailers")])[3] == [(b"te", b"trailers")]


def test_connect_is_not_implemented():
    with pytest.raises(ProtocolError) as e:
        request_parts([(b":method", b"CONNECT"), (b":authority", b"example.com:443")])
    assert e.value.status == 501


@pytest.mark.parametrize("path", [b"/caf\xc3\xa9", b"/a?q=\xff"])
def test_a_path_byte_above_0x7f_is_a_400_as_over_http11(path):
    """RFC 3986 §2: a URI is ASCII.  llhttp answers such an HTTP/1.1
    request-target 400; HTTP/2 let it through to the handlers."""
    with pytest.raises(ProtocolError) as e:
        request_parts([BASE[0], BASE[1], (b":path", path), BASE[3]])
    assert e.value.status == 400


def test_a_percent_encoded_path_is_fine():
    assert request_parts([BASE[0], BASE[1], (b":path", b"/caf%C3%A9"), BASE[3]])[1] == \
        "/caf%C3%A9"


def test_no_authority_is_left_to_the_host_check():
    assert request_parts(BASE[:3])[2] is None


def test_response_fields_drop_connection_fields_and_lowercase_names():
    head = (b"HTTP/1.1 206 Partial Content\r\nDate: x\r\nContent-Type: text/plain\r\n"
            b"Connection: close\r\nTransfer-Encoding: chunked\r\nKeep-Alive: 5\r\n"
            b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n")
    assert response_fields(head) == (206, [(b"date", b"x"), (b"content-type", b"text/plain"),
                                           (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")])


@pytest.mark.parametrize("head", [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
])
def test_bad_response_heads_are_refused(head):
    with pytest.raises(ValueError):
        response_fields(head)

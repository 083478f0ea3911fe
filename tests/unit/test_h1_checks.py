"""The pure checks of a request head (flashplug.http.h1_checks)."""
import httptools
import pytest

from flashplug.http.h1_checks import (MAX_METHOD, MAX_REQUEST_LINE, ProtocolError, as_http11,
                                      classify, expects_continue, host_name, keep_alive,
                                      request_line_unended, same_authority, valid_host)


def llhttp_error(data):
    class Sink:
        pass
    try:
        httptools.HttpRequestParser(Sink()).feed_data(data)
    except httptools.HttpParserError as e:
        return e
    raise AssertionError("llhttp accepted it")


@pytest.mark.parametrize("message, status", [
    (b"FOO / HTTP/1.1\r\n\r\n", 501),                 # unknown but well-formed method
    (b"get / HTTP/1.1\r\n\r\n", 501),                 # methods are case-sensitive: another
    (b"M-SEARCH2 / HTTP/1.1\r\n\r\n", 501),           # any token
    (b"8000 / HTTP/1.1\r\nHost: x\r\n\r\n", 400),      # not a method at all
    (b"\x16\x03\x01\x02\x00", 400),                    # a TLS ClientHello
    (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"FOO http://t/ HTTP/1.1\r\n\r\n", 501),      # absolute-form target
    (b"FOO * HTTP/1.1\r\n\r\n", 400),              # asterisk-form is OPTIONS's only
    (b"A" * 100000 + b" / HTTP/1.1\r\n\r\n", 501),  # longer than any method (RFC 9112 §3)
    (b"A" * (MAX_METHOD + 1), 501),
    (b"A" * MAX_METHOD + b"\r\n\r\n", 400),        # a short token, then no target
])
def test_classify_reads_the_failing_message(message, status):
    error = classify(llhttp_error(message), message)
    assert isinstance(error, ProtocolError) and error.status == status


@pytest.mark.parametrize("message, read", [
    (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    (b"\r\nGET /x HTTP/1.9\r\n", b"\r\nGET /x HTTP/1.1\r\n"),
    (b"GET / HTTP/1.10\r\n\r\n", None),    # not HTTP-version (RFC 9112 §2.3)
    (b"GET / HTTP/2.0\r\n\r\n", None),     # another major version: 505
    (b"GET / HTTP/1.2", None),               # the line is not whole yet
    (b"GET / HTTP/1.1\r\n\r\n", None),
])
def test_as_http11(message, read):
    assert as_http11(message) == read


@pytest.mark.parametrize("start, unended", [
    (b"F", True), (b"FOO", True), (b"\r\nget", True), (b"GET / HTTP/1.", True),
    (b"GET / HTTP/1.1\r", True), (b"A" * MAX_REQUEST_LINE, True),
    (b"A" * (MAX_REQUEST_LINE + 1), False),     # parsed as it is: 501 or 414
    (b"GET / HTTP/1.1\r\n", False), (b"GET / HTTP/1.1\n", False), (b"", False),
    (b"\r\n", False), (memoryview(b"GET /"), True), (bytearray(b"GET /\r\n"), False),
    (b"\x16\x03\x01", False), (b"GET /\x00", False), (b"GET /\xc3\xa9", False),
    (b" GET", False), (b"GET\t/", False), (b"GET /\rx", False),
])
def test_request_line_unended(start, unended):
    assert request_line_unended(start) is unended


def test_classify_never_looks_at_the_error_text():
    error = llhttp_error(b"GET / HTTP/1.2\r\n\r\n")
    error.args = ("Transfer-Encoding Content-Length HTTP version",)
    assert classify(error, b"8000 / HTTP/1.1\r\n\r\n").status == 400


@pytest.mark.parametrize("version, options, keep", [
    ("1.1", None, True), ("1.0", None, False), ("1.0", b"keep-alive", True),
    ("1.0", b"keep-alive, close", False), ("1.1", b"Close", False), ("1.1", b"upgrade", True),
])
def test_keep_alive(version, options, keep):
    assert keep_alive(version, options) is keep


@pytest.mark.parametrize("host, ok", [
    (b"example.org", True), (b"example.org:8080", True), (b"[::1]:80", True),
    (b"", False), (b"a b", False), (b"x/y", False), (None, True),
])
def test_valid_host(host, ok):
    assert valid_host(host) is ok


@pytest.mark.parametrize("value, name", [
    (b"Example.ORG", "example.org"), (b"example.org:8080", "example.org"),
    ("WWW.Example.org.", "www.example.org"), (b"[::1]:80", "[::1]"),
    (b"127.0.0.1:8000", "127.0.0.1"), (b":80", None), (b"", None), (b"a b", None),
    (b"x/y", None), (".", None), (b"example.org..", None), (b"a..b:80", None),
    (b"..", None), (b"example.org.:80", "example.org"),
])
def test_host_name_is_the_one_definition_of_the_requests_host(value, name):
    assert host_name(value) == name


@pytest.mark.parametrize("value, expected", [
    (None, False), ("", False), (" , ", False), ("100-continue", True),
    ("100-Continue", True), ("100-continue, 100-continue", True), (" 100-continue\t", True)])
def test_expects_continue(value, expected):
    assert expects_continue(value) is expected


@pytest.mark.parametrize("value", ["fancy", "100-continue, fancy", "100-continue=1", "100"])
def test_any_other_expectation_is_417(value):
    with pytest.raises(ProtocolError) as caught:
        expects_continue(value)
    assert caught.value.status == 417


@pytest.mark.parametrize("one, other, scheme", [
    (b"example.org", b"Example.ORG", "http"), (b"example.org:80", b"example.org", "http"),
    (b"example.org:", b"example.org", "http"), (b"example.org:443", b"example.org", "https"),
    (b"example.org.", b"example.org", "http"), (b"[::1]:8080", b"[::1]:08080", "http"),
    ("localhost", b"LOCALHOST", "https")])
def test_same_authority_normalises_as_rfc3986(one, other, scheme):
    assert same_authority(one, other, scheme) and same_authority(other, one, scheme)


@pytest.mark.parametrize("one, other, scheme", [
    (b"example.org", b"example.net", "http"), (b"example.org:8080", b"example.org", "http"),
    (b"example.org:443", b"example.org", "http"), (b"bad host", b"bad host", "http"),
    (b"", b"", "http")])
def test_different_authorities(one, other, scheme):
    assert not same_authority(one, other, scheme)

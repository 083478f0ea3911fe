"""Outside-in conformance of a real `flashplug serve` (RFC 9110/9111/9112).

These cases came from an audit that sent the same raw requests to
flashplug, nginx and lighttpd and settled each difference by the RFC.
Where the RFC leaves a choice, the test accepts what the RFC allows and
says which answer we give.
"""
import email.parser
import email.policy
import email.utils
import os

import pytest

from test_kernel_http import error_then_closed, one, req as raw_request, wire

TEXT = bytes(range(48, 123)) * 4                          # 300 bytes
BIG = bytes(range(256)) * 800                             # 200 KiB, sent by sendfile
MTIME = 1_600_000_000                                     # 2020-09-13, fixed
FUTURE = 2_051_222_400                                    # 2035-01-01


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("conformance") / "root"
    root.mkdir()
    files = {"t.txt": TEXT, "big.bin": BIG, "empty.txt": b"",
             "future.txt": b"from the future", "dir/index.html": b"<p>index</p>"}
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (MTIME, MTIME))
    os.utime(root / "future.txt", (FUTURE, FUTURE))
    return root


def req(path="/t.txt", **kw):
    """The raw bytes of a request, for our /t.txt unless told otherwise."""
    return raw_request(path, **kw)


def header(headers, name):
    values = headers.get(name.lower())
    return values[0] if values else None


def fetch(srv, path="/t.txt", method="GET", extra=b""):
    return one(srv, req(path, method=method, extra=extra), head=method == "HEAD")


@pytest.fixture(scope="module")
def validators(srv):
    """The ETag and Last-Modified of /t.txt."""
    status, headers, _ = fetch(srv)
    assert status == 200
    return header(headers, "etag"), header(headers, "last-modified")


# -- preconditions: RFC 9110 §13.2.2 order -----------------------------------------------

OLD = "Sun, 06 Nov 1994 08:49:37 GMT"
LATER = "Sun, 06 Nov 2050 08:49:37 GMT"

PRECONDITIONS = [
    # (fields, expected status); {etag} and {lm} are ours.
    ("If-None-Match: {etag}\r\nIf-Modified-Since: " + OLD, 304),   # IMS ignored beside INM
    ('If-None-Match: "other"\r\nIf-Modified-Since: {lm}', 200),
    ('If-Match: "other"\r\nIf-None-Match: {etag}', 412),           # step 1 comes first
    ("If-Unmodified-Since: " + OLD + "\r\nIf-None-Match: {etag}", 412),
    ("If-Match: {etag}\r\nIf-Unmodified-Since: " + OLD, 200),      # IUS ignored beside IM
    ("If-Match: W/{etag}", 412),                                   # strong comparison
    ("If-None-Match: W/{etag}", 304),                              # weak comparison
    ('If-None-Match: "a", {etag}, "b"', 304),
    ("If-None-Match: *", 304),
    ("If-Match: *", 200),
    ("If-Unmodified-Since: not a date", 200),                      # invalid: ignored
    ("If-Modified-Since: not a date", 200),
    ("If-Modified-Since: {lm}; length=300", 200),                  # not an HTTP-date
    ("If-Modified-Since: " + LATER, 304),                          # lm <= date: false
    ("If-Modified-Since: " + OLD, 200),
    ("If-None-Match: {etag}\r\nRange: bytes=0-1", 304),            # before Range
    ('If-Match: "other"\r\nRange: bytes=0-1', 412),
    ("If-Modified-Since: " + OLD + "\r\nRange: bytes=0-1", 206),
]


@pytest.mark.parametrize("fields, expected", PRECONDITIONS)
def test_precondition_order(srv, validators, fields, expected):
    etag, lm = validators
    extra = fields.format(etag=etag, lm=lm).encode("latin-1") + b"\r\n"
    status, _, _ = fetch(srv, extra=extra)
    assert status == expected, fields


def test_304_carries_validators_and_no_body_metadata(srv, validators):
    # RFC 9110 §15.4.5: ETag and Date as a 200 would have them; no
    # Content-Type, and a Content-Length only if it is the 200's.
    etag, lm = validators
    w = wire(srv)
    try:
        w.send(req(extra=b"If-None-Match: " + etag.encode() + b"\r\n") + req())
        status, headers, body = w.response()
        assert (status, body) == (304, b"")
        assert header(headers, "etag") == etag
        assert header(headers, "last-modified") == lm
        assert header(headers, "date")
        assert header(headers, "content-type") is None
        assert header(headers, "content-length") in (None, str(len(TEXT)))
        # Nothing stray after the 304: the next response follows at once.
        status, _, body = w.response()
        assert (status, body) == (200, TEXT)
    finally:
        w.close()


def test_preconditions_ignored_when_the_answer_is_404(srv):
    # RFC 9110 §13.2.1: only a 2xx/412 response is subject to preconditions.
    assert fetch(srv, "/missing", extra=b"If-Match: *\r\n")[0] == 404
    assert fetch(srv, "/missing", extra=b"If-None-Match: *\r\n")[0] == 404


# -- ranges: RFC 9110 §14 -----------------------------------------------------------------

def parse_multipart(headers, body):
    ctype = header(headers, "content-type")
    assert ctype.startswith("multipart/byteranges; boundary=")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
    return [(part["Content-Range"], part.get_payload(decode=True))
            for part in message.iter_parts()]


def test_multipart_parts_follow_the_request_order(srv):
    # RFC 9110 §15.3.7.2: parts SHOULD come in the order the ranges were asked.
    status, headers, body = fetch(srv, "/big.bin", extra=b"Range: bytes=1000-1009,0-9,-5\r\n")
    assert status == 206
    assert header(headers, "content-range") is None
    assert header(headers, "content-length") == str(len(body))
    size = len(BIG)
    assert parse_multipart(headers, body) == [
        ("bytes 1000-1009/%d" % size, BIG[1000:1010]),
        ("bytes 0-9/%d" % size, BIG[:10]),
        ("bytes %d-%d/%d" % (size - 5, size - 1, size), BIG[-5:]),
    ]


def test_coalesced_ranges_stand_where_first_asked(srv):
    status, headers, body = fetch(srv, "/big.bin", extra=b"Range: bytes=500-599,0-9,550-700\r\n")
    assert status == 206
    size = len(BIG)
    assert parse_multipart(headers, body) == [
        ("bytes 500-700/%d" % size, BIG[500:701]),
        ("bytes 0-9/%d" % size, BIG[:10]),
    ]


def test_unsatisfiable_416_headers(srv):
    status, headers, body = fetch(srv, extra=b"Range: bytes=300-\r\n")
    assert status == 416
    assert header(headers, "content-range") == "bytes */%d" % len(TEXT)
    assert header(headers, "content-length") == str(len(body))


@pytest.mark.parametrize("spec", ["bytes=5-1", "bytes=abc", "bytes=-", "bytes="])
def test_invalid_bytes_range_is_416(srv, spec):
    # RFC 9110 §14.2: a server that supports ranges SHOULD answer an
    # invalid ranges-specifier 416 (it MAY ignore Range); nginx does.
    status, headers, _ = fetch(srv, extra=b"Range: " + spec.encode() + b"\r\n")
    assert status == 416
    assert header(headers, "content-range") == "bytes */%d" % len(TEXT)


def test_range_of_another_unit_is_ignored(srv):
    # RFC 9110 §14.2: a range unit the server does not know is ignored.
    status, _, body = fetch(srv, extra=b"Range: items=0-1\r\n")
    assert (status, body) == (200, TEXT)


def test_suffix_range_of_an_empty_file_is_200(srv):
    # A non-zero suffix-length is satisfiable (RFC 9110 §14.1.1), so not 416;
    # an empty file has no byte for a 206: the whole (empty) body, as nginx.
    status, headers, body = fetch(srv, "/empty.txt", extra=b"Range: bytes=-5\r\n")
    assert (status, body) == (200, b"")
    assert header(headers, "content-length") == "0"


def test_int_range_of_an_empty_file_is_200(srv):
    # No first-pos is below a length of 0, but RFC 9110 §14.2 lets a server
    # ignore Range for a representation with no content: the empty 200, as
    # nginx, Apache and lighttpd send (a browser's media "bytes=0-").
    status, headers, body = fetch(srv, "/empty.txt", extra=b"Range: bytes=0-\r\n")
    assert (status, body) == (200, b"")
    assert header(headers, "content-range") is None


def test_head_ignores_range(srv):
    # RFC 9110 §14.2: range handling is defined for GET only.
    status, headers, _ = fetch(srv, "/big.bin", "HEAD", b"Range: bytes=0-99\r\n")
    assert status == 200
    assert header(headers, "content-length") == str(len(BIG))
    assert header(headers, "content-range") is None


@pytest.mark.parametrize("if_range, expected", [
    ("{etag}", 206), ("W/{etag}", 200), ('"other"', 200), ("{lm}", 206), (OLD, 200),
    ("garbage", 200),
])
def test_if_range(srv, validators, if_range, expected):
    etag, lm = validators
    value = if_range.format(etag=etag, lm=lm).encode()
    status, _, body = fetch(srv, extra=b"Range: bytes=0-9\r\nIf-Range: " + value + b"\r\n")
    assert status == expected
    assert body == (TEXT[:10] if expected == 206 else TEXT)


def test_failed_if_range_with_unsatisfiable_range_is_200(srv):
    status, _, body = fetch(srv, extra=b'Range: bytes=9999-\r\nIf-Range: "other"\r\n')
    assert (status, body) == (200, TEXT)


# -- HEAD, errors, dates -------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/t.txt", "/big.bin", "/empty.txt", "/dir/", "/dir", "/missing"])
def test_head_has_the_get_headers(srv, path):
    get_status, get_headers, get_body = fetch(srv, path)
    head_status, head_headers, _ = fetch(srv, path, "HEAD")
    assert head_status == get_status
    assert header(head_headers, "content-length") == str(len(get_body))
    for name in ("content-type", "etag", "last-modified", "location"):
        assert header(head_headers, name) == header(get_headers, name), name


@pytest.mark.parametrize("raw, status", [
    (req("/missing"), 404),
    (req(method="DELETE"), 405),
    (req(method="FOO"), 501),
    (req("/%zz"), 400),
    (req(extra=b"Range: bytes=999-\r\n"), 416),
    (req(extra=b'If-Match: "x"\r\n'), 412),
    (req(version=b"HTTP/2.0"), 505),
])
def test_error_responses_are_framed_and_dated(srv, raw, status):
    got, headers, body = one(srv, raw)
    assert got == status
    assert body and header(headers, "content-length") == str(len(body))
    date = header(headers, "date")
    assert date and email.utils.format_datetime(
        email.utils.parsedate_to_datetime(date), usegmt=True) == date


def test_405_and_options_list_the_methods(srv):
    status, headers, _ = fetch(srv, method="PUT", extra=b"Content-Length: 0\r\n")
    assert status == 405
    allow = {m.strip() for m in header(headers, "allow").split(",")}
    assert {"GET", "HEAD"} <= allow
    status, headers, _ = one(srv, req("*", method="OPTIONS"))
    assert status == 200 and header(headers, "allow")


def test_directory_redirect_keeps_the_query(srv):
    status, headers, _ = fetch(srv, "/dir?a=1&b=%20")
    assert status == 301
    assert header(headers, "location") == "/dir/?a=1&b=%20"


def test_http10_keep_alive_is_echoed(srv):
    w = wire(srv)
    try:
        w.send(req(version=b"HTTP/1.0", host=None, extra=b"Connection: keep-alive\r\n"))
        status, headers, body = w.response()
        assert (status, body) == (200, TEXT)
        assert header(headers, "connection").lower() == "keep-alive"
        w.send(req(version=b"HTTP/1.0", host=None))
        assert w.response()[0] == 200
        assert w.closed_by_peer()
    finally:
        w.close()


# -- found by the audit, fixed in the kernel -------------------------------------------------

def test_future_mtime_is_not_sent_as_last_modified(srv):
    # Last-Modified must not be later than Date (RFC 9110 §8.8.2.1).
    status, headers, _ = fetch(srv, "/future.txt")
    assert status == 200
    last_modified = email.utils.parsedate_to_datetime(header(headers, "last-modified"))
    date = email.utils.parsedate_to_datetime(header(headers, "date"))
    assert last_modified <= date


def test_transfer_encoding_then_content_length_400(srv):
    # Both framings at once is a framing error, in either order (RFC 9112 §6.3).
    error_then_closed(srv, req(extra=b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")
                      + b"0\r\n\r\n", 400)


def test_empty_host_400(srv):
    # An "http" URI's host must not be empty (RFC 9110 §4.2.1).
    error_then_closed(srv, req(host=b""), 400)


def test_absolute_form_with_userinfo_400(srv):
    # userinfo in an http URI is an error (RFC 9110 §4.2.4).
    error_then_closed(srv, req("http://user@t/t.txt"), 400)

"""Static files from a real `flashplug serve` (issue 2, part 4).

Methods, MIME types, index and directory redirects, validators,
conditional requests (RFC 9110 §13.2.2 order), ranges (RFC 9110 §14) and big
files checked byte for byte with sha256.
"""
import email.utils
import hashlib
import os
import re
import time

import pytest
import requests

from test_kernel_http import one, req, wire

TEXT = b"0123456789abcdefghijklmnopqrstuvwxyz" * 10          # 360 bytes
BIG = os.urandom(6 * 1024 * 1024 + 123)                   # not cacheable (> 256 KiB)
MTIME = 1_600_000_000                                      # 2020-09-13, fixed


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    # Read-only for every test of the module, so one server serves them all.
    root = tmp_path_factory.mktemp("static") / "root"
    root.mkdir()
    files = {
        "t.txt": TEXT, "page.html": b"<p>hi</p>", "style.css": b"p{}", "app.js": b"1;",
        "data.json": b"{}", "img.png": b"\x89PNG\r\n\x1a\n", "blob.unknownext": b"\x00\x01",
        "noext": b"plain", "big.bin": BIG, "empty.txt": b"",
        "dir/index.html": b"<p>dir index</p>", "dir/sub/x.txt": b"x",
        "noindex/y.txt": b"y", "example.com/dir/index.html": b"trap",
        "caf\u00e9 space.txt": b"unicode name",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (MTIME, MTIME))
    return root


def get(srv, path, **headers):
    return requests.get(srv.url + path, headers=headers, allow_redirects=False, timeout=10)


def sha(data):
    return hashlib.sha256(data).hexdigest()


# -- methods ----------------------------------------------------------------------------

def test_get(srv):
    r = get(srv, "/t.txt")
    assert r.status_code == 200 and r.content == TEXT
    assert r.headers["Content-Length"] == str(len(TEXT))
    assert r.headers["Accept-Ranges"] == "bytes"


def test_empty_file(srv):
    r = get(srv, "/empty.txt")
    assert r.status_code == 200 and r.content == b"" and r.headers["Content-Length"] == "0"


@pytest.mark.parametrize("path", ["/t.txt", "/big.bin", "/dir/", "/missing", "/dir"])
def test_head_has_exactly_gets_headers(srv, path):
    g = one(srv, req(path))
    w = wire(srv)
    w.send(req(path, method="HEAD") + req("/t.txt"))
    h = w.response(head=True)
    # No body: the next response on the connection starts right after the head.
    nxt = w.response()
    w.close()
    assert h[0] == g[0]
    strip = lambda hd: {k: v for k, v in hd.items() if k != "date"}
    assert strip(h[1]) == strip(g[1])
    assert nxt[0] == 200 and nxt[2] == TEXT


def test_options_allow(srv):
    r = requests.options(srv.url + "/t.txt", timeout=5)
    assert r.status_code in (200, 204)
    allow = {m.strip() for m in r.headers["Allow"].split(",")}
    assert {"GET", "HEAD", "OPTIONS"} <= allow
    assert not allow & {"POST", "PUT", "DELETE"}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE"])
def test_405_with_allow(srv, method):
    r = requests.request(method, srv.url + "/t.txt", data=b"x", timeout=5)
    assert r.status_code == 405
    assert "GET" in r.headers["Allow"] and "HEAD" in r.headers["Allow"]


def test_unknown_method_501(srv):
    assert requests.request("FOO", srv.url + "/t.txt", timeout=5).status_code == 501


def test_404(srv):
    r = get(srv, "/nope.txt")
    assert r.status_code == 404
    assert r.headers["Content-Type"].startswith("text/html")


def test_file_with_trailing_slash_404(srv):
    assert get(srv, "/t.txt/").status_code == 404


def test_percent_encoded_unicode_name(srv):
    r = get(srv, "/caf%C3%A9%20space.txt")
    assert r.status_code == 200 and r.content == b"unicode name"


def test_query_string_ignored_for_files(srv):
    assert get(srv, "/t.txt?v=1&x=%2F..").content == TEXT


# -- MIME types -------------------------------------------------------------------------

@pytest.mark.parametrize("path,ctype", [
    ("/t.txt", "text/plain; charset=utf-8"), ("/page.html", "text/html; charset=utf-8"),
    ("/style.css", "text/css; charset=utf-8"), ("/data.json", "application/json"),
    ("/img.png", "image/png"), ("/blob.unknownext", "application/octet-stream"),
    ("/big.bin", "application/octet-stream"),
])
def test_mime_types(srv, path, ctype):
    got = get(srv, path).headers["Content-Type"].replace(" ", "").lower()
    if ctype == "application/json":
        assert got in ("application/json", "application/json;charset=utf-8")
    else:
        assert got == ctype.replace(" ", "")


def test_javascript_is_textual(srv):
    got = get(srv, "/app.js").headers["Content-Type"].lower()
    assert "javascript" in got and "charset=utf-8" in got.replace(" ", "")


# -- directories ------------------------------------------------------------------------

def test_index_html_for_directory(srv):
    r = get(srv, "/dir/")
    assert r.status_code == 200 and r.content == b"<p>dir index</p>"
    assert r.headers["Content-Type"].startswith("text/html")


def test_directory_without_slash_redirects_keeping_query(srv):
    r = get(srv, "/dir?a=1&b=%20x")
    assert r.status_code == 301
    assert r.headers["Location"] == "/dir/?a=1&b=%20x"
    r = get(srv, "/dir/sub")
    assert r.status_code == 301 and r.headers["Location"] == "/dir/sub/"


def test_directory_without_index_404(root, server_factory):
    srv = server_factory(root, "--plugins", "none", "--access-log", "off")
    assert get(srv, "/noindex/").status_code == 404
    assert get(srv, "/dir/sub/").status_code == 404


@pytest.mark.parametrize("target", ["//example.com/dir", "//example.com/dir?x=1", "///example.com/dir",
                                    "/%2fexample.com/dir", "//example.com//dir", "/\\example.com/dir",
                                    "//noindex", "/./example.com/dir"])
def test_redirect_location_never_protocol_relative(srv, target):
    # CVE-2021-28861: http.server answered "//example.com/dir" with
    # Location: //example.com/dir/, an open redirect to another host.
    status, headers, _ = one(srv, req(target))
    for loc in headers.get("location", []):
        assert not loc.startswith("//") and not loc.startswith("/\\"), (target, loc)
        assert "://" not in loc, (target, loc)
    assert status in (301, 400, 404), (target, status)


# -- validators and conditionals --------------------------------------------------------

def validators(srv, path="/t.txt"):
    r = get(srv, path)
    return r.headers["ETag"], r.headers["Last-Modified"]


def test_last_modified_and_strong_etag(srv):
    etag, lm = validators(srv)
    assert re.fullmatch(r'"[\x21\x23-\x7e]*"', etag), etag      # strong: no W/
    assert email.utils.parsedate_to_datetime(lm).timestamp() == MTIME
    assert lm.endswith(" GMT")
    assert validators(srv, "/big.bin")[0] != etag


def test_etag_stable_across_requests(srv):
    assert validators(srv) == validators(srv)


LONG_AGO = "Sat, 01 Jan 2000 00:00:00 GMT"
FUTURE = "Fri, 01 Jan 2100 00:00:00 GMT"


def status_of(srv, path="/t.txt", method="GET", **headers):
    return requests.request(method, srv.url + path, headers=headers, timeout=5).status_code


def test_if_none_match(srv):
    etag, lm = validators(srv)
    r = get(srv, "/t.txt", **{"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["ETag"] == etag           # RFC 9110 §15.4.5: same validators as 200
    assert "Content-Length" not in r.headers or r.headers["Content-Length"] == str(len(TEXT))
    assert status_of(srv, **{"If-None-Match": "W/" + etag}) == 304          # weak comparison
    assert status_of(srv, **{"If-None-Match": '"other", ' + etag}) == 304
    assert status_of(srv, **{"If-None-Match": "*"}) == 304
    assert status_of(srv, **{"If-None-Match": '"other"'}) == 200
    assert status_of(srv, method="HEAD", **{"If-None-Match": etag}) == 304


def test_if_match(srv):
    etag, _ = validators(srv)
    assert status_of(srv, **{"If-Match": etag}) == 200
    assert status_of(srv, **{"If-Match": '"a", ' + etag}) == 200
    assert status_of(srv, **{"If-Match": "*"}) == 200
    assert status_of(srv, **{"If-Match": '"other"'}) == 412
    assert status_of(srv, **{"If-Match": "W/" + etag}) == 412               # strong comparison


def test_if_modified_since(srv):
    _, lm = validators(srv)
    assert status_of(srv, **{"If-Modified-Since": lm}) == 304
    assert status_of(srv, **{"If-Modified-Since": FUTURE}) == 304
    assert status_of(srv, **{"If-Modified-Since": LONG_AGO}) == 200
    assert status_of(srv, **{"If-Modified-Since": "not a date"}) == 200
    # Only for GET/HEAD (RFC 9110 §13.1.3): ignored elsewhere, OPTIONS still answers.
    assert status_of(srv, method="OPTIONS", **{"If-Modified-Since": lm}) in (200, 204)


def test_if_modified_since_obsolete_date_formats(srv):
    # RFC 9110 §5.6.7: recipients accept rfc850 and asctime forms too.
    assert status_of(srv, **{"If-Modified-Since": "Sunday, 13-Sep-20 12:26:40 GMT"}) == 304
    assert status_of(srv, **{"If-Modified-Since": "Sun Sep 13 12:26:40 2020"}) == 304


def test_if_unmodified_since(srv):
    _, lm = validators(srv)
    assert status_of(srv, **{"If-Unmodified-Since": lm}) == 200
    assert status_of(srv, **{"If-Unmodified-Since": LONG_AGO}) == 412
    assert status_of(srv, **{"If-Unmodified-Since": "garbage"}) == 200      # invalid: ignored


def test_conditional_precedence(srv):
    etag, lm = validators(srv)
    # Step 1 before step 3: a failing If-Match wins over a matching If-None-Match.
    assert status_of(srv, **{"If-Match": '"x"', "If-None-Match": etag}) == 412
    # If-Match present: If-Unmodified-Since is not evaluated (§13.2.2 step 2).
    assert status_of(srv, **{"If-Match": etag, "If-Unmodified-Since": LONG_AGO}) == 200
    # If-None-Match present: If-Modified-Since is not evaluated (step 4).
    assert status_of(srv, **{"If-None-Match": '"x"', "If-Modified-Since": lm}) == 200
    assert status_of(srv, **{"If-None-Match": etag, "If-Modified-Since": LONG_AGO}) == 304
    # Failing If-Unmodified-Since (step 2) before a matching If-None-Match.
    assert status_of(srv, **{"If-Unmodified-Since": LONG_AGO, "If-None-Match": etag}) == 412
    # A 304 outranks the Range (step 5 only after conditionals pass).
    assert status_of(srv, **{"If-None-Match": etag, "Range": "bytes=0-1"}) == 304
    assert status_of(srv, **{"If-Match": '"x"', "Range": "bytes=0-1"}) == 412


# -- ranges -----------------------------------------------------------------------------

N = len(TEXT)


@pytest.mark.parametrize("spec,start,end", [
    ("bytes=0-9", 0, 9), ("bytes=10-10", 10, 10), ("bytes=-7", N - 7, N - 1),
    ("bytes=350-", 350, N - 1), ("bytes=100-99999", 100, N - 1), ("bytes=-99999", 0, N - 1),
    ("bytes=0-", 0, N - 1), ("BYTES=1-2", 1, 2), ("bytes= 3-4", 3, 4),
])
def test_single_range(srv, spec, start, end):
    r = get(srv, "/t.txt", Range=spec)
    assert r.status_code == 206, spec
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{N}"
    assert r.content == TEXT[start:end + 1]
    assert r.headers["Content-Length"] == str(end - start + 1)


def parse_multipart(r):
    ctype = r.headers["Content-Type"]
    m = re.fullmatch(r"multipart/byteranges; ?boundary=(\S+)", ctype)
    assert m, ctype
    boundary = m.group(1).strip('"').encode()
    assert r.headers["Content-Length"] == str(len(r.content))
    parts = []
    chunks = r.content.split(b"--" + boundary)
    assert chunks[-1].startswith(b"--"), chunks[-1][:20]        # closing delimiter
    for chunk in chunks[1:-1]:
        assert chunk.startswith(b"\r\n")
        head, _, body = chunk[2:].partition(b"\r\n\r\n")
        assert body.endswith(b"\r\n")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n"))
        parts.append((fields[b"Content-Range"].decode(), fields.get(b"Content-Type"), body[:-2]))
    return parts


def test_multipart_byteranges(srv):
    r = get(srv, "/t.txt", Range="bytes=0-4,20-29,-5")
    assert r.status_code == 206
    parts = parse_multipart(r)
    assert [(p[0], p[2]) for p in parts] == [
        (f"bytes 0-4/{N}", TEXT[0:5]), (f"bytes 20-29/{N}", TEXT[20:30]),
        (f"bytes {N - 5}-{N - 1}/{N}", TEXT[-5:])]
    assert all(p[1].startswith(b"text/plain") for p in parts)


def test_multipart_on_big_file(srv):
    L = len(BIG)
    r = get(srv, "/big.bin", Range=f"bytes=0-99,1000000-2999999,{L - 100}-")
    assert r.status_code == 206
    parts = parse_multipart(r)
    assert [p[0] for p in parts] == [f"bytes 0-99/{L}", f"bytes 1000000-2999999/{L}",
                                     f"bytes {L - 100}-{L - 1}/{L}"]
    assert [sha(p[2]) for p in parts] == [sha(BIG[:100]), sha(BIG[1000000:3000000]), sha(BIG[-100:])]


def test_overlapping_ranges_still_correct(srv):
    # RFC 9110 §14.2 lets a server coalesce or refuse overlaps; whatever it
    # does, every byte it labels must be right.
    r = get(srv, "/t.txt", Range="bytes=0-9,5-14")
    if r.status_code == 200:
        assert r.content == TEXT
        return
    assert r.status_code == 206
    if r.headers["Content-Type"].startswith("multipart/"):
        for crange, _, body in parse_multipart(r):
            a, b = map(int, re.match(r"bytes (\d+)-(\d+)/", crange).groups())
            assert body == TEXT[a:b + 1]
    else:
        a, b = map(int, re.match(r"bytes (\d+)-(\d+)/", r.headers["Content-Range"]).groups())
        assert r.content == TEXT[a:b + 1]


@pytest.mark.parametrize("spec", ["bytes=360-", "bytes=1000-2000", "bytes=360-360", "bytes=-0"])
def test_unsatisfiable_416(srv, spec):
    r = get(srv, "/t.txt", Range=spec)
    assert r.status_code == 416, spec
    assert r.headers["Content-Range"] == f"bytes */{N}"


def test_range_on_empty_file_416_or_200(srv):
    r = get(srv, "/empty.txt", Range="bytes=0-")
    assert r.status_code in (200, 416)
    if r.status_code == 416:
        assert r.headers["Content-Range"] == "bytes */0"


@pytest.mark.parametrize("spec", ["items=0-5", "bytes"])
def test_unknown_unit_range_ignored(srv, spec):
    # RFC 9110 §14.2: a Range of a unit we do not know is ignored -> 200.
    r = get(srv, "/t.txt", Range=spec)
    assert r.status_code == 200 and r.content == TEXT, spec


@pytest.mark.parametrize("spec", ["bytes=abc", "bytes=5-2", "bytes=0-1,x", "bytes=--1"])
def test_invalid_bytes_range_416(srv, spec):
    # RFC 9110 §14.2: an invalid bytes ranges-specifier SHOULD be 416 (nginx).
    r = get(srv, "/t.txt", Range=spec)
    assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */%d" % len(TEXT), spec


def test_range_ignored_for_head(srv):
    r = requests.head(srv.url + "/t.txt", headers={"Range": "bytes=0-1"}, timeout=5)
    assert r.status_code in (200, 206)


def test_too_many_ranges_ignored(srv):
    spec = "bytes=" + ",".join(f"{i * 3}-{i * 3}" for i in range(101))
    r = get(srv, "/t.txt", Range=spec)
    assert r.status_code == 200 and r.content == TEXT


def test_many_ranges_is_fast(srv):
    # CVE-2025-62727 (Starlette): range merging was quadratic in the count.
    spec = "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 2000, 2))
    t0 = time.monotonic()
    r = get(srv, "/big.bin", Range=spec[:7000])
    assert time.monotonic() - t0 < 2
    assert r.status_code in (200, 206, 416)


def test_if_range(srv):
    etag, lm = validators(srv)
    assert get(srv, "/t.txt", Range="bytes=0-1", **{"If-Range": etag}).status_code == 206
    assert get(srv, "/t.txt", Range="bytes=0-1", **{"If-Range": lm}).status_code == 206
    r = get(srv, "/t.txt", Range="bytes=0-1", **{"If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == TEXT
    r = get(srv, "/t.txt", Range="bytes=0-1", **{"If-Range": LONG_AGO})
    assert r.status_code == 200 and r.content == TEXT
    # A date later than Last-Modified is not an exact match (RFC 9110 §13.1.5).
    assert get(srv, "/t.txt", Range="bytes=0-1", **{"If-Range": FUTURE}).status_code == 200
    # A weak validator never satisfies If-Range.
    assert get(srv, "/t.txt", Range="bytes=0-1", **{"If-Range": "W/" + etag}).status_code == 200


# -- big files --------------------------------------------------------------------------

def test_big_file_sha256(srv):
    r = get(srv, "/big.bin")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(BIG))
    assert sha(r.content) == sha(BIG)


def test_big_file_ranges_sha256(srv):
    L = len(BIG)
    for spec, data in [("bytes=0-", BIG), ("bytes=1-", BIG[1:]), ("bytes=-3000000", BIG[-3000000:]),
                       ("bytes=4194303-4194304", BIG[4194303:4194305]),
                       (f"bytes=123457-{L - 2}", BIG[123457:L - 1])]:
        r = get(srv, "/big.bin", Range=spec)
        assert r.status_code == 206, spec
        assert sha(r.content) == sha(data), spec


def test_big_file_pipelined_with_head(srv):
    w = wire(srv, timeout=15)
    w.send(req("/big.bin") + req("/big.bin", method="HEAD") + req("/big.bin", extra=b"Range: bytes=5-\r\n")
           + req("/t.txt"))
    assert sha(w.response()[2]) == sha(BIG)
    assert w.response(head=True)[0] == 200
    assert sha(w.response()[2]) == sha(BIG[5:])
    assert w.response()[2] == TEXT
    w.close()


def test_big_file_http10_close_delimited(srv):
    w = wire(srv, timeout=15)
    w.send(req("/big.bin", version=b"HTTP/1.0", host=None))
    status, headers, body = w.response()
    assert status == 200 and sha(body) == sha(BIG)
    w.close()

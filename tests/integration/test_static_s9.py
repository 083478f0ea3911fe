"""Static-file semantics a hostile review found in the ninth session, by
sending the same raw requests to a real ``flashplug serve``, nginx, Apache
and lighttpd and settling each difference by RFC 9110.  Each test failed
before its fix; the review's decisions (where the RFC allows what we do)
are in docs/static.md."""
import os

import pytest

from conftest import start_server
from flashplug.http.dates import parse_http_date
from test_review_s5 import head_fields, raw

TEXT = bytes(range(48, 123)) * 4                 # 300 bytes
MTIME = 1_600_000_000                            # Sun, 13 Sep 2020 12:26:40 GMT
LAST_MODIFIED = "Sun, 13 Sep 2020 12:26:40 GMT"
YEAR_ZERO = "Sat, 01 Jan 0000 00:00:00 GMT"
# File times at the edge of a second: (mtime in ns, its Last-Modified).
EDGE_TIMES = {"late-in-a-second.txt": 1_600_000_000_999_999_999,    # a float rounds it up
              "before-1970.txt": -1_500_000_000}                    # int() rounds it up
EDGE_DATES = {"late-in-a-second.txt": LAST_MODIFIED,
              "before-1970.txt": "Wed, 31 Dec 1969 23:59:58 GMT"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("static_s9") / "root"
    root.mkdir()
    (root / "t.txt").write_bytes(TEXT)
    os.utime(root / "t.txt", (MTIME, MTIME))
    (root / "empty.txt").write_bytes(b"")
    for name, mtime_ns in EDGE_TIMES.items():
        (root / name).write_bytes(b"x")
        os.utime(root / name, ns=(mtime_ns, mtime_ns))
    return root


def get(srv, *fields, path="/t.txt", method="GET"):
    """(status, {field: value}, body) of one request with ``fields``
    (``"Name: value"`` strings) on a fresh connection."""
    head = f"{method} {path} HTTP/1.1\r\nHost: a\r\n" + "".join(f + "\r\n" for f in fields)
    out = raw(srv.port, head.encode("latin-1") + b"Connection: close\r\n\r\n")
    status, found = head_fields(out)
    return status, found, out.partition(b"\r\n\r\n")[2]


# -- RFC 9110 §5.6.7: the year of an HTTP-date is any 4DIGIT, 0000 too ------------------


@pytest.mark.parametrize("fields, status", [
    ([f"If-Modified-Since: {YEAR_ZERO}"], 200),           # modified since
    ([f"If-Unmodified-Since: {YEAR_ZERO}"], 412),         # modified since
    ([f"If-Range: {YEAR_ZERO}", "Range: bytes=0-9"], 200),  # not our date
    ([f"If-Modified-Since: {LAST_MODIFIED}"], 304),
])
def test_a_date_in_year_zero_is_a_date_not_a_500(srv, fields, status):
    """``calendar`` has no year 0: parsing one raised, and each of these
    was a 500 (the third after a second sight, from the parser's own
    revalidation path, too)."""
    for _ in range(3):      # the full path, then the remembered heads' paths
        assert get(srv, *fields)[0] == status


# -- RFC 9110 §8.8.2: Last-Modified is the second the file was modified in ---------------


@pytest.mark.parametrize("name", sorted(EDGE_TIMES))
def test_last_modified_is_the_files_second_and_revalidates(srv, name):
    """12:26:40.999999999 was sent as 12:26:41 (seconds as a float), and a
    time before 1970 was compared as one second later than the date sent,
    so its own Last-Modified never gave a 304."""
    path = "/" + name
    status, fields, _ = get(srv, path=path)
    assert (status, fields["last-modified"]) == (200, EDGE_DATES[name])
    assert get(srv, f"If-Modified-Since: {EDGE_DATES[name]}", path=path)[0] == 304
    assert get(srv, f"If-Unmodified-Since: {EDGE_DATES[name]}", path=path)[0] == 200
    assert get(srv, f"If-Range: {EDGE_DATES[name]}", "Range: bytes=0-0", path=path)[0] == 206


# -- RFC 9110 §14.1.1-2: a number in a range has no length limit -------------------------


@pytest.mark.parametrize("value, content_range", [
    ("bytes=0-99999999999999999999", "bytes 0-299/300"),
    ("bytes=290-18446744073709551616", "bytes 290-299/300"),      # 2**64
    ("bytes=-9223372036854775808", "bytes 0-299/300"),            # nginx's CVE-2017-7529
    ("bytes=0-" + "9" * 5000, "bytes 0-299/300"),                 # past int()'s 4300 digits
    ("bytes=" + "0" * 30 + "5-" + "0" * 30 + "9", "bytes 5-9/300"),
])
def test_a_huge_last_pos_or_suffix_is_the_rest_of_the_file(srv, value, content_range):
    """A last-pos past the end means "to the end" and a suffix-length past
    the start "the whole file", however many digits they have; both were
    416 beyond 18 digits (nginx's and lighttpd's answer, which the RFC
    keeps for invalid or unsatisfiable ranges)."""
    status, fields, body = get(srv, f"Range: {value}")
    assert (status, fields["content-range"]) == (206, content_range)
    start, end = (int(n) for n in content_range.split()[1].split("/")[0].split("-"))
    assert body == TEXT[start:end + 1]


def test_a_huge_first_pos_is_still_unsatisfiable(srv):
    status, fields, _ = get(srv, "Range: bytes=99999999999999999999999-")
    assert (status, fields["content-range"]) == (416, "bytes */300")


# -- RFC 9110 §14.2: Range on a representation with no content ----------------------------


@pytest.mark.parametrize("value", ["bytes=0-", "bytes=0-0", "bytes=0-99,-1", "bytes=-0"])
def test_a_range_of_an_empty_file_gets_the_empty_200(srv, value):
    """§14.2: a server MAY ignore Range "when the selected representation
    has no content"; nginx, Apache and lighttpd send the empty 200, and
    werkzeug's 416 was a bug report (pallets/werkzeug#1937) fixed so.
    They were 416 (a browser's media request is "bytes=0-")."""
    status, fields, body = get(srv, f"Range: {value}", path="/empty.txt")
    assert (status, fields["content-length"], body) == (200, "0", b"")
    assert "content-range" not in fields


def test_a_range_that_does_not_parse_is_416_for_an_empty_file_too(srv):
    status, fields, _ = get(srv, "Range: bytes=abc", path="/empty.txt")
    assert (status, fields["content-range"]) == (416, "bytes */0")


# -- a file past 4 GiB: lengths and offsets beyond 2**32 --------------------------------


HUGE = (5 << 30) + 7                      # 5 GiB and a few bytes, sparse
MARKS = {(1 << 32) - 2: b"AB", 1 << 32: b"CD", HUGE - 3: b"END"}


@pytest.fixture(scope="module")
def huge_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("static_s9_huge") / "root"
    root.mkdir()
    with open(root / "huge.bin", "wb") as f:
        f.truncate(HUGE)                  # holes: no disk space, read as zeros
        for offset, data in MARKS.items():
            f.seek(offset)
            f.write(data)
    return root


@pytest.mark.parametrize("arch", ["amped", "mt"])
def test_lengths_and_ranges_past_4_gib(huge_root, arch):
    """Content-Length, Content-Range and the bytes sent, at offsets that do
    not fit 32 bits, by the event loop's sendfile and a thread's alike."""
    server = start_server(huge_root, "--arch", arch, "--access-log", "off",
                          tmp_path=huge_root.parent)
    try:
        status, fields, body = get(server, path="/huge.bin", method="HEAD")
        assert (status, fields["content-length"], body) == (200, str(HUGE), b"")
        etag = fields["etag"]
        for value, content_range, data in [
                ("bytes=4294967294-4294967297", f"bytes 4294967294-4294967297/{HUGE}", b"ABCD"),
                ("bytes=-3", f"bytes {HUGE - 3}-{HUGE - 1}/{HUGE}", b"END"),
                (f"bytes={HUGE - 3}-", f"bytes {HUGE - 3}-{HUGE - 1}/{HUGE}", b"END")]:
            status, fields, body = get(server, f"Range: {value}", f"If-Range: {etag}",
                                       path="/huge.bin")
            assert (status, fields["content-range"], body) == (206, content_range, data)
            assert fields["content-length"] == str(len(data))
        status, fields, body = get(server, "Range: bytes=4294967296-4294967297,-3",
                                   path="/huge.bin")
        assert status == 206 and fields["content-type"].startswith("multipart/byteranges")
        assert int(fields["content-length"]) == len(body)
        assert f"Content-Range: bytes 4294967296-4294967297/{HUGE}\r\n\r\nCD\r\n".encode() in body
        assert f"Content-Range: bytes {HUGE - 3}-{HUGE - 1}/{HUGE}\r\n\r\nEND\r\n".encode() in body
        status, fields, _ = get(server, f"Range: bytes={HUGE}-", path="/huge.bin")
        assert (status, fields["content-range"]) == (416, f"bytes */{HUGE}")
    finally:
        server.stop()


# -- RFC 9110 §8.8.2.1: a file time no HTTP-date can name ---------------------------------


@pytest.fixture
def tmpfs_root():
    """A folder on tmpfs, which keeps any 64-bit file time (ext4 clamps
    them to 1901-2446)."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    root = os.path.join("/dev/shm", f"flashplug-static-s9-{os.getpid()}")
    os.mkdir(root)
    try:
        yield root
    finally:
        for name in os.listdir(root):
            os.unlink(os.path.join(root, name))
        os.rmdir(root)


def test_file_times_before_year_1_or_past_gmtime_are_served(server_factory, tmpfs_root):
    """A time before year 1 was sent as "Fri, 15 Oct -249 ..." (no
    HTTP-date); one past what ``time.gmtime`` converts made a 500, for the
    file and for the listing of its folder."""
    for name, seconds in (("bc.txt", -70_000_000_000), ("far.txt", -(10 ** 17)),
                          ("late.txt", 10 ** 17)):
        path = os.path.join(tmpfs_root, name)
        with open(path, "wb") as f:
            f.write(b"x")
        os.utime(path, ns=(seconds * 10 ** 9, seconds * 10 ** 9))
        if os.stat(path).st_mtime_ns != seconds * 10 ** 9:
            pytest.skip("this tmpfs does not keep such times")
    server = server_factory(tmpfs_root, "--plugins", "autoindex")
    first = "Mon, 01 Jan 0001 00:00:00 GMT"
    for name in ("bc.txt", "far.txt"):
        status, fields, body = get(server, path="/" + name)
        assert (status, fields["last-modified"], body) == (200, first, b"x")
        assert get(server, f"If-Modified-Since: {first}", path="/" + name)[0] == 304
    status, fields, _ = get(server, path="/late.txt")       # the future: now
    modified, date = (parse_http_date(fields[n]) for n in ("last-modified", "date"))
    assert status == 200 and date - 60 < modified <= date
    for accept in ("text/html", "application/json"):
        assert get(server, f"Accept: {accept}", path="/")[0] == 200


# -- decisions where the RFC allows what we answer (docs/static.md) ------------------------


@pytest.mark.parametrize("method, fields, status", [
    # §13.1.3: an If-Modified-Since of more than one member is ignored
    # (Apache and lighttpd answer 304, nginx 400).
    ("GET", [f"If-Modified-Since: {LAST_MODIFIED}", f"If-Modified-Since: {LAST_MODIFIED}"], 200),
    ("GET", [f"If-Modified-Since: {LAST_MODIFIED}, {LAST_MODIFIED}"], 200),
    # Day and month names are case-sensitive (%s"Sun" in §5.6.7): not a date.
    ("GET", [f"If-Modified-Since: {LAST_MODIFIED.lower()}"], 200),
    # Range is no list: two fields make an invalid ranges-specifier, 416
    # (nginx and lighttpd take the first, Apache ignores both).
    ("GET", ["Range: bytes=0-1", "Range: bytes=3-4"], 416),
    # §14.2: HEAD has no range semantics (nginx and Apache answer 206).
    ("HEAD", ["Range: bytes=0-1"], 200),
])
def test_decided_answers(srv, method, fields, status):
    assert get(srv, *fields, method=method)[0] == status


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest.mark.parametrize("path", ["/t.txt", "/missing.txt"])
def test_a_method_no_file_allows_is_405_with_allow_whether_or_not_it_exists(srv, method, path):
    """As nginx and Apache answer (lighttpd: 404 for a missing file)."""
    status, fields, _ = get(srv, "Content-Length: 0", path=path, method=method)
    assert (status, fields["allow"]) == (405, "GET, HEAD, OPTIONS")

import email.parser
import email.policy
import inspect

import pytest

from flashplug.http import ranges
from flashplug.http.ranges import (
    MAX_RANGES, UNSATISFIABLE, content_range, make_boundary,
    multipart_content_type, multipart_plan, parse_range, unsatisfied_range)


@pytest.mark.parametrize("value, expected", [
    ("bytes=0-0", [(0, 0)]),
    ("bytes=0-99", [(0, 99)]),
    ("bytes=10-", [(10, 999)]),
    ("bytes=-100", [(900, 999)]),
    ("bytes=-5000", [(0, 999)]),                   # suffix longer than file
    ("bytes=500-5000", [(500, 999)]),              # end clamped
    ("bytes=999-999", [(999, 999)]),
    ("BYTES=0-1", [(0, 1)]),                       # unit is case-insensitive
    ("bytes=0-1, 5-6", [(0, 1), (5, 6)]),
    ("bytes=0-1 ,\t5-6", [(0, 1), (5, 6)]),
    ("bytes=0-1,,5-6,", [(0, 1), (5, 6)]),         # empty list members
    ("bytes=5-6,0-1", [(5, 6), (0, 1)]),           # the client's order kept
    ("bytes=0-10,5-20", [(0, 20)]),                # overlapping
    ("bytes=0-10,11-20", [(0, 20)]),               # adjacent
    ("bytes=0-10,12-20", [(0, 10), (12, 20)]),     # a gap stays
    ("bytes=0-100,10-20", [(0, 100)]),             # contained
    ("bytes=0-0,-1", [(0, 0), (999, 999)]),
    ("bytes=-1,0-0", [(999, 999), (0, 0)]),
    ("bytes=100-199,0-9,150-300", [(100, 300), (0, 9)]),  # merged where first asked
    ("bytes=500-599,0-9,10-19", [(500, 599), (0, 19)]),
    ("bytes=900-,0-9,950-960", [(900, 999), (0, 9)]),
    ("bytes=-1,0-", [(0, 999)]),
    ("bytes=0-1,2000-3000", [(0, 1)]),             # unsatisfiable one dropped
    ("bytes=0-999999999999999999", [(0, 999)]),    # 18 digits: fine
    # RFC 9110 §14.1.1 sets no length on a number (1*DIGIT), and by §14.1.2
    # a huge last-pos still means "to the end", a huge suffix the whole file.
    ("bytes=0-1234567890123456789", [(0, 999)]),
    ("bytes=-1234567890123456789", [(0, 999)]),
    ("bytes=0-18446744073709551616", [(0, 999)]),           # 2**64
    ("bytes=-9223372036854775808", [(0, 999)]),             # nginx's CVE-2017-7529 value
    ("bytes=10-" + "9" * 10_000, [(10, 999)]),             # past int()'s 4300 digits
    ("bytes=" + "0" * 40 + "7-" + "0" * 40 + "9", [(7, 9)]),  # leading zeros
])
def test_parse_satisfiable(value, expected):
    assert parse_range(value, 1000) == expected


@pytest.mark.parametrize("value", [
    "bytes=1000-",
    "bytes=1000-2000",
    "bytes=5000-6000,1000-",
    "bytes=-0",
    "bytes=-0,-0",
    "bytes=1234567890123456789-",
    "bytes=18446744073709551616-18446744073709551617",
])
def test_parse_unsatisfiable(value):
    assert parse_range(value, 1000) is UNSATISFIABLE


@pytest.mark.parametrize("value", ["bytes=0-", "bytes=0-0", "bytes=-0", "bytes=0-,-0",
                                   "bytes=-1", "bytes=-500", "bytes=0-,-1", "bytes=5-2"])
def test_a_range_of_an_empty_file_is_ignored(value):
    # No int-range is satisfiable and no 206 can carry a suffix range's
    # nothing: RFC 9110 §14.2 lets a server ignore Range "when the selected
    # representation has no content", and nginx, Apache and lighttpd send
    # the empty 200 (an int-range was 416).
    assert parse_range(value, 0) is None


@pytest.mark.parametrize("value", ["bytes=abc", "bytes=-", "bytes=", "bytes=0-1,x"])
def test_a_range_that_does_not_parse_is_416_for_an_empty_file_too(value):
    assert parse_range(value, 0) is UNSATISFIABLE


@pytest.mark.parametrize("value", [
    "",
    "bytes",
    "items=0-1",
    "bytes 0-1",
    "bytes =0-1",                     # no token "bytes": not our unit (nginx: 200)
])
def test_parse_ignored(value):
    assert parse_range(value, 1000) is None


@pytest.mark.parametrize("value", [
    "bytes=",
    "bytes=,",
    "bytes=-",
    "bytes=abc",
    "bytes=1-0",                      # last < first: invalid, selects nothing
    "bytes=0-1,abc",
    "bytes=0--1",
    "bytes=--1",
    "bytes=+1-2",
    "bytes=1-2-3",
    "bytes=1-2;",
    "bytes=0x10-20",
    "bytes=1 - 2",
    "bytes=\u0661-\u0662",            # Arabic-Indic digits are not DIGIT
])
def test_invalid_bytes_ranges_are_416(value):
    """RFC 9110 §14.2: an invalid ranges-specifier SHOULD be 416, as nginx,
    lighttpd and Go answer it (they were ignored: 200)."""
    assert parse_range(value, 1000) is UNSATISFIABLE


def test_invalid_int_range_beside_good_ones_selects_nothing():
    assert parse_range("bytes=0-1,5-4", 1000) == [(0, 1)]


def test_too_many_ranges_is_ignored():
    many = "bytes=" + ",".join("%d-%d" % (i * 3, i * 3) for i in range(1000))
    assert parse_range(many, 10_000) is None
    at_cap = "bytes=" + ",".join("%d-%d" % (i * 3, i * 3) for i in range(MAX_RANGES))
    assert len(parse_range(at_cap, 10_000)) == MAX_RANGES
    over = "bytes=" + ",".join("%d-%d" % (i * 3, i * 3) for i in range(MAX_RANGES + 1))
    assert parse_range(over, 10_000) is None
    assert parse_range("bytes=0-1,3-4,6-7", 100, max_ranges=2) is None


def test_cap_counts_members_not_commas():
    value = "bytes=" + "," * 500 + "0-1"
    assert parse_range(value, 100) == [(0, 1)]


def test_max_ranges_value():
    assert MAX_RANGES == 100


def test_many_overlapping_ranges_coalesce_to_one():
    # The CVE-2025-62727 shape: many overlapping ranges.  Sorted and merged
    # in one pass, they collapse into a single range.
    value = "bytes=" + ",".join("%d-%d" % (i, i + 50) for i in range(99, -1, -1))
    assert parse_range(value, 1000) == [(0, 149)]


def test_merge_is_sort_then_single_pass():
    # No timing assertion: check the algorithm's shape instead.  One sort
    # call in all, and no loop nested inside another in any of the steps.
    steps = [ranges.parse_range, ranges._coalesce, ranges._in_request_order]
    sources = [inspect.getsource(f) for f in steps]
    assert sum(src.count(".sort(") + src.count("sorted(") for src in sources) == 1
    for src in sources:
        loops = [line for line in src.splitlines()
                 if line.lstrip().startswith(("for ", "while "))]
        indents = [len(line) - len(line.lstrip()) for line in loops]
        assert len(set(indents)) <= 1, loops


def test_order_kept_with_many_ranges():
    # Reversed disjoint ranges come back reversed, each one intact.
    value = "bytes=" + ",".join("%d-%d" % (i * 10, i * 10 + 1) for i in range(99, -1, -1))
    assert parse_range(value, 10_000) == [(i * 10, i * 10 + 1) for i in range(99, -1, -1)]


def test_content_range():
    assert content_range(0, 99, 1000) == "bytes 0-99/1000"
    assert unsatisfied_range(1000) == "bytes */1000"
    assert unsatisfied_range(0) == "bytes */0"


def test_boundary_is_random_hex():
    a, b = make_boundary(), make_boundary()
    assert a != b
    assert len(a) >= 16 and all(c in "0123456789abcdef" for c in a)
    assert multipart_content_type(a) == "multipart/byteranges; boundary=" + a


def assemble(path, parts, closing):
    with open(path, "rb") as f:
        data = f.read()
    body = b""
    for header, start, end in parts:
        body += header + data[start:end + 1]
    return body + closing


def test_multipart_length_and_layout(tmp_path):
    data = bytes(range(256)) * 40  # 10240 bytes, every byte value
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    size = len(data)
    wanted = parse_range("bytes=0-9, 100-199, -50, 5000-", size)
    assert wanted == [(0, 9), (100, 199), (5000, size - 1)]
    boundary = make_boundary()
    parts, closing, total = multipart_plan(wanted, size, "application/octet-stream", boundary)
    body = assemble(path, parts, closing)
    assert total == len(body)

    assert body.startswith(b"--" + boundary.encode() + b"\r\n")
    assert body.endswith(b"\r\n--" + boundary.encode() + b"--\r\n")
    assert closing == b"\r\n--" + boundary.encode() + b"--\r\n"
    assert parts[1][0] == (b"\r\n--" + boundary.encode() +
                           b"\r\nContent-Type: application/octet-stream"
                           b"\r\nContent-Range: bytes 100-199/10240\r\n\r\n")
    assert [(s, e) for _, s, e in parts] == wanted


def test_multipart_parses_back(tmp_path):
    data = b"".join(b"line %04d\n" % i for i in range(500))
    path = tmp_path / "file.txt"
    path.write_bytes(data)
    wanted = [(0, 4), (20, 29), (len(data) - 3, len(data) - 1)]
    boundary = make_boundary()
    ctype = "text/plain; charset=utf-8"
    parts, closing, total = multipart_plan(wanted, len(data), ctype, boundary)
    body = assemble(path, parts, closing)
    assert total == len(body)

    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + multipart_content_type(boundary).encode() + b"\r\n\r\n" + body)
    assert message.is_multipart()
    got = list(message.iter_parts())
    assert len(got) == len(wanted)
    for part, (start, end) in zip(got, wanted):
        assert part["Content-Range"] == "bytes %d-%d/%d" % (start, end, len(data))
        assert part.get_content_type() == "text/plain"
        assert part.get_content_charset() == "utf-8"
        assert part.get_payload(decode=True) == data[start:end + 1]


def test_multipart_single_part_length():
    parts, closing, total = multipart_plan([(0, 0)], 1, "a/b", "XY")
    expected = b"--XY\r\nContent-Type: a/b\r\nContent-Range: bytes 0-0/1\r\n\r\nZ\r\n--XY--\r\n"
    assert parts == [(b"--XY\r\nContent-Type: a/b\r\nContent-Range: bytes 0-0/1\r\n\r\n", 0, 0)]
    assert total == len(expected)

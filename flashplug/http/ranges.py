"""Byte ranges (RFC 9110 §14): parse Range, plan 206 bodies.

Theory of operation: ``parse_range`` turns a Range value and the file size
into one of three answers: None (ignore the header, send 200 with the
whole body), ``UNSATISFIABLE`` (send 416: no range selects a byte, or the
bytes ranges do not parse) or a list of inclusive
``(start, end)`` pairs with overlapping and adjacent ranges coalesced.  The
list keeps the order in which the client asked (RFC 9110 §15.3.7.2: parts
SHOULD follow the order of the range-specs); a coalesced range stands where
the first of its members stood.  The work is bounded by the header length
and ``max_ranges``: one pass to parse, one sort, one pass to coalesce, one
pass to restore the order, never a pairwise merge (a quadratic merge made
Starlette's ranges a denial of service, CVE-2025-62727).

An empty file has no byte to send: a suffix range ("bytes=-5") is
satisfiable by definition (RFC 9110 §14.1.2: a non-zero suffix-length
always is) yet no 206 can describe it, and no int-range is satisfiable.
§14.2 lets a server ignore a Range header field "when the selected
representation has no content", and a well-formed one is ignored: the empty
body goes with 200, as nginx, Apache and lighttpd send it (werkzeug gave
416 until its issue 1937, whose report asked for exactly this).  A Range
that does not parse is still 416, as for any file (and as nginx answers).

One range is sent as a plain 206 with Content-Range; several as a
multipart/byteranges body (§14.6), whose exact length ``multipart_plan``
computes up front so the response can carry Content-Length and the body
can still be sent with sendfile between the part headers.
"""

import re
import secrets

# Apache's MaxRanges defaults to 200; we take half.  Each range costs a
# part header and a separate write, so the cap bounds the work one small
# request can demand; a header with more ranges is ignored (full 200),
# which every client must be able to handle.
MAX_RANGES = 100

# re.ASCII: \d must not match other scripts' digits, which int() would accept.
_RANGE_SPEC = re.compile(r"(\d+)?-(\d+)?", re.ASCII)

# A number of more digits than this (leading zeros aside) is past the end of
# any file (10**18 bytes is an exabyte).  It is not converted: int() of a
# long digit string costs time quadratic in its length (and Python refuses
# past 4300 digits), and the field may be as long as a request head.
_HUGE_DIGITS = 18
_HUGE = 10 ** _HUGE_DIGITS


def _offset(digits):
    """The value of a DIGIT string, or ``_HUGE`` when it is at least that."""
    digits = digits.lstrip("0")
    if len(digits) > _HUGE_DIGITS:
        return _HUGE
    return int(digits) if digits else 0


class _Unsatisfiable:
    __slots__ = ()

    def __repr__(self):
        return "UNSATISFIABLE"


# The Range header is valid but selects no byte of the file: answer 416.
UNSATISFIABLE = _Unsatisfiable()


def parse_range(value, size, max_ranges=MAX_RANGES):
    """Interpret a Range header value for a representation of ``size`` bytes.

    A unit other than ``bytes`` (a token, exactly: ``bytes =`` is none) is
    ignored, as are more than ``max_ranges`` ranges.  A ``bytes`` value
    that does not parse (``bytes=abc``, a bare ``-``) is UNSATISFIABLE:
    RFC 9110 §14.2 says a ranges-specifier that is "invalid or
    unsatisfiable" SHOULD get 416, and nginx, lighttpd and Go's net/http
    answer so.  An int-range whose last-pos is below its first-pos
    (§14.1.1: invalid) selects nothing, like one past the end, while the
    others stand (nginx, lighttpd).

    Numbers have no length limit in the grammar (``1*DIGIT``, §14.1.1), and
    §14.1.2 gives huge ones a meaning: a last-pos past the end means "to the end",
    a suffix-length longer than the file means all of it, and a first-pos
    past the end selects nothing.  So ``bytes=0-99999999999999999999`` is a
    206 of the whole file (nginx, lighttpd and Go answer 416, which the RFC
    keeps for invalid or unsatisfiable ranges; Apache ignores the field).
    """
    unit, eq, range_set = value.partition("=")
    if not eq or unit.lower() != "bytes":
        return None
    specs = [s.strip(" \t") for s in range_set.split(",")]
    specs = [s for s in specs if s]     # empty list elements: RFC 9110 §5.6.1
    if len(specs) > max_ranges:
        return None
    if not specs:
        return UNSATISFIABLE

    ranges = []             # (start, end, position in the header)
    for spec in specs:
        m = _RANGE_SPEC.fullmatch(spec)
        if m is None:
            return UNSATISFIABLE
        first, last = m.groups()
        if first is not None:
            start = _offset(first)
            if last is not None:
                end = _offset(last)
                if end < start:
                    continue     # invalid: selects nothing, as nginx takes it
            else:
                end = size - 1
            if start >= size:
                continue  # unsatisfiable alone; others may still be fine
            ranges.append((start, min(end, size - 1), len(ranges)))
        elif last is not None:
            suffix = _offset(last)
            if suffix == 0 or size == 0:
                continue
            ranges.append((max(size - suffix, 0), size - 1, len(ranges)))
        else:
            return UNSATISFIABLE  # a bare "-"
    if not ranges:
        return None if size == 0 else UNSATISFIABLE   # see the module docstring
    return _in_request_order(_coalesce(ranges), len(ranges))


def _coalesce(ranges):
    """Merge overlapping and adjacent ``(start, end, position)`` triples.

    One sort by offset, then one pass; a merged range keeps the smallest
    position among its members, so it is sent where the client first
    asked for any of its bytes.
    """
    ranges.sort()
    merged = [list(ranges[0])]
    for start, end, position in ranges[1:]:
        last = merged[-1]
        if start <= last[1] + 1:
            last[1] = max(last[1], end)
            last[2] = min(last[2], position)
        else:
            merged.append([start, end, position])
    return merged


def _in_request_order(merged, count):
    """The merged ranges as ``(start, end)`` pairs, in header order.

    Positions are distinct integers below ``count``, so placing each range
    in its slot orders them in linear time, without a second sort.
    """
    slots = [None] * count
    for start, end, position in merged:
        slots[position] = (start, end)
    return [r for r in slots if r is not None]


def content_range(start, end, size):
    """The Content-Range value of one part: ``bytes 0-99/1000``."""
    return "bytes %d-%d/%d" % (start, end, size)


def unsatisfied_range(size):
    """The Content-Range value of a 416 response: ``bytes */1000``."""
    return "bytes */%d" % size


def make_boundary():
    """A multipart boundary no file body will contain by chance (128 bits)."""
    return secrets.token_hex(16)


def multipart_content_type(boundary):
    """The Content-Type value of a multipart/byteranges response."""
    return "multipart/byteranges; boundary=" + boundary


def multipart_plan(ranges, size, content_type, boundary):
    """Lay out a multipart/byteranges body without reading the file.

    Returns ``(parts, closing, total_length)``: ``parts`` is a list of
    ``(part_header_bytes, start, end)``; the body is, for each part, its
    header followed by bytes ``start..end`` of the file, then ``closing``.
    ``total_length`` is the exact length of that body.

    Every delimiter after the first starts with the CRLF that RFC 2046
    attaches to it; the first starts the body, with an empty preamble.
    """
    ctype = content_type.encode("latin-1")
    dash = b"--" + boundary.encode("ascii")
    parts = []
    total = 0
    for i, (start, end) in enumerate(ranges):
        header = b"".join((
            b"\r\n" if i else b"", dash,
            b"\r\nContent-Type: ", ctype,
            b"\r\nContent-Range: ", content_range(start, end, size).encode("ascii"),
            b"\r\n\r\n"))
        parts.append((header, start, end))
        total += len(header) + end - start + 1
    closing = b"\r\n" + dash + b"--\r\n"
    return parts, closing, total + len(closing)

"""Byte ranges (RFC 9110 §14): parse Range, plan 206 bodies.

Theory of operation: ``parse_range`` turns a Range value and the file size
into one of three answers: None (ignore the header, send 200 with the
whole body), ``UNSATISFIABLE`` (send 416) or a sorted list of inclusive
``(start, end)`` pairs with overlapping and adjacent ranges coalesced.  The
work is bounded by the header length and ``max_ranges``: one pass to
parse, one sort, one pass to coalesce, never a pairwise merge (a quadratic
merge made Starlette's ranges a denial of service, CVE-2025-62727).

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

# Offsets of at most 18 digits fit any real file (< 1 EB) and keep the
# integers small; longer ones are treated as a syntax error.  re.ASCII:
# \d must not match other scripts' digits, which int() would accept.
_RANGE_SPEC = re.compile(r"(\d{1,18})?-(\d{1,18})?", re.ASCII)


class _Unsatisfiable:
    __slots__ = ()

    def __repr__(self):
        return "UNSATISFIABLE"


# The Range header is valid but selects no byte of the file: answer 416.
UNSATISFIABLE = _Unsatisfiable()


def parse_range(value, size, max_ranges=MAX_RANGES):
    """Interpret a Range header value for a representation of ``size`` bytes."""
    unit, eq, range_set = value.partition("=")
    if not eq or unit.strip(" \t").lower() != "bytes":
        return None
    specs = [s.strip(" \t") for s in range_set.split(",")]
    specs = [s for s in specs if s]
    if not specs or len(specs) > max_ranges:
        return None

    ranges = []
    for spec in specs:
        m = _RANGE_SPEC.fullmatch(spec)
        if m is None:
            return None
        first, last = m.groups()
        if first is not None:
            start = int(first)
            if last is not None:
                end = int(last)
                if end < start:
                    return None  # an invalid int-range voids the header
            else:
                end = size - 1
            if start >= size:
                continue  # unsatisfiable alone; others may still be fine
            ranges.append((start, min(end, size - 1)))
        elif last is not None:
            suffix = int(last)
            if suffix == 0 or size == 0:
                continue
            ranges.append((max(size - suffix, 0), size - 1))
        else:
            return None  # a bare "-"
    if not ranges:
        return UNSATISFIABLE

    ranges.sort()
    merged = [ranges[0]]
    for start, end in ranges[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end + 1:
            if end > last_end:
                merged[-1] = (last_start, end)
        else:
            merged.append((start, end))
    return merged


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

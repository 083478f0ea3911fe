"""Fuzz targets for the sans-I/O parts: bytes in, invariants checked.

Theory of operation: each target takes one fuzzer input (``bytes``), turns
it into what the part is handed in the server (a request-target or field
value is one character per byte, ISO-8859-1; CGI output is bytes), calls
the part and checks what comes back.  A documented error (``HTTPError``
for a path, ``CGIError`` for a script's header block) is a normal outcome;
any other exception, or a broken invariant (``AssertionError``), is a
crash for the fuzzer.  ``fuzz.py`` drives them under atheris; the same
functions replay the corpus without it.
"""
import os

from flashplug.errors import HTTPError
from flashplug.http.accept import media_ranges, quality
from flashplug.http.conditionals import evaluate, if_range_allows, make_etag
from flashplug.http.framing import must_be_empty
from flashplug.http.paths import decode_path, to_relative_parts
from flashplug.http.ranges import UNSATISFIABLE, multipart_plan, parse_range
from flashplug_plugins.cgi.response import (HOP_BY_HOP, CGIError, find_header_end,
                                            parse_header_block)

_ROOT = "/srv/www"


def ranges(data):
    """``Range`` value against a file size taken from the first 3 bytes."""
    size = int.from_bytes(data[:3].ljust(3, b"\0"), "big") % 5000
    got = parse_range(data[3:].decode("latin-1"), size)
    if got is None or got is UNSATISFIABLE:
        return
    assert 0 < len(got) <= 100
    ordered = sorted(got)
    for start, end in got:
        assert 0 <= start <= end < size, (start, end, size)
    for a, b in zip(ordered, ordered[1:]):
        assert b[0] > a[1] + 1, "overlapping or adjacent parts"
    parts, closing, total = multipart_plan(got, size, "text/plain", "x" * 32)
    assert total == sum(len(h) + e - s + 1 for h, s, e in parts) + len(closing)


_FIELDS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")


def conditionals(data):
    """Preconditions: up to four field values split at NUL, a method bit."""
    method = "GET" if data[:1] < b"\x80" else "PUT"
    values = data[1:].decode("latin-1").split("\0")
    fields = dict(zip(_FIELDS, values))
    etag = make_etag(1_600_000_000_000_000_000, 1234, 99)
    for tag, mtime in ((etag, 1_600_000_000), (None, None)):
        got = evaluate(method, fields.get, tag, mtime)
        assert got in (None, 304, 412)
        assert got != 304 or method == "GET"
        assert if_range_allows(values[-1], tag, mtime) in (True, False)


def paths(data):
    """A request path: decoded once, never outside the root."""
    try:
        path = decode_path("/" + data.decode("latin-1"))
    except HTTPError as e:
        assert e.status in (400, 404)
        return
    assert path.startswith("/") and "//" not in path
    assert "\x00" not in path and "\\" not in path
    segments = path.split("/")
    assert ".." not in segments and "." not in segments
    joined = os.path.normpath(os.path.join(_ROOT, *to_relative_parts(path)))
    assert joined == _ROOT or joined.startswith(_ROOT + "/"), joined


def cgi(data):
    """A script's output: find the header block, parse it."""
    end = find_header_end(data)
    block = data if end is None else data[:end[0]]
    try:
        r = parse_header_block(block)
    except CGIError:
        return
    assert 200 <= r.status <= 599
    names = {name.lower() for name, _ in r.headers}
    assert not names & HOP_BY_HOP and "status" not in names
    for name, value in r.headers:
        assert not set("\r\n\x00") & set(name + value)
    if must_be_empty(r.status):
        assert r.content_length is None and "content-length" not in names


def accept(data):
    """An ``Accept`` value: every q within [0, 1]."""
    ranges_ = media_ranges(data.decode("latin-1"))
    for _, q in ranges_:
        assert 0.0 <= q <= 1.0, q
    for media in ("text/html", "application/json", "text/plain"):
        assert 0.0 <= quality(media, ranges_) <= 1.0


TARGETS = {f.__name__: f for f in (ranges, conditionals, paths, cgi, accept)}

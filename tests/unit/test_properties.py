"""Property-based tests (hypothesis) for the sans-I/O parts (issue #13).

Each property is an invariant a parser keeps for *any* input, not one
example: it raises nothing but its documented error, and what it returns
is safe to act on.  The "ci" profile (tests/conftest.py) keeps the whole
file to seconds; ``FLASHPLUG_HYPOTHESIS=long`` runs 20,000 examples each.
The HTTP/1.1 protocol object is not here yet: it arrives with the
connection layer's redesign.
"""
import os
from urllib.parse import quote

from hypothesis import assume, example, given, strategies as st

from flashplug.errors import HTTPError
from flashplug.http.accept import media_ranges, quality
from flashplug.http.conditionals import (etag_list_matches, evaluate, if_range_allows,
                                         make_etag, parse_etag_list)
from flashplug.http.dates import format_http_date, parse_http_date
from flashplug.http.framing import must_be_empty
from flashplug.http.paths import decode_path, to_relative_parts
from flashplug.http.ranges import UNSATISFIABLE, multipart_plan, parse_range
from flashplug_plugins.cgi.response import (
    HOP_BY_HOP, CGIError, find_header_end, parse_header_block)

# One character per byte, as the kernel hands over a request-target or a
# header value (ISO-8859-1), biased towards the characters parsers care about.
_SPECIAL = "/.%\\\x00\r\n\t ,;=\"-*W"
wire_text = st.text(alphabet=st.one_of(st.sampled_from(_SPECIAL),
                                       st.characters(max_codepoint=0xff)), max_size=80)


# -- ranges (RFC 9110 §14) -----------------------------------------------------------

def range_spec():
    num = st.integers(0, 300).map(str)
    return st.one_of(st.tuples(num, num).map(lambda t: t[0] + "-" + t[1]),
                     num.map(lambda n: n + "-"), num.map(lambda n: "-" + n))


@given(wire_text, st.integers(0, 10**6))
def test_parse_range_never_raises_on_any_text(value, size):
    parse_range(value, size)
    parse_range("bytes=" + value, size)


@given(st.lists(range_spec(), min_size=1, max_size=12), st.integers(0, 200),
       st.sampled_from([",", ", ", " ,\t"]))
def test_satisfiable_ranges_are_inside_disjoint_and_cover_what_was_asked(specs, size, sep):
    got = parse_range("bytes=" + sep.join(specs), size)
    wanted = set()
    for spec in specs:  # the bytes each spec selects, the naive way
        first, _, last = spec.partition("-")
        if first and last:
            # last < first: an invalid int-range, which selects nothing
            wanted |= set(range(int(first), min(int(last), size - 1) + 1))
        elif first:
            wanted |= set(range(int(first), size))
        elif int(last):
            wanted |= set(range(max(size - int(last), 0), size))
    if got is None:
        assert size == 0 and not wanted  # an empty file: only suffixes, ignored
        return
    if got is UNSATISFIABLE:
        assert not wanted
        return
    covered = set()
    for start, end in got:
        assert 0 <= start <= end < size
        assert not covered & set(range(start, end + 1)), "overlapping parts"
        covered |= set(range(start, end + 1))
    assert covered == wanted
    ordered = sorted(got)
    assert all(b[0] > a[1] + 1 for a, b in zip(ordered, ordered[1:])), "adjacent parts"


@given(st.lists(range_spec(), min_size=1, max_size=8), st.integers(1, 300))
def test_multipart_plan_length_is_the_body_length(specs, size):
    got = parse_range("bytes=" + ",".join(specs), size)
    assume(isinstance(got, list))
    data = bytes(i % 251 for i in range(size))
    parts, closing, total = multipart_plan(got, size, "text/plain", "b0undary")
    body = b"".join(head + data[start:end + 1] for head, start, end in parts) + closing
    assert len(body) == total


# -- conditionals (RFC 9110 §13) -----------------------------------------------------

etags = st.builds(make_etag, st.integers(0, 2**63), st.integers(0, 2**40), st.integers(0, 2**32))
mtimes = st.one_of(st.none(), st.integers(0, 2**33))
headers = st.dictionaries(
    st.sampled_from(["if-match", "if-none-match", "if-modified-since", "if-unmodified-since"]),
    st.one_of(wire_text, etags, st.just("*"),
              st.integers(0, 2**33).map(format_http_date)))


@given(st.sampled_from(["GET", "HEAD", "POST", "PUT"]), headers,
       st.one_of(st.none(), etags), mtimes)
def test_evaluate_answers_go_on_304_or_412_for_any_fields(method, fields, etag, mtime):
    got = evaluate(method, fields.get, etag, mtime)
    assert got in (None, 304, 412)
    if got == 304:
        assert method in ("GET", "HEAD")  # never 304 an unsafe method


@given(etags, st.booleans(), mtimes)
def test_our_own_tag_revalidates(etag, weak_list, mtime):
    value = ("W/" + etag) if weak_list else etag
    assert evaluate("GET", {"if-none-match": value}.get, etag, mtime) == 304
    assert evaluate("PUT", {"if-match": etag}.get, etag, mtime) is None


@given(st.lists(st.tuples(st.booleans(), st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xff, blacklist_characters='"\x7f'),
    max_size=12)), max_size=6), st.sampled_from([",", ", ", " ,\t", ",,"]))
def test_etag_lists_round_trip(tags, sep):
    value = sep.join(("W/" if weak else "") + '"%s"' % opaque for weak, opaque in tags)
    assert parse_etag_list(value) == [(weak, '"%s"' % opaque) for weak, opaque in tags]


@given(wire_text, st.one_of(st.none(), etags), mtimes, st.booleans())
def test_etag_matching_and_if_range_never_raise(value, etag, mtime, strong):
    assert etag_list_matches(value, etag, etag is not None, strong) in (True, False)
    assert if_range_allows(value, etag, mtime) in (True, False)
    if etag is not None:
        assert not if_range_allows("W/" + etag, etag, mtime)  # weak never matches


@given(st.integers(0, 253402300799))  # to 9999-12-31
def test_http_dates_round_trip(ts):
    assert parse_http_date(format_http_date(ts)) == ts


@given(wire_text)
def test_parse_http_date_never_raises(value):
    got = parse_http_date(value)
    assert got is None or isinstance(got, int)


# -- request paths (paths.py) --------------------------------------------------------

ROOT = "/srv/www"


@given(st.one_of(wire_text.map(lambda t: "/" + t), wire_text))
@example("/%2e%2e/%2E%2e/etc/passwd")
@example("/a/%2e%2e%2f..")
@example("/%c0%ae%c0%ae/")
def test_decoded_paths_never_escape_the_root(raw):
    try:
        path = decode_path(raw)
    except HTTPError as e:
        assert e.status in (400, 404)
        return
    assert path.startswith("/") and "//" not in path
    assert "\x00" not in path and "\\" not in path
    segments = path.split("/")
    assert ".." not in segments and "." not in segments
    joined = os.path.normpath(os.path.join(ROOT, *to_relative_parts(path)))
    assert joined == ROOT or joined.startswith(ROOT + "/")


segment = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x10ffff,
                                         blacklist_characters="/\\", blacklist_categories=("Cs",)),
                  min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


@given(st.lists(segment, min_size=1, max_size=5), st.booleans())
def test_a_quoted_file_name_decodes_back_to_itself(segments, slash):
    """What a listing links to (every byte quoted) is what the path names."""
    path = "/" + "/".join(segments) + ("/" if slash else "")
    raw = quote(path.encode("utf-8"), safe="/")
    assert decode_path(raw) == path


@given(wire_text.map(lambda t: "/" + t))
def test_decoding_is_idempotent_through_quote(raw):
    try:
        path = decode_path(raw)
    except HTTPError:
        return
    again = quote(path.encode("utf-8", "surrogateescape"), safe="/")
    assert decode_path(again) == path


# -- the CGI response parser (RFC 3875 §6) -------------------------------------------

cgi_line = st.one_of(
    st.builds(lambda n, v: n + b": " + v,
              st.sampled_from([b"Status", b"Content-Type", b"Location", b"Content-Length",
                               b"Transfer-Encoding", b"Connection", b"X-A", b"status"]),
              st.binary(max_size=20)),
    st.sampled_from([b"Status: 204 No Content", b"Status: 304", b"Status: 205", b"Status: 200",
                     b"Content-Length: 5", b"Location: /x", b"Location: //evil/",
                     b"Content-Type: text/plain"]),
    st.binary(max_size=30))


@given(st.lists(cgi_line, max_size=8), st.sampled_from([b"\n", b"\r\n"]))
def test_cgi_header_blocks_parse_or_raise_cgierror_and_are_safe(lines, nl):
    try:
        r = parse_header_block(nl.join(lines))
    except CGIError:
        return
    assert 200 <= r.status <= 599
    names = [name.lower() for name, _ in r.headers]
    assert not HOP_BY_HOP & set(names)
    assert "status" not in names
    for name, value in r.headers:
        assert not set("\r\n\x00") & set(name + value), "a value that would split the head"
    if must_be_empty(r.status):
        assert r.content_length is None and "content-length" not in names
    if r.content_length is not None:
        assert r.content_length >= 0


@given(st.binary(max_size=200), st.lists(st.integers(1, 40), max_size=10))
def test_find_header_end_incrementally_agrees_with_one_look(data, cuts):
    """The handler searches a growing buffer; the answer must not depend on
    where the pipe happened to split the output."""
    whole = find_header_end(data)
    buf, searched, got = b"", 0, None
    pos = 0
    for n in cuts + [len(data)]:
        piece, pos = data[pos:pos + n], pos + n
        buf += piece
        got = find_header_end(buf, searched)
        if got is not None:
            break
        searched = len(buf)
    if got is None:
        assert whole is None or buf != data
    else:
        assert got == find_header_end(buf)


# -- Accept (RFC 9110 §12.5.1) -------------------------------------------------------

q_text = st.one_of(st.sampled_from(["nan", "inf", "-inf", "10", "1_0", "-1", "1.5", "0.0001",
                                    "1e0", ".5", "0x1", "1.000", "0.5"]), wire_text)
accept_text = st.one_of(
    wire_text,
    st.lists(st.tuples(st.sampled_from(["text/html", "*/*", "text/*", "application/json"]),
                       q_text), max_size=4).map(
        lambda items: ", ".join(f"{m};q={q}" for m, q in items)))


@given(accept_text, st.sampled_from(["text/html", "application/json", "text/plain",
                                     "application/xml"]))
def test_quality_is_always_between_0_and_1(accept, media):
    ranges = media_ranges(accept)
    assert all(0.0 <= q <= 1.0 for _, q in ranges)
    assert 0.0 <= quality(media, ranges) <= 1.0


@given(st.sampled_from(["text/html", "application/json"]),
       st.integers(0, 1000), st.sampled_from(["", " ", "\t"]))
def test_a_valid_q_is_read_exactly(media, milli, ows):
    q = "%d.%03d" % divmod(milli, 1000)
    ranges = media_ranges(f"{media}{ows};{ows}q={q}, */*;q=0")
    assert quality(media, ranges) == milli / 1000

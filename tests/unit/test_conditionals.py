import pytest

from flashplug.http.conditionals import (
    etag_list_matches, evaluate, if_range_allows, make_etag, parse_etag_list)
from flashplug.http.dates import format_http_date

ETAG = make_etag(1_700_000_000_123_456_789, 4096, 1234)
MTIME = 1_700_000_000
DATE = format_http_date(MTIME)
BEFORE = format_http_date(MTIME - 1)
AFTER = format_http_date(MTIME + 1)


def run(method="GET", etag=ETAG, last_modified=MTIME, **headers):
    fields = {k.replace("_", "-"): v for k, v in headers.items()}
    return evaluate(method, fields.get, etag, last_modified)


# -- make_etag -------------------------------------------------------------

def test_make_etag_is_strong_and_quoted():
    assert ETAG.startswith('"') and ETAG.endswith('"')
    assert not ETAG.startswith("W/")
    assert '"' not in ETAG[1:-1]


def test_make_etag_changes_with_each_input():
    tags = {make_etag(1, 2, 3), make_etag(2, 2, 3), make_etag(1, 3, 3),
            make_etag(1, 2, 4)}
    assert len(tags) == 4
    assert make_etag(1, 2, 3) == make_etag(1, 2, 3)


# -- entity-tag lists ------------------------------------------------------

def test_parse_list_forms():
    assert parse_etag_list('"a"') == [(False, '"a"')]
    assert parse_etag_list('W/"a", "b"') == [(True, '"a"'), (False, '"b"')]
    assert parse_etag_list(' "a,b" ,\t"c" ') == [(False, '"a,b"'), (False, '"c"')]
    assert parse_etag_list('"a",,"b",') == [(False, '"a"'), (False, '"b"')]
    assert parse_etag_list('""') == [(False, '""')]


@pytest.mark.parametrize("value", [
    'a', '"a', 'a"', '"a" "b"', 'w/"a"', 'W/ "a"', '"a", *', '"a"b',
    '"a\x00"', 'W/a',
])
def test_parse_list_garbage(value):
    assert parse_etag_list(value) is None


def test_list_matches_weak_and_strong():
    assert etag_list_matches('W/"x"', '"x"', True, strong=False)
    assert not etag_list_matches('W/"x"', '"x"', True, strong=True)
    assert etag_list_matches('"x"', '"x"', True, strong=True)
    assert not etag_list_matches('"x"', 'W/"x"', True, strong=True)
    assert etag_list_matches('"x"', 'W/"x"', True, strong=False)
    assert etag_list_matches('"y", "x,z", "x"', '"x"', True, strong=True)
    assert not etag_list_matches('"y", "x,z"', '"x"', True, strong=True)
    assert not etag_list_matches('garbage "x"', '"x"', True, strong=False)


def test_star():
    assert etag_list_matches("*", '"x"', True, strong=True)
    assert etag_list_matches(" * ", None, True, strong=False)
    assert not etag_list_matches("*", None, False, strong=False)


# -- evaluate: each precondition alone -------------------------------------

def test_no_preconditions():
    assert run() is None


def test_if_match():
    assert run(if_match=ETAG) is None
    assert run(if_match='"other"') == 412
    assert run(if_match='"other", ' + ETAG) is None
    assert run(if_match="W/" + ETAG) == 412          # strong comparison
    assert run(if_match="*") is None
    assert run(if_match="*", etag=None, last_modified=None) == 412
    assert run(if_match="garbage") == 412


def test_if_unmodified_since():
    assert run(if_unmodified_since=DATE) is None
    assert run(if_unmodified_since=AFTER) is None
    assert run(if_unmodified_since=BEFORE) == 412
    assert run(if_unmodified_since="not a date") is None   # ignored
    assert run(if_unmodified_since=BEFORE, last_modified=None) is None


def test_if_none_match_get_head():
    for method in ("GET", "HEAD"):
        assert run(method, if_none_match=ETAG) == 304
        assert run(method, if_none_match="W/" + ETAG) == 304   # weak comparison
        assert run(method, if_none_match='"a", ' + ETAG) == 304
        assert run(method, if_none_match='"other"') is None
        assert run(method, if_none_match="*") == 304
        assert run(method, if_none_match="garbage") is None


def test_if_none_match_other_methods_give_412():
    for method in ("POST", "PUT", "DELETE"):
        assert run(method, if_none_match=ETAG) == 412
        assert run(method, if_none_match="*") == 412
        assert run(method, if_none_match='"other"') is None
        assert run(method, if_none_match="*", etag=None, last_modified=None) is None


def test_if_modified_since():
    assert run(if_modified_since=DATE) == 304
    assert run(if_modified_since=AFTER) == 304
    assert run(if_modified_since=BEFORE) is None
    assert run("HEAD", if_modified_since=DATE) == 304
    assert run("POST", if_modified_since=DATE) is None     # GET/HEAD only
    assert run(if_modified_since="yesterday") is None      # invalid: ignored
    assert run(if_modified_since=DATE + ", " + DATE) is None  # a list: ignored
    assert run(if_modified_since=DATE, last_modified=None) is None


def test_if_modified_since_other_formats():
    assert run(if_modified_since="Tuesday, 14-Nov-23 22:13:20 GMT") == 304
    assert run(if_modified_since="Tue Nov 14 22:13:20 2023") == 304


# -- evaluate: precedence (RFC 9110 §13.2.2) --------------------------------

def test_if_none_match_overrides_if_modified_since():
    # IMS alone would say 304; a non-matching INM wins and sends the body.
    assert run(if_none_match='"other"', if_modified_since=AFTER) is None
    # IMS alone would say 200; a matching INM answers 304.
    assert run(if_none_match=ETAG, if_modified_since=BEFORE) == 304


def test_if_match_failure_beats_if_none_match():
    assert run(if_match='"other"', if_none_match=ETAG) == 412


def test_if_match_overrides_if_unmodified_since():
    assert run(if_match=ETAG, if_unmodified_since=BEFORE) is None
    assert run(if_match='"other"', if_unmodified_since=AFTER) == 412


def test_if_unmodified_since_failure_beats_if_modified_since():
    assert run(if_unmodified_since=BEFORE, if_modified_since=DATE) == 412


def test_passing_if_match_then_if_none_match():
    assert run(if_match=ETAG, if_none_match=ETAG) == 304
    assert run("PUT", if_match=ETAG, if_none_match=ETAG) == 412


def test_headers_are_looked_up_lowercase():
    seen = []

    def get(name):
        seen.append(name)
        return None

    evaluate("GET", get, ETAG, MTIME)
    assert seen and all(name == name.lower() for name in seen)


# -- If-Range ---------------------------------------------------------------

def test_if_range_etag():
    assert if_range_allows(ETAG, ETAG, MTIME)
    assert if_range_allows(" " + ETAG + " ", ETAG, MTIME)
    assert not if_range_allows('"other"', ETAG, MTIME)
    assert not if_range_allows("W/" + ETAG, ETAG, MTIME)    # weak never matches
    assert not if_range_allows(ETAG, "W/" + ETAG, MTIME)
    assert not if_range_allows(ETAG, None, MTIME)


def test_if_range_date():
    assert if_range_allows(DATE, ETAG, MTIME)
    assert not if_range_allows(AFTER, ETAG, MTIME)          # exact match only
    assert not if_range_allows(BEFORE, ETAG, MTIME)
    assert not if_range_allows(DATE, ETAG, None)
    # Our tag weak (compressed on the fly): our date is no strong validator.
    assert not if_range_allows(DATE, "W/" + ETAG, MTIME)


@pytest.mark.parametrize("value", ["", "*", "garbage", '"a", "b"', "0"])
def test_if_range_garbage(value):
    assert not if_range_allows(value, ETAG, MTIME)

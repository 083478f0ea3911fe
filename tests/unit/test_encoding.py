"""Accept-Encoding negotiation (RFC 9110 §12.5.3), sans I/O."""
import pytest

from flashplug.http.encoding import IDENTITY, choose, codings

OURS = ("br", "zstd", "gzip")


def test_codings_reads_names_and_q_case_insensitively():
    assert codings("GZIP;Q=0.5, br , x-gzip;q=1, zstd;q=bad, ,identity;q=0") == {
        "gzip": 0.5, "br": 1.0, "zstd": 0.0, "identity": 0.0}


@pytest.mark.parametrize("value, offered, expected", [
    (None, OURS, IDENTITY),                      # no field: identity
    ("", OURS, IDENTITY),                        # empty: identity only
    ("gzip", OURS, "gzip"),
    ("x-gzip", OURS, "gzip"),                    # §8.4.1.3
    ("gzip, deflate, br, zstd", OURS, "br"),     # a tie: our order
    ("gzip, zstd", OURS, "zstd"),
    ("gzip;q=1, br;q=0.9", OURS, "gzip"),        # the client's q first
    ("br;q=0, gzip;q=0.1", OURS, "gzip"),        # q=0: not acceptable
    ("*", OURS, "br"),
    ("*;q=0.5, gzip", OURS, "gzip"),
    ("*;q=0, gzip", OURS, "gzip"),
    ("deflate, compress", OURS, IDENTITY),       # nothing we have
    ("br", ("gzip",), IDENTITY),                 # not offered for this file
    ("identity;q=0", OURS, None),                # 406
    ("*;q=0", OURS, None),                       # identity too, as it is not named
    ("*;q=0, identity", OURS, IDENTITY),
    ("identity;q=0, gzip", OURS, "gzip"),
    ("gzip;q=0.5, identity;q=0.6", OURS, IDENTITY),  # identity named, rated higher
    ("gzip;q=0.6, identity;q=0.6", OURS, "gzip"),    # a tie with identity: the coding
    ("gzip;q=0.5", OURS, "gzip"),                # identity unnamed: no q of its own
    ("gzip;q=0", ("gzip",), IDENTITY),
    ("br;q=nan, gzip;q=0.001", OURS, "gzip"),    # nan outside the grammar: 0
])
def test_choose(value, offered, expected):
    assert choose(value, offered) == expected


def test_choose_takes_a_dict_of_variants_in_its_order():
    assert choose("gzip, br", {"gzip": None, "br": None}) == "gzip"

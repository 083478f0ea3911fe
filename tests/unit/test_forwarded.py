"""The client's address behind trusted proxies (flashplug.http.forwarded):
X-Forwarded-For and Forwarded (RFC 7239), walked right to left."""
import argparse

import pytest

from flashplug.http.forwarded import (client_address, forwarded_hops, parse_networks,
                                      trusted_networks, xff_hops)
from flashplug.http.message import Headers

TRUSTED = trusted_networks([parse_networks("10.0.0.0/8,127.0.0.1"),
                            parse_networks("2001:db8:1::/48")])
PROXY = ("10.0.0.5", 41000)


def xff(*values):
    return Headers([("x-forwarded-for", v) for v in values])


def fwd(*values):
    return Headers([("forwarded", v) for v in values])


def test_untrusted_peer_is_never_believed():
    assert client_address(("192.0.2.9", 5000), xff("203.0.113.1"), TRUSTED) == \
        ("192.0.2.9", 5000)
    assert client_address(("192.0.2.9", 5000), fwd("for=203.0.113.1"), TRUSTED,
                          "forwarded") == ("192.0.2.9", 5000)


def test_trusted_peer_without_the_header_is_the_client():
    assert client_address(PROXY, Headers([]), TRUSTED) == PROXY


def test_xff_rightmost_untrusted_is_the_client():
    # The client put a fake address first; our proxies appended the rest.
    headers = xff("6.6.6.6, 203.0.113.7, 10.1.1.1")
    assert client_address(PROXY, headers, TRUSTED) == ("203.0.113.7", 0)


def test_xff_repeated_fields_are_one_list():
    headers = xff("6.6.6.6", "203.0.113.7", "10.1.1.1")
    assert client_address(PROXY, headers, TRUSTED) == ("203.0.113.7", 0)


def test_all_hops_trusted_gives_the_leftmost():
    assert client_address(PROXY, xff("10.2.2.2, 10.1.1.1"), TRUSTED) == ("10.2.2.2", 0)


def test_malformed_hop_stops_the_walk_at_the_last_trusted_one():
    assert client_address(PROXY, xff("203.0.113.7, garbage, 10.1.1.1"), TRUSTED) == \
        ("10.1.1.1", 0)
    assert client_address(PROXY, xff("not an address"), TRUSTED) == PROXY
    assert client_address(PROXY, xff(""), TRUSTED) == PROXY


def test_ipv4_mapped_peer_is_matched_as_ipv4():
    assert client_address(("::ffff:10.0.0.5", 1), xff("203.0.113.7"), TRUSTED) == \
        ("203.0.113.7", 0)


@pytest.mark.parametrize("item, node", [
    ("203.0.113.7", ("203.0.113.7", 0)),
    ("203.0.113.7:4711", ("203.0.113.7", 4711)),
    ("2001:db8::7", ("2001:db8::7", 0)),
    ("[2001:db8::7]", ("2001:db8::7", 0)),
    ("[2001:db8::7]:4711", ("2001:db8::7", 4711)),
    ("2001:DB8::7", ("2001:db8::7", 0)),
    ("203.0.113.7:99999", None),
    ("[2001:db8::7", None),
    ("[203.0.113.7]", None),
    ("unknown", None),
    ("fe80::1%eth0", None),
    ("", None),
])
def test_xff_items(item, node):
    assert xff_hops(item) == [node]


def test_forwarded_rfc7239_examples():
    # RFC 7239 §4 and §7.1.
    assert forwarded_hops('for="_gazonk"') == [None]
    assert forwarded_hops('For="[2001:db8:cafe::17]:4711"') == [("2001:db8:cafe::17", 4711)]
    assert forwarded_hops("for=192.0.2.60;proto=http;by=203.0.113.43") == \
        [("192.0.2.60", 0)]
    assert forwarded_hops("for=192.0.2.43, for=198.51.100.17") == \
        [("192.0.2.43", 0), ("198.51.100.17", 0)]
    assert forwarded_hops('for=192.0.2.43,for="[2001:db8:cafe::17]",for=unknown') == \
        [("192.0.2.43", 0), ("2001:db8:cafe::17", 0), None]


def test_forwarded_walk():
    headers = fwd('for=6.6.6.6, for="203.0.113.7:4711";proto=https, for=10.1.1.1')
    assert client_address(PROXY, headers, TRUSTED, "forwarded") == ("203.0.113.7", 4711)
    headers = fwd('for="[2001:db8:cafe::17]", for="[2001:db8:1::2]"')
    assert client_address(PROXY, headers, TRUSTED, "forwarded") == ("2001:db8:cafe::17", 0)


@pytest.mark.parametrize("value", [
    "for=2001:db8::1",                 # IPv6 must be quoted and bracketed
    "for=192.0.2.1:80",                # a port must be quoted
    'for="192.0.2.1',                  # open quote
    "for=192.0.2.1;for=192.0.2.2",     # a parameter twice
    "proto=https",                     # no for=
    'for=192.0.2.1;proto="a"b"c"',      # a broken quoted-string beside it
    "for",
    "f o r=192.0.2.1",
])
def test_forwarded_malformed_elements(value):
    assert forwarded_hops(value) == [None]
    assert client_address(PROXY, fwd(value), TRUSTED, "forwarded") == PROXY


def test_only_the_chosen_header_is_read():
    # A proxy that sets X-Forwarded-For passes a client's Forwarded through:
    # believing both would let the client name itself.
    headers = Headers([("forwarded", "for=6.6.6.6"), ("x-forwarded-for", "203.0.113.7")])
    assert client_address(PROXY, headers, TRUSTED) == ("203.0.113.7", 0)
    assert client_address(PROXY, headers, TRUSTED, "forwarded") == ("6.6.6.6", 0)


def test_quoted_pairs_are_unescaped():
    assert forwarded_hops(r'for="192.0.2.\43"') == [("192.0.2.43", 0)]


@pytest.mark.parametrize("text, message", [
    ("10.0.0.1/8", "host bits set; the network is 10.0.0.0/8"),
    ("example.org", "not an IP address or CIDR network"),
    (",", "expected addresses"),
])
def test_bad_trusted_proxies(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_networks(text)


def test_no_trusted_proxies_is_none():
    assert trusted_networks([]) is None

"""The PROXY protocol parser against haproxy's proxy-protocol.txt (v1 §2.1,
v2 §2.2), bytes in, header or error out."""
import struct
from ipaddress import IPv6Address as ipv6

import pytest

from flashplug.http.proxy_protocol import (MIN_LENGTH, V1_MAX, V2_SIGNATURE, ProxyHeader,
                                           ProxyProtocolError, parse)

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(command=0x1, fam=0x11, block=b"", tlvs=b"", version=0x2, size=None):
    body = block + tlvs
    size = len(body) if size is None else size
    return V2_SIGNATURE + bytes([version << 4 | command, fam]) + struct.pack("!H", size) + body


def inet4(src, dst, sport, dport):
    return bytes(src) + bytes(dst) + struct.pack("!HH", sport, dport)


# -- version 1 ---------------------------------------------------------------------------

def test_v1_tcp4_and_what_follows_is_left_alone():
    line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"
    header = parse(line + REQUEST)
    assert header == ProxyHeader(1, "PROXY", "TCP4", ("192.0.2.1", 56324),
                                 ("198.51.100.2", 443), len(line))


def test_v1_tcp6():
    line = b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n"
    header = parse(line)
    assert header.source == ("2001:db8::1", 65535)
    assert header.dest == ("2001:db8::2", 0)


def test_v1_longest_line_is_107_bytes():
    # §2.1's worst case: UNKNOWN with two full IPv6 addresses and ports.
    full = "ffff:" * 7 + "ffff"
    line = f"PROXY UNKNOWN {full} {full} 65535 65535\r\n".encode()
    assert len(line) == V1_MAX
    assert parse(line).length == V1_MAX
    assert parse(line.replace(b"UNKNOWN", b"TCP6")).source == (str(ipv6(full)), 65535)


def test_v1_no_crlf_within_107_bytes_is_refused():
    with pytest.raises(ProxyProtocolError, match="107"):
        parse(b"PROXY TCP4 " + b"1" * 200)


def test_v1_unknown_ignores_the_rest_of_the_line():
    assert parse(b"PROXY UNKNOWN\r\n") == ProxyHeader(1, "PROXY", "UNKNOWN", None, None, 15)
    line = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"
    assert parse(line + REQUEST) == ProxyHeader(1, "PROXY", "UNKNOWN", None, None, len(line))


@pytest.mark.parametrize("piece", [b"P", b"PROXY", b"PROXY TCP4 192.0.2.1",
                                   b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r"])
def test_v1_incomplete_waits(piece):
    assert parse(piece) is None


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",            # LF alone
    b"PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n",         # two spaces
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",            # a port missing
    b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",        # IPv6 under TCP4
    b"PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",           # IPv4 under TCP6
    b"PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 080 2\r\n",        # a leading zero
    b"PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n",
    b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY \r\n",
    b"proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\xff\r\n",
])
def test_v1_malformed_lines_are_refused(line):
    with pytest.raises(ProxyProtocolError):
        parse(line)


# -- version 2 ---------------------------------------------------------------------------

def test_v2_tcp4():
    data = v2(block=inet4([192, 0, 2, 1], [198, 51, 100, 2], 56324, 443))
    assert parse(data + REQUEST) == ProxyHeader(2, "PROXY", "TCP4", ("192.0.2.1", 56324),
                                                ("198.51.100.2", 443), 28)


def test_v2_tcp6():
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000000000000000000002")
    header = parse(v2(fam=0x21, block=src + dst + struct.pack("!HH", 1, 2)))
    assert header.protocol == "TCP6"
    assert header.source == ("2001:db8::1", 1) and header.dest == ("2001:db8::2", 2)
    assert header.length == 16 + 36


def test_v2_tlvs_are_skipped():
    tlvs = b"\x01\x00\x02h2" + b"\x02\x00\x0bexample.org" + b"\x04" + struct.pack("!H", 300) \
        + b"\0" * 300
    data = v2(block=inet4([192, 0, 2, 1], [10, 0, 0, 1], 1, 2), tlvs=tlvs)
    header = parse(data + REQUEST)
    assert header.source == ("192.0.2.1", 1)
    assert header.length == len(data)


def test_v2_local_keeps_the_real_endpoints():
    # A balancer's own health check: no address block, or one to skip.
    assert parse(v2(command=0x0, fam=0x00)) == ProxyHeader(2, "LOCAL", "UNSPEC", None, None, 16)
    header = parse(v2(command=0x0, block=inet4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)))
    assert header.command == "LOCAL" and header.source is None and header.length == 28


def test_v2_unspec_and_unix_carry_no_client_address():
    assert parse(v2(fam=0x00)).source is None
    header = parse(v2(fam=0x31, block=b"\0" * 216))
    assert header.protocol == "UNIX" and header.source is None


@pytest.mark.parametrize("cut", [1, 5, 12, 15, 16, 20, 27])
def test_v2_incomplete_waits(cut):
    data = v2(block=inet4([192, 0, 2, 1], [10, 0, 0, 1], 1, 2))
    assert parse(data[:cut]) is None


@pytest.mark.parametrize("data, why", [
    (v2(version=0x1), "version"),
    (v2(command=0x2), "command"),
    (v2(fam=0x41), "family"),
    (v2(fam=0x13, block=b"\0" * 12), "family"),
    (v2(fam=0x11, block=b"\0" * 8), "needs 12"),
    (v2(fam=0x21, block=b"\0" * 12), "needs 36"),
    (b"\r\n\r\n\x00\r\nQUIX\n" + b"\0" * 4, "no PROXY"),
])
def test_v2_malformed_headers_are_refused(data, why):
    with pytest.raises(ProxyProtocolError, match=why):
        parse(data)


# -- neither -------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [REQUEST, b"\x16\x03\x01\x02\x00", b"\r\n\r\nGET"])
def test_plain_http_or_tls_is_not_a_header(data):
    with pytest.raises(ProxyProtocolError):
        parse(data)


def test_nothing_yet_waits_and_the_smallest_header_is_known():
    assert parse(b"") is None
    assert len(b"PROXY UNKNOWN\r\n") == MIN_LENGTH

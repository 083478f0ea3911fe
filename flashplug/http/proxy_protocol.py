"""The PROXY protocol, versions 1 and 2: the header a load balancer sends
first on each connection to say whose it is (haproxy's proxy-protocol.txt).

Theory of operation: ``parse(data)`` looks at the bytes a connection has
sent so far and says one of three things:

* ``None``: not enough yet.  Every byte given is then part of the header
  (a v1 line has no LF yet; a v2 block is shorter than its own length), so
  the caller may consume them all and wait for more.
* a ``ProxyHeader``, whose ``length`` bytes at the start of ``data`` are the
  header; what follows belongs to the next layer (TLS or HTTP) and must not
  be consumed here.
* ``ProxyProtocolError``: not a valid header; the connection is closed.

So a reader never has to give bytes back: ``flashplug.proxied`` peeks at
the socket, consumes exactly the header, and leaves the rest in the
kernel for the TLS or HTTP layer that comes next.

Version 1 is one text line, at most 107 bytes with its CRLF (§2.1):
``PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\\r\\n``, or ``PROXY UNKNOWN``
with anything after it up to the CRLF.  Version 2 is a 16-byte binary
preamble (a 12-byte signature, version and command, family and transport,
a length) and that many bytes of addresses and TLVs (§2.2).  The command
LOCAL (a balancer's own health check), the family UNSPEC or UNIX and v1's
UNKNOWN carry no client address: the connection's own peer stands.  TLVs
(ALPN, authority, SSL, unique id...) are skipped: nothing here uses them.
"""
import ipaddress
import struct
from typing import NamedTuple, Optional

V1_PREFIX = b"PROXY "
# §2.1: the longest line, "PROXY UNKNOWN" with two full IPv6 addresses,
# two ports and the CRLF; a receiver need not look further for the CRLF.
V1_MAX = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_PREAMBLE = 16          # signature, ver_cmd, fam, len (§2.2)
# The bytes the smallest complete header can have ("PROXY UNKNOWN\r\n").
MIN_LENGTH = 15

_V2_COMMANDS = {0x0: "LOCAL", 0x1: "PROXY"}
# family nibble -> (name, length of its address block, length of one address)
_V2_FAMILIES = {0x0: ("UNSPEC", 0, 0), 0x1: ("TCP4", 12, 4), 0x2: ("TCP6", 36, 16),
                0x3: ("UNIX", 216, 0)}
_V2_TRANSPORTS = {0x0: "UNSPEC", 0x1: "STREAM", 0x2: "DGRAM"}


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY protocol header; says why."""


class ProxyHeader(NamedTuple):
    """What a complete header says.

    ``source``/``dest``: ``(address, port)`` of the client and of the
    address it connected to, or None when the header carries none (v1
    UNKNOWN, v2 LOCAL, UNSPEC or UNIX): then the connection's own
    endpoints stand.  ``length``: the header's size in bytes.
    """
    version: int
    command: str          # "PROXY" or "LOCAL" (v1 is always PROXY)
    protocol: str         # "TCP4", "TCP6", "UNKNOWN" (v1), "UNSPEC", "UNIX" (v2)
    source: Optional[tuple]
    dest: Optional[tuple]
    length: int


def parse(data):
    """The header at the start of ``data`` (bytes), None if incomplete;
    raises ProxyProtocolError if it cannot be one."""
    data = bytes(data)
    if data[:1] == b"P":
        return _parse_v1(data)
    if data[:1] == b"\r":
        return _parse_v2(data)
    if not data:
        return None
    raise ProxyProtocolError("no PROXY protocol header")


def _parse_v1(data):
    if not data.startswith(V1_PREFIX[:len(data)]):
        raise ProxyProtocolError("no PROXY protocol header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end == -1:
        if len(data) >= V1_MAX or b"\n" in data:
            raise ProxyProtocolError(f"v1: no CRLF within {V1_MAX} bytes")
        return None
    line = data[:end]
    if not line.startswith(V1_PREFIX):
        raise ProxyProtocolError("no PROXY protocol header")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("v1: not ASCII") from None
    words = text.split(" ")
    length = end + 2
    if words[1] == "UNKNOWN":
        # §2.1: the rest of an UNKNOWN line is to be ignored.
        return ProxyHeader(1, "PROXY", "UNKNOWN", None, None, length)
    if len(words) != 6:
        raise ProxyProtocolError("v1: expected PROXY TCP4|TCP6 SRC DST SPORT DPORT")
    _, protocol, src, dst, sport, dport = words
    if protocol not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"v1: unknown protocol {protocol!r}")
    want = ipaddress.IPv4Address if protocol == "TCP4" else ipaddress.IPv6Address
    return ProxyHeader(1, "PROXY", protocol,
                       (_v1_address(src, want), _v1_port(sport)),
                       (_v1_address(dst, want), _v1_port(dport)), length)


def _v1_address(text, kind):
    try:
        return str(kind(text))
    except ValueError:
        raise ProxyProtocolError(f"v1: not an {kind.__name__[:4]} address: {text!r}") from None


def _v1_port(text):
    # §2.1: decimal, 0..65535, no leading zero.
    if not text.isdigit() or not text.isascii() or len(text) > 5 \
            or (text[0] == "0" and text != "0") or int(text) > 65535:
        raise ProxyProtocolError(f"v1: not a port: {text!r}")
    return int(text)


def _parse_v2(data):
    if not data.startswith(V2_SIGNATURE[:len(data)]):
        raise ProxyProtocolError("no PROXY protocol header")
    if len(data) < V2_PREAMBLE:
        return None
    ver_cmd, fam, size = struct.unpack_from("!BBH", data, 12)
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"v2: unsupported version {ver_cmd >> 4}")
    command = _V2_COMMANDS.get(ver_cmd & 0xF)
    if command is None:
        raise ProxyProtocolError(f"v2: unknown command {ver_cmd & 0xF}")
    family = _V2_FAMILIES.get(fam >> 4)
    transport = _V2_TRANSPORTS.get(fam & 0xF)
    if family is None or transport is None:
        raise ProxyProtocolError(f"v2: unknown family/transport 0x{fam:02x}")
    protocol, block, width = family
    length = V2_PREAMBLE + size
    if size < block:
        raise ProxyProtocolError(f"v2: {protocol} needs {block} bytes of addresses, "
                                 f"the header has {size}")
    if len(data) < length:
        return None
    if command == "LOCAL" or not width:
        # A balancer's own connection, or no IP addresses: the real
        # endpoints stand, and whatever the block holds is skipped.
        return ProxyHeader(2, command, protocol, None, None, length)
    start = V2_PREAMBLE
    src = ipaddress.ip_address(data[start:start + width])
    dst = ipaddress.ip_address(data[start + width:start + 2 * width])
    sport, dport = struct.unpack_from("!HH", data, start + 2 * width)
    # The TLVs after the block are skipped (nothing here uses them).
    return ProxyHeader(2, command, protocol, (str(src), sport), (str(dst), dport), length)

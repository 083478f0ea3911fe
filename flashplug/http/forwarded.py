"""The client's address behind trusted proxies: ``X-Forwarded-For`` and
``Forwarded`` (RFC 7239).

Theory of operation: anyone can send these headers, so they are believed
only from a peer in ``--trusted-proxies`` (the peer the connection comes
from, or the client a PROXY protocol header named).  Each proxy appends
the address it received the request from, so the list is read from the
right: a trusted address is one more proxy of ours and the walk goes on;
the first untrusted one is the client (nginx's ``real_ip_recursive on``).
A value that is not an address (garbage, ``unknown``, an obfuscated
``_name``) ends the walk where it stands: the client is then the last
proxy we trust, since nothing to its left can be checked.  If every hop is
trusted, the leftmost one is the client.

Only one header is read (``--real-ip-header``): a proxy that sets one of
them usually passes the other through as the client sent it, so reading
both would let a client name its own address.

``client_address`` is the one definition of "the client's address": the
request's ``remote_addr``/``remote_port`` come from it, and so the access
log, CGI's ``REMOTE_ADDR`` and the status page's access rules.  The port
is the one ``Forwarded`` gives (``for="192.0.2.1:4711"``), else 0
(unknown: ``X-Forwarded-For`` carries none).
"""
import argparse
import ipaddress

HEADERS = ("x-forwarded-for", "forwarded")


def parse_networks(text):
    """One ``--trusted-proxies`` value, ``"10.0.0.0/8,127.0.0.1"``, as a
    tuple of ``ipaddress`` networks (an address is a /32 or /128);
    argparse's type: a bad item raises ArgumentTypeError saying which."""
    networks = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError:
            try:
                meant = ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"not an IP address or CIDR network: {item!r}") from None
            raise argparse.ArgumentTypeError(
                f"{item!r} has host bits set; the network is {meant}") from None
    if not networks:
        raise argparse.ArgumentTypeError("expected addresses or networks, e.g. 10.0.0.0/8")
    return tuple(networks)


def trusted_networks(values):
    """The parsed ``--trusted-proxies`` values (repeats joined) as one
    tuple of networks, or None when none was given."""
    if not values:
        return None
    return tuple(net for value in values for net in value)


def _ip(text):
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip


def is_trusted(address, trusted):
    """Is ``address`` (a str) in one of the ``trusted`` networks?"""
    ip = _ip(address)
    return ip is not None and any(ip in net for net in trusted)


def request_client(app, peer, headers):
    """``(address, port)`` of the client of a request from ``peer`` (the
    connection's ``(address, port)``): the peer itself, unless the App
    trusts it as a proxy (``--trusted-proxies``), then ``client_address``."""
    if app.trusted_proxies is None:
        return peer
    return client_address(peer, headers, app.trusted_proxies, app.real_ip_header)


def client_address(peer, headers, trusted, header="x-forwarded-for"):
    """``(address, port)`` of the client, from ``peer`` (the connection's
    ``(address, port)``) and the request ``headers``."""
    if not is_trusted(peer[0], trusted):
        return peer
    values = headers.get_all(header)
    if not values:
        return peer
    joined = ",".join(values)     # repeated fields are one list (RFC 9110 §5.3)
    hops = xff_hops(joined) if header == "x-forwarded-for" else forwarded_hops(joined)
    client = peer
    for hop in reversed(hops):
        if hop is None:
            break
        client = hop
        if not is_trusted(hop[0], trusted):
            break
    return client


def xff_hops(value):
    """``X-Forwarded-For`` as a list of ``(address, port)``, None for an
    item that is not an address."""
    return [_node(item.strip()) for item in value.split(",")]


def _node(text, quoted=True):
    """``(address, port)`` of ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``,
    ``[2001:db8::1]`` or ``[2001:db8::1]:80``; None if it is none of them.
    ``quoted=False``: a bare Forwarded token, where IPv6 cannot appear."""
    port = 0
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        if rest:
            port = _port(rest[1:])
        if port is None or ":" not in host:
            return None
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        port = _port(rest)
        if port is None:
            return None
    else:
        host = text
        if not quoted and ":" in host:
            return None
    ip = _ip(host)
    if ip is None or "%" in host:
        return None
    return str(ip), port


def _port(text):
    """A port number; 0 for an obfuscated port (RFC 7239 §6.3); None if neither."""
    if text.startswith("_"):
        return 0
    if text.isdigit() and text.isascii() and len(text) <= 5 and int(text) <= 65535:
        return int(text)
    return None


def forwarded_hops(value):
    """``Forwarded`` (RFC 7239 §4) as a list of each element's ``for=``
    node, ``(address, port)``, or None where an element is malformed or
    names no address (``unknown``, an obfuscated ``_name``)."""
    elements = _split(value, ",")
    if elements is None:
        return [None]        # an open quote: nothing in it can be trusted
    return [_element_for(element) for element in elements]


def _element_for(element):
    found = None
    for pair in _split(element, ";"):
        pair = pair.strip()
        if not pair:
            continue
        name, eq, raw = pair.partition("=")
        if not eq or not name or not _is_token(name):
            return None
        if raw.startswith('"'):
            if len(raw) < 2 or not raw.endswith('"'):
                return None
            text, quoted = _unquote(raw[1:-1]), True
        elif _is_token(raw):
            text, quoted = raw, False
        else:
            return None
        if text is None:
            return None
        if name.lower() == "for":
            if found is not None:
                return None          # §4: a parameter appears once per element
            found = _node(text, quoted)
            if found is None:
                return None
    return found


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _is_token(text):
    return bool(text) and all(c in _TCHAR for c in text)


def _unquote(text):
    """A quoted-string's content with its ``\\`` escapes undone (RFC 9110 §5.6.4)."""
    out = []
    chars = iter(text)
    for c in chars:
        if c == "\\":
            c = next(chars, None)
            if c is None:
                return None
        elif c == '"':
            return None
        out.append(c)
    return "".join(out)


def _split(text, sep):
    """``text`` split at each ``sep`` outside a quoted string; None if a
    quote is left open."""
    parts, start, quoted, escaped = [], 0, False, False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
    if quoted:
        return None
    parts.append(text[start:])
    return parts

"""Who may read the status page: an allow-list of addresses and networks.

Theory of operation: the page tells a visitor how busy the server is and
what it runs, which is nobody else's business, so, like Apache's
``Require local``, it answers only clients on this machine unless told
otherwise.  ``parse_allow`` turns the ``--status-allow`` items into
``Rules`` once, at start (a bad item is a one-line ``UsageError``);
``allowed`` is then a pure test of one client address, run for each
status request.

``local`` means what it means to Apache: a loopback address (127.0.0.0/8,
::1), or a client whose address is the server's own address on that
connection (a request from this host to one of its public addresses).  An
IPv4 client that reached an IPv6 socket appears as ``::ffff:a.b.c.d``; it
is matched as the IPv4 address it is, so ``127.0.0.1`` and ``10.0.0.0/8``
work whatever the server is bound to.
"""
import ipaddress
from typing import NamedTuple

from flashplug import UsageError

LOCAL = "local"
DEFAULT = (LOCAL,)


class Rules(NamedTuple):
    local: bool          # the ``local`` keyword was given
    networks: tuple      # ``ipaddress`` networks; a single address is a /32 or /128


def parse_allow(values):
    """``--status-allow`` values (repeated flags, or a config list) -> Rules.

    Each value is a comma-separated list of ``local``, IP addresses and
    CIDR networks.  None (the option not given) means ``local``.
    """
    if values is None:
        values = DEFAULT
    elif isinstance(values, str):
        values = [values]
    items = [item.strip() for value in values for item in str(value).split(",")]
    items = [item for item in items if item]
    if not items:
        raise UsageError("--status-allow (allow in [plugins.status]) is empty; give "
                         "'local', addresses or networks, e.g. 'local,10.0.0.0/8'")
    local = False
    networks = []
    for item in items:
        if item.lower() == LOCAL:
            local = True
            continue
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError:
            raise UsageError(f"--status-allow {item!r}: {_why(item)}") from None
    return Rules(local, tuple(networks))


def _why(item):
    """The one-line reason an item is refused, with the fix when we know it."""
    try:
        # Host bits set ("10.0.0.1/8"): say which network that would be,
        # rather than quietly widening or narrowing what the user wrote.
        meant = ipaddress.ip_network(item, strict=False)
    except ValueError:
        return "not 'local', an IP address or a CIDR network such as 10.0.0.0/8"
    return f"has host bits set; the network is {meant}"


def _address(text):
    """An ``ipaddress`` address, IPv4-mapped IPv6 unwrapped; None if not one."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip


def allowed(rules, client, server=""):
    """May ``client`` (the peer's address, a str) read the page?

    ``server`` is the local address the request arrived on, for ``local``.
    """
    ip = _address(client)
    if ip is None:
        return False
    if rules.local and (ip.is_loopback or ip == _address(server)):
        return True
    # ``in`` is simply False across IP versions.
    return any(ip in net for net in rules.networks)

"""status: the allow-list (pure)."""
import pytest

from flashplug import UsageError
from flashplug_plugins.status.access import allowed, parse_allow


def test_default_is_local_only():
    rules = parse_allow(None)
    assert rules.local and rules.networks == ()
    assert allowed(rules, "127.0.0.1")
    assert allowed(rules, "127.8.9.10")            # all of 127.0.0.0/8 is loopback
    assert allowed(rules, "::1")
    assert allowed(rules, "::ffff:127.0.0.1")      # IPv4 client on an IPv6 socket
    assert not allowed(rules, "10.0.0.1")
    assert not allowed(rules, "2001:db8::1")


def test_local_includes_the_servers_own_address():
    # A request from this host to one of its public addresses, as Apache's
    # `Require local` allows.
    rules = parse_allow(["local"])
    assert allowed(rules, "192.0.2.7", "192.0.2.7")
    assert allowed(rules, "::ffff:192.0.2.7", "192.0.2.7")
    assert not allowed(rules, "192.0.2.8", "192.0.2.7")
    assert not allowed(rules, "192.0.2.8", "")


def test_addresses_and_networks():
    rules = parse_allow(["10.0.0.1, 192.168.0.0/16", "2001:db8::/32"])
    assert not rules.local
    assert not allowed(rules, "127.0.0.1")         # the list replaces the default
    assert allowed(rules, "10.0.0.1")
    assert not allowed(rules, "10.0.0.2")
    assert allowed(rules, "192.168.44.5")
    assert allowed(rules, "::ffff:192.168.1.1")
    assert allowed(rules, "2001:db8:1::5")
    assert not allowed(rules, "2001:db9::1")


def test_local_combines_with_networks():
    rules = parse_allow("local,10.0.0.0/8")
    assert allowed(rules, "127.0.0.1") and allowed(rules, "10.1.2.3")
    assert not allowed(rules, "11.0.0.1")


@pytest.mark.parametrize("client", ["", "localhost", "not an address", "1.2.3", "::g"])
def test_what_is_not_an_address_is_refused(client):
    assert not allowed(parse_allow("0.0.0.0/0,::/0"), client)


@pytest.mark.parametrize("value, says", [
    ([""], "is empty"),
    ([" , "], "is empty"),
    ([], "is empty"),
    (["10.0.0.300"], "not 'local', an IP address or a CIDR network"),
    (["example.com"], "not 'local', an IP address or a CIDR network"),
    (["10.0.0.1/8"], "host bits set; the network is 10.0.0.0/8"),
])
def test_bad_items_are_one_line_usage_errors(value, says):
    with pytest.raises(UsageError) as info:
        parse_allow(value)
    message = str(info.value)
    assert says in message and "--status-allow" in message and "\n" not in message

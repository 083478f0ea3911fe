"""The acme plugin's parts that need no CA, and the kernel's side of
TLS-ALPN-01: reading the ClientHello, certificates reserved for
``acme-tls/1``, the challenge certificate, the schedule, the options and
the state directory."""
import datetime
import hashlib
import os
import ssl
import stat

import pytest

from flashplug import UsageError
from flashplug.tls import Certificates, client_hello
from flashplug_plugins.acme.schedule import renewal_time, retry_delay
from flashplug_plugins.acme.settings import parse_domains
from flashplug_plugins.acme.store import Store, write_private

trustme = pytest.importorskip("trustme", reason="pip install trustme (the test extra)")
pytest.importorskip("acme", reason="pip install 'flashplug[acme]'")
from flashplug_plugins.acme.client import ACME_IDENTIFIER, challenge_certificate  # noqa: E402

DAY = 86400


def hello_from(name, protocols):
    """The first flight of a real TLS client (its ClientHello)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if protocols:
        ctx.set_alpn_protocols(protocols)
    tls = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return out.read()


def test_client_hello_gives_the_name_and_alpn_protocols():
    data = hello_from("Name.Test", ["acme-tls/1", "http/1.1"])
    assert client_hello(data) == ("name.test", ("acme-tls/1", "http/1.1"))
    assert client_hello(hello_from(None, ["h2"])) == (None, ("h2",))
    assert client_hello(hello_from("a.test", None)) == ("a.test", ())
    # Not a whole ClientHello, or not one at all: nothing, never an exception.
    for junk in (data[:40], data[:5], b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\x05\x01",
                 b"", b"\x16"):
        assert client_hello(junk) == (None, ())


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("acme-pki")
    ca = trustme.CA()
    leaf = ca.issue_cert("a.test")
    cert, key = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    digest = hashlib.sha256(b"token.thumbprint").digest()
    challenge_pem, challenge_key = challenge_certificate("a.test", digest)
    ccert, ckey = folder / "a.test.pem", folder / "a.test.key"
    ccert.write_bytes(challenge_pem)
    ckey.write_bytes(challenge_key)
    return (str(cert), str(key)), (str(ccert), str(ckey)), digest


def handshake(certificates, name, protocols):
    """A whole handshake in memory: (the certificate shown, the ALPN chosen)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(protocols)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = ctx.wrap_bio(c_in, c_out, server_hostname=name)
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    first = c_out.read()
    server = certificates.special_session(first, s_in, s_out) or \
        certificates.new_session(s_in, s_out)
    s_in.write(first)
    for _ in range(10):
        for side in (server, client):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        c_in.write(s_out.read())
        s_in.write(c_out.read())
    return client.getpeercert(binary_form=True), client.selected_alpn_protocol()


def test_the_challenge_certificate_is_shown_only_to_acme_tls_1(pair_files):
    site, challenge, digest = pair_files
    certs = Certificates([(*site, ()), (*challenge, (), "acme-tls/1")])
    with open(challenge[0]) as f:
        challenge_der = ssl.PEM_cert_to_DER_cert(f.read())
    assert handshake(certs, "a.test", ["acme-tls/1"]) == (challenge_der, "acme-tls/1")
    # A browser (http/1.1), or the CA's protocol for another name: the site's.
    der, alpn = handshake(certs, "a.test", ["http/1.1"])
    assert der != challenge_der and alpn == "http/1.1"
    der, alpn = handshake(certs, "b.test", ["acme-tls/1"])
    assert der != challenge_der and alpn is None
    # SNI alone never picks it.
    assert certs.context_for("a.test") is certs.contexts[0] and len(certs.contexts) == 1


def test_the_challenge_certificate_carries_the_digest(pair_files):
    from cryptography import x509
    _, (cert_path, _), digest = pair_files
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER)
    assert ext.critical and ext.value.value == b"\x04\x20" + digest   # RFC 8737 §3
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["a.test"]


def test_no_certificate_yet_fails_the_handshake_cleanly():
    certs = Certificates([])
    with pytest.raises(ssl.SSLError):
        handshake_raising(certs)


def handshake_raising(certs):
    ctx = ssl._create_unverified_context()
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = ctx.wrap_bio(c_in, c_out, server_hostname="a.test")
    server = certs.new_session(s_in, s_out)
    for _ in range(10):
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            pass
        s_in.write(c_out.read())
        try:
            server.do_handshake()
        except ssl.SSLWantReadError:
            pass
        c_in.write(s_out.read())


def test_renewal_at_two_thirds_and_doubling_retries():
    assert renewal_time(0, 90 * DAY) == 60 * DAY           # 30 days before the end
    assert renewal_time(100, 100 + 6 * DAY) == 100 + 4 * DAY
    assert [retry_delay(n, 600, DAY) for n in (1, 2, 3)] == [600, 1200, 2400]
    assert retry_delay(12, 600, DAY) == DAY and retry_delay(10 ** 6, 600, DAY) == DAY


def test_domain_names():
    assert parse_domains("Example.org, www.example.org.,example.org") == \
        ("example.org", "www.example.org")
    assert parse_domains(["a.test", "b.test"]) == ("a.test", "b.test")
    for bad, says in (("*.example.org", "wildcard"), ("localhost", "not a DNS name"),
                      ("192.0.2.1", "not a DNS name"), ("a..b", "not a DNS name"),
                      ("-a.org", "not a DNS name"), ("a_b.org", "not a DNS name"),
                      (" , ", "no name given")):
        with pytest.raises(UsageError, match=says):
            parse_domains(bad)


def test_state_directory_is_private(tmp_path):
    root = tmp_path / "state"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    store = Store(str(root), "https://acme.example/directory")
    assert "changed to 0700" in store.prepare()
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert store.prepare() is None
    store.save_cert("a.test", b"chain", b"key")
    cert, key = store.cert_paths("a.test")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert store.installed(["a.test", "b.test"]) == [(cert, key)]
    assert store.http_token_path("../x") is None and store.http_token_path("") is None
    write_private(str(root / "f"), b"1")
    write_private(str(root / "f"), b"2")          # replaced whole
    assert (root / "f").read_bytes() == b"2" and sorted(os.listdir(root)) == \
        ["acme.example_directory", "challenges", "f"]


def test_one_lock_holder(tmp_path):
    store = Store(str(tmp_path), "https://acme.example/directory")
    held = store.try_lock()
    assert held is not None
    assert store.try_lock() is None     # another worker: waits
    os.close(held)
    again = store.try_lock()
    assert again is not None
    os.close(again)


def test_expiry_line_is_utc():
    from flashplug_plugins.acme.schedule import when
    stamp = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc).timestamp()
    assert when(stamp) == "2026-01-02 03:04:05 UTC"

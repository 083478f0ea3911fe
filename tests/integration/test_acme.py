"""The acme plugin end to end against a real ACME CA: Debian's pebble on
loopback (tests/acme_pebble.py), with real validation (HTTP-01 on the
redirect port, TLS-ALPN-01 on the HTTPS port).

Covers issue 14 item 3: a first certificate, verified against pebble's
root; a renewal installed without a restart; a name that fails
validation (logged, retried with backoff, the server serving on); the CA
being down (retried with backoff, no crash).
"""
import datetime
import json
import os
import re
import socket
import ssl
import stat
import time

import pytest

from flashplug_plugins.acme.store import Store
from tests.acme_pebble import dns, pebble_factory  # noqa: F401 - fixtures
from tests.conftest import free_port
from tests.tls_certs import ca  # noqa: F401 - fixture

pytest.importorskip("acme", reason="pip install 'flashplug[acme]'")


def wait_for(server, pattern, timeout=30, count=1):
    """Wait until the server's log matches ``pattern`` ``count`` times."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.findall(pattern, server.log())
        if len(found) >= count:
            return found
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} ({count}x) in the log:\n{server.log()}")
        time.sleep(0.1)


def served(port, name, cafile=None):
    """The certificate (DER) our HTTPS port shows to SNI ``name``, and the
    answer to GET / over the connection (verified against ``cafile``)."""
    return get(port, name, "/", cafile)


def get(port, name, target, cafile=None):
    """Like ``served``, for any target."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else \
        ssl._create_unverified_context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        tls.sendall(f"GET {target} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
                    .encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        return tls.getpeercert(binary_form=True), answer


def site(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_bytes(b"<h1>acme</h1>\n")
    return root


def acme_args(pebble, state, *names, retry=1):
    return ["--acme-domains", ",".join(names), "--acme-directory", pebble.directory,
            "--acme-ca-bundle", pebble.ca_path, "--acme-state", state,
            "--acme-email", "admin@example.org", "--acme-retry", retry]


def test_first_certificate_over_http01(server_factory, pebble_factory, tmp_path):
    port, plain = free_port(), free_port()
    pebble = pebble_factory(http_port=plain, tls_port=port)
    state = tmp_path / "state"
    s = server_factory(site(tmp_path), *acme_args(pebble, state, "a.test"),
                       "--acme-challenge", "http-01", "--redirect-http", plain,
                       "--plugins", "status", port=port)
    assert "on https://127.0.0.1:" in s.log()
    wait_for(s, r"ACME: a\.test: certificate obtained")
    wait_for(s, r"TLS certificates reloaded")
    root = tmp_path / "pebble-root.pem"
    root.write_text(pebble.root_pem())
    der, answer = served(port, "a.test", cafile=str(root))   # the chain verifies
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"<h1>acme</h1>\n")
    # Safe permissions: the folder 0700, every key 0600.
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    keys = [os.path.join(d, f) for d, _, files in os.walk(state) for f in files
            if f.endswith(".key") or f == "privkey.pem"]
    assert len(keys) >= 2 and all(stat.S_IMODE(os.stat(k).st_mode) == 0o600 for k in keys)
    status = json.loads(get(port, "a.test", "/server-status?format=json",
                            cafile=str(root))[1].partition(b"\r\n\r\n")[2])
    row, = status["acme_certificates"]
    assert row["name"] == "a.test" and row["failures"] == 0
    assert row["valid_until"].endswith(" UTC") and row["next_order"] < row["valid_until"]
    # The token is gone once the order is over; the redirect port still redirects.
    assert not os.listdir(state / "challenges" / "http-01")
    with socket.create_connection(("127.0.0.1", plain), timeout=5) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 308 ")
    assert "Traceback" not in s.log()


def test_tls_alpn01_renewal_without_restart(server_factory, pebble_factory, tmp_path, ca):
    """A stored certificate past two thirds of its life is renewed over
    TLS-ALPN-01 and served at once, by the same process."""
    port = free_port()
    pebble = pebble_factory(http_port=free_port(), tls_port=port)
    state = tmp_path / "state"
    cert_path, key_path = Store(str(state), pebble.directory).cert_paths("b.test")
    os.makedirs(os.path.dirname(cert_path), mode=0o700)
    os.chmod(state, 0o700)
    now = datetime.datetime.now(datetime.timezone.utc)
    old = ca.issue_cert("b.test", not_before=now - datetime.timedelta(hours=2),
                        not_after=now + datetime.timedelta(minutes=30))
    with open(cert_path, "wb") as f:
        f.write(b"".join(blob.bytes() for blob in old.cert_chain_pems))
    old.private_key_pem.write_to_path(key_path)
    os.chmod(key_path, 0o600)
    s = server_factory(site(tmp_path), *acme_args(pebble, state, "b.test"), port=port)
    wait_for(s, r"ACME: b\.test: certificate valid until .* renewal due")
    wait_for(s, r"ACME: b\.test: certificate renewed")
    wait_for(s, r"TLS certificates reloaded", count=2)   # the challenge, then the new one
    root = tmp_path / "pebble-root.pem"
    root.write_text(pebble.root_pem())
    der, answer = served(port, "b.test", cafile=str(root))
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert der != ssl.PEM_cert_to_DER_cert(old.cert_chain_pems[0].bytes().decode())
    assert s.proc.poll() is None and "Traceback" not in s.log()


def retry_delays(server, name):
    return [float(s) for s in re.findall(
        rf"ACME: {re.escape(name)}: no certificate .*; retrying in ([0-9.]+) s", server.log())]


def test_a_name_that_fails_validation_backs_off(server_factory, pebble_factory, tmp_path):
    """fail.test does not resolve: its order fails, is logged and retried
    with a doubling delay, while ok.test gets its certificate and the
    server serves on."""
    port, plain = free_port(), free_port()
    pebble = pebble_factory(http_port=plain, tls_port=port)
    s = server_factory(site(tmp_path), *acme_args(pebble, tmp_path / "state", "ok.test",
                                                  "fail.test"),
                       "--redirect-http", plain, port=port)
    wait_for(s, r"ACME: ok\.test: certificate obtained")
    wait_for(s, r"ACME: fail\.test: no certificate", count=3)
    assert retry_delays(s, "fail.test")[:3] == [1, 2, 4]
    assert "the CA could not validate it" in s.log() and "fail.test" in s.log()
    root = tmp_path / "pebble-root.pem"
    root.write_text(pebble.root_pem())
    _, answer = served(port, "ok.test", cafile=str(root))
    assert answer.startswith(b"HTTP/1.1 200 ")
    with pytest.raises(ssl.SSLCertVerificationError):   # it gets ok.test's, the default
        served(port, "fail.test", cafile=str(root))
    assert s.proc.poll() is None and "Traceback" not in s.log()


def test_the_ca_down_is_retried_then_used(server_factory, pebble_factory, tmp_path, ca):
    """The CA is not there: every worker serves on, one of them retries
    with backoff; once the CA is up the certificate arrives and every
    worker serves it."""
    port, plain, ca_port = free_port(), free_port(), free_port()
    directory = f"https://127.0.0.1:{ca_port}/dir"
    bundle = tmp_path / "test-ca.pem"     # what will sign the CA's HTTPS, once it is up
    ca.cert_pem.write_to_path(str(bundle))
    s = server_factory(site(tmp_path), "--acme-domains", "c.test", "--acme-directory",
                       directory, "--acme-ca-bundle", bundle, "--acme-state",
                       tmp_path / "state", "--acme-retry", 1,
                       "--redirect-http", plain, "--workers", 2, port=port)
    wait_for(s, r"ACME: c\.test: no certificate .*cannot reach the CA", count=2)
    assert retry_delays(s, "c.test")[:2] == [1, 2]
    with socket.create_connection(("127.0.0.1", plain), timeout=5) as sock:   # still serving
        sock.sendall(b"GET / HTTP/1.1\r\nHost: c.test\r\nConnection: close\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 308 ")
    pebble_factory(http_port=plain, tls_port=port, port=ca_port)
    wait_for(s, r"ACME: c\.test: certificate obtained", timeout=40)
    assert len(re.findall(r"orders certificates for", s.log())) == 1   # one worker orders
    # The plugin's SIGHUP to the master reloads the whole configuration:
    # new workers start with the certificate (docs/deployment.md).
    wait_for(s, r"configuration reloaded: 2 new workers accept connections")
    time.sleep(1)
    assert len(re.findall(r"orders certificates for", s.log())) <= 2   # the new orderer finds it
    assert len(re.findall(r"certificate obtained", s.log())) == 1
    assert s.proc.poll() is None and "Traceback" not in s.log()


def test_bad_settings_are_one_line_errors(tmp_path):
    import subprocess
    import sys
    root = site(tmp_path)
    conf = tmp_path / "site.toml"
    conf.write_text('[plugins.acme]\ndomains = ["a.test", "b..test"]\n')
    for args, message in (
            (["--acme-domains", "*.example.org"], "a wildcard needs the DNS-01 challenge"),
            (["--acme-domains", "localhost"], "'localhost' is not a DNS name"),
            (["--config", conf], "'b..test' is not a DNS name"),
            (["--acme-domains", "a.test", "--acme-directory", "http://ca.test/dir"],
             "expected an https:// URL"),
            (["--acme-domains", "a.test", "--acme-challenge", "dns-01"],
             "expected some of http-01,tls-alpn-01"),
            (["--acme-domains", "a.test", "--acme-retry", "soon"],
             "--acme-retry: expected a positive number of seconds"),
            (["--acme-domains", "a.test", "--acme-retry", "0.01"], "--acme-retry: at least 1"),
            (["--acme-domains", "a.test", "--acme-state", root / "index.html"],
             "--acme-state"),
            (["--acme-domains", "a.test", "--arch", "mt"], "plugins need --arch amped")):
        proc = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(root), "--port",
                               "0", *map(str, args)], capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1

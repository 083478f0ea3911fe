"""Test certificates for the HTTPS tests, made by trustme per run (never
committed): a CA (``ca``), a site with a certificate for localhost and
127.0.0.1 (``site``), and ``write_pair`` for more."""
import os

import pytest

trustme = pytest.importorskip("trustme", reason="pip install trustme (the test extra)")

PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def write_pair(ca, folder, *names, stem="site"):
    """A certificate (full chain) and its key for ``names``, as files."""
    cert = ca.issue_cert(*names)
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_path))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


@pytest.fixture
def site(tmp_path, ca):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_bytes(b"<h1>secure</h1>\n")
    (root / "big.bin").write_bytes(PAYLOAD)
    (root / "sub" / "a.txt").write_bytes(b"a\n")
    certs = tmp_path / "certs"
    certs.mkdir()
    cert, key = write_pair(ca, certs, "localhost", "127.0.0.1")
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return root, cert, key, ca_path

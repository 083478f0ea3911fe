"""Headless Debian Chromium, driven by selenium, for the browser tests.

Over HTTPS, Chromium trusts exactly the test certificate's key
(``--ignore-certificate-errors-spki-list``, the key's SPKI SHA-256), not
every certificate, so a wrong certificate would still fail the page.
A test skips, saying why, where chromium, chromedriver, selenium or (for
HTTPS) trustme is missing (``.ci/run`` installs them).
"""
import base64
import hashlib
import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")


def chrome(tmp_path, *flags, prefs=None):
    """A new headless Chromium (a selenium driver, to ``quit()``) with its
    own profile under ``tmp_path``, and ``flags`` and ``prefs`` besides."""
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} not found: apt-get install {pkg} to run the browser test")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                 *flags):
        opts.add_argument(flag)
    if prefs is not None:
        opts.add_experimental_option("prefs", prefs)
    # An explicit driver path keeps Selenium Manager from looking online.
    return webdriver.Chrome(options=opts,
                            service=webdriver.ChromeService(executable_path=CHROMEDRIVER))


def localhost_certificate(tmp_path):
    """A certificate for localhost from a new CA, as files in ``tmp_path``:
    ``(cert, key, flag)``, ``flag`` the Chromium flag that trusts its key."""
    trustme = pytest.importorskip("trustme", reason="trustme is not installed")
    from cryptography import x509      # trustme's own dependency
    from cryptography.hazmat.primitives import serialization
    leaf = trustme.CA().issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    os.chmod(key, 0o600)
    der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_key() \
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = base64.b64encode(hashlib.sha256(der).digest()).decode()
    return cert, key, f"--ignore-certificate-errors-spki-list={pin}"

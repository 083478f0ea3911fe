"""The autoindex listing over HTTPS in headless Chromium.

Chromium trusts exactly the test certificate's key
(``--ignore-certificate-errors-spki-list``, the key's SPKI SHA-256), not
every certificate, so a wrong certificate would still fail the page.
Skips where chromium, chromedriver, selenium or trustme is missing.
"""
import base64
import hashlib
import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
trustme = pytest.importorskip("trustme", reason="trustme is not installed")
from cryptography import x509  # noqa: E402 - trustme's own dependency
from cryptography.hazmat.primitives import serialization  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def spki_hash(cert_pem):
    cert = x509.load_pem_x509_certificate(cert_pem)
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_listing_over_https(server_factory, tmp_path):
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} not found: apt-get install {pkg} to run the browser test")
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "guide.txt").write_text("guide\n")
    (root / "notes.txt").write_text("notes\n")
    leaf = trustme.CA().issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    os.chmod(key, 0o600)
    server = server_factory(root, "--plugins", "autoindex", "--tls-cert", cert, "--tls-key", key)

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                 f"--ignore-certificate-errors-spki-list={spki_hash(leaf.cert_chain_pems[0].bytes())}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.get(f"https://localhost:{server.port}/")
        assert "Index of" in driver.title
        names = [a.text for a in driver.find_elements(
            By.CSS_SELECTOR, "tbody tr:not(.parent) td.name a")]
        assert names == ["docs/", "notes.txt"]
        driver.find_element(By.LINK_TEXT, "docs/").click()
        assert driver.current_url == f"https://localhost:{server.port}/docs/"
        assert driver.execute_script("return window.isSecureContext") is True
    finally:
        driver.quit()

"""A page of 50 assets over HTTPS/HTTP/2 in headless Chromium.

Chromium trusts exactly the test certificate's key (SPKI pin, as in
test_https_browser.py).  The page waits for its 50 images and scripts; the
Resource Timing API says which protocol carried each (``nextHopProtocol``),
and the access log shows every asset was asked for over HTTP/2.0.
Skips where chromium, chromedriver, selenium or trustme is missing.
"""
import os
import time

import pytest

from tests.browser.test_https_browser import CHROMEDRIVER, CHROMIUM, spki_hash

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
trustme = pytest.importorskip("trustme", reason="trustme is not installed")

ASSETS = 50


def test_page_of_50_assets_over_h2(server_factory, tmp_path):
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} not found: apt-get install {pkg} to run the browser test")
    root = tmp_path / "root"
    (root / "assets").mkdir(parents=True)
    tags = []
    for i in range(ASSETS):
        if i % 2:
            (root / "assets" / f"s{i}.js").write_text(
                f"window.loaded = (window.loaded || 0) + 1; // {'x' * (100 * i)}\n")
            tags.append(f'<script src="/assets/s{i}.js"></script>')
        else:
            (root / "assets" / f"i{i}.svg").write_text(
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{i + 1}" height="1"></svg>')
            tags.append(f'<img src="/assets/i{i}.svg" onload="window.loaded = '
                        f'(window.loaded || 0) + 1">')
    (root / "index.html").write_text("<!doctype html><title>page</title><body>"
                                     + "\n".join(tags) + "</body>")
    leaf = trustme.CA().issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    os.chmod(key, 0o600)
    access = tmp_path / "access.log"
    server = server_factory(root, "--plugins", "none", "--tls-cert", cert, "--tls-key", key,
                            "--access-log", access)
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
        deadline = time.monotonic() + 30
        while driver.execute_script("return window.loaded || 0") < ASSETS:
            assert time.monotonic() < deadline, "the page's assets did not all load"
            time.sleep(0.1)
        protocols = driver.execute_script(
            "return [performance.getEntriesByType('navigation')[0].nextHopProtocol]"
            ".concat(performance.getEntriesByType('resource').map(e => e.nextHopProtocol))")
        # The page, its 50 assets (and the browser's own favicon request).
        assert len(protocols) >= ASSETS + 1 and set(protocols) == {"h2"}, protocols
    finally:
        driver.quit()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = access.read_text().splitlines() if access.exists() else []
        if sum('/assets/' in line for line in lines) >= ASSETS:
            break
        time.sleep(0.1)
    assets = [line for line in lines if '"GET /assets/' in line]
    assert len(assets) == ASSETS and all(" HTTP/2.0\" 200 " in line for line in assets)

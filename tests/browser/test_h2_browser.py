"""A page of 50 assets over HTTPS/HTTP/2 in headless Chromium.

Chromium trusts exactly the test certificate's key (SPKI pin:
``tests/browser/chrome.py``).  The page waits for its 50 images and scripts; the
Resource Timing API says which protocol carried each (``nextHopProtocol``),
and the access log shows every asset was asked for over HTTP/2.0.
Skips where chromium, chromedriver, selenium or trustme is missing.
"""
import time

from tests.browser.chrome import chrome, localhost_certificate

ASSETS = 50


def test_page_of_50_assets_over_h2(server_factory, tmp_path):
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
    cert, key, trust = localhost_certificate(tmp_path)
    access = tmp_path / "access.log"
    server = server_factory(root, "--plugins", "none", "--tls-cert", cert, "--tls-key", key,
                            "--access-log", access)
    driver = chrome(tmp_path, trust)
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

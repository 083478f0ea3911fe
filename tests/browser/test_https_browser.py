"""The autoindex listing over HTTPS in headless Chromium, which trusts
exactly the test certificate's key (``tests/browser/chrome.py``).
Skips where chromium, chromedriver, selenium or trustme is missing.
"""
from tests.browser.chrome import chrome, localhost_certificate

from selenium.webdriver.common.by import By  # noqa: I100 - after chrome's skip


def test_listing_over_https(server_factory, tmp_path):
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "guide.txt").write_text("guide\n")
    (root / "notes.txt").write_text("notes\n")
    cert, key, trust = localhost_certificate(tmp_path)
    server = server_factory(root, "--plugins", "autoindex", "--tls-cert", cert, "--tls-key", key)
    driver = chrome(tmp_path, trust)
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

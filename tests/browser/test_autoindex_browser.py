"""autoindex in a real browser: headless Debian chromium driven by selenium.

Loads a listing, sorts it by clicking a column header, follows a link into
a subfolder and downloads a file from there.  Skips, saying why, where
chromium, chromedriver or selenium is missing (``.ci/run`` installs them).
"""
import os
import time

import pytest

from tests.browser.chrome import chrome

from selenium.webdriver.common.by import By  # noqa: I100 - after chrome's skip
from selenium.webdriver.support.ui import WebDriverWait

PAYLOAD = bytes(range(256)) * 20   # every byte value: a download must not be mangled


@pytest.fixture
def browser(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chrome(tmp_path, "--window-size=1000,800", prefs={
        "download.default_directory": str(downloads),
        "download.prompt_for_download": False,
    })
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def listed(driver):
    return [a.text for a in driver.find_elements(By.CSS_SELECTOR, "tbody tr:not(.parent) td.name a")]


def test_sort_navigate_download(browser, server_factory, tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a-large.bin").write_bytes(b"x" * 5000)
    (root / "b-small.txt").write_bytes(b"x")
    (root / "c-mid.txt").write_bytes(b"x" * 100)
    (root / "sub" / "data.bin").write_bytes(PAYLOAD)
    server = server_factory(root, "--plugins", "autoindex")
    wait = WebDriverWait(browser, 15)

    browser.get(server.url + "/")
    assert "Index of" in browser.title
    assert listed(browser) == ["sub/", "a-large.bin", "b-small.txt", "c-mid.txt"]

    # Sort by size: click the header, and again for the other direction.
    browser.find_element(By.CSS_SELECTOR, "th.size a").click()
    wait.until(lambda d: "C=S" in d.current_url)
    assert listed(browser) == ["sub/", "b-small.txt", "c-mid.txt", "a-large.bin"]
    browser.find_element(By.CSS_SELECTOR, "th.size a").click()
    wait.until(lambda d: "O=D" in d.current_url)
    assert listed(browser) == ["sub/", "a-large.bin", "c-mid.txt", "b-small.txt"]

    # Into the subfolder.
    browser.find_element(By.LINK_TEXT, "sub/").click()
    wait.until(lambda d: d.current_url.split("?")[0].endswith("/sub/"))
    assert listed(browser) == ["data.bin"]

    # Download a file and compare its bytes.
    browser.find_element(By.LINK_TEXT, "data.bin").click()
    target = browser.downloads / "data.bin"
    deadline = time.monotonic() + 20
    while not (target.exists() and not list(browser.downloads.glob("*.crdownload"))):
        assert time.monotonic() < deadline, f"no download; have {os.listdir(browser.downloads)}"
        time.sleep(0.1)
    assert target.read_bytes() == PAYLOAD


def test_page_renders_with_notices_and_screenshot(browser, server_factory, tmp_path):
    """A realistic folder, as in docs/autoindex.md.  Set AUTOINDEX_SCREENSHOT
    to a path to save the picture (that is how docs/img/autoindex.png is made)."""
    root = tmp_path / "root"
    rel = root / "releases"
    for d in ("2.0", "1.9", "nightly"):
        (rel / d).mkdir(parents=True)
    files = {"flashplug-2.0.tar.gz": 1_843_200, "flashplug-2.0-py3-none-any.whl": 402_113,
             "flashplug-1.9.tar.gz": 1_790_511, "SHA256SUMS": 412, "CHANGES.txt": 18_230,
             "report <draft> & notes.pdf": 5_300_000}
    stamp = 1_767_268_800   # 2026-01-01T12:00:00Z, so the picture does not drift
    for i, d in enumerate(("2.0", "1.9", "nightly")):
        os.utime(rel / d, (stamp - i * 3_000_000, stamp - i * 3_000_000))
    for i, (name, size) in enumerate(files.items()):
        with open(rel / name, "wb") as f:
            f.truncate(size)
        os.utime(rel / name, (stamp - i * 86_400, stamp - i * 86_400))
    (rel / "HEADER.html").write_text("<p>Release archives. Check downloads against "
                                     "<code>SHA256SUMS</code>.</p>")
    (rel / "README.txt").write_text("Older releases live in the archive mirror.\n"
                                    "Report problems on the issue tracker.")
    server = server_factory(root, "--plugins", "autoindex")
    browser.set_window_size(900, 820)
    browser.get(server.url + "/releases/")
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Release archives." in text and "Report problems" in text
    assert "report <draft> & notes.pdf" in listed(browser)
    png = browser.get_screenshot_as_png()
    assert png.startswith(b"\x89PNG")
    out = os.environ.get("AUTOINDEX_SCREENSHOT")
    if out:
        with open(out, "wb") as f:
            f.write(png)
    # A phone-sized window keeps name and size and drops the time column.
    browser.set_window_size(380, 700)
    assert not browser.find_element(By.CSS_SELECTOR, "th.mtime").is_displayed()
    assert browser.find_element(By.CSS_SELECTOR, "th.size").is_displayed()
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= browser.execute_script("return window.innerWidth")   # no sideways scroll

"""autoindex against a real `flashplug serve --plugins autoindex` process."""
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
import requests

from tests.html_links import links_of


def links(html):
    """A page's links, text -> href."""
    return {text: href for href, text in links_of(html)}


def raw_get(server, target, headers=b""):
    """GET with the target sent byte for byte (no client re-quoting)."""
    with server.connect() as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                  + headers + b"\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


NASTY = ["<script>alert(1)<-script>.txt", "<img src=x onerror=alert(1)>", "a&b \"q\" 'x'.txt", "100%.txt", "50%2e.txt",
         "what?.txt", "#hash.txt", "with space.txt", "javascript:alert(1)", "c:"]
NON_UTF8 = b"caf\xe9-\xff.bin"


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "root"
    (root / "docs" / "deeper").mkdir(parents=True)
    (root / "docs" / "big.bin").write_bytes(b"x" * 3000)
    (root / "docs" / "small.txt").write_bytes(b"hi")
    (root / "docs" / ".secret").write_text("dot")
    (root / "docs" / "old.bak").write_text("bak")
    (root / "withindex").mkdir()
    (root / "withindex" / "index.html").write_text("the index")
    (root / "odd").mkdir()
    for name in NASTY:
        (root / "odd" / name).write_text("content of " + name)
    with open(os.path.join(os.fsencode(str(root / "odd")), NON_UTF8), "wb") as f:
        f.write(b"latin bytes")
    (tmp_path / "outside.txt").write_text("outside")
    os.symlink(tmp_path / "outside.txt", root / "docs" / "escape.txt")
    os.symlink(tmp_path, root / "docs" / "escape-dir")
    os.symlink(root / "docs" / "small.txt", root / "docs" / "inside-link.txt")
    return root


@pytest.fixture
def server(server_factory, site):
    return server_factory(site, "--plugins", "autoindex")


def test_html_listing(server):
    r = requests.get(server.url + "/docs/")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    names = list(links(r.text))
    entries = [n for n in names if n not in ("/", "docs/", "Parent directory", "Name",
                                             "Size", "JSON", "XML")
               and not n.startswith(("Name", "Size", "Last modified"))]
    assert entries == ["deeper/", "big.bin", "inside-link.txt", "old.bak", "small.txt"]
    assert "2.9 KiB" in r.text
    assert "(UTC)" in r.text


def test_hidden_things(server):
    text = requests.get(server.url + "/docs/").text
    assert ".secret" not in text               # dotfile
    assert "escape" not in text                # symlinks leaving the docroot
    assert requests.get(server.url + "/docs/escape.txt").status_code in (403, 404)


def test_formats(server):
    r = requests.get(server.url + "/docs/?format=json")
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    items = r.json()
    assert items[0] == {"name": "deeper", "type": "directory", "mtime": items[0]["mtime"],
                        "href": "deeper/"}
    assert items[0]["mtime"].endswith("Z")
    big = [i for i in items if i["name"] == "big.bin"][0]
    assert big["size"] == 3000 and big["type"] == "file"
    r = requests.get(server.url + "/docs/", headers={"Accept": "application/json"})
    assert r.json() == items
    r = requests.get(server.url + "/docs/", headers={"Accept": "text/xml"})
    assert r.headers["Content-Type"] == "application/xml; charset=utf-8"
    root = ET.fromstring(r.content)
    assert [el.text for el in root] == [i["name"] for i in items]
    assert requests.get(server.url + "/docs/?format=yaml").status_code == 400


def test_sorting(server):
    def order(q):
        return [i["name"] for i in requests.get(server.url + "/docs/?format=json&" + q).json()]
    assert order("C=S;O=D") == ["deeper", "big.bin", "old.bak", "small.txt", "inside-link.txt"]
    assert order("sort=size&order=asc")[1:3] == ["inside-link.txt", "small.txt"]
    html = requests.get(server.url + "/docs/?C=N;O=D").text
    assert html.index("small.txt") < html.index("big.bin")
    assert 'href="?C=N;O=A"' in html


def test_every_name_is_escaped_and_every_link_fetches_its_file(server):
    r = requests.get(server.url + "/odd/")
    assert "<script>alert" not in r.text and "<img" not in r.text
    found = links(r.text)
    for name in NASTY:
        href = found[name]
        status, body = raw_get(server, b"/odd/" + href.encode("ascii"))
        assert (status, body) == (200, ("content of " + name).encode()), (name, href)
    assert found["javascript:alert(1)"].startswith("./")
    shown = "caf\\xe9-\\xff.bin"
    assert shown in found
    status, body = raw_get(server, b"/odd/" + found[shown].encode("ascii"))
    assert (status, body) == (200, b"latin bytes")


CONTROL_NAMES = ["new\nline.txt", "ctl\x01.txt", "cr\r.txt", "tab\there.txt", "del\x7f.txt",
                 "esc\x1b[31m.txt"]


def test_names_with_control_characters_are_listed_and_served(server_factory, tmp_path):
    """Issue #13 fault 4: what the listing links to, the static handler
    serves (as nginx and Apache do); the name is shown escaped."""
    root = tmp_path / "ctl"
    (root / "dir\x02").mkdir(parents=True)
    (root / "dir\x02" / "inner.txt").write_text("inner")
    for name in CONTROL_NAMES:
        (root / name).write_text("content of " + repr(name))
    server = server_factory(root, "--plugins", "autoindex")
    r = requests.get(server.url + "/")
    assert not any(c in r.text for c in "\x01\x1b\x7f")
    found = links(r.text)
    for name in CONTROL_NAMES:
        shown = "".join("\\x%02x" % ord(c) if ord(c) < 0x20 or c == "\x7f" else c
                        for c in name)
        status, body = raw_get(server, b"/" + found[shown].encode("ascii"))
        assert (status, body) == (200, ("content of " + repr(name)).encode()), (name, found[shown])
    # A directory: the link works, and its redirect without the slash stays encoded.
    assert raw_get(server, b"/" + found["dir\\x02/"].encode("ascii") + b"inner.txt") == (200, b"inner")
    status, page = raw_get(server, b"/" + found["dir\\x02/"].encode("ascii"))
    assert status == 200 and b"\x02" not in page and b"dir\\x02" in page
    with server.connect() as s:
        s.sendall(b"GET /dir%02 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        head = s.recv(65536).partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 301 ") and b"\r\nLocation: /dir%02/\r\n" in head
    # NUL still names no file: 400, like nginx.
    assert raw_get(server, b"/new%00line.txt")[0] == 400


def test_index_file_wins_and_plain_files_are_served(server):
    assert requests.get(server.url + "/withindex/").text == "the index"
    assert requests.get(server.url + "/docs/small.txt").content == b"hi"


def test_conditional_get_and_head(server):
    url = server.url + "/docs/"
    r = requests.get(url)
    etag, lm = r.headers["ETag"], r.headers["Last-Modified"]
    r304 = requests.get(url, headers={"If-None-Match": etag})
    assert r304.status_code == 304 and r304.content == b""
    assert requests.get(url, headers={"If-Modified-Since": lm}).status_code == 304
    head = requests.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["ETag"] == etag
    assert int(head.headers["Content-Length"]) == len(r.content)


def test_listing_follows_changes(server, site):
    url = server.url + "/docs/?format=json"
    before = requests.get(url)
    (site / "docs" / "fresh.txt").write_text("new")
    # Some file systems keep mtimes in whole seconds: make the change visible.
    st = os.stat(site / "docs")
    os.utime(site / "docs", ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    after = requests.get(url, headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert "fresh.txt" in [i["name"] for i in after.json()]


def test_notices(server, site):
    (site / "docs" / "HEADER.html").write_text("<h2 id=hdr>Welcome</h2>")
    (site / "docs" / "README.txt").write_text("read <me> & enjoy")
    st = os.stat(site / "docs")
    os.utime(site / "docs", ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    text = requests.get(server.url + "/docs/").text
    assert "<h2 id=hdr>Welcome</h2>" in text
    assert "read &lt;me&gt; &amp; enjoy" in text
    assert text.index("Welcome") < text.index("big.bin") < text.index("read &lt;me")


def test_without_the_plugin_directories_are_not_listed(server_factory, site):
    s = server_factory(site, "--plugins", "none")
    assert requests.get(s.url + "/docs/").status_code == 404


def test_options(server_factory, site):
    s = server_factory(site, "--plugins", "autoindex", "--show-dotfiles",
                       "--autoindex-exact-size", "--autoindex-ignore", "*.bak,big*",
                       "--no-autoindex-dirs-first", "--autoindex-localtime")
    r = requests.get(s.url + "/docs/")
    names = [n for n in links(r.text)]
    assert ".secret" in names and "old.bak" not in names and "big.bin" not in names
    assert "(local time)" in r.text
    assert ">2<" in r.text                              # exact size of small.txt
    order = [i["name"] for i in requests.get(s.url + "/docs/?format=json").json()]
    assert order == [".secret", "deeper", "inside-link.txt", "small.txt"]


def test_config_file(server_factory, site, tmp_path):
    cfg = tmp_path / "flashplug.toml"
    cfg.write_text('[plugins.autoindex]\nexact_size = true\ndirs_first = false\n'
                   'ignore = ["*.bak", "deep*"]\n')
    s = server_factory(site, "--plugins", "autoindex", "--config", cfg)
    order = [i["name"] for i in requests.get(s.url + "/docs/?format=json").json()]
    assert order == ["big.bin", "inside-link.txt", "small.txt"]
    assert ">3000<" in requests.get(s.url + "/docs/").text


def test_user_template(server_factory, site, tmp_path):
    t = tmp_path / "mine.html"
    t.write_text("<ul>{% for e in entries %}<li><a href='{{ e.href }}'>{{ e.name }}</a>"
                 "{% endfor %}</ul>")
    s = server_factory(site, "--plugins", "autoindex", "--autoindex-template", t)
    text = requests.get(s.url + "/odd/").text
    assert text.startswith("<ul><li>") and "&lt;script&gt;" in text


@pytest.mark.parametrize("args, message", [
    (["--autoindex-template", "/nonexistent/t.html"], "--autoindex-template /nonexistent/t.html"),
    (["--autoindex-ignore", "a/b"], "--autoindex-ignore 'a/b'"),
])
def test_bad_options_fail_fast(site, tmp_path, args, message):
    p = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(site), "--port", "0",
                        "--plugins", "autoindex", *args],
                       capture_output=True, text=True, timeout=30, cwd=str(tmp_path))
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr


def test_large_folder(server_factory, tmp_path):
    root = tmp_path / "bigroot"
    (root / "many").mkdir(parents=True)
    for i in range(3000):
        (root / "many" / f"f{i:05d}.txt").write_bytes(b"x")
    s = server_factory(root, "--plugins", "autoindex")
    t0 = time.monotonic()
    items = requests.get(s.url + "/many/?format=json").json()
    assert len(items) == 3000
    assert time.monotonic() - t0 < 10   # generous: CI machines are slow; bench/ measures


def test_cgi_directories_are_never_listed(server_factory, site):
    for d in ("cgi-bin", "scripts"):
        (site / d).mkdir()
        script = site / d / "hello.sh"
        script.write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhi'\n")
        script.chmod(0o755)
    s = server_factory(site, "--plugins", "cgi,autoindex",
                       "--cgi-dir", "/cgi-bin/", "--cgi-dir", f"/run/={site / 'scripts'}")
    for path in ("/cgi-bin/", "/scripts/", "/run/"):
        r = requests.get(s.url + path)
        assert "hello.sh" not in r.text and r.status_code != 200, path
    assert requests.get(s.url + "/run/hello.sh").text == "hi"
    assert requests.get(s.url + "/docs/").status_code == 200

"""autoindex rendering: views, names, links, formats, escaping (pure)."""
import json
import os
import re
import xml.etree.ElementTree as ET
from urllib.parse import unquote_to_bytes, urljoin

import pytest

from flashplug_plugins.autoindex import render
from flashplug_plugins.autoindex.listing import Entry, Listing, Notice
from tests.html_links import links_of

GiB = 1 << 30
T0 = 1_700_000_000 * 10**9     # 2023-11-14T22:13:20Z


def listing(*entries, header=None, readme=None):
    return Listing(1, tuple(entries), header, readme, "d", 0)


def html(lst, path="/dir/", sort="name", order="asc", **kw):
    body = render.render(render.load_template(), lst, path,
                         render.View("html", sort, order), **kw)
    return body.decode("utf-8")


# -- the view -----------------------------------------------------------------

@pytest.mark.parametrize("query, view", [
    ("", (None, "name", "asc")),
    ("C=N;O=D", (None, "name", "desc")),
    ("C=M;O=A", (None, "mtime", "asc")),
    ("C=S&O=D", (None, "size", "desc")),
    ("c=s", (None, "name", "asc")),            # keys are case-sensitive, as Apache's
    ("C=s;O=d", (None, "size", "desc")),       # values are not
    ("C=D;O=X", (None, "name", "asc")),        # Apache's description column: ignored
    ("sort=size&order=desc", (None, "size", "desc")),
    ("sort=bogus", (None, "name", "asc")),
    ("format=json", ("json", "name", "asc")),
    ("format=XML;C=M", ("xml", "mtime", "asc")),
    ("format=html&x=1&&;", ("html", "name", "asc")),
])
def test_parse_query(query, view):
    assert tuple(render.parse_query(query)) == view


def test_unknown_format_is_an_error():
    with pytest.raises(render.QueryError, match="html, json, xml"):
        render.parse_query("format=yaml")


@pytest.mark.parametrize("accept, fmt", [
    (None, "html"),
    ("", "html"),
    ("*/*", "html"),
    ("application/json", "json"),
    ("application/xml", "xml"),
    ("text/xml", "xml"),
    ("application/*", "json"),
    ("image/png", "html"),                      # nothing fits: still HTML, no 406
    ("text/html;q=0.5, application/json", "json"),
    ("application/json;q=0.2, application/xml;q=0.9", "xml"),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "html"),  # a browser
    ("application/json;q=0, */*", "html"),
    ("application/json; q=abc, application/xml", "xml"),
])
def test_negotiate(accept, fmt):
    assert render.negotiate(accept) == fmt


def test_sort_links_toggle_current_column_only():
    v = render.View("html", "name", "asc")
    assert render.sort_link(v, "name") == "?C=N;O=D"
    assert render.sort_link(v, "size") == "?C=S;O=A"
    v = render.View("html", "mtime", "desc")
    assert render.sort_link(v, "mtime") == "?C=M;O=A"
    assert render.sort_link(v, "name") == "?C=N;O=A"


# -- sizes, names, links --------------------------------------------------------

@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (10 * 1024, "10 KiB"), (1024 * 1024 - 1, "1.0 MiB"), (5 * GiB, "5.0 GiB"),
    (1024 ** 5 * 3000, "3000 PiB"),
])
def test_human_size(n, text):
    assert render.human_size(n) == text


@pytest.mark.parametrize("name, shown", [
    ("plain.txt", "plain.txt"),
    ("caf\u00e9", "caf\u00e9"),
    (os.fsdecode(b"caf\xe9.txt"), "caf\\xe9.txt"),   # latin-1 bytes on disk
    ("bell\x07\nnl", "bell\\x07\\x0anl"),
])
def test_display_name(name, shown):
    assert render.display_name(name) == shown


@pytest.mark.parametrize("name, link", [
    ("a b", "a%20b"),
    ("100%", "100%25"),
    ("what?", "what%3F"),
    ("#tag", "%23tag"),
    ("a&b;c", "a%26b%3Bc"),
    ("<x>\"'", "%3Cx%3E%22%27"),
    ("javascript:alert(1)", "./javascript%3Aalert%281%29"),
    ("c:", "./c%3A"),
    ("1:2", "1%3A2"),                     # a scheme cannot start with a digit
    ("caf\u00e9", "caf%C3%A9"),
    (os.fsdecode(b"caf\xe9"), "caf%E9"),  # the bytes on disk, not U+FFFD
])
def test_href(name, link):
    assert render.href(name) == link
    # Resolved against the listing's URL the link stays in the folder and
    # decodes back to the exact bytes of the name.
    resolved = urljoin("http://h/dir/", link)
    assert resolved.startswith("http://h/dir/")
    assert unquote_to_bytes(resolved[len("http://h/dir/"):]) == os.fsencode(name)


def test_href_of_directory_ends_in_slash():
    assert render.href("sub dir", is_dir=True) == "sub%20dir/"


# -- sorting -------------------------------------------------------------------

def names(rows):
    return [r.name for r in rows]


ENTRIES = (
    Entry("b.txt", "file", 30, T0 + 2 * 10**9),
    Entry("A.txt", "file", 10, T0 + 3 * 10**9),
    Entry("zdir", "directory", None, T0),
    Entry("c.txt", "file", 20, T0 + 1 * 10**9),
    Entry("adir", "directory", None, T0 + 5 * 10**9),
)


@pytest.mark.parametrize("sort, order, expected", [
    ("name", "asc", ["adir", "zdir", "A.txt", "b.txt", "c.txt"]),
    ("name", "desc", ["zdir", "adir", "c.txt", "b.txt", "A.txt"]),
    ("size", "asc", ["adir", "zdir", "A.txt", "c.txt", "b.txt"]),
    ("size", "desc", ["zdir", "adir", "b.txt", "c.txt", "A.txt"]),
    ("mtime", "asc", ["zdir", "adir", "c.txt", "b.txt", "A.txt"]),
    ("mtime", "desc", ["adir", "zdir", "A.txt", "b.txt", "c.txt"]),
])
def test_sort_keeps_directories_first(sort, order, expected):
    rows = render.rows(listing(*ENTRIES), render.View("html", sort, order))
    assert names(rows) == expected


def test_sort_without_directories_first():
    rows = render.rows(listing(*ENTRIES), render.View("html", "name", "asc"), dirs_first=False)
    assert names(rows) == ["A.txt", "adir", "b.txt", "c.txt", "zdir"]


def test_times_utc_by_default_and_local_on_request(monkeypatch):
    e = Entry("f", "file", 1, T0)
    row, = render.rows(listing(e), render.View("html", "name", "asc"))
    assert row.mtime_text == "2023-11-14 22:13"
    assert row.mtime_iso == "2023-11-14T22:13:20Z"
    monkeypatch.setenv("TZ", "Asia/Kolkata")   # +05:30, no daylight saving
    import time
    time.tzset()
    try:
        row, = render.rows(listing(e), render.View("html", "name", "asc"), localtime=True)
        assert row.mtime_text == "2023-11-15 03:43"
        assert row.mtime_iso == "2023-11-14T22:13:20Z"   # machine time stays UTC
    finally:
        monkeypatch.undo()
        time.tzset()


def test_exact_size():
    e = Entry("f", "file", 123456, T0)
    assert "120.6 KiB" not in html(listing(e))   # no decimals from 10 up
    assert ">121 KiB<" in html(listing(e))
    assert ">123456<" in html(listing(e), exact_size=True)


# -- HTML ----------------------------------------------------------------------

NASTY = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "' onmouseover='alert(1)",
    "a&amp;b",
    "100%",
    "50%2e",
    "what?x=1",
    "#frag",
    "with space",
    "javascript:alert(1)",
    os.fsdecode(b"bad-\xff\xfe-utf8"),
]


def test_html_escapes_every_name_and_quotes_every_link():
    entries = [Entry(n, "file", 1, T0) for n in NASTY] + [Entry("<d>", "directory", None, T0)]
    page = html(listing(*entries), path="/x/")
    assert "<script>" not in page
    assert "<img" not in page
    assert "onmouseover='" not in page
    links = dict((text, href) for href, text in links_of(page))
    for name in NASTY:
        shown = render.display_name(name)
        assert shown in links, name          # visible, decoded once by the parser
        link = links[shown]
        assert re.fullmatch(r"(\./)?[A-Za-z0-9_.~%-]+", link), link
        assert unquote_to_bytes(link.removeprefix("./")) == os.fsencode(name)
    assert links["<d>/"] == "%3Cd%3E/"


def test_aiohttp_show_index_xss_vector():
    # CVE-2024-27306: aiohttp put the name into the page unescaped.
    name = "<img src=x onerror=alert(document.cookie)>.txt"
    page = html(listing(Entry(name, "file", 1, T0)))
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(document.cookie)&gt;.txt" in page


def test_path_is_escaped_and_breadcrumbs_link_upwards():
    page = html(listing(), path="/a <b>/c/")
    assert "<b>" not in page
    assert "Index of /a &lt;b&gt;/c/" in page
    crumbs = [(h, t) for h, t in links_of(page)][:3]
    assert crumbs == [("../../", "/"), ("../", "a <b>/"), ("./", "c/")]


def test_parent_link_except_at_root():
    assert ("../", "Parent directory") in links_of(html(listing(), path="/sub/"))
    assert all(t != "Parent directory" for _, t in links_of(html(listing(), path="/")))


def test_column_headers_link_to_sorts_and_mark_the_current_one():
    page = html(listing(*ENTRIES), sort="size", order="asc")
    hrefs = [h for h, _ in links_of(page)]
    assert "?C=N;O=A" in hrefs and "?C=S;O=D" in hrefs and "?C=M;O=A" in hrefs
    assert 'aria-sort="ascending"' in page
    assert page.index("adir") < page.index("A.txt")


def test_responsive_page():
    page = html(listing())
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "@media (max-width:" in page


def test_html_notice_goes_in_as_markup_and_text_is_escaped():
    page = html(listing(Entry("HEADER.html", "file", 5, T0), Entry("README.txt", "file", 5, T0),
                        Entry("other", "file", 1, T0),
                        header=Notice("HEADER.html", "<h2>Welcome</h2>", True),
                        readme=Notice("README.txt", "a <b> & c", False)))
    assert "<h2>Welcome</h2>" in page
    assert '<pre class="notice">a &lt;b&gt; &amp; c</pre>' in page
    assert page.index("Welcome") < page.index("<table") < page.index("a &lt;b&gt;")
    shown = [t for _, t in links_of(page)]
    assert "HEADER.html" not in shown and "README.txt" not in shown and "other" in shown


# -- JSON and XML ----------------------------------------------------------------

def test_json_like_nginx():
    body = render.render(None, listing(*ENTRIES, Entry("fifo", "other", None, T0)), "/",
                         render.View("json", "name", "asc"))
    items = json.loads(body)
    assert items[0] == {"name": "adir", "type": "directory",
                        "mtime": "2023-11-14T22:13:25Z", "href": "adir/"}
    assert items[2] == {"name": "A.txt", "type": "file", "mtime": "2023-11-14T22:13:23Z",
                        "size": 10, "href": "A.txt"}
    assert {"name": "fifo", "type": "other", "mtime": "2023-11-14T22:13:20Z",
            "href": "fifo"} in items


def test_json_of_empty_folder_and_odd_names():
    assert json.loads(render.render_json([])) == []
    odd = os.fsdecode(b"\xff\"<x>")
    item, = json.loads(render.render(None, listing(Entry(odd, "file", 0, T0)), "/",
                                     render.View("json", "name", "asc")))
    assert item["name"] == "\\xff\"<x>"
    assert item["href"] == "%FF%22%3Cx%3E"


def test_xml_is_well_formed_even_for_control_characters():
    entries = ENTRIES + (Entry("a\x01<&>\"", "file", 3, T0),
                         Entry(os.fsdecode(b"\xfe"), "other", None, T0))
    body = render.render(None, listing(*entries), "/", render.View("xml", "name", "asc"))
    root = ET.fromstring(body)
    assert root.tag == "list"
    first = root[0]
    assert (first.tag, first.text, first.get("mtime"), first.get("size")) == (
        "directory", "adir", "2023-11-14T22:13:25Z", None)
    odd = [el for el in root if el.text.startswith("a\\x01")][0]
    assert (odd.tag, odd.text, odd.get("size"), odd.get("href")) == (
        "file", 'a\\x01<&>"', "3", "a%01%3C%26%3E%22")
    assert any(el.tag == "other" and el.text == "\\xfe" for el in root)


def test_content_types_name_a_charset():
    for fmt in render.FORMATS:
        assert render.CONTENT_TYPES[fmt].endswith("; charset=utf-8")


def test_user_template(tmp_path):
    (tmp_path / "t.txt").write_text("{{ path }}|{% for e in entries %}{{ e.name }},{% endfor %}")
    t = render.load_template(str(tmp_path / "t.txt"))
    body = render.render(t, listing(Entry("<a>", "file", 1, T0)), "/p/",
                         render.View("html", "name", "asc"))
    assert body == b"/p/|&lt;a&gt;,"   # autoescape even for a .txt template

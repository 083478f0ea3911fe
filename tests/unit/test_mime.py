import pytest

from flashplug.http import mime
from flashplug.http.mime import DEFAULT_TYPE, content_type_for


@pytest.mark.parametrize("name, expected", [
    ("index.html", "text/html; charset=utf-8"),
    ("a.htm", "text/html; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("mod.mjs", "text/javascript; charset=utf-8"),
    ("data.json", "application/json; charset=utf-8"),
    ("notes.txt", "text/plain; charset=utf-8"),
    ("feed.xml", "application/xml; charset=utf-8"),
    ("logo.svg", "image/svg+xml; charset=utf-8"),
    ("site.webmanifest", "application/manifest+json; charset=utf-8"),
    ("x.png", "image/png"),
    ("x.jpg", "image/jpeg"),
    ("x.jpeg", "image/jpeg"),
    ("x.gif", "image/gif"),
    ("x.webp", "image/webp"),
    ("x.avif", "image/avif"),
    ("favicon.ico", "image/vnd.microsoft.icon"),
    ("doc.pdf", "application/pdf"),
    ("mod.wasm", "application/wasm"),
    ("f.woff", "font/woff"),
    ("f.woff2", "font/woff2"),
    ("f.ttf", "font/ttf"),
    ("f.otf", "font/otf"),
    ("v.mp4", "video/mp4"),
    ("v.webm", "video/webm"),
    ("a.mp3", "audio/mpeg"),
    ("a.ogg", "audio/ogg"),
    ("a.wav", "audio/wav"),
    ("a.zip", "application/zip"),
    ("a.tar.gz", "application/gzip"),
    ("a.tar", "application/x-tar"),
    ("README.md", "text/markdown; charset=utf-8"),
    ("t.csv", "text/csv; charset=utf-8"),
    ("app.js.map", "application/json; charset=utf-8"),
    ("script.py", "text/plain; charset=utf-8"),
    ("run.sh", "text/plain; charset=utf-8"),
    # What python -m http.server found in /etc/mime.types (session 8: these
    # were application/octet-stream here).
    ("fix.diff", "text/plain; charset=utf-8"),
    ("fix.patch", "text/plain; charset=utf-8"),
    ("README.rst", "text/plain; charset=utf-8"),
    ("cv.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("t.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("s.pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
    ("cv.odt", "application/vnd.oasis.opendocument.text"),
    ("t.ods", "application/vnd.oasis.opendocument.spreadsheet"),
    ("s.odp", "application/vnd.oasis.opendocument.presentation"),
    ("book.epub", "application/epub+zip"),
    ("a.rar", "application/vnd.rar"),
])
def test_table(name, expected):
    assert content_type_for(name) == expected


def test_case_insensitive_and_paths():
    assert content_type_for("INDEX.HTML") == "text/html; charset=utf-8"
    assert content_type_for("Photo.JpG") == "image/jpeg"
    assert content_type_for("/srv/site.v2/img/a.png") == "image/png"
    assert content_type_for("dir.d/noext") == DEFAULT_TYPE


def test_builtin_fallback():
    # Not in our table: the defaults compiled into Python's mimetypes.
    assert ".doc" not in mime._TYPES and "doc" not in mime._TYPES
    assert content_type_for("letter.doc") == "application/msword"
    assert content_type_for("letter.rtf") == "application/rtf"   # non-strict table


@pytest.mark.parametrize("name", ["noext", "a.unknownext", ".bashrc", "a.", "", "x/.hidden"])
def test_default(name):
    assert content_type_for(name) == DEFAULT_TYPE


def test_does_not_read_system_mime_types(monkeypatch):
    import mimetypes
    monkeypatch.setitem(mimetypes.types_map, ".flashplugtest", "text/x-host")
    monkeypatch.setattr(mime, "_cache", {})
    assert content_type_for("a.flashplugtest") == DEFAULT_TYPE


def test_structured_suffixes_are_textual():
    assert content_type_for("a.jsonld") == "application/ld+json; charset=utf-8"
    assert content_type_for("feed.atom") == "application/atom+xml; charset=utf-8"
    assert "charset" not in content_type_for("a.bin")


def test_cache_is_used_and_bounded(monkeypatch):
    monkeypatch.setattr(mime, "_cache", {})
    calls = []
    real = mime._lookup
    monkeypatch.setattr(mime, "_lookup", lambda ext: calls.append(ext) or real(ext))
    content_type_for("a.css")
    content_type_for("b.CSS")
    assert calls == ["css"]
    for i in range(mime._CACHE_MAX + 50):
        content_type_for("f.x%d" % i)
    assert len(mime._cache) == mime._CACHE_MAX

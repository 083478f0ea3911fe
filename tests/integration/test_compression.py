"""Content codings from a real `flashplug serve` (issue 15, item 2).

Precompressed sidecars and --compress, negotiated on Accept-Encoding
(RFC 9110 §12.5.3): what curl --compressed and requests decode, q-values
and ranges on raw sockets, validators per coding, the safety rules for
sidecars, a changed file never served from an old result, and no
compression of CGI output.
"""
import gzip
import os
import subprocess
import sys
import time

import brotli
import pytest
import requests
import zstandard

from conftest import start_server
from test_kernel_http import one, req

TEXT = b"".join(b"<p>line %d of a page that compresses well</p>\n" % i for i in range(2000))
SIDECAR_TEXT = TEXT + b"<!-- from the sidecar -->\n"   # tells the sidecar from --compress
MTIME = 1_600_000_000 * 10**9
DECODE = {"gzip": gzip.decompress, "br": brotli.decompress,
          "zstd": lambda b: zstandard.ZstdDecompressor().decompress(b)}


def put(root, name, data, mtime=MTIME):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime, mtime))
    return path


def make_root(root):
    put(root, "page.html", TEXT)                                   # --compress
    put(root, "pre.html", TEXT)
    put(root, "pre.html.gz", gzip.compress(SIDECAR_TEXT), MTIME + 10**9)
    put(root, "pre.html.br", brotli.compress(SIDECAR_TEXT), MTIME + 10**9)
    put(root, "stale.html", TEXT)
    put(root, "stale.html.gz", gzip.compress(SIDECAR_TEXT), MTIME - 10**9)
    put(root, "small.txt", b"short")
    put(root, "photo.png", b"\x89PNG\r\n\x1a\n" + TEXT)
    outside = put(root.parent, "secret.gz", gzip.compress(b"secret"))
    put(root, "out.html", TEXT)
    os.symlink(outside, root / "out.html.gz")
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_root(tmp_path_factory.mktemp("compress") / "root")


@pytest.fixture(scope="module")
def srv(root, tmp_path_factory):
    s = start_server(root, "--compress", "--access-log", "off",
                     tmp_path=tmp_path_factory.mktemp("compress-log"))
    yield s
    s.stop()


def get(srv, path, accept=None, extra=b"", method="GET"):
    head = b"" if accept is None else b"Accept-Encoding: " + accept.encode() + b"\r\n"
    return one(srv, req(path, method=method, extra=head + extra), head=method == "HEAD")


def field(headers, name):
    values = headers.get(name.lower())
    return None if values is None else ", ".join(values)


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_curl_compressed_gets_each_coding_and_the_original_bytes(srv, coding, tmp_path):
    out = tmp_path / "out"
    head = subprocess.run(
        ["curl", "-sS", "--compressed", "-H", f"Accept-Encoding: {coding}", "-D", "-",
         "-o", str(out), f"{srv.url}/page.html"],
        capture_output=True, check=True, timeout=30).stdout.decode().lower()
    assert f"content-encoding: {coding}\r\n" in head
    assert "vary: accept-encoding\r\n" in head
    assert out.read_bytes() == TEXT


def test_requests_decodes_what_it_asked_for(srv):
    r = requests.get(srv.url + "/page.html", headers={"Accept-Encoding": "gzip, deflate"})
    assert r.headers["Content-Encoding"] == "gzip" and r.content == TEXT
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize("accept, coding", [
    (None, None),                                   # no field: identity
    ("", None),                                     # empty: identity only
    ("gzip, deflate, br, zstd", "br"),              # a browser's: our order breaks the tie
    ("gzip;q=1.0, br;q=0.8, zstd;q=0.9", "gzip"),   # the client's q first
    ("br;q=0, gzip;q=0.2", "gzip"),
    ("x-gzip", "gzip"),
    ("*", "br"),
    ("*;q=0.1, zstd", "zstd"),
    ("gzip;q=0.5, identity;q=0.8", None),
    ("identity;q=0, zstd", "zstd"),
    ("compress, deflate", None),
])
def test_q_values_choose_the_coding(srv, accept, coding):
    status, headers, body = get(srv, "/page.html", accept)
    assert status == 200
    assert field(headers, "Content-Encoding") == coding
    assert field(headers, "Vary") == "Accept-Encoding"
    assert (DECODE[coding](body) if coding else body) == TEXT
    assert int(field(headers, "Content-Length")) == len(body)


def test_nothing_acceptable_is_406_with_vary(srv):
    for accept in ("identity;q=0", "*;q=0", "compress, identity;q=0"):
        status, headers, _ = get(srv, "/page.html", accept)
        assert status == 406, accept
        assert field(headers, "Vary") == "Accept-Encoding"
    # A file that is not negotiated at all ignores the field.
    assert get(srv, "/photo.png", "identity;q=0")[0] == 200


def test_each_coding_has_its_own_validators(srv):
    tags = {}
    for coding in ("gzip", "br", "zstd", "identity"):
        status, headers, _ = get(srv, "/page.html", coding)
        tags[coding] = field(headers, "ETag")
    assert len(set(tags.values())) == 4
    assert tags["gzip"] == "W/" + tags["identity"][:-1] + '-gzip"'     # made on the fly
    # A 304 for the coding the tag names, with Vary (RFC 9110 §15.4.5) ...
    inm = b"If-None-Match: " + tags["gzip"].encode() + b"\r\n"
    status, headers, _ = get(srv, "/page.html", "gzip", inm)
    assert status == 304
    assert field(headers, "ETag") == tags["gzip"]
    assert field(headers, "Vary") == "Accept-Encoding"
    # ... but the gzip tag does not validate the br representation.
    status, headers, body = get(srv, "/page.html", "br", inm)
    assert status == 200 and field(headers, "Content-Encoding") == "br"


def test_ranges_count_the_encoded_bytes(srv):
    _, headers, whole = get(srv, "/page.html", "gzip")
    status, headers, body = get(srv, "/page.html", "gzip", b"Range: bytes=10-109\r\n")
    assert status == 206
    assert field(headers, "Content-Encoding") == "gzip"
    assert field(headers, "Content-Range") == f"bytes 10-109/{len(whole)}"
    assert body == whole[10:110]
    # Several ranges of a coded body get the whole body.
    status, headers, body = get(srv, "/page.html", "gzip", b"Range: bytes=0-9,20-29\r\n")
    assert status == 200 and body == whole
    # Past the end of the gzip bytes (not of the file): 416, which varies too.
    status, headers, _ = get(srv, "/page.html", "gzip",
                             b"Range: bytes=%d-\r\n" % (len(whole) + 10))
    assert status == 416
    assert field(headers, "Content-Range") == f"bytes */{len(whole)}"
    assert field(headers, "Vary") == "Accept-Encoding"


def test_head_says_what_get_sends(srv):
    _, get_headers, body = get(srv, "/page.html", "br")
    status, headers, _ = get(srv, "/page.html", "br", method="HEAD")
    assert status == 200
    for name in ("Content-Encoding", "Content-Length", "ETag", "Vary"):
        assert field(headers, name) == field(get_headers, name)


def test_sidecars_are_served_and_chosen_over_on_the_fly(srv):
    for coding in ("gzip", "br"):
        status, headers, body = get(srv, "/pre.html", coding)
        assert field(headers, "Content-Encoding") == coding
        assert DECODE[coding](body) == SIDECAR_TEXT            # the sidecar's bytes
        assert field(headers, "Content-Type") == "text/html; charset=utf-8"
    # No .zst beside it: --compress makes that one.
    status, headers, body = get(srv, "/pre.html", "zstd")
    assert DECODE["zstd"](body) == TEXT


def test_a_sidecar_asked_for_by_name_is_itself(srv):
    status, headers, body = get(srv, "/pre.html.gz", "gzip")
    assert status == 200
    assert field(headers, "Content-Type") == "application/gzip"
    assert field(headers, "Content-Encoding") is None and field(headers, "Vary") is None
    assert gzip.decompress(body) == SIDECAR_TEXT


def test_stale_and_unsafe_sidecars_are_not_served(srv):
    # Older than its original: --compress makes a fresh gzip instead.
    _, headers, body = get(srv, "/stale.html", "gzip")
    assert field(headers, "Content-Encoding") == "gzip" and gzip.decompress(body) == TEXT
    assert "stale.html.gz is older than stale.html" in srv.log()
    # A symlink out of the document root.
    _, headers, body = get(srv, "/out.html", "gzip")
    assert gzip.decompress(body) == TEXT


def test_small_and_incompressible_files_are_sent_as_they_are(srv):
    for path in ("/small.txt", "/photo.png"):
        status, headers, _ = get(srv, path, "gzip, br")
        assert status == 200
        assert field(headers, "Content-Encoding") is None and field(headers, "Vary") is None


def test_without_compress_sidecars_still_serve_and_others_say_no_vary(root, server_factory):
    s = server_factory(root, "--access-log", "off")
    _, headers, body = get(s, "/pre.html", "gzip")
    assert gzip.decompress(body) == SIDECAR_TEXT
    _, headers, body = get(s, "/pre.html", "zstd")     # no sidecar: identity, with Vary
    assert body == TEXT and field(headers, "Vary") == "Accept-Encoding"
    _, headers, body = get(s, "/page.html", "gzip")
    assert body == TEXT and field(headers, "Vary") is None
    off = server_factory(root, "--access-log", "off", "--no-precompressed")
    _, headers, body = get(off, "/pre.html", "gzip")
    assert body == TEXT and field(headers, "Vary") is None


def test_a_changed_file_or_sidecar_is_never_served_stale(tmp_path, server_factory):
    root = tmp_path / "root"
    page = put(root, "page.html", TEXT)
    s = server_factory(root, "--compress", "--cache-valid", "0.05", "--access-log", "off")
    for _ in range(2):                                   # compressed, then from the cache
        assert gzip.decompress(get(s, "/page.html", "gzip")[2]) == TEXT
    page.write_bytes(TEXT + b"<p>edited</p>")
    time.sleep(0.2)
    assert gzip.decompress(get(s, "/page.html", "gzip")[2]) == TEXT + b"<p>edited</p>"
    # A sidecar made afterwards is picked up, like an edit.
    put(root, "page.html.gz", gzip.compress(SIDECAR_TEXT), time.time_ns())
    time.sleep(0.2)
    assert gzip.decompress(get(s, "/page.html", "gzip")[2]) == SIDECAR_TEXT


def test_cgi_output_is_not_compressed(tmp_path, server_factory):
    root = tmp_path / "root"
    script = put(root, "cgi-bin/page.sh",
                 b"#!/bin/sh\nprintf 'Content-Type: text/html\\r\\n\\r\\n'\n"
                 b"i=0; while [ $i -lt 200 ]; do echo '<p>dynamic text</p>'; i=$((i+1)); done\n")
    script.chmod(0o755)
    s = server_factory(root, "--compress", "--plugins", "cgi", "--access-log", "off")
    status, headers, body = get(s, "/cgi-bin/page.sh", "gzip, br")
    assert status == 200 and body.startswith(b"<p>dynamic text</p>")
    assert field(headers, "Content-Encoding") is None


def test_config_file_key_and_its_errors(root, tmp_path, server_factory):
    conf = tmp_path / "site.toml"
    conf.write_text("compress = true\nprecompressed = false\ncompress_cache_size = '1m'\n")
    s = server_factory(root, "--config", conf, "--access-log", "off")
    _, headers, body = get(s, "/pre.html", "gzip")
    assert gzip.decompress(body) == TEXT                 # made on the fly, sidecar unused
    conf.write_text('compress = "yes"\n')
    bad = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(root), "--config",
                          str(conf)], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0
    assert "compress = 'yes': expected true or false (--compress)" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_missing_packages_leave_gzip_and_say_so_once(root, tmp_path, server_factory):
    hide = tmp_path / "hide"
    hide.mkdir()
    for name in ("brotli", "zstandard"):
        (hide / f"{name}.py").write_text("raise ImportError('hidden by the test')\n")
    env = dict(os.environ, PYTHONPATH=str(hide))
    s = server_factory(root, "--compress", "--workers", "2", "--access-log", "off", env=env)
    _, headers, body = get(s, "/page.html", "br, zstd, gzip")
    assert field(headers, "Content-Encoding") == "gzip" and gzip.decompress(body) == TEXT
    # The sidecar needs no package: it is sent as it is.
    assert field(get(s, "/pre.html", "br")[1], "Content-Encoding") == "br"
    assert s.log().count("br, zstd off (brotli and zstandard not installed)") == 1


def test_a_negotiated_answer_is_never_replayed_for_another_field(srv):
    """The cached path remembers request heads and targets it answered; a
    negotiated file's answer depends on Accept-Encoding, so it must not be."""
    for accept, coding in ((None, None), ("br", "br"), ("gzip", "gzip"), (None, None),
                           ("zstd", "zstd")):
        for _ in range(3):      # remembered on the second sight, used on the third
            status, headers, body = get(srv, "/pre.html", accept)
            assert field(headers, "Content-Encoding") == coding, accept


@pytest.mark.parametrize("arch", ["sped", "mt", "mp"])
def test_the_other_architectures_negotiate_alike(root, server_factory, arch):
    s = server_factory(root, "--compress", "--arch", arch, "--access-log", "off")
    for _ in range(2):          # made, then from the variant cache
        _, headers, body = get(s, "/page.html", "br")
        assert field(headers, "Content-Encoding") == "br" and brotli.decompress(body) == TEXT
    _, headers, body = get(s, "/pre.html", "gzip", b"Range: bytes=0-9\r\n")
    assert field(headers, "Content-Range").startswith("bytes 0-9/")
    assert body == (root / "pre.html.gz").read_bytes()[:10]


def test_a_head_in_pieces_is_negotiated_too(srv):
    """A head that arrives in two reads is parsed field by field; its
    cached-target shortcut negotiates like the one-piece scan."""
    from test_kernel_http import wire
    get(srv, "/pre.html", "gzip")       # the target is now remembered
    for accept, coding in (("br", "br"), ("gzip", "gzip"), ("zstd", "zstd"), ("", None)):
        w = wire(srv)
        try:
            w.send(b"GET /pre.html HTTP/1.1\r\nHost: t\r\n")
            time.sleep(0.05)
            w.send(b"Accept-Encoding: " + accept.encode() + b"\r\n\r\n")
            status, headers, body = w.response()
        finally:
            w.close()
        assert status == 200 and field(headers, "Content-Encoding") == coding, accept


def test_compress_per_site(root, tmp_path, server_factory):
    """``compress`` in a [[site]] table: on for one site, off for another
    that shares its root, while --compress is on at the top level (a site
    that sets nothing has it). Sidecars serve everywhere. Each site's
    answers stay its own however the requests interleave (cache entries
    and compressed copies are kept per policy)."""
    conf = tmp_path / "sites.toml"
    conf.write_text(f'[[site]]\nnames = ["on.test"]\nroot = "{root}"\ncompress = true\n'
                    f'[[site]]\nnames = ["off.test"]\nroot = "{root}"\ncompress = false\n'
                    f'[[site]]\nnames = ["top.test"]\nroot = "{root}"\n')
    s = server_factory(root, "--config", conf, "--access-log", "off", "--compress")
    for _ in range(3):                # the miss, then the cached paths
        for host, compressed in (("on.test", True), ("off.test", False), ("top.test", True)):
            accept = b"Accept-Encoding: gzip\r\n"
            status, headers, body = one(s, req("/page.html", extra=accept, host=host.encode()))
            assert status == 200
            if compressed:
                assert field(headers, "Content-Encoding") == "gzip", host
                assert gzip.decompress(body) == TEXT and field(headers, "Vary") == "Accept-Encoding"
            else:
                assert field(headers, "Content-Encoding") is None and body == TEXT, host
                assert field(headers, "Vary") is None
            _, headers, body = one(s, req("/pre.html", extra=accept, host=host.encode()))
            assert gzip.decompress(body) == SIDECAR_TEXT, host     # the owner's sidecar

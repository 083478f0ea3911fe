import os

import pytest

from flashplug.errors import HTTPError
from flashplug.http.paths import decode_path, is_hidden, to_relative_parts


def status_of(raw):
    with pytest.raises(HTTPError) as info:
        decode_path(raw)
    return info.value.status


def assert_safe(path):
    """The invariants every decode_path result keeps."""
    assert path.startswith("/")
    assert "//" not in path and "\\" not in path and "\x00" not in path
    assert ".." not in path.split("/") and "." not in path.split("/")


# -- plain decoding and normalising ------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("/", "/"),
    ("/index.html", "/index.html"),
    ("/a/b/", "/a/b/"),
    ("/a%20b.txt", "/a b.txt"),
    ("/%41%42c", "/ABc"),
    ("/caf%C3%A9", "/caf\u00e9"),
    ("/caf%c3%a9", "/caf\u00e9"),
    ("/a+b", "/a+b"),                  # "+" is not a space in a path
    ("/100%25", "/100%"),
    ("/%252e%252e/x", "/%2e%2e/x"),    # decoded once: a literal file name
    ("/a//b", "/a/b"),
    ("//a///b//", "/a/b/"),
    ("/./a/./b", "/a/b"),
    ("/a/.", "/a/"),
    ("/a/b/..", "/a/"),
    ("/a/b/../", "/a/"),
    ("/a/b/../c", "/a/c"),
    ("/a/../", "/"),
    ("/a/..", "/"),
    ("/.", "/"),
    ("/...", "/..."),                  # three dots is a name
    ("/..a/b..", "/..a/b.."),
    ("/a/%2e", "/a/"),
    ("/a/%2E%2E/b", "/b"),
    ("/a/.%2e/b", "/b"),
    ("/a?b", "/a?b"),                  # the kernel strips the query first
])
def test_decode(raw, expected):
    got = decode_path(raw)
    assert got == expected
    assert_safe(got)


def test_non_utf8_bytes_survive_as_surrogates():
    got = decode_path("/caf%E9.txt")
    assert got == "/caf\udce9.txt"
    assert os.fsencode(got) == b"/caf\xe9.txt"


def test_raw_latin1_characters_are_bytes():
    # The kernel passes the target decoded as ISO-8859-1: raw UTF-8 bytes
    # arrive as two characters and come out as one.
    assert decode_path("/caf\u00c3\u00a9") == "/caf\u00e9"
    assert status_of("/\u20ac") == 400


# -- refusals ----------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "", "a", "index.html", "*", "http://example.com/", "%2f", ".."
])
def test_must_start_with_slash(raw):
    assert status_of(raw) == 400


@pytest.mark.parametrize("raw", [
    "/%", "/%4", "/%zz", "/%g0", "/a%", "/%%41", "/%+f", "/% f", "/%-1", "/%_f",
])
def test_malformed_escape(raw):
    assert status_of(raw) == 400


@pytest.mark.parametrize("raw", [
    "/\x00", "/%00", "/a%00.html", "/a\x00/..", "/\n", "/\r\n", "/\t",
    "/a\x7f", "/a\x01%0a",
])
def test_nul_and_raw_controls(raw):
    assert status_of(raw) == 400


@pytest.mark.parametrize("raw,path", [
    ("/%0a", "/\n"), ("/a%0d%0ab.txt", "/a\r\nb.txt"), ("/x%01y", "/x\x01y"),
    ("/%1f/%7F", "/\x1f/\x7f"), ("/d%09/", "/d\t/"),
])
def test_encoded_controls_other_than_nul_name_files(raw, path):
    """A POSIX file name may hold them; nginx serves such a file too."""
    assert decode_path(raw) == path


@pytest.mark.parametrize("raw", [
    "/a%2fb", "/a%2Fb", "/..%2f", "/..%2F..%2Fetc%2Fpasswd", "/%2f%2fexample.com",
    "/a\\b", "/..\\", "/..\\..\\windows", "/a%5cb", "/%5C..%5C",
])
def test_encoded_slash_and_backslash_are_404(raw):
    assert status_of(raw) == 404


@pytest.mark.parametrize("raw", [
    "/..", "/../", "/../etc/passwd", "/a/../..", "/a/../../b", "/./..",
    "/%2e%2e/", "/%2e%2e", "/.%2e/", "/%2e./", "/a/%2e%2e/%2e%2e/etc/passwd",
    "//..", "/a//../..",
])
def test_climbing_above_root_is_400(raw):
    assert status_of(raw) == 400


# -- published traversal vectors ---------------------------------------------

@pytest.mark.parametrize("raw", [
    # CVE-2024-23334 (aiohttp static with follow_symlinks)
    "/static/../../../etc/passwd",
    "/static/../../../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
    "/static/..%2f..%2f..%2fetc/passwd",
    "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/.%2e/.%2e/.%2e/etc/passwd",
    "/static/..%5c..%5c..%5cetc%5cpasswd",
    "/static/./../../../etc/passwd",
    "/static//../../../etc/passwd",
])
def test_cve_2024_23334_vectors_are_refused(raw):
    assert status_of(raw) in (400, 404)


@pytest.mark.parametrize("raw, expected", [
    # CVE-2023-29159 (Starlette StaticFiles used os.path.commonprefix, so
    # "/static../secret" looked as if it were inside "/static").  Here it
    # is a plain name inside the root, never a sibling of the docroot.
    ("/static../secret", "/static../secret"),
    ("/static/../static../secret", "/static../secret"),
    ("/static%2e%2e/secret", "/static../secret"),
])
def test_cve_2023_29159_stays_inside(raw, expected, tmp_path):
    got = decode_path(raw)
    assert got == expected
    root = str(tmp_path / "static")
    joined = os.path.normpath(os.path.join(root, *to_relative_parts(got)))
    assert joined.startswith(root + os.sep)


@pytest.mark.parametrize("raw", [
    # CVE-2021-28861 (http.server: "//example.com/.." ended up in a
    # Location header as a protocol-relative URL, an open redirect).
    "//example.com/..",
    "//example.com/%2e%2e",
    "//example.com/../",
    "///example.com/..",
    "//example.com",
    "//example.com/",
])
def test_cve_2021_28861_never_starts_with_two_slashes(raw):
    got = decode_path(raw)
    assert not got.startswith("//")
    assert_safe(got)


def test_overlong_utf8_dots_are_not_dots():
    # %c0%ae is an overlong encoding of "." that old decoders accepted.
    got = decode_path("/%c0%ae%c0%ae/etc/passwd")
    assert got.split("/")[1] == "\udcc0\udcae\udcc0\udcae"
    assert_safe(got)
    got = decode_path("/%e0%80%ae%e0%80%ae/x")
    assert ".." not in got.split("/")


def test_other_unicode_dots_and_slashes_are_plain_names():
    # U+2215 DIVISION SLASH, U+FF0E FULLWIDTH FULL STOP: names, not syntax.
    assert decode_path("/%e2%88%95etc") == "/\u2215etc"
    assert decode_path("/%ef%bc%8e%ef%bc%8e/x") == "/\uff0e\uff0e/x"


@pytest.mark.parametrize("raw", [
    "/a/b/c/../../d/./e//f/", "/%2e/a/%2e%2e/b", "/x/y/%2e%2e/%2e/z",
    "/" + "a/" * 50 + "../" * 50, "/a/b%20c/d%25/../e",
])
def test_results_are_fixed_points(raw):
    once = decode_path(raw)
    assert_safe(once)
    # Normalising a result again changes nothing (re-encoding "%" first).
    assert decode_path(once.replace("%", "%25")) == once


def test_error_messages_are_set():
    with pytest.raises(HTTPError) as info:
        decode_path("/%zz")
    assert info.value.message


# -- is_hidden ---------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/.env", "/.git/config", "/a/.git/HEAD", "/.htpasswd", "/a/.hidden/b.txt",
    "/.well-known/.secret", "/a/.well-knownx", "/.", "/..x",
])
def test_hidden(path):
    assert is_hidden(path)


@pytest.mark.parametrize("path", [
    "/", "/index.html", "/a/b.c", "/a./b", "/.well-known/acme-challenge/tok",
    "/.well-known/", "/a/.well-known/x", "/dir/file.tar.gz",
])
def test_not_hidden(path):
    assert not is_hidden(path)


# -- to_relative_parts -------------------------------------------------------

def test_relative_parts():
    assert to_relative_parts("/") == []
    assert to_relative_parts("/a") == ["a"]
    assert to_relative_parts("/a/b/") == ["a", "b"]
    assert to_relative_parts(decode_path("/x/%2e%2e/y%20z/")) == ["y z"]


def test_relative_parts_never_escape(tmp_path):
    root = str(tmp_path)
    for raw in ["/a/../b", "//etc/passwd", "/a/./../b/c/..", "/%c0%ae%c0%ae/x",
                "/static../x", "/a%20/../b"]:
        parts = to_relative_parts(decode_path(raw))
        assert all(p not in ("", ".", "..") and "/" not in p for p in parts)
        joined = os.path.join(root, *parts)
        assert os.path.normpath(joined).startswith(root)


def test_decode_slashed_path_keeps_encoded_slashes_inside_segments():
    from flashplug.http.paths import ENCODED_SLASH as S, decode_slashed_path
    assert decode_slashed_path("/api/g%2Fp") == f"/api/g{S}p"
    assert decode_slashed_path("/api/g%2fp/../x%20y/") == "/api/x y/"
    assert decode_slashed_path("/api/%252F") is None          # no encoded slash: decode_path's
    assert decode_slashed_path("/api/plain") is None
    # A real NUL is no encoded slash: the path keeps decode_path's answer.
    assert decode_slashed_path("/api/a%00b%2Fc") is None
    for climbing in ("/api/x%2F..%2Fy", "/api/%2F../x", "/api/.%2Fx", "/%2F/../../x"):
        with pytest.raises(HTTPError) as e:
            decode_slashed_path(climbing)
        assert e.value.status == 400

"""Path safety of a real `flashplug serve` (issue 2, part 5).

Every test lays out its own temporary folder:

    tmp/secret.txt            SECRET-1, next to the document root
    tmp/root_secret/s.txt     SECRET-2, a sibling whose name starts with the
                              root's (CVE-2023-29159, os.path.commonprefix)
    tmp/root/                 the document root, with dotfiles and symlinks

Targets go out as raw bytes (`requests` would normalise ".." away).  A
vector passes when the answer is a refusal and no secret byte came back.
"""
import os
import time

import pytest

from conftest import start_server
from test_kernel_http import one, req

SECRET = b"SECRET-"


def layout(base):
    (base / "secret.txt").write_bytes(b"SECRET-1 outside the root\n")
    (base / "root_secret").mkdir()
    (base / "root_secret" / "s.txt").write_bytes(b"SECRET-2 in a sibling\n")
    root = base / "root"
    for name, data in {
        "a.txt": b"public a\n", "sub/b.txt": b"public b\n", "static/c.txt": b"public c\n",
        ".git/config": b"SECRET-git\n", ".env": b"SECRET-env\n", ".htpasswd": b"SECRET-htpasswd\n",
        "sub/.hidden": b"SECRET-hidden\n", ".dotdir/x.txt": b"SECRET-dotdir\n",
        "..dots.txt": b"odd but fine\n",
    }.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    os.symlink(base / "secret.txt", root / "out_file")
    os.symlink(base / "root_secret", root / "out_dir")
    os.symlink("..", root / "up")
    os.symlink("a.txt", root / "in_link")
    os.symlink("sub", root / "in_dir")
    os.symlink("out_file", root / "chain")               # inside -> inside -> outside
    os.symlink(base / "root_secret", root / "static" / "escape")
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    base = tmp_path_factory.mktemp("security")
    layout(base)
    return base


@pytest.fixture(scope="module")
def srv(base):
    server = start_server(base / "root", "--access-log", "off", tmp_path=base)
    yield server
    server.stop()


def fetch(srv, target, **kw):
    status, headers, body = one(srv, req(target, **kw))
    return status, body


TRAVERSALS = [
    "/../secret.txt", "/../../secret.txt", "/..", "/../", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt",
    "/.%2e/secret.txt", "/%2e./secret.txt", "/sub/../../secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt",
    "/..%2fsecret.txt", "/..%2Fsecret.txt", "/%2e%2e%2fsecret.txt", "/sub/..%2f..%2fsecret.txt",
    "/..\\secret.txt", "/..%5csecret.txt", "/%5c..%5csecret.txt", "/sub\\..\\..\\secret.txt",
    # CVE-2024-23334 (aiohttp follow_symlinks): a static prefix then "..".
    "/static/../../secret.txt", "/static/%2e%2e/%2e%2e/secret.txt", "/static/../../root_secret/s.txt",
    # CVE-2023-29159 (Starlette): commonprefix("/x/root", "/x/root_secret") == "/x/root".
    "/../root_secret/s.txt", "/%2e%2e/root_secret/s.txt", "/..%2froot_secret%2fs.txt",
    # Double encoding: decoded once, "%2e" stays literal.
    "/..%252fsecret.txt", "/%252e%252e/secret.txt", "/%252e%252e%252fsecret.txt",
    # Overlong UTF-8 dots and slashes (the old IIS bug).
    "/%c0%ae%c0%ae/secret.txt", "/%c0%ae%c0%ae%c0%afsecret.txt", "/%e0%80%ae%e0%80%ae/secret.txt",
    "//../secret.txt", "/./../secret.txt", "/sub/./../../secret.txt", "/..;/secret.txt",
    "/....//secret.txt", "/.../secret.txt", "/%2e%2e%00/secret.txt", "/sub/..%00/secret.txt",
    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    # Symlinks leading out (no --follow-symlinks).
    "/out_file", "/out_dir/s.txt", "/up/secret.txt", "/up/root_secret/s.txt", "/chain",
    "/static/escape/s.txt", "/in_dir/../up/secret.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_never_escapes(srv, target):
    status, body = fetch(srv, target)
    assert SECRET not in body, (target, status, body[:60])
    assert status in (400, 403, 404), (target, status)


def test_absolute_filesystem_paths(srv, base):
    for target in ["/" + str(base / "secret.txt"), "/" + str(base / "secret.txt").lstrip("/"),
                   "/%2f" + str(base / "secret.txt").lstrip("/"),
                   "/" + str(base / "secret.txt").replace("/", "%2f")]:
        status, body = fetch(srv, target)
        assert SECRET not in body and status in (400, 403, 404), (target, status)


@pytest.mark.parametrize("target", ["../secret.txt", "..", "secret.txt", "%2e%2e/secret.txt",
                                    "http://t/../secret.txt", "http://t/%2e%2e/secret.txt",
                                    "http://t/..%2fsecret.txt", "http://t/up/secret.txt",
                                    "http://../secret.txt", "http:/../secret.txt"])
def test_odd_targets(srv, target):
    status, body = fetch(srv, target)
    assert SECRET not in body and status in (400, 403, 404), (target, status)


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_other_methods_do_not_leak(srv, method):
    status, headers, body = one(srv, req("/../secret.txt", method=method), head=method == "HEAD")
    assert SECRET not in body and status in (400, 403, 404)
    assert headers.get("content-length", ["0"]) != [str(len(b"SECRET-1 outside the root\n"))]


def test_normalised_dotdot_inside_root_is_fine(srv):
    assert fetch(srv, "/sub/../a.txt") == (200, b"public a\n")
    assert fetch(srv, "/sub/./b.txt") == (200, b"public b\n")
    assert fetch(srv, "/..dots.txt") == (200, b"odd but fine\n") or fetch(srv, "/..dots.txt")[0] == 404


def test_inside_symlinks_are_served(srv):
    assert fetch(srv, "/in_link") == (200, b"public a\n")
    assert fetch(srv, "/in_dir/b.txt") == (200, b"public b\n")


@pytest.mark.parametrize("target", ["/sub%2fb.txt", "/sub%2Fb.txt", "/sub%5cb.txt", "/sub\\b.txt",
                                    "/a.txt%00", "/a.txt%00.html", "/sub%00/b.txt", "/a.txt%0a",
                                    "/%00", "/a%01.txt"])
def test_encoded_slash_backslash_nul_refused(srv, target):
    status, body = fetch(srv, target)
    assert status in (400, 404), (target, status)
    assert b"public" not in body


def test_bad_percent_escapes_400(srv):
    for target in ["/a.txt%", "/a.txt%zz", "/%g0", "/%2"]:
        assert fetch(srv, target)[0] == 400, target


DOTFILES = ["/.git/config", "/.env", "/.htpasswd", "/sub/.hidden", "/.dotdir/x.txt", "/%2egit/config",
            "/%2eenv", "/.git/", "/.git", "/sub/../.env", "/in_dir/.hidden", "/.dotdir/", "/.dotdir"]


@pytest.mark.parametrize("target", DOTFILES)
def test_dotfiles_hidden(srv, target):
    for _ in range(2):          # also once the cache has seen the path
        status, body = fetch(srv, target)
        assert status == 404, (target, status)
        assert SECRET not in body


def test_dotfiles_shown_with_flag(server_factory, tmp_path):
    root = layout(tmp_path)
    srv = server_factory(root, "--show-dotfiles", "--access-log", "off")
    assert fetch(srv, "/.git/config") == (200, b"SECRET-git\n")
    assert fetch(srv, "/.env") == (200, b"SECRET-env\n")
    assert fetch(srv, "/sub/.hidden") == (200, b"SECRET-hidden\n")
    assert fetch(srv, "/.dotdir")[0] == 301
    # Still no escape through "..".
    status, body = fetch(srv, "/../secret.txt")
    assert status in (400, 404) and SECRET + b"1" not in body


def test_follow_symlinks_flag(server_factory, tmp_path):
    root = layout(tmp_path)
    srv = server_factory(root, "--follow-symlinks", "--access-log", "off")
    assert fetch(srv, "/out_file") == (200, b"SECRET-1 outside the root\n")
    assert fetch(srv, "/out_dir/s.txt") == (200, b"SECRET-2 in a sibling\n")
    assert fetch(srv, "/in_link") == (200, b"public a\n")
    # The flag follows links; it does not lift the ".." rule.
    for target in ["/../secret.txt", "/%2e%2e/secret.txt", "/static/../../secret.txt"]:
        status, body = fetch(srv, target)
        assert status in (400, 404) and SECRET not in body, target


def test_symlink_swapped_after_caching(server_factory, tmp_path):
    # A link that pointed inside is repointed outside: once the cache entry
    # is revalidated, the new target must be refused.
    root = layout(tmp_path)
    os.symlink("a.txt", root / "swap")
    srv = server_factory(root, "--cache-valid", "0.2", "--access-log", "off")
    assert fetch(srv, "/swap") == (200, b"public a\n")
    os.unlink(root / "swap")
    os.symlink(tmp_path / "secret.txt", root / "swap")
    time.sleep(0.5)
    status, body = fetch(srv, "/swap")
    assert SECRET not in body and status in (403, 404), status


def test_special_files_are_refused_not_failed(server_factory, tmp_path):
    # A Unix socket in the root: open() fails with ENXIO.  Like a FIFO or a
    # device it is simply not a document (403 or 404), not a server failure.
    import socket
    root = layout(tmp_path)
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(root / "sock"))
    try:
        srv = server_factory(root, "--access-log", "off")
        status, body = fetch(srv, "/sock")
        assert status in (403, 404), status
        assert fetch(srv, "/a.txt") == (200, b"public a\n")
    finally:
        unix.close()


def test_symlink_loop_404(server_factory, tmp_path):
    root = layout(tmp_path)
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    srv = server_factory(root, "--access-log", "off")
    assert fetch(srv, "/loop_a")[0] in (403, 404)
    assert fetch(srv, "/" + "n" * 300)[0] == 404          # ENAMETOOLONG

"""The CGI environment (RFC 3875 §4), argv (§4.4) and script lookup: pure."""
import os
import stat

import pytest

from flashplug import Headers, Request
from flashplug_plugins.cgi.env import base_env, build_env, search_argv, server_name
from flashplug_plugins.cgi.script import Forbidden, NotAScript, NotFound, Script, locate

DOCROOT = "/srv/www"
SCRIPT = Script("/srv/www/cgi-bin/app.py", "/cgi-bin/app.py", "/a/b", "/srv/www/cgi-bin")

# RFC 3875 §4.1: set for every request (AUTH_TYPE, CONTENT_*, PATH_*,
# REMOTE_USER only when they apply).
ALWAYS = {"GATEWAY_INTERFACE", "QUERY_STRING", "REMOTE_ADDR", "REMOTE_HOST",
          "REQUEST_METHOD", "SCRIPT_NAME", "SERVER_NAME", "SERVER_PORT",
          "SERVER_PROTOCOL", "SERVER_SOFTWARE"}


def make_request(method="GET", target="/cgi-bin/app.py/a/b", headers=(), **attrs):
    raw_path, _, query = target.partition("?")
    req = Request(method, target, raw_path, raw_path, query, "1.1",
                  Headers(list(headers) or [("Host", "example.org:8080")]))
    req.remote_addr, req.remote_port = "192.0.2.7", 51000
    req.server_addr, req.server_port = "127.0.0.1", 8080
    for k, v in attrs.items():
        setattr(req, k, v)
    return req


def env_for(req=None, script=SCRIPT, length=None, **kw):
    return build_env(req or make_request(), script, {"PATH": "/usr/bin:/bin"},
                     DOCROOT, length, **kw)


def test_every_must_variable():
    env = env_for()
    assert ALWAYS <= env.keys()
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "example.org"
    assert env["SERVER_PORT"] == "8080"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["REMOTE_ADDR"] == env["REMOTE_HOST"] == "192.0.2.7"
    assert env["SCRIPT_NAME"] == "/cgi-bin/app.py"
    assert env["PATH_INFO"] == "/a/b"
    assert env["PATH_TRANSLATED"] == "/srv/www/a/b"


def test_common_extras():
    env = env_for(make_request(target="/cgi-bin/app.py/a/b?x=%41"))
    assert env["REQUEST_URI"] == "/cgi-bin/app.py/a/b?x=%41"
    assert env["SCRIPT_FILENAME"] == "/srv/www/cgi-bin/app.py"
    assert env["DOCUMENT_ROOT"] == DOCROOT
    assert env["REMOTE_PORT"] == "51000"
    assert env["SERVER_ADDR"] == "127.0.0.1"


def test_request_uri_of_an_absolute_form_target_is_its_path_and_query():
    """RFC 9112 §3.2.2: a server accepts ``GET http://host/path``; the
    application routes on REQUEST_URI, which is the path and query, as
    nginx's $request_uri is (PHP front controllers split it at "?")."""
    req = Request("GET", "http://example.org:8080/cgi-bin/app.py/a/b?x=%41",
                  "/cgi-bin/app.py/a/b", "/cgi-bin/app.py/a/b", "x=%41", "1.1",
                  Headers([("Host", "example.org:8080")]))
    req.remote_addr, req.remote_port = "192.0.2.7", 51000
    req.server_addr, req.server_port = "127.0.0.1", 8080
    assert env_for(req)["REQUEST_URI"] == "/cgi-bin/app.py/a/b?x=%41"


def test_client_address_from_a_trusted_proxy():
    # The request's remote_addr/remote_port are already the client's
    # (flashplug.http.forwarded); a header with no port leaves it unknown.
    env = env_for(make_request(remote_addr="203.0.113.7", remote_port=0))
    assert env["REMOTE_ADDR"] == env["REMOTE_HOST"] == "203.0.113.7"
    assert "REMOTE_PORT" not in env


def test_query_string_verbatim_and_empty():
    assert env_for(make_request(target="/x?a=%20b&c")) ["QUERY_STRING"] == "a=%20b&c"
    assert env_for(make_request(target="/x"))["QUERY_STRING"] == ""


def test_no_path_info_no_path_translated():
    script = Script("/srv/www/cgi-bin/app.py", "/cgi-bin/app.py", "", "/srv/www/cgi-bin")
    env = env_for(script=script)
    assert "PATH_INFO" not in env and "PATH_TRANSLATED" not in env


def test_http_headers_merged_and_renamed():
    env = env_for(make_request(headers=[
        ("Host", "h"), ("Accept", "text/html"), ("Accept", "*/*"),
        ("X-Forwarded-For", "a"), ("Cookie", "a=1"), ("Cookie", "b=2")]))
    assert env["HTTP_ACCEPT"] == "text/html, */*"
    assert env["HTTP_X_FORWARDED_FOR"] == "a"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_HOST"] == "h"


def test_httpoxy_and_body_headers_not_passed():
    env = env_for(make_request(method="POST", headers=[
        ("Host", "h"), ("Proxy", "http://evil:1"), ("Content-Type", "text/plain"),
        ("Content-Length", "5"), ("Transfer-Encoding", "chunked"),
        ("Proxy-Authorization", "Basic x")]), length=5)
    assert "HTTP_PROXY" not in env
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert "HTTP_TRANSFER_ENCODING" not in env
    assert "HTTP_PROXY_AUTHORIZATION" not in env
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "5"


def test_no_body_no_content_length():
    assert "CONTENT_LENGTH" not in env_for()
    assert env_for(length=0)["CONTENT_LENGTH"] == "0"


def test_underscore_header_names_dropped():
    # X_Forwarded_For would collide with X-Forwarded-For.
    env = env_for(make_request(headers=[("Host", "h"), ("X_Forwarded_For", "spoof")]))
    assert "HTTP_X_FORWARDED_FOR" not in env


def test_authorization_only_when_opted_in():
    req = make_request(headers=[("Host", "h"), ("Authorization", "Basic Zm9vOmJhcg==")])
    assert "HTTP_AUTHORIZATION" not in env_for(req)
    assert env_for(req, pass_authorization=True)["HTTP_AUTHORIZATION"] == "Basic Zm9vOmJhcg=="


def test_remote_user_and_auth_type_when_known():
    env = env_for()
    assert "REMOTE_USER" not in env and "AUTH_TYPE" not in env
    env = env_for(make_request(user="alice", auth_type="Basic"))
    assert env["REMOTE_USER"] == "alice" and env["AUTH_TYPE"] == "Basic"


def test_non_ascii_header_bytes_survive():
    # Header values arrive as ISO-8859-1 str; the child must get the bytes.
    value = "caf\xc3\xa9"  # UTF-8 "café" read as latin-1
    env = env_for(make_request(headers=[("Host", "h"), ("X-Name", value)]))
    assert os.fsencode(env["HTTP_X_NAME"]) == value.encode("latin-1")


def test_server_name_falls_back_to_address():
    assert server_name(make_request(headers=[("Host", "bad host/../")])) == "127.0.0.1"
    assert server_name(make_request(headers=[("Host", "[::1]:80")])) == "[::1]"
    req = make_request(headers=[("Host", "")])
    req.server_addr = "::1"
    assert server_name(req) == "[::1]"


def test_base_env_is_minimal():
    environ = {"PATH": "/bin", "SECRET": "s", "LANG": "C.UTF-8", "HOME": "/root"}
    assert base_env([], environ) == {"PATH": "/bin"}
    assert base_env(["LANG", "MISSING", "MODE=prod"], environ) == \
        {"PATH": "/bin", "LANG": "C.UTF-8", "MODE": "prod"}
    assert base_env([], {})["PATH"] == os.defpath


def test_server_environment_not_leaked(monkeypatch):
    monkeypatch.setenv("FLASHPLUG_TEST_SECRET", "hunter2")
    env = build_env(make_request(), SCRIPT, base_env([]), DOCROOT, None)
    assert "FLASHPLUG_TEST_SECRET" not in env
    assert not ({k for k in env if not k.startswith("HTTP_")} - ALWAYS - {
        "PATH", "PATH_INFO", "PATH_TRANSLATED", "REQUEST_URI", "SCRIPT_FILENAME",
        "DOCUMENT_ROOT", "REMOTE_PORT", "SERVER_ADDR", "REQUEST_SCHEME",
        "REDIRECT_STATUS"})


@pytest.mark.parametrize("method,query,argv", [
    ("GET", "hello+world", ["hello", "world"]),
    ("HEAD", "a%2Bb+c%20d", ["a+b", "c d"]),
    ("GET", "x=1", []),                 # has "=": a form, not a search
    ("POST", "hello", []),              # only GET and HEAD
    ("GET", "", []),
    ("GET", "bad%zz+x", []),            # undecodable: no arguments at all
    ("GET", "nul%00", []),
])
def test_search_argv(method, query, argv):
    assert search_argv(method, query) == argv


# -- script lookup over a fake file system ----------------------------------------

def fake_fs(tree):
    """``tree``: {path: "dir" | "exe" | "file" | "fifo" | "link"}."""
    modes = {"dir": stat.S_IFDIR | 0o755, "exe": stat.S_IFREG | 0o755,
             "file": stat.S_IFREG | 0o644, "fifo": stat.S_IFIFO | 0o644,
             "link": stat.S_IFLNK | 0o777}

    def fake_stat(path):
        if path not in tree:
            raise FileNotFoundError(path)
        return os.stat_result((modes[tree[path]],) + (0,) * 9)

    def fake_access(path, mode):
        return tree.get(path) == "exe"
    return dict(stat=fake_stat, access=fake_access)


FS = fake_fs({
    "/cgi": "dir", "/www": "dir",
    "/cgi/app.py": "exe", "/cgi/sub": "dir", "/cgi/sub/x.py": "exe",
    "/cgi/readme.txt": "file", "/cgi/pipe": "fifo", "/cgi/link": "link",
    "/cgi/nph-raw": "exe", "/cgi/.hidden": "exe",
    "/www/app.cgi": "exe", "/www/dir.cgi": "dir", "/www/dir.cgi/x.txt": "file",
    "/www/t.cgi": "file", "/www/a.txt": "file",
})


def find(path, prefix="/cgi-bin/", root="/cgi", **kw):
    return locate(path, prefix, root, **FS, **kw)


def test_splits_script_and_path_info():
    s = find("/cgi-bin/app.py/a/b")
    assert (s.filename, s.script_name, s.path_info, s.dir) == \
        ("/cgi/app.py", "/cgi-bin/app.py", "/a/b", "/cgi")
    assert find("/cgi-bin/app.py").path_info == ""
    assert find("/cgi-bin/app.py/").path_info == "/"
    assert find("/cgi-bin/app.py/a/").path_info == "/a/"


def test_nested_script():
    s = find("/cgi-bin/sub/x.py/more")
    assert (s.script_name, s.path_info, s.dir) == ("/cgi-bin/sub/x.py", "/more", "/cgi/sub")


@pytest.mark.parametrize("path", ["/cgi-bin/readme.txt", "/cgi-bin/pipe", "/cgi-bin/",
                                  "/cgi-bin", "/cgi-bin/sub/", "/cgi-bin/link",
                                  "/cgi-bin/readme.txt/x"])
def test_forbidden(path):
    with pytest.raises(Forbidden):
        find(path)


@pytest.mark.parametrize("path", ["/cgi-bin/nope", "/cgi-bin/app.py ", "/cgi-bin/app.py.",
                                  "/cgi-bin/.hidden", "/cgi-bin/sub/nope/x"])
def test_not_found(path):
    with pytest.raises(NotFound):
        find(path)


@pytest.mark.parametrize("path", ["/htbin/", "/htbin"])
def test_a_missing_cgi_directory_is_not_found(path):
    # /htbin/ is a default directory a site may not have: 404, not "a folder".
    with pytest.raises(NotFound):
        find(path, prefix="/htbin/", root="/htbin-missing")


def test_a_name_too_long_for_the_file_system_is_not_found(tmp_path):
    # ENAMETOOLONG: no such script can exist, so 404 as the static handler,
    # nginx and lighttpd answer (it was 403 "cannot be read").
    with pytest.raises(NotFound):
        locate("/cgi-bin/" + "a" * 300, "/cgi-bin/", str(tmp_path))


def test_dotfiles_when_shown():
    assert find("/cgi-bin/.hidden", show_dotfiles=True).filename == "/cgi/.hidden"


def test_nph_by_name():
    assert find("/cgi-bin/nph-raw").nph and not find("/cgi-bin/app.py").nph


def test_extension_mode():
    s = locate("/app.cgi/extra", "/", "/www", exts=(".cgi",), **FS)
    assert (s.script_name, s.path_info) == ("/app.cgi", "/extra")
    # Folders named like scripts, and documents in them, are the static
    # handler's (nginx's \.cgi$ does not match /dir.cgi/ either).
    for path in ("/dir.cgi/x.txt", "/dir.cgi/", "/dir.cgi"):
        with pytest.raises(NotAScript):
            locate(path, "/", "/www", exts=(".cgi",), **FS)
    with pytest.raises(Forbidden):   # a plain file on the way to a script's name
        locate("/a.txt/b.cgi", "/", "/www", exts=(".cgi",), **FS)
    with pytest.raises(Forbidden):   # has the extension but is not executable
        locate("/t.cgi", "/", "/www", exts=(".cgi",), **FS)


def test_real_file_system(tmp_path):
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / "src.sh").write_text("#!/bin/sh\n")
    (tmp_path / "src.sh").chmod(0o644)   # root too is refused: no x bit at all
    (tmp_path / "ln.sh").symlink_to(tmp_path / "run.sh")
    root = str(tmp_path)
    assert locate("/c/run.sh/x", "/c/", root).path_info == "/x"
    with pytest.raises(Forbidden):
        locate("/c/src.sh", "/c/", root)
    with pytest.raises(Forbidden):
        locate("/c/ln.sh", "/c/", root)
    assert locate("/c/ln.sh", "/c/", root, follow_symlinks=True).script_name == "/c/ln.sh"


def test_the_parts_make_up_the_environment():
    # build_env is fixed_env and request_env, which is three parts of
    # which no two name the same variable.
    from flashplug_plugins.cgi.env import (connection_env, connection_facts, fixed_env,
                                           message_env, script_env)
    req = make_request(scheme="https", headers=[("Host", "h"), ("Accept", "*/*")])
    parts = [connection_env(connection_facts(req)), script_env(SCRIPT, DOCROOT),
             message_env(req, 3)]
    whole = fixed_env({"PATH": "/usr/bin:/bin"}, DOCROOT)
    for part in parts:
        assert not whole.keys() & part.keys()
        whole.update(part)
    assert whole == env_for(req, length=3)
    assert parts[0]["HTTPS"] == "on" and parts[2]["CONTENT_LENGTH"] == "3"


def test_connection_facts_decide_the_connection_part():
    # The fastcgi plugin encodes connection_env once per facts tuple: the
    # tuple must change with every input the part reads.
    from flashplug_plugins.cgi.env import connection_facts
    base = connection_facts(make_request())
    for attrs in ({"remote_addr": "192.0.2.8"}, {"remote_port": 1}, {"server_addr": "::1"},
                  {"server_port": 1}, {"scheme": "https"}, {"version": "1.0"}):
        assert connection_facts(make_request(**attrs)) != base


def test_server_name_and_a_repeated_content_type():
    env = env_for(make_request(method="POST", headers=[
        ("Host", "Example.ORG:80"), ("Content-Type", "a/b"), ("Content-Type", "c/d")]))
    assert env["SERVER_NAME"] == "example.org"
    assert env["CONTENT_TYPE"] == "a/b, c/d"    # as Headers.get joins them
    # A Host that is no URI host (here not even ASCII) names no server.
    env = env_for(make_request(headers=[("Host", "caf\xe9.example")]))
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_NAME"] == server_name(make_request(headers=[("Host", "caf\xe9.example")]))

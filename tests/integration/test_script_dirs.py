"""CGI folders are never served as files (issue 10 item 1).

``cgi-bin/`` and ``htbin/`` at the top of the document root (http.server's
``cgi_directories``), and every ``--cgi-dir``, hold programs.  With the cgi
plugin on, their scripts run; with it off, or under any other URL that
reaches the same files (case variants, encodings, dot segments, symlinks),
the static handler answers 403 and shows no source, the first time and
every time after (the cached fast paths never hold them).
"""
import os
import re
import socket

import pytest
import requests

SECRET = "s3cret-password"
SCRIPT = f"#!/bin/sh\n# {SECRET}\nprintf 'Content-Type: text/plain\\r\\n\\r\\nran %s\\n' \"$SCRIPT_NAME\"\n"


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "root"
    for folder in ("cgi-bin", "htbin", "cgi-bin/sub", "pub"):
        (root / folder).mkdir(parents=True)
    for rel in ("cgi-bin/a.sh", "htbin/b.sh"):
        (root / rel).write_text(SCRIPT)
        os.chmod(root / rel, 0o755)
    (root / "cgi-bin" / "plain.txt").write_text(SECRET)       # not executable
    (root / "htbin" / "plain.txt").write_text(SECRET)
    (root / "pub" / "ok.txt").write_text("public\n")
    os.symlink("../cgi-bin/a.sh", root / "pub" / "link.sh")
    os.symlink("cgi-bin", root / "scripts-link")
    return root


# Every way to name a script folder's file that the static handler sees.
REFUSED = ["/cgi-bin/a.sh", "/htbin/b.sh", "/cgi-bin/plain.txt", "/htbin/plain.txt",
           "/cgi-bin/", "/cgi-bin", "/htbin/", "/cgi-bin/sub/",
           "/CGI-BIN/a.sh", "/HtBin/b.sh", "/%63gi-bin/a.sh", "//cgi-bin/a.sh",
           "/./cgi-bin/a.sh", "/x/../cgi-bin/a.sh", "/pub/link.sh", "/scripts-link/a.sh",
           "/scripts-link/plain.txt"]


def raw_get(srv, target, method="GET", extra=""):
    """One request with an exact target (requests would normalise it)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
                  .encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.decode("latin-1")


def assert_refused(srv, targets):
    for target in targets:
        for _ in range(3):            # again and again: no fast path may hold it
            for method, extra in (("GET", ""), ("HEAD", ""), ("GET", "Range: bytes=0-5\r\n")):
                status, text = raw_get(srv, target, method, extra)
                assert status == 403, (target, method, extra, status)
                assert SECRET not in text and "printf" not in text, (target, method)


@pytest.mark.parametrize("args", [(), ("--follow-symlinks",), ("--arch", "mt"),
                                  ("--plugins", "none")])
def test_cgi_off_script_folders_are_refused(site, server_factory, args):
    srv = server_factory(site, "--access-log", "off", *args)
    assert requests.get(srv.url + "/pub/ok.txt").text == "public\n"
    assert_refused(srv, REFUSED)
    assert raw_get(srv, "/cgi-bin%2Fa.sh")[0] == 404     # an encoded slash names no file
    # One warning line for each folder that exists, with the fix.
    log = srv.log()
    for name in ("cgi-bin", "htbin"):
        lines = [line for line in log.splitlines() if f"/{name}/ exists" in line]
        assert len(lines) == 1, log
        assert lines[0].endswith(f"./root/{name}/ exists but the cgi plugin is off; its files "
                                 f"are refused (403). Enable it with --plugins cgi."), lines


def test_no_warning_without_script_folders(tmp_path, server_factory):
    root = tmp_path / "plain"
    root.mkdir()
    srv = server_factory(root, "--access-log", "off")
    assert "exists but" not in srv.log()


def test_cgi_on_runs_both_default_folders_and_refuses_the_rest(site, server_factory):
    srv = server_factory(site, "--plugins", "cgi", "--access-log", "off")
    for target in ("/cgi-bin/a.sh", "/htbin/b.sh"):
        r = requests.get(srv.url + target)
        assert (r.status_code, r.text) == (200, f"ran {target}\n")
    # Not runnable (no exec bit, a folder) or reached by another name: 403.
    assert_refused(srv, [t for t in REFUSED if t not in ("/cgi-bin/a.sh", "/htbin/b.sh",
                                                         "//cgi-bin/a.sh", "/./cgi-bin/a.sh",
                                                         "/x/../cgi-bin/a.sh",
                                                         "/%63gi-bin/a.sh")])
    assert "exists but" not in srv.log()


def test_cgi_dir_under_another_url_is_refused_there(site, server_factory):
    srv = server_factory(site, "--plugins", "cgi", "--access-log", "off",
                         "--cgi-dir", f"/run/={site / 'pub'}")
    r = requests.get(srv.url + "/run/ok.txt")
    assert r.status_code == 403 and "public" not in r.text     # not executable: no source
    assert_refused(srv, ["/pub/ok.txt", "/PUB/ok.txt", "/pub/", "/cgi-bin/a.sh",
                         "/htbin/b.sh"])
    # cgi-bin and htbin exist but --cgi-dir replaced them: said once, with the fix.
    assert re.search(r"\./root/cgi-bin/ exists but no --cgi-dir names it; its files are "
                     r"refused \(403\)\. Run its scripts with --cgi-dir /cgi-bin/\.",
                     srv.log()), srv.log()


def test_cgi_dir_given_while_cgi_is_off_is_refused(site, server_factory, tmp_path):
    # The folder is named as a script folder: it holds scripts whether or
    # not the plugin that runs them is on (here via the config file).
    (site / "tools").mkdir()
    (site / "tools" / "t.sh").write_text(SCRIPT)
    conf = tmp_path / "site.toml"
    conf.write_text('[plugins]\nenable = ["autoindex"]\n\n[plugins.cgi]\ndir = ["/tools/"]\n')
    srv = server_factory(site, "--config", conf, "--access-log", "off")
    assert_refused(srv, ["/tools/t.sh", "/Tools/t.sh", "/tools/", "/cgi-bin/a.sh"])
    assert "./root/tools/ exists but the cgi plugin is off" in srv.log()
    srv = server_factory(site, "--plugins", "none", "--cgi-dir", "/tools/", "--access-log", "off")
    assert_refused(srv, ["/tools/t.sh"])


@pytest.mark.parametrize("args", [("--plugins", "none"), ("--arch", "mt", "--plugins", "none"),
                                  ("--plugins", "cgi"),
                                  ("--plugins", "cgi", "--follow-symlinks")])
def test_cgi_ext_files_are_never_served_as_files(site, server_factory, args):
    # --cgi-ext names scripts by extension anywhere in the document root.
    # With the plugin off they are refused like a script folder's files;
    # with it on, a name the extension route does not see (a symlink with
    # another name, a case variant) is refused too, not sent as source.
    (site / "pub" / "app.cgi").write_text(SCRIPT)
    os.chmod(site / "pub" / "app.cgi", 0o755)
    os.symlink("app.cgi", site / "pub" / "app.txt")
    os.symlink("app.cgi", site / "pub" / "app")
    srv = server_factory(site, "--cgi-ext", ".cgi", "--access-log", "off", *args)
    assert requests.get(srv.url + "/pub/ok.txt").text == "public\n"
    refused = ["/pub/app.txt", "/pub/app", "/pub/APP.CGI"]
    if "cgi" not in args:
        refused.append("/pub/app.cgi")
        assert ("--cgi-ext .cgi is given but the cgi plugin is off; files ending in .cgi "
                "are refused (403). Enable it with --plugins cgi.") in srv.log()
    else:
        assert requests.get(srv.url + "/pub/app.cgi").text == "ran /pub/app.cgi\n"
        assert "--cgi-ext" not in srv.log()
    assert_refused(srv, refused)

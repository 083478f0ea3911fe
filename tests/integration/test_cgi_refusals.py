"""Why a CGI script got 403 (issue 10 item 7).

A script without the exec bit is the classic set-up mistake: the error log
says so with the fix, and a client on loopback (the operator at their own
machine) reads the cause in the 403 page.  Anyone else gets a bare 403.
Tests run as root, which passes access(X_OK) when any exec bit is set, so
mode 0644 is still "not executable" here: that is checked for real.
"""
import os
from types import SimpleNamespace

import requests

from flashplug_plugins.cgi.handler import _forbidden
from flashplug_plugins.cgi.script import NOT_EXECUTABLE, Forbidden

SECRET = "SECRET_SOURCE"


def test_not_executable_is_logged_and_explained_to_loopback(tmp_path, server_factory):
    root = tmp_path / "www"
    (root / "cgi-bin" / "sub").mkdir(parents=True)
    src = root / "cgi-bin" / "x.sh"
    src.write_text(f"#!/bin/sh\necho {SECRET}\n")
    os.chmod(src, 0o644)
    assert not os.access(src, os.X_OK) or os.geteuid() != 0
    srv = server_factory(root, "--plugins", "cgi", "--access-log", "off")
    for target in ("/cgi-bin/x.sh", "/cgi-bin/x.sh/path/info"):
        r = requests.get(srv.url + target)
        assert r.status_code == 403
        assert "/cgi-bin/x.sh is not executable" in r.text and SECRET not in r.text
        assert str(root) not in r.text          # no file-system path on the page
    r = requests.get(srv.url + "/cgi-bin/sub/")
    assert r.status_code == 403 and "never listed" in r.text
    log = srv.log()
    line = f"flashplug.cgi: /cgi-bin/x.sh is not executable (chmod +x {src})"
    assert log.count(line) == 2, log
    assert "sub/ is a folder" not in log        # that one is a debug line


def test_folder_refusal_is_a_debug_line(tmp_path, server_factory):
    root = tmp_path / "www"
    (root / "cgi-bin" / "sub").mkdir(parents=True)
    srv = server_factory(root, "--plugins", "cgi", "--access-log", "off", "--log-level", "debug")
    assert requests.get(srv.url + "/cgi-bin/sub/").status_code == 403
    assert "/cgi-bin/sub/ is a folder" in srv.log()


def refusal_for(addr):
    request = SimpleNamespace(remote_addr=addr)
    return _forbidden(request, Forbidden("/cgi-bin/x.sh", NOT_EXECUTABLE, "/srv/cgi-bin/x.sh"))


def test_only_loopback_clients_see_the_cause():
    for addr in ("127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"):
        assert refusal_for(addr).message == "/cgi-bin/x.sh is not executable", addr
    for addr in ("192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1", "", "unix"):
        e = refusal_for(addr)
        assert (e.status, e.message) == (403, "Forbidden"), addr

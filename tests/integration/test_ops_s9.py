"""Operating the server (session 9): what the last session left open, each
decided by how nginx (and Caddy/lighttpd) behave, and what running the
server as an operator does turned up.

Each test failed before its fix.
"""
import os
import shutil
import socket
import textwrap

import pytest
import requests
from test_kernel_http import error_then_closed, req, wire
from tests.waiting import wait_for


def lines_of(server, needle):
    """The whole lines of the server's output that contain ``needle``."""
    return [line for line in server.log().split("\n")[:-1] if needle in line]


# -- a body too large is named in the error log, once ------------------------------------

def test_a_413_has_one_error_log_line_naming_the_limit(server_factory, tmp_path):
    """nginx logs "client intended to send too large body: N bytes"; here
    the operator saw a 413 in the access log and nothing said which limit
    refused it."""
    root = tmp_path / "www"
    root.mkdir()
    srv = server_factory(root, "--max-body-size", "1000", "--access-log", "off")
    error_then_closed(srv, req("/up", method="POST", extra=b"Content-Length: 2000\r\n"), 413)
    w = wire(srv)
    chunk = b"%x\r\n" % 600 + b"z" * 600 + b"\r\n"
    w.send(req("/chunked", method="POST", extra=b"Transfer-Encoding: chunked\r\n")
           + chunk + chunk + b"0\r\n\r\n")
    assert w.response()[0] == 413
    w.close()
    wait_for(lambda: len(lines_of(srv, "too large body")) == 2, what="two 413 lines")
    declared, chunked = lines_of(srv, "too large body")
    assert "--max-body-size 1000" in declared and '"POST /up"' in declared
    assert "127.0.0.1" in declared
    assert '"POST /chunked"' in chunked


def test_a_413_of_the_cgi_limit_names_its_own_option(server_factory, tmp_path):
    root = tmp_path / "www"
    (root / "cgi-bin").mkdir(parents=True)
    script = root / "cgi-bin" / "up.sh"
    script.write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok'\n")
    script.chmod(0o755)
    srv = server_factory(root, "--plugins", "cgi", "--cgi-max-body", "1k")
    r = requests.post(srv.url + "/cgi-bin/up.sh", data=b"x" * 2000)
    assert r.status_code == 413
    wait_for(lambda: lines_of(srv, "too large body"), what="the 413 line")
    [line] = lines_of(srv, "too large body")
    assert "2000 bytes, over --cgi-max-body 1024" in line

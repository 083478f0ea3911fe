"""flashplug as its users meet it, from its docs only (session 8).

Each test is a defect a user following README.md and docs/ ran into: a
migrating `python -m http.server` user, a small site's operator, a PHP or
Python site behind it.  Each fails without its fix.
"""
import subprocess
import sys

import requests

from test_kernel_cli import assert_one_line_error, run


# -- http.server habits ----------------------------------------------------------------

def test_directory_then_a_positional_port_names_the_port_flag(tmp_path):
    # `python -m http.server -d site 8080`: the number is http.server's port,
    # not a second document root.
    (tmp_path / "site").mkdir()
    line = assert_one_line_error(run("serve", "-d", "site", "8080", cwd=tmp_path))
    assert line == "flashplug: error: document root '8080' does not exist; did you mean --port 8080?"
    line = assert_one_line_error(run("serve", "8080", "-d", "site", cwd=tmp_path))
    assert "did you mean --port 8080?" in line


def test_a_missing_default_cgi_directory_is_404(tmp_path, server_factory):
    # `--cgi` mounts /cgi-bin/ and /htbin/; a site with only cgi-bin/ has no
    # /htbin/ folder to refuse: 404, as http.server answers, not a 403 that
    # calls it a folder.
    (tmp_path / "cgi-bin").mkdir()
    server = server_factory(tmp_path, "--cgi")
    for path in ("/htbin/", "/htbin"):
        r = requests.get(server.url + path)
        assert r.status_code == 404, (path, r.status_code, r.text)
    assert requests.get(server.url + "/cgi-bin/").status_code == 403   # it exists: never listed

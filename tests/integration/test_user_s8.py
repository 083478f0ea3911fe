"""flashplug as its users meet it, from its docs only (session 8).

Each test is a defect a user following README.md and docs/ ran into: a
migrating `python -m http.server` user, a small site's operator, a PHP or
Python site behind it.  Each fails without its fix.
"""
import subprocess
import sys

import pytest
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


# -- operators: `flashplug check` before `systemctl reload` -------------------------------

def check(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flashplug", "check", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=30)


@pytest.mark.parametrize("line, words", [
    ('access_log = "nolog/access.log"', ["--access-log", "does not exist", "mkdir -p"]),
    ('error_log = "nolog/error.log"', ["--error-log", "does not exist", "mkdir -p"]),
    ('bind = "192.0.2.1"', ["--bind 192.0.2.1", "not an address of this machine"]),
])
def test_check_refuses_what_serve_and_a_reload_refuse(tmp_path, line, words):
    # deployment.md's unit runs `flashplug check` as ExecReload's first step:
    # an OK there followed by a reload that fails leaves `systemctl reload`
    # reporting success while nothing changed.
    (tmp_path / "www").mkdir()
    (tmp_path / "site.toml").write_text(f'docroot = "www"\n{line}\n')
    assert_one_line_error(check("--config", "site.toml", cwd=tmp_path), *words)
    assert_one_line_error(run("serve", "--config", "site.toml", "--port", "0", cwd=tmp_path),
                          *words)

"""`flashplug check` (issue 15, item 5): the configuration loaded as `serve`
loads it, one line out, exit 0 when good; otherwise the error of `serve`,
naming the file, the line and the key."""
import socket
import subprocess
import sys

import pytest

from flashplug.config import At


def check(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flashplug", "check", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=30)


@pytest.fixture
def site(tmp_path):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "cgi-bin").mkdir()
    return tmp_path


def test_a_good_file_is_one_ok_line(site):
    (site / "site.toml").write_text('docroot = "www"\nworkers = 3\n[plugins]\n'
                                    'enable = ["cgi"]\n[plugins.cgi]\ntimeout = 20\n')
    with socket.socket() as busy:                 # check binds nothing
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = check("--config", site / "site.toml", "--port", port)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"{site / 'site.toml'}: OK: 1 site, serving {site / 'www'} on "
                             f"http://127.0.0.1:{port}/ with a master and 3 workers, "
                             f"--arch amped (plugins: cgi)\n")
    assert result.stderr == ""


@pytest.mark.parametrize("text, error", [
    ('docroot = "www"\n\nkeepalive_timout = 3\n',
     "site.toml:3: keepalive_timout: unknown setting; did you mean keepalive_timeout? "),
    ('docroot = "www"\n[plugins]\nenable = ["cgi"]\n[plugins.cgi]\n# how long\n'
     'timeout = "-3"\n',
     "site.toml:6: --cgi-timeout: expected a positive number of seconds, got '-3'\n"),
    ('docroot = "www"\nworkers = 0\n',
     "site.toml:2: workers = 0: must be at least 1, got 0; give a number of processes, "
     "or auto for one per CPU (--workers)\n"),
    ('docroot = "www"\nport = \n', "site.toml:2: not valid TOML: "),
    ('docroot = "www"\n[plugins]\nenable = ["cgi"]\n[plugins.cgi]\ndir = "nowhere"\n',
     "site.toml:5: --cgi-dir: expected URLPREFIX[=PATH]"),
    ('docroot = "www"\ntls_cert = "missing.pem"\ntls_key = "missing.key"\n',
     "--tls-cert "),
])
def test_a_bad_file_is_one_line_with_file_line_and_key(site, text, error):
    (site / "site.toml").write_text(text)
    result = check("--config", "site.toml", cwd=site)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("flashplug: error: ") and result.stderr.count("\n") == 1
    assert error in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_warnings_are_plain_lines(site):
    result = check(site / "www", "--plugins", "none")
    assert result.returncode == 0
    # Worded as serve words its own warnings ("flashplug: warning: ..."),
    # not in the error log's upper case.
    assert result.stderr == (f"flashplug: warning: {site / 'www'}/cgi-bin/ exists but the cgi "
                             f"plugin is off; its files are refused (403). Enable it with "
                             f"--plugins cgi.\n")


def test_an_unknown_user_is_caught_without_root(site):
    result = check(site / "www", "--user", "no-such-user-x")
    assert result.returncode == 2
    assert "--user no-such-user-x: no such user" in result.stderr


def test_help():
    result = check("--help")
    assert result.returncode == 0 and "flashplug check [--config FILE]" in result.stdout


@pytest.mark.parametrize("text, key, table, line", [
    ('a = 1\nport = 2\n', "port", None, 2),
    ('port = 1\n[plugins.cgi]\nport = 2\n', "port", "plugins.cgi", 3),
    ('[plugins.cgi]\ntimeout = 2\n', "timeout", None, None),      # not at the top
    ('"port" = 1\n', "port", None, 1),
    ('[ plugins.cgi ]\n', None, "plugins.cgi", 1),
    ('[[site]]\nroot = "x"\n', "root", "site", 2),
    ('[error_pages]\n404 = "/x"\n', "error_pages", None, 1),     # a key written as a table
])
def test_at_finds_the_line_of_a_key(tmp_path, text, key, table, line):
    (tmp_path / "c.toml").write_text(text)
    at = At(tmp_path / "c.toml", key, table)
    assert at.line() == line
    assert str(at) == f"{tmp_path / 'c.toml'}" + (f":{line}" if line else "")


SITES = """compress = true
[[site]]
root = "a"
compress = true
[[site.header]]
match = "/*"
[[site]]
names = ["b"]
[site.plugins.cgi]
timeout = 3
compress = false
[[site.header]]
match = "/b"
[site.security_headers]
"""


@pytest.mark.parametrize("key, table, site, line", [
    ("compress", None, None, 1),        # the top level's, not a site's
    ("compress", None, 1, 4),
    ("header", None, 1, 5),             # [[site.header]] of the first site
    ("header", None, 2, 12),
    ("security_headers", None, 2, 14),
    ("names", None, 2, 8),
    ("timeout", "plugins.cgi", 2, 10),
    ("compress", None, 2, None),        # below [site.plugins.cgi]: not the site's key
    ("names", None, 1, None),           # not written in the first site
    (None, None, 2, 7),                 # the site's own header
])
def test_at_finds_a_key_of_the_nth_site(tmp_path, key, table, site, line):
    (tmp_path / "c.toml").write_text(SITES)
    assert At(tmp_path / "c.toml", key, table, site=site).line() == line


def test_master_with_mt_is_refused(site):
    result = check(site / "www", "--arch", "mt", "--master")
    assert result.returncode == 2
    assert result.stderr == ("flashplug: error: --master needs --arch amped, sped or mp "
                             "(mt is one process by design)\n")

"""Faults found in the tenth session by a fresh pair of eyes: a new user
following the docs, then hostile input against a real ``flashplug serve``.
Each test failed before its fix."""
import subprocess
import sys

import pytest


def check(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flashplug", "check", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=30)


# -- A plugin's own flag (--fastcgi, --proxy, --acme) is written as another
#    key in the config file (backend, pass, domains).  A bad value there was
#    reported as "--fastcgi: ..." with no file or line, so a user who had
#    typed no --fastcgi could not tell where it came from; every other
#    setting's error starts with FILE:LINE. ------------------------------------------

@pytest.mark.parametrize("table, key, value, error", [
    ("fastcgi", "backend", '[".php"]', "--fastcgi: expected .EXT=BACKEND"),
    ("proxy", "pass", '["/=nowhere"]', "--proxy: expected /PREFIX=UPSTREAM"),
])
def test_a_bad_value_of_a_plugins_own_flag_names_its_line(tmp_path, table, key, value, error):
    (tmp_path / "www").mkdir()
    (tmp_path / "site.toml").write_text(f'docroot = "www"\n\n[plugins.{table}]\n'
                                        f'# the backends\n{key} = {value}\n')
    result = check("--config", "site.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"flashplug: error: site.toml:5: {error}"), result.stderr
    assert result.stderr.count("\n") == 1


# -- --bind [::1], as URLs and nginx's `listen [::1]:80` write an IPv6
#    address, was "not an address this machine has"; --bind 127.0.0.1:8080
#    (nginx's listen again) got the same words, which hide the fix. ------------------

def test_bind_takes_an_ipv6_address_in_brackets(tmp_path):
    result = check(tmp_path, "--plugins", "none", "--bind", "[::1]", "--port", "8080")
    assert result.returncode == 0, result.stderr
    assert f"serving {tmp_path} on http://[::1]:8080/ " in result.stdout


@pytest.mark.parametrize("bind, port", [("127.0.0.1:8080", "8080"), ("[::1]:80", "80"),
                                        ("localhost:8000", "8000")])
def test_bind_with_a_port_says_to_give_it_with_port(tmp_path, bind, port):
    result = check(tmp_path, "--plugins", "none", "--bind", bind)
    assert result.returncode == 2
    assert result.stderr == (f"flashplug: error: argument -b/--bind: {bind!r} has a port: "
                             f"give the address alone and the port with --port {port}\n")

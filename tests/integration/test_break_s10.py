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

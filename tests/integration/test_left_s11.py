"""Session 11's left-over behaviour faults, each proved on a real
`flashplug serve` (or `flashplug check`) process."""
import os
import socket
import subprocess
import sys
import time

import pytest


def flashplug(*args, cwd=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "flashplug", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


def raw(port, request, timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    return data


def status_of(data):
    return int(data.split(b" ", 2)[1])


# -- 8: an unknown plugin in the file's enable list names FILE:LINE --------

@pytest.mark.parametrize("text, where", [
    ('docroot = "www"\n[plugins]\nenable = ["cgi", "bogus"]\n', "site.toml:3: [plugins] enable"),
    ('docroot = "www"\n\nplugins = ["bogus"]\n', "site.toml:3: plugins"),
])
def test_an_unknown_plugin_in_the_file_names_its_line(tmp_path, text, where):
    (tmp_path / "www").mkdir()
    (tmp_path / "site.toml").write_text(text)
    for command in ("check", "serve"):
        result = flashplug(command, "--config", "site.toml", "--port", "0", cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.startswith(f"flashplug: error: {where}: unknown plugin 'bogus'; "
                                        f"installed plugins: "), result.stderr
        assert "autoindex, cgi" in result.stderr and result.stderr.count("\n") == 1


# -- 7: flashplug check's OK line counts the sites -------------------------

@pytest.mark.parametrize("sites, default, count", [
    (0, False, "1 site"), (2, False, "3 sites"), (2, True, "2 sites")])
def test_check_counts_the_sites(tmp_path, sites, default, count):
    (tmp_path / "www").mkdir()
    text = 'docroot = "www"\n'
    for n in range(sites):
        text += f'[[site]]\nnames = ["s{n}.example"]\nroot = "www"\n'
        if default and n == 0:
            text += "default = true\n"
    (tmp_path / "site.toml").write_text(text)
    result = flashplug("check", "--config", "site.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"site.toml: OK: {count}, serving {tmp_path / 'www'} on "), \
        result.stdout

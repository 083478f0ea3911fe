"""Faults found in the tenth session by a fresh pair of eyes: a new user
following the docs, then hostile input against a real ``flashplug serve``.
Each test failed before its fix."""
import gzip
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest
import requests

from conftest import free_port, start_server
from waiting import wait_for


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


# -- Started as root (to bind port 80), flashplug ran scripts as nobody but
#    the php-cgi processes of --fastcgi .php=spawn:/usr/bin/php-cgi as root:
#    every PHP file of the document root ran as root.  php-fpm refuses to
#    run as root; lighttpd's bin-path processes run as its server.username.
#    They now run as nobody, as CGI scripts do, unless --fastcgi-user. --------------

@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("php-cgi"),
                    reason="needs root and php-cgi")
@pytest.mark.parametrize("extra, user", [((), "nobody"), (("--fastcgi-user", "root"), "root")])
def test_spawned_fastcgi_backends_of_a_root_server_run_as_nobody(tmp_path, extra, user):
    root = tempfile.mkdtemp()          # one nobody may enter, unlike tmp_path
    try:
        os.chmod(root, 0o755)
        with open(os.path.join(root, "who.php"), "w") as f:
            f.write('<?php echo exec("id -un"), "\\n";')
        server = start_server(root, "--fastcgi", f".php=spawn:{shutil.which('php-cgi')}",
                              "--fastcgi-procs", "1", *extra, tmp_path=tmp_path, cgi_user=None)
        try:
            r = requests.get(server.url + "/who.php", timeout=10)
            assert (r.status_code, r.text) == (200, f"{user}\n"), server.log()
        finally:
            server.stop()
    finally:
        shutil.rmtree(root)


# -- Precompressing a site for --precompressed (`gzip -k`, `brotli`, `zstd`
#    over every file, as docs/compression.md suggests) leaves app.py.gz beside
#    a --cgi-ext script and index.php.gz beside a PHP one: they went out as
#    documents, the script's source compressed.  Editors' copies were refused
#    already; these copies are refused the same way. ---------------------------------

@pytest.mark.parametrize("script, args", [
    ("app.py", ("--plugins", "cgi", "--cgi-ext", ".py")),
    ("index.php", ("--fastcgi", ".php=127.0.0.1:9", "--plugins", "none")),
])
def test_compressed_copies_of_scripts_are_refused(server_factory, tmp_path, script, args):
    root = tmp_path / "root"
    root.mkdir()
    source = b"#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nran\\n'  # <?php secret\n"
    for name in (script, "page.html"):
        (root / name).write_bytes(source)
        (root / name).chmod(0o755)
        for suffix in (".gz", ".br", ".zst"):
            (root / (name + suffix)).write_bytes(gzip.compress(source))
    s = server_factory(root, *args)
    for suffix in (".gz", ".br", ".zst"):
        r = requests.get(f"{s.url}/{script}{suffix}", headers={"Accept-Encoding": "identity"})
        assert r.status_code == 403, (suffix, r.status_code)
        assert gzip.compress(source) not in r.content
        # A document's compressed copy is still a document.
        assert requests.get(f"{s.url}/page.html{suffix}").status_code == 200


# -- docs/https.md told certbot users to reload with `kill -HUP $(pidof -s
#    flashplug)`: pidof finds no process of that name (the program is python3
#    running the flashplug script), so kill got no pid.  The process is named
#    flashplug (the script's name), which pgrep and pkill -x match. --------------------

def test_the_reload_command_of_the_https_page_finds_the_master(tmp_path):
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "https.md")) as f:
        lines = [line.split("#")[0].split() for line in f if "-HUP" in line and "kill" in line]
    assert lines, "docs/https.md shows no command that sends SIGHUP"
    exe = os.path.join(os.path.dirname(sys.executable), "flashplug")
    port = free_port()
    server = subprocess.Popen([exe, "serve", str(tmp_path), "--port", str(port), "--master",
                               "--access-log", "off"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(port), what="the server")
        for command in lines:
            if command[0] == "pkill":
                # pgrep selects as pkill does; -o (the oldest) is left out, as
                # other servers may run on this machine.
                selector = ["pgrep"] + [a for a in command[1:] if a not in ("-HUP", "-o")]
            else:                                  # kill -HUP $(pidof ... NAME)
                selector = [w.strip("$()") for w in command[2:]]
            found = subprocess.run(selector, capture_output=True, text=True).stdout.split()
            assert str(server.pid) in found, (command, found)
    finally:
        server.terminate()
        server.wait(10)


def _answers(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False

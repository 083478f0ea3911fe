"""flashplug as its users meet it, from its docs only (session 8).

Each test is a defect a user following README.md and docs/ ran into: a
migrating `python -m http.server` user, a small site's operator, a PHP or
Python site behind it.  Each fails without its fix.
"""
import os
import pwd
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import REPO, free_port
from tests.acme_pebble import dns, pebble_factory  # noqa: F401 - fixtures
from tests.tls_certs import ca  # noqa: F401 - fixture
from test_acme import wait_for
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


@pytest.mark.parametrize("args, flag", [(["--dir", "site"], "--directory"),
                                        (["--bi", "0.0.0.0"], "--bind")])
def test_an_abbreviation_http_server_took_names_its_flag(tmp_path, args, flag):
    # http.server's argparse takes `--dir site`; flashplug takes full names
    # only, and suggested the nearest spelling: "did you mean --cgi-dir?".
    line = assert_one_line_error(run("serve", *args, cwd=tmp_path))
    assert line == f"flashplug: error: unknown option {args[0]}; did you mean {flag}?"


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


# -- HTTPS: a CA not up yet, and docs/https.md's pebble walk-through --------------------

def test_a_ca_not_up_yet_is_tried_again_within_seconds(server_factory, pebble_factory,
                                                       tmp_path, ca):
    # A new site started before the network or the CA is up (at boot, or
    # the walk-through's pebble still making its keys): with the default
    # --acme-retry the first certificate came ten minutes later.
    port, plain, ca_port = free_port(), free_port(), free_port()
    bundle = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    (tmp_path / "site").mkdir()
    s = server_factory(tmp_path / "site", "--acme-domains", "up.test", "--acme-directory",
                       f"https://127.0.0.1:{ca_port}/dir", "--acme-ca-bundle", bundle,
                       "--acme-state", tmp_path / "state", "--redirect-http", plain, port=port)
    wait_for(s, r"ACME: up\.test: no certificate .*cannot reach the CA.*; retrying in 5 s")
    pebble_factory(http_port=plain, tls_port=port, port=ca_port)
    wait_for(s, r"ACME: up\.test: certificate obtained", timeout=20)



def _indented_block(page, after):
    """The indented (4-space) shell block that follows the line ``after``."""
    lines = page[page.index(after):].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("    "))
    block = []
    for line in lines[start:]:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block).strip() + "\n"


@pytest.mark.skipif(not shutil.which("pebble-challtestsrv"),
                    reason="pebble is not installed (Debian: apt-get install pebble)")
def test_the_pebble_walkthrough_gets_a_certificate(tmp_path):
    # Followed as written, flashplug asked pebble for a certificate while
    # pebble was still making its keys: "cannot reach the CA; retrying in
    # 10 min", and the walk-through's last curl failed its handshake.
    page = (Path(REPO) / "docs" / "https.md").read_text()
    script = _indented_block(page, "### Trying it locally with pebble")
    script = script.replace("pip install trustme\n", "")   # the test extra has it
    for port in ("14000", "15000", "8053", "8055", "5001", "5002"):
        script = script.replace(port, str(free_port()))
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep
               + os.environ["PATH"])
    log = tmp_path / "walkthrough.log"
    with open(log, "w") as out:     # a file: the background jobs hold it open
        proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc.wait(timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)     # pebble, its DNS server, flashplug
    out = log.read_text()
    assert proc.returncode == 0, out
    assert "hello" in out.splitlines(), out


# -- config files: TOML's usual slip ----------------------------------------------------

@pytest.mark.parametrize("text, first", [
    # A top-level key appended below a table: TOML makes it the table's.
    ('docroot = "www"\n[plugins]\nenable = ["cgi"]\nport = 8080\n',
     "site.toml:4: [plugins] port: not a plugin's table; port is a top-level setting"),
    ('docroot = "www"\n[plugins.cgi]\ntimeout = 5\naccess_log = "a.log"\n',
     "site.toml:4: [plugins.cgi] access_log: unknown setting;"),
    ('docroot = "www"\n[[site]]\nnames = ["a.example"]\nroot = "www"\nworkers = 4\n',
     "site.toml:5: [[site]] a.example: workers: unknown key;"),
    ('docroot = "www"\n[[site]]\nnames = ["a.example"]\nroot = "www"\n'
     '[site.plugins]\nenable = ["cgi"]\ncompress = true\n',
     "[site.plugins] compress: not a plugin's table; compress is a [[site]] setting"),
])
def test_a_key_below_the_wrong_table_header_says_where_it_belongs(tmp_path, text, first):
    # Was "[plugins.port]: no such plugin; installed: ..." without a line.
    (tmp_path / "www").mkdir()
    (tmp_path / "site.toml").write_text(text)
    line = assert_one_line_error(check("--config", "site.toml", cwd=tmp_path))
    assert first in line, line
    assert "in TOML every key below a [table] header belongs to that table: write it above" \
        in line


# -- PHP: a socket path that is not there ----------------------------------------------

def test_a_missing_php_fpm_socket_is_named_at_start(tmp_path, server_factory):
    # docs/fastcgi.md's php8.2 socket on a host with another PHP (or php-fpm
    # stopped): every .php got a 502, and start-up said nothing.
    (tmp_path / "www").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "php8.4-fpm.sock").touch()
    missing = tmp_path / "run" / "php8.2-fpm.sock"
    warning = (f"fastcgi .php: {missing} does not exist (yet): its requests get 502 until a "
               f"backend listens there (is php-fpm running?); sockets in {tmp_path / 'run'}: "
               f"php8.4-fpm.sock")
    result = check(tmp_path / "www", "--fastcgi", f".php=unix:{missing}")
    assert result.returncode == 0 and warning in result.stderr, result
    server = server_factory(tmp_path / "www", "--fastcgi", f".php=unix:{missing}")
    assert warning in server.log()


# -- a Python app at / behind the proxy, its static files beside it ----------------------

def test_proxy_files_first_serves_files_and_proxies_the_rest(tmp_path, server_factory):
    # proxy.md's Django example served /srv/mysite/static-root with
    # --proxy /=...: every path went to the app, /static/ too, so the
    # document root served nothing.  nginx's answer is try_files $uri @app.
    from proxy_upstreams import RecordingUpstream
    upstream = RecordingUpstream()
    try:
        root = tmp_path / "public"
        (root / "static" / "admin").mkdir(parents=True)
        (root / "static" / "admin" / "base.css").write_text("body{}\n")
        (root / "index.html").write_text("a landing page the app replaces\n")
        server = server_factory(root, "--proxy", f"/={upstream.address}",
                                "--proxy-files-first")
        css = requests.get(server.url + "/static/admin/base.css")
        assert (css.status_code, css.text) == (200, "body{}\n")
        assert css.headers["Content-Type"] == "text/css; charset=utf-8"
        for path in ("/", "/accounts/login/?next=/", "/static/missing.css", "/static/"):
            r = requests.get(server.url + path)
            assert (r.status_code, r.text) == (200, "index\n"), path
        targets = [m.target.decode() for m in upstream.requests]
        assert targets == ["/", "/accounts/login/?next=/", "/static/missing.css", "/static/"]
        r = requests.post(server.url + "/form/", data={"a": "1"})
        assert r.status_code == 200 and upstream.requests[-1].body == b"a=1"
    finally:
        upstream.stop()


def test_proxy_files_first_keeps_other_prefixes_and_routes(tmp_path, server_factory):
    from proxy_upstreams import RecordingUpstream
    app, api = RecordingUpstream(), RecordingUpstream()
    try:
        root = tmp_path / "public"
        (root / "api").mkdir(parents=True)
        (root / "api" / "file.txt").write_text("on disk\n")
        (root / "cgi-bin").mkdir()
        server = server_factory(root, "--proxy", f"/={app.address}", "--proxy",
                                f"/api={api.address}/", "--proxy-files-first",
                                "--plugins", "proxy,cgi")
        assert requests.get(server.url + "/api/file.txt").text == "on disk\n"
        assert requests.get(server.url + "/api/v1/x").text == "index\n"
        assert [m.target for m in api.requests] == [b"/v1/x"]     # the longest prefix
        assert requests.get(server.url + "/cgi-bin/none").status_code == 404   # cgi's route
        assert app.requests == []
    finally:
        app.stop()
        api.stop()


# -- CGI scripts brought over from http.server ------------------------------------------

@pytest.mark.parametrize("source, hint", [
    (b'print("Content-Type: text/plain")\nprint()\n',
     "Exec format error (no #! line: start it with one, such as #!/usr/bin/env python3)"),
    (b'#!/usr/bin/no-such-python\nprint("Content-Type: text/plain")\n',
     "(the interpreter its #! line names does not exist, or the line ends in a Windows CR)"),
    (b'#!/bin/sh\r\necho "Content-Type: text/plain"\r\n',
     "(the interpreter its #! line names does not exist, or the line ends in a Windows CR)"),
])
def test_a_script_the_kernel_will_not_start_is_logged_with_the_fix(tmp_path, server_factory,
                                                                  source, hint):
    # http.server ran any .py with its own interpreter; here such a script
    # is a 502 whose log line said only "Exec format error".
    (tmp_path / "cgi-bin").mkdir()
    (tmp_path / "cgi-bin" / "app.py").write_bytes(source)
    (tmp_path / "cgi-bin" / "app.py").chmod(0o755)
    server = server_factory(tmp_path, "--cgi")
    assert requests.get(server.url + "/cgi-bin/app.py").status_code == 502
    lines = [line for line in server.log().splitlines() if "cannot run" in line]
    assert len(lines) == 1 and lines[0].endswith(hint), server.log()


@pytest.mark.skipif(os.geteuid() != 0, reason="scripts change user only under root")
def test_a_script_nobody_may_run_is_logged_with_the_fix(tmp_path, server_factory):
    # As root, scripts run as nobody (as http.server's did); under a folder
    # only root may enter, the log said "Permission denied" and no more.
    root = tmp_path / "site"                     # below pytest's 0700 folders
    (root / "cgi-bin").mkdir(parents=True)
    (root / "cgi-bin" / "h.sh").write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhi'\n")
    (root / "cgi-bin" / "h.sh").chmod(0o755)
    server = server_factory(root, "--cgi", cgi_user=None)
    assert requests.get(server.url + "/cgi-bin/h.sh").status_code == 502
    nobody = pwd.getpwnam("nobody").pw_uid
    assert (f"cannot run {root / 'cgi-bin' / 'h.sh'}: Permission denied (scripts run as uid "
            f"{nobody}, not as the server: it needs x on every folder above the script and "
            f"r+x on it, chmod o+rx; or --cgi-user names another user)") in server.log()


def test_a_toml_boolean_for_a_number_is_shown_as_written(tmp_path):
    # The message said "port = True", Python's spelling, not the file's.
    (tmp_path / "site.toml").write_text("port = true\n")
    line = assert_one_line_error(check("--config", "site.toml", cwd=tmp_path))
    assert line == ("flashplug: error: site.toml:1: port = true: expected a string or number "
                    "(--port)")


# -- --index as nginx users write it -----------------------------------------------------

@pytest.mark.parametrize("value, message", [
    ("index.php index.html", "separate the names with commas: --index index.php,index.html"),
    ("../secret.txt", "'../secret.txt' is no file name"),
    ("html/index.html", "'html/index.html' is no file name"),
])
def test_index_names_that_could_never_match_are_refused(tmp_path, value, message):
    # nginx's `index index.php index.html;` list, or a path: the server
    # started and never found an index file.
    line = assert_one_line_error(run("serve", tmp_path, "--port", "0", "--index", value))
    assert message in line
    (tmp_path / "site.toml").write_text(f'index = "{value}"\n')
    line = assert_one_line_error(check("--config", "site.toml", cwd=tmp_path))
    assert line.startswith("flashplug: error: site.toml:1: index = ") and message in line


# -- a WordPress root served without its PHP backend -------------------------------------

def test_php_sources_are_never_sent_without_a_fastcgi_backend(tmp_path, server_factory):
    # `flashplug serve /var/www/wordpress` with --fastcgi forgotten sent
    # wp-config.php, database password and all, as a download.
    (tmp_path / "wp-includes").mkdir()
    secret = b"<?php define('DB_PASSWORD', 'hunter2');\n"
    for name in ("index.php", "wp-config.php", "wp-includes/version.PHP", "old.phtml",
                 "wp-config.php.bak"):
        (tmp_path / name).write_bytes(secret)
    (tmp_path / "style.css").write_text("body{}\n")
    server = server_factory(tmp_path)
    for path in ("/wp-config.php", "/index.php", "/wp-includes/version.PHP", "/old.phtml",
                 "/wp-config.php.bak"):
        r = requests.get(server.url + path)
        assert r.status_code == 403 and b"hunter2" not in r.content, (path, r.status_code)
    assert b"hunter2" not in requests.get(server.url + "/").content     # the listing
    assert requests.get(server.url + "/style.css").status_code == 200
    assert requests.get(server.url + "/xmlrpc.php").status_code == 404     # not there
    assert ("index.php exists but the fastcgi plugin is off; PHP files are refused (403). "
            "Run them with --fastcgi .php=unix:/run/php/php-fpm.sock") in server.log()

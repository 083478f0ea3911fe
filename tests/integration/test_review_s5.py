"""Faults a hostile review found in the fifth session, each against a real
server (or the real CLI): virtual hosts, rules, error pages, compression,
the proxy, HTTP/2 and the config file.  Each test failed before its fix."""
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest


def config(tmp_path, body):
    path = tmp_path / "site.toml"
    path.write_text('docroot = "site"\n' + textwrap.dedent(body))
    return path


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    (root / "docs").mkdir(parents=True)
    (root / "index.html").write_bytes(b"home\n")
    (root / "docs" / "page.html").write_bytes(b"doc\n")
    return root


def raw(port, data, timeout=5):
    """Send ``data`` on a fresh connection; everything the server sends back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def head_fields(response):
    """(status, {lowercase name: value}) of a raw response."""
    head = response.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    fields = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(head[0].split()[1]), fields


def one_line_error(conf, *args):
    """Run ``flashplug check --config conf``: its exit status and stderr."""
    proc = subprocess.run([sys.executable, "-m", "flashplug", "check", "--config", str(conf),
                           *args], capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stderr


# -- www_to_apex ---------------------------------------------------------------------


def test_www_to_apex_keeps_the_path_of_an_absolute_form_target(site, tmp_path, server_factory):
    """RFC 9112 §3.2.2: a server must accept the absolute form; the redirect
    keeps its path and query as it does for the origin form."""
    server = server_factory(site, "--config", config(tmp_path, "www_to_apex = true\n"))
    for target in (b"http://www.example.org/docs/page.html?q=1",
                   b"/docs/page.html?q=1"):
        status, fields = head_fields(raw(server.port, b"GET " + target + b" HTTP/1.1\r\n"
                                         b"Host: www.example.org\r\nConnection: close\r\n\r\n"))
        assert status == 308, target
        assert fields["location"] == "http://example.org/docs/page.html?q=1", target


@pytest.mark.parametrize("host", [b"www..", b"www..:80", b"www.", b"www.localhost",
                                  b"www.example..org"])
def test_www_to_apex_leaves_hosts_without_an_apex_name_alone(site, tmp_path, server_factory,
                                                             host):
    """``www..`` is no www name of anything: before, it was sent to
    ``http://./``.  A name with an empty label (``..``) is no host at all:
    400, as nginx answers (session 7)."""
    server = server_factory(site, "--config", config(tmp_path, "www_to_apex = true\n"))
    status, fields = head_fields(raw(server.port, b"GET / HTTP/1.1\r\nHost: " + host +
                                     b"\r\nConnection: close\r\n\r\n"))
    assert status == (400 if b".." in host else 200), fields
    assert "location" not in fields, fields


# -- rules checked at start ------------------------------------------------------------


@pytest.mark.parametrize("expires", ['"99999999999d"', "99999999999999999999"])
def test_an_expires_past_any_date_is_a_one_line_error(site, tmp_path, expires):
    """A duration no HTTP-date can hold (RFC 9110 §5.6.7: a four-digit
    year) would fail every matching response at run time."""
    conf = config(tmp_path, f'[[header]]\nmatch = "/*"\nexpires = {expires}\n')
    status, err = one_line_error(conf)
    assert status == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and "expires" in err, err


def test_the_longest_expires_still_serves(site, tmp_path, server_factory):
    server = server_factory(site, "--config", config(
        tmp_path, '[[header]]\nmatch = "/*"\nexpires = "3650d"\n'))
    status, fields = head_fields(raw(server.port, b"GET /docs/page.html HTTP/1.1\r\n"
                                     b"Host: t\r\nConnection: close\r\n\r\n"))
    assert status == 200 and fields["cache-control"] == "max-age=315360000"
    assert fields["expires"].endswith(" GMT")


def test_a_star_in_the_host_of_a_redirect_target_is_refused(site, tmp_path):
    """``to = "https://example.org*"`` would put the rest of the path in the
    authority: ``/old/@evil.example`` would go to evil.example."""
    conf = config(tmp_path, '[[redirect]]\nfrom = "/old/*"\nto = "https://example.org*"\n')
    status, err = one_line_error(conf)
    assert status == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and "to = " in err, err


# -- the config file -------------------------------------------------------------------


def test_a_config_file_that_is_not_utf8_is_a_one_line_error(site, tmp_path):
    conf = tmp_path / "site.toml"
    conf.write_bytes(b'docroot = "site"\n# caf\xe9\n')
    status, err = one_line_error(conf)
    assert status == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and "UTF-8" in err and str(conf) in err, err


# -- the access log ----------------------------------------------------------------------


def test_access_log_escapes_bytes_past_ascii_as_nginx_does(site, tmp_path, server_factory):
    """A UTF-8 User-Agent is logged byte for byte as \\xNN (nginx's and
    Apache's escape), not re-encoded into mojibake, and no C1 control byte
    reaches the file raw."""
    log = tmp_path / "access.log"
    server = server_factory(site, "--access-log", log)
    raw(server.port, b"GET /docs/page.html HTTP/1.1\r\nHost: t\r\n"
                     b"User-Agent: caf\xc3\xa9 \x9b31m\r\nConnection: close\r\n\r\n")
    assert server.stop() == 0
    data = log.read_bytes()
    assert data.isascii(), data
    assert b'"caf\\xc3\\xa9 \\x9b31m"' in data, data


# -- header rules and negotiation -------------------------------------------------------


def vary_tokens(response):
    head = response.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    return {token.strip().lower() for line in head if line.lower().startswith("vary:")
            for token in line.partition(":")[2].split(",")}


@pytest.mark.parametrize("extra", [b"", b"Range: bytes=0-9\r\n", b'If-None-Match: "x"\r\n'])
def test_a_vary_rule_adds_to_accept_encoding_never_replaces_it(site, tmp_path,
                                                               server_factory, extra):
    """A rule's ``Vary: Origin`` (CORS) beside a negotiated file: a cache
    must still see ``Accept-Encoding``, or it hands gzip to clients that
    cannot read it.  The cached path and the full one (a Range, a
    precondition) must agree."""
    (site / "page.html").write_bytes(b"<p>" + b"hello " * 1000)
    (site / "page.html.gz").write_bytes(b"the owner's gzip sidecar")
    srv = server_factory(site, "--config", config(
        tmp_path, '[[header]]\nmatch = "*.html"\nset = { Vary = "Origin" }\n'))
    for _ in range(3):       # the full path, then the cached ones
        data = raw(srv.port, b"GET /page.html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n"
                   + extra + b"Connection: close\r\n\r\n")
        assert vary_tokens(data) == {"accept-encoding", "origin"}, data[:400]


def test_a_reload_of_a_config_file_that_is_not_utf8_keeps_serving(site, tmp_path,
                                                                  server_factory):
    """SIGHUP to a master with a file an editor saved as Latin-1: one
    error line, the old workers go on (before: a traceback, no reload
    line, and the master gone)."""
    conf = config(tmp_path, "")
    server = server_factory(site, "--config", conf, "--master", "--plugins", "none")
    conf.write_bytes(b'docroot = "site"\n# caf\xe9\n')
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while "configuration not reloaded" not in server.log():
        assert time.monotonic() < deadline and server.proc.poll() is None, server.log()
        time.sleep(0.05)
    assert "Traceback" not in server.log() and "not UTF-8" in server.log()
    status, _ = head_fields(raw(server.port, b"GET /docs/page.html HTTP/1.1\r\nHost: t\r\n"
                                             b"Connection: close\r\n\r\n"))
    assert status == 200 and server.proc.poll() is None


@pytest.mark.parametrize("value", ["5", "1.5", "true", '["cgi", 2]', "[[1]]"])
def test_a_plugins_key_of_the_wrong_type_is_a_one_line_error(site, tmp_path, value):
    status, err = one_line_error(config(tmp_path, f"plugins = {value}\n"))
    assert status == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and "plugins = " in err, err


def test_the_top_level_plugins_may_be_a_list_as_a_sites_are(site, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "flashplug", "check", "--config",
                           str(config(tmp_path, 'plugins = ["cgi", "autoindex"]\n'))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "(plugins: cgi, autoindex)" in proc.stdout or \
        "(plugins: autoindex, cgi)" in proc.stdout, proc.stdout


@pytest.mark.parametrize("body", ['user = "a\\u0000b"', "group = 99999999999999999999",
                                  "user = 99999999999999999999"])
def test_odd_values_of_plain_keys_are_one_line_errors(site, tmp_path, body):
    status, err = one_line_error(config(tmp_path, body + "\n"))
    assert status in (1, 2) and "Traceback" not in err, err
    assert err.count("\n") == 1, err


def test_a_number_for_a_text_key_reads_as_the_command_line_would(site, tmp_path):
    """``bind = 5`` was a TypeError traceback; it is ``--bind 5`` now (which
    ``check`` finds is no address of this machine, as ``serve`` would)."""
    status, err = one_line_error(config(tmp_path, "bind = 5\n"))
    assert status == 2 and "Traceback" not in err, err
    assert err == "flashplug: error: --bind 5: not an address of this machine\n"

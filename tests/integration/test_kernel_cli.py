"""The `flashplug` command line as a user meets it (issue 2, parts 2 and 7).

Bad input must end as one line on stderr and a non-zero exit, never a
traceback; signals stop the server gracefully; the access log is in
Combined Log Format.
"""
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

import flashplug
from conftest import free_port
from test_kernel_http import req, wire

SCRIPT = os.path.join(os.path.dirname(sys.executable), "flashplug")


def run(*args, cwd=None, timeout=15):
    return subprocess.run([sys.executable, "-m", "flashplug", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


def assert_one_line_error(result, *words):
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    return lines[0]


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"aaa\n")
    return root


# -- version and help -------------------------------------------------------------------

def test_version():
    for cmd in ([SCRIPT, "--version"], [sys.executable, "-m", "flashplug", "--version"]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
        assert r.returncode == 0, r.stderr
        assert flashplug.__version__ in r.stdout + r.stderr


def test_help():
    r = subprocess.run([SCRIPT, "--help"], capture_output=True, text=True, timeout=15)
    assert r.returncode == 0 and "serve" in r.stdout
    r = run("serve", "--help")
    assert r.returncode == 0
    for opt in ("--bind", "--port", "--access-log", "--log-level"):
        assert opt in r.stdout


# -- bad input --------------------------------------------------------------------------

def test_docroot_missing(tmp_path):
    missing = tmp_path / "nope"
    assert_one_line_error(run("serve", missing, "--port", free_port()), "nope")


def test_docroot_not_a_directory(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert_one_line_error(run("serve", f, "--port", free_port()), "file.txt")


def test_port_in_use(root):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        t0 = time.monotonic()
        r = run("serve", root, "--port", port)
        assert time.monotonic() - t0 < 10
    assert_one_line_error(r, str(port))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may bind port 80, so there is no permission error to see")
def test_permission_denied_port(root):
    assert_one_line_error(run("serve", root, "--port", 80))


def test_bind_address_not_available(root):
    # 192.0.2.1 (TEST-NET-1) is not on this machine: bind fails, nothing is sent.
    assert_one_line_error(run("serve", root, "--bind", "192.0.2.1", "--port", free_port()))


@pytest.mark.parametrize("args", [
    ["--port", "abc"], ["--port", "70000"], ["--port", "-1"], ["--header-timeout", "-1"],
    ["--keepalive-timeout", "zero"], ["--max-body-size", "lots"], ["--arch", "nope"],
    ["--workers", "0"], ["--log-level", "loud"], ["--no-such-flag"], ["--bind", "not an address"],
    # Infinite or overflowing: a traceback before, or every connection of
    # --arch mt reset (socket.settimeout(inf) overflows).
    ["--cache-size", "1e400"], ["--max-body-size", "1e999m"], ["--header-timeout", "inf"],
    ["--keepalive-timeout", "1e300"],
])
def test_bad_flag_value(root, args):
    r = run("serve", root, *args)
    assert_one_line_error(r)


def test_unknown_subcommand():
    r = run("frobnicate")
    assert r.returncode != 0 and "Traceback" not in r.stderr


# -- startup ----------------------------------------------------------------------------

def test_startup_line_relative_docroot(server_factory, root, tmp_path):
    srv = server_factory("root")          # relative to the server's cwd, tmp_path
    time.sleep(0.2)
    first = srv.log().splitlines()[0]
    assert first == f"Serving {root} on http://127.0.0.1:{srv.port}/ (plugins: autoindex)", first


def test_docroot_defaults_to_cwd(root):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "flashplug", "serve", "--port", str(port)],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line == f"Serving {root} on http://127.0.0.1:{port}/ (plugins: autoindex)", line
        assert requests.get(f"http://127.0.0.1:{port}/a.txt", timeout=5).content == b"aaa\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_console_script_serves(root):
    port = free_port()
    proc = subprocess.Popen([SCRIPT, "serve", str(root), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().startswith("Serving ")
        assert requests.get(f"http://127.0.0.1:{port}/a.txt", timeout=5).content == b"aaa\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


# -- signals ----------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_with_exit_0(server_factory, root, sig):
    srv = server_factory(root)
    idle = wire(srv)                # an idle keep-alive connection must not delay the stop
    idle.send(req())
    assert idle.response()[0] == 200
    t0 = time.monotonic()
    assert srv.stop(sig) == 0
    assert time.monotonic() - t0 < 3
    assert "Traceback" not in srv.log()
    idle.close()


@pytest.mark.parametrize("method,answered", [("POST", False), ("GET", False), ("POST", True)])
def test_stop_with_half_sent_body_is_prompt(server_factory, root, method, answered):
    # A client announced a 100-byte body, sent 10 bytes (or, answered: got
    # its final 405 after Expect: 100-continue) and went away.  Nothing is
    # left to answer, so SIGTERM should not wait out the grace period (10 s).
    srv = server_factory(root)
    w = wire(srv)
    if answered:
        w.send(req(method=method, extra=b"Content-Length: 100\r\nExpect: 100-continue\r\n"))
        assert w.response()[0] == 405
    else:
        w.send(req(method=method, extra=b"Content-Length: 100\r\n") + b"x" * 10)
        time.sleep(0.2)
    w.close()
    time.sleep(0.2)
    t0 = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - t0 < 3, "shutdown waited %.1f s for a client that had gone" % (
        time.monotonic() - t0)


def test_in_flight_response_completes_after_sigterm(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    big = os.urandom(8 * 1024 * 1024)
    (root / "big.bin").write_bytes(big)
    srv = server_factory(root, "--grace", "8")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    s.connect(("127.0.0.1", srv.port))
    s.settimeout(10)
    s.sendall(req("/big.bin"))
    data = s.recv(4096)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # Stopped accepting: a new connection is refused (or never answered).
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
        accepted = True
    except OSError:
        accepted = False
    assert not accepted, "listener still open after SIGTERM"
    # The slow reader still gets every byte.
    t0 = time.monotonic()
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) < 4 * 1024 * 1024:
            time.sleep(0.002)        # slow for the first half
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert len(body) == len(big) and hashlib.sha256(body).digest() == hashlib.sha256(big).digest()
    assert time.monotonic() - t0 < 8
    assert srv.proc.wait(8) == 0


def test_grace_period_ends_a_stalled_client(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(b"z" * (16 * 1024 * 1024))
    srv = server_factory(root, "--grace", "1")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.connect(("127.0.0.1", srv.port))
    s.sendall(req("/big.bin"))
    s.recv(1000)                      # then never read again
    time.sleep(0.3)
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    rc = srv.proc.wait(6)
    assert time.monotonic() - t0 < 3.5
    assert rc == 0
    s.close()


# -- access log -------------------------------------------------------------------------

CLF = re.compile(
    r'^(?P<host>\S+) - (?P<user>\S+) \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] '
    r'"(?P<request>[^"\\]*(?:\\.[^"\\]*)*)" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referer>[^"\\]*(?:\\.[^"\\]*)*)" "(?P<agent>[^"\\]*(?:\\.[^"\\]*)*)"$')


def log_lines(text):
    return [line for line in text.splitlines() if line and not line.startswith("Serving ")]


def test_access_log_combined_format_to_file(server_factory, root, tmp_path):
    logfile = tmp_path / "access.log"
    srv = server_factory(root, "--access-log", logfile)
    requests.get(srv.url + "/a.txt?q=1", headers={"Referer": "http://ref.example/", "User-Agent": 'ua "x"'},
                 timeout=5)
    requests.get(srv.url + "/missing", timeout=5)
    requests.head(srv.url + "/a.txt", timeout=5)
    assert srv.stop() == 0
    lines = log_lines(logfile.read_text())
    assert len(lines) == 3, lines
    m = [CLF.match(line) for line in lines]
    assert all(m), lines
    first = m[0]
    assert first["host"] == "127.0.0.1" and first["user"] == "-"
    assert first["request"] == "GET /a.txt?q=1 HTTP/1.1"
    assert (first["status"], first["size"]) == ("200", "4")
    assert first["referer"] == "http://ref.example/"
    assert first["agent"] == 'ua \\"x\\"'
    assert (m[1]["request"], m[1]["status"]) == ("GET /missing HTTP/1.1", "404")
    assert m[2]["request"] == "HEAD /a.txt HTTP/1.1" and m[2]["size"] in ("-", "0")
    # The time is now, give or take.
    t = time.strptime(first["time"], "%d/%b/%Y:%H:%M:%S %z")
    assert abs(time.mktime(t) - time.mktime(time.localtime())) < 86400


def test_access_log_default_is_stdout(server_factory, root):
    srv = server_factory(root)
    requests.get(srv.url + "/a.txt", timeout=5)
    srv.stop()
    lines = log_lines(srv.log())
    assert any(CLF.match(line) and '"GET /a.txt HTTP/1.1" 200 4' in line for line in lines), lines


def test_access_log_bad_request_line(server_factory, root):
    srv = server_factory(root)
    w = wire(srv)
    w.send(b"\x16\x03\x01\x00\x05hello\r\n\r\n")
    assert w.response()[0] == 400
    w.close()
    w = wire(srv)
    w.send(req("/" + "x" * 9000))
    assert w.response()[0] == 414
    w.close()
    srv.stop()
    lines = log_lines(srv.log())
    assert len(lines) == 2 and all(CLF.match(line) for line in lines), lines
    assert all(len(line) < 1000 for line in lines), "an over-long target should not be logged whole"


def test_access_log_off(server_factory, root):
    srv = server_factory(root, "--access-log", "off")
    requests.get(srv.url + "/a.txt", timeout=5)
    srv.stop()
    assert log_lines(srv.log()) == []


def test_access_log_escapes_control_characters(server_factory, root):
    srv = server_factory(root)
    w = wire(srv)
    w.send(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: evil\x1b[31m\r\n\r\n")
    w.response()
    w.close()
    srv.stop()
    text = srv.log()
    assert "\x1b" not in text, "terminal escape written raw to the log"


# -- http.server habits and other slips (issue 10, items 8 and 9) ----------------------------

def test_http_server_short_flags(root, tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "flashplug", "serve", "-d", str(root),
                             "-b", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        assert proc.stdout.readline().decode().startswith(f"Serving {root} on http://127.0.0.1:{port}/")
        assert requests.get(f"http://127.0.0.1:{port}/a.txt").text == "aaa\n"
    finally:
        proc.terminate()
        proc.wait(10)


def test_directory_and_docroot_together(root):
    assert_one_line_error(run("serve", root, "--directory", root, "--port", "0"),
                          "given twice", "give one of them")


def test_a_number_as_docroot_hints_at_port(tmp_path):
    line = assert_one_line_error(run("serve", "8080", cwd=tmp_path))
    assert line == "flashplug: error: document root '8080' does not exist; did you mean --port 8080?"


def test_a_folder_named_like_a_number_is_served(tmp_path, server_factory):
    (tmp_path / "8080").mkdir()
    (tmp_path / "8080" / "n.txt").write_text("number\n")
    server = server_factory("8080")   # relative to the server's cwd, tmp_path
    assert requests.get(server.url + "/n.txt").text == "number\n"


def test_cgi_flag_enables_the_cgi_plugin(tmp_path, server_factory):
    cgi = tmp_path / "site" / "cgi-bin"
    cgi.mkdir(parents=True)
    (cgi / "hi.sh").write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nran'\n")
    (cgi / "hi.sh").chmod(0o755)
    server = server_factory(tmp_path / "site", "--cgi")
    assert requests.get(server.url + "/cgi-bin/hi.sh").text == "ran"


@pytest.mark.parametrize("args", [["--plugins", "cgi", "autoindex"],
                                  [".", "--plugins", "cgi", "autoindex"]])
def test_space_separated_plugins_get_the_comma_fix(root, args):
    line = assert_one_line_error(run("serve", *args, "--port", "0", cwd=root))
    assert line == ("flashplug: error: 'autoindex' looks like a plugin name, not a document "
                    "root; separate plugins with commas: --plugins cgi,autoindex")


def test_two_docroots(root, tmp_path):
    assert_one_line_error(run("serve", root, tmp_path, "--port", "0"),
                          "one document root expected, got 2")


def test_workers_error_mentions_auto(root):
    assert_one_line_error(run("serve", root, "--workers", "many"), "not a whole number", "auto")


def test_a_document_root_with_a_nul_byte_in_the_config_is_one_line(tmp_path):
    config = tmp_path / "nul.toml"
    config.write_text('directory = "\\u0000"\n')
    assert_one_line_error(run("check", "--config", config), "NUL")


def test_a_worker_count_that_would_fork_the_host_to_death_is_refused(root, tmp_path):
    """--workers 100000 used to fork until the machine ran out of memory."""
    assert_one_line_error(run("serve", root, "--workers", "100000"), "100000", "16 per CPU",
                          "auto")
    config = tmp_path / "w.toml"
    config.write_text("workers = 100000\n")
    assert_one_line_error(run("check", "--config", config), "w.toml:1", "16 per CPU")


@pytest.mark.parametrize("flag, fix", [("--plugin", "--plugins"), ("--plugins-d", "--plugins-dir"),
                                       ("--prot", "--port")])
def test_abbreviated_or_misspelt_option_is_one_line(root, flag, fix):
    line = assert_one_line_error(run("serve", root, flag, "cgi"))
    assert line == f"flashplug: error: unknown option {flag}; did you mean {fix}?"


@pytest.mark.parametrize("args, line", [
    (["--plugins"], "argument --plugins: expected one argument"),
    (["-p", "HTTP/1.1"], "argument -p/--port: not a port number: 'HTTP/1.1'; -p is --port "
                         "here, and flashplug always speaks HTTP/1.1: leave it out"),
])
def test_option_value_mistakes_are_one_line(root, args, line):
    assert assert_one_line_error(run("serve", root, *args)) == f"flashplug: error: {line}"


@pytest.mark.parametrize("args", [("plugins",), ("plugins", "--json"), ("serve", "--help"),
                                  ("--help",)])
def test_output_to_a_closed_pipe_is_no_traceback(args):
    # `flashplug plugins | head -1`: the reader leaves before we are done.
    proc = subprocess.Popen([sys.executable, "-m", "flashplug", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()                  # before the interpreter has even started
    err = proc.stderr.read()
    proc.wait(15)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err

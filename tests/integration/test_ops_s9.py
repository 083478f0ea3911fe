"""Operating the server (session 9): what the last session left open, each
decided by how nginx (and Caddy/lighttpd) behave, and what running the
server as an operator does turned up.

Each test failed before its fix.
"""
import os
import signal
import socket
import time

import pytest
import requests
from proxy_upstreams import RecordingUpstream
from conftest import start_server
from test_check import check
from test_kernel_http import error_then_closed, req, wire
from tests.h2_client import H2Client
from tests.tls_certs import ca, site  # noqa: F401 - fixtures
from tests.waiting import wait_for


def cgi_root(tmp_path, name, text):
    """A document root whose cgi-bin holds one shell script ``name``
    running ``text``."""
    root = tmp_path / "www"
    (root / "cgi-bin").mkdir(parents=True)
    script = root / "cgi-bin" / name
    script.write_text("#!/bin/sh\n" + text)
    script.chmod(0o755)
    return root


def log_lines(path, needle):
    """The whole lines of the access log file ``path`` that contain ``needle``."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [line for line in text.split("\n")[:-1] if needle in line]


def lines_of(server, needle):
    """The whole lines of the server's output that contain ``needle``."""
    return [line for line in server.log().split("\n")[:-1] if needle in line]


# -- a body too large is named in the error log, once ------------------------------------

def test_a_413_has_one_error_log_line_naming_the_limit(server_factory, tmp_path):
    """nginx logs "client intended to send too large body: N bytes"; here
    the operator saw a 413 in the access log and nothing said which limit
    refused it."""
    root = tmp_path / "www"
    root.mkdir()
    srv = server_factory(root, "--max-body-size", "1000", "--access-log", "off")
    error_then_closed(srv, req("/up", method="POST", extra=b"Content-Length: 2000\r\n"), 413)
    w = wire(srv)
    chunk = b"%x\r\n" % 600 + b"z" * 600 + b"\r\n"
    w.send(req("/chunked", method="POST", extra=b"Transfer-Encoding: chunked\r\n")
           + chunk + chunk + b"0\r\n\r\n")
    assert w.response()[0] == 413
    w.close()
    wait_for(lambda: len(lines_of(srv, "too large body")) == 2, what="two 413 lines")
    declared, chunked = lines_of(srv, "too large body")
    assert "--max-body-size 1000" in declared and '"POST /up"' in declared
    assert "127.0.0.1" in declared
    assert '"POST /chunked"' in chunked


def test_an_http2_413_has_its_line_too(server_factory, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    srv = server_factory(root, "--h2c", "--max-body-size", "1000", "--access-log", "off")
    client = H2Client(srv.port)
    try:
        declared = client.request("/declared", method="POST", headers=[("content-length", "2000")],
                                  body=b"x" * 2000)
        assert client.response(declared)[0] == 413
        streamed = client.request("/streamed", method="POST", body=b"x" * 2000)
        assert client.response(streamed)[0] == 413
    finally:
        client.close()
    wait_for(lambda: len(lines_of(srv, "too large body")) == 2, what="two 413 lines")
    assert [line.endswith(f'"POST /{name}"') for name, line in
            zip(("declared", "streamed"), lines_of(srv, "too large body"))] == [True, True]


def test_a_413_of_the_cgi_limit_names_its_own_option(server_factory, tmp_path):
    root = cgi_root(tmp_path, "up.sh", "printf 'Content-Type: text/plain\\r\\n\\r\\nok'\n")
    srv = server_factory(root, "--plugins", "cgi", "--cgi-max-body", "1k")
    r = requests.post(srv.url + "/cgi-bin/up.sh", data=b"x" * 2000)
    assert r.status_code == 413
    wait_for(lambda: lines_of(srv, "too large body"), what="the 413 line")
    [line] = lines_of(srv, "too large body")
    assert "2000 bytes, over --cgi-max-body 1024" in line


# -- TRACE is refused on every route, as nginx refuses it -------------------------------

TRACE = b"TRACE /x HTTP/1.1\r\nHost: t\r\nCookie: session=secret\r\n\r\n"


def test_the_proxy_answers_trace_itself_and_never_forwards_it(server_factory, tmp_path):
    """An upstream that echoes TRACE would hand the client's Cookie and
    Authorization back to a page's script (cross-site tracing); nginx
    answers 405 on every location, proxy_pass included."""
    upstream = RecordingUpstream()
    try:
        srv = server_factory(tmp_path, "--access-log", "off", "--proxy",
                             f"/={upstream.address}")
        w = wire(srv)
        w.send(TRACE)
        status, headers, body = w.response()
        w.close()
        assert status == 405 and "GET" in headers["allow"][0] and b"secret" not in body
        assert upstream.requests == [] and upstream.connections == 0
        assert requests.get(srv.url + "/y").status_code == 200   # the route still works
    finally:
        upstream.stop()


def test_cgi_scripts_never_see_trace(server_factory, tmp_path):
    root = cgi_root(tmp_path, "echo.sh",
                    "printf 'Content-Type: text/plain\\r\\n\\r\\n%s %s' "
                    "\"$REQUEST_METHOD\" \"$HTTP_COOKIE\"\n")
    srv = server_factory(root, "--plugins", "cgi")
    r = requests.request("TRACE", srv.url + "/cgi-bin/echo.sh", cookies={"session": "secret"})
    assert r.status_code == 405 and "secret" not in r.text
    assert requests.get(srv.url + "/cgi-bin/echo.sh").text == "GET "
    # Static files refused it already.
    assert requests.request("TRACE", srv.url + "/").status_code == 405


# -- a raw byte above 0x7F in the target: 400 over both protocols ---------------------------

def test_a_raw_non_ascii_path_is_400_over_http2_as_over_http11(server_factory, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "caf\u00e9").write_text("file")
    srv = server_factory(root, "--h2c")
    error_then_closed(srv, req("/caf\u00e9".encode().decode("latin-1")), 400)
    client = H2Client(srv.port)
    try:
        assert client.response(client.request("/caf\u00e9"))[0] == 400
        assert client.response(client.request("/caf%C3%A9"))[0] == 200
    finally:
        client.close()


# -- plain HTTP to the TLS port: nginx's 400, and its access-log line ------------------------

def _read_all(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("h2", [False, True])
def test_plain_http_to_the_tls_port_is_logged(server_factory, site, h2):
    """nginx answers "400 The plain HTTP request was sent to HTTPS port"
    and logs the request; here the answer went out but the access log
    had no line, so a misconfigured balancer or client went unseen."""
    root, cert, key, ca_path = site
    srv = server_factory(root, "--tls-cert", cert, "--tls-key", key,
                         *([] if h2 else ["--no-http2"]))
    with srv.connect() as sock:
        sock.sendall(b"GET /plain?x=1 HTTP/1.1\r\nHost: localhost\r\n"
                     b"User-Agent: probe/1.0\r\n\r\n")
        data = _read_all(sock)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    body = len(data.partition(b"\r\n\r\n")[2])
    [line] = wait_for(lambda: lines_of(srv, '"GET /plain?x=1 HTTP/1.1"'), what="its log line")
    assert line.endswith(f'"GET /plain?x=1 HTTP/1.1" 400 {body} "-" "probe/1.0"')
    with srv.connect() as sock:           # not even a request line: "-"
        sock.sendall(b"HELLO\r\n")
        _read_all(sock)
    wait_for(lambda: lines_of(srv, '"-" 400 '), what="the unparsed line")
    assert "Traceback" not in srv.log()
    assert requests.get(f"https://localhost:{srv.port}/", verify=str(ca_path)).status_code == 200


# -- a response cut off is logged with the body bytes that went ------------------------------

BIG = 48 << 20


def _leave_early(srv, path, keep=64 * 1024):
    """GET ``path``, read ``keep`` bytes of the answer, then reset."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect(("127.0.0.1", srv.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    got = 0
    while got < keep:
        got += len(sock.recv(65536))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def _logged_size(line):
    return int(line.split('" ')[1].split()[1])


@pytest.mark.parametrize("arch", ["amped", "sped"])
def test_a_download_cut_off_is_logged_with_the_bytes_sent(server_factory, tmp_path, arch):
    """A 48 MB file whose client left after 64 KiB was logged as
    50,331,648 bytes (all of it was queued); nginx's $body_bytes_sent is
    what went to the socket."""
    root = tmp_path / "www"
    root.mkdir()
    with open(root / "big.bin", "wb") as f:
        f.truncate(BIG)
    (root / "small.txt").write_text("x" * 100)
    log = tmp_path / "access.log"
    srv = server_factory(root, "--access-log", log, "--arch", arch)
    _leave_early(srv, "/big.bin")
    [line] = wait_for(lambda: log_lines(log, "/big.bin"), what="the cut-off line")
    assert 64 * 1024 <= _logged_size(line) < BIG // 4, line
    # A whole response is logged whole, then and after.
    assert requests.get(srv.url + "/big.bin").content == bytes(BIG)
    assert requests.get(srv.url + "/small.txt").status_code == 200
    wait_for(lambda: len(log_lines(log, "/big.bin")) == 2 and log_lines(log, "/small.txt"),
             what="the whole lines")
    assert _logged_size(log_lines(log, "/big.bin")[1]) == BIG
    assert _logged_size(log_lines(log, "/small.txt")[0]) == 100


def test_an_http2_download_cut_off_is_logged_with_the_bytes_sent(server_factory, tmp_path):
    """Over HTTP/2 the line was written when the response was queued on
    its stream, whole, whatever went out as DATA."""
    root = tmp_path / "www"
    root.mkdir()
    with open(root / "big.bin", "wb") as f:
        f.truncate(BIG)
    log = tmp_path / "access.log"
    srv = server_factory(root, "--h2c", "--access-log", log)
    client = H2Client(srv.port)
    client.request("/big.bin")
    got = 0
    while got < 32 * 1024:             # unacknowledged: the window stays shut at 64 KiB
        got += sum(len(e.data) for e in client.pump(ack=False) if hasattr(e, "data"))
    client.sock.close()
    [line] = wait_for(lambda: log_lines(log, "/big.bin"), what="the cut-off line")
    assert '" 200 ' in line and 32 * 1024 <= _logged_size(line) <= 1 << 20, line


def test_a_streamed_body_cut_off_is_logged(server_factory, tmp_path):
    """A CGI script streaming a long body to a client that leaves: the
    line was missing altogether (the handler's task was cancelled)."""
    root = cgi_root(tmp_path, "stream.sh",
                    "printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\n"
                    "exec head -c 50000000 /dev/zero\n")
    log = tmp_path / "access.log"
    srv = server_factory(root, "--plugins", "cgi", "--access-log", log)
    _leave_early(srv, "/cgi-bin/stream.sh")
    [line] = wait_for(lambda: log_lines(log, "/cgi-bin/stream.sh"), what="the cut-off line")
    assert '" 200 ' in line and 64 * 1024 <= _logged_size(line) < 50000000 // 4, line


# -- SIGHUP reloads the acme plugin's settings --------------------------------------------

def test_a_reload_takes_changed_acme_names(server_factory, tmp_path):
    """The acme plugin read its settings once per process, so a name
    added to the file and reloaded was never ordered until a restart.
    (The CA here is a closed port: the orderer's own line, before any
    order, says which names it orders for.)"""
    pytest.importorskip("acme", reason="pip install 'flashplug[acme]'")
    root = tmp_path / "www"
    root.mkdir()
    state = tmp_path / "state"
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("")
    conf = tmp_path / "site.toml"
    table = (f'master = true\n[plugins.acme]\ndirectory = "https://127.0.0.1:9/dir"\n'
             f'state = "{state}"\nca_bundle = "{bundle}"\n')
    conf.write_text(table + 'domains = ["a.test"]\n')
    srv = server_factory(root, "--config", conf, "--access-log", "off")
    wait_for(lambda: lines_of(srv, "orders certificates for a.test from"), what="the orderer")
    conf.write_text(table + 'domains = ["a.test", "b.test"]\n')
    srv.proc.send_signal(signal.SIGHUP)
    # (The new worker's orderer waits for the old one's state lock, tried
    # every 5 s: on a loaded machine that is a few tries.)
    wait_for(lambda: lines_of(srv, "orders certificates for a.test, b.test from"),
             timeout=60, what="the reloaded orderer")
    # (One worker is one: the line said "1 new workers accept".)
    assert lines_of(srv, "configuration reloaded: 1 new worker accepts connections")
    assert "Traceback" not in srv.log()


# -- log files that cannot be written: the server serves on, and says so -----------------

def test_a_full_disk_under_the_access_log_is_said_not_raised(server_factory, tmp_path):
    """/dev/full stands for a full disk: the lines were dropped in
    silence, and the exit then failed with "flashplug: error: OSError:
    [Errno 28]" (the file's buffer still held them)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.txt").write_text("a")
    srv = server_factory(root, "--access-log", "/dev/full")
    assert requests.get(srv.url + "/a.txt").status_code == 200
    [line] = wait_for(lambda: lines_of(srv, "access log /dev/full: cannot write"),
                      what="the write error")
    assert "No space left on device" in line
    assert requests.get(srv.url + "/a.txt").status_code == 200
    assert srv.stop() == 0
    assert "Errno" not in srv.log() and "Traceback" not in srv.log()


def test_a_full_disk_under_the_error_log_is_no_traceback(server_factory, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    srv = server_factory(root, "--access-log", "/dev/full", "--error-log", "/dev/full")
    assert requests.get(srv.url + "/nothing").status_code == 404
    wait_for(lambda: lines_of(srv, "cannot write the error log /dev/full"), what="the line")
    assert srv.stop() == 0
    assert "Traceback" not in srv.log() and "Logging error" not in srv.log()


def test_sigusr1_with_a_fifo_nobody_reads_keeps_serving(server_factory, tmp_path):
    """logrotate-style SIGUSR1 while the access log's FIFO reader was
    down: the reopen waited for a reader on the event loop, and the
    worker answered nothing from then on."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.txt").write_text("a")
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        srv = server_factory(root, "--access-log", fifo)
        assert requests.get(srv.url + "/a.txt").status_code == 200
        wait_for(lambda: b"/a.txt" in _read_fifo(reader), what="the line in the FIFO")
    finally:
        os.close(reader)                   # the reader goes away
    srv.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: lines_of(srv, "a FIFO that no process reads; still writing"),
             what="the reopen's error")
    assert requests.get(srv.url + "/a.txt", timeout=5).status_code == 200
    assert "Traceback" not in srv.log()


def _read_fifo(fd):
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""


# -- `check` and bad files ------------------------------------------------------------------

@pytest.mark.parametrize("key", ["access_log", "error_log"])
def test_check_refuses_a_log_path_that_is_a_directory(tmp_path, key):
    """`check` said OK, then `serve` refused to start ("Is a directory")."""
    (tmp_path / "www").mkdir()
    (tmp_path / "site.toml").write_text(f'docroot = "www"\n{key} = "{tmp_path}"\n')
    result = check("--config", tmp_path / "site.toml")
    assert result.returncode == 2 and result.stdout == ""
    flag = "--" + key.replace("_", "-")
    assert result.stderr == (f"flashplug: error: {flag} {tmp_path}: is a directory; give a "
                             f"file in it, such as {tmp_path}/{key.replace('_', '.')}\n")


def test_a_plugins_list_beside_a_plugin_table_names_the_fix(tmp_path):
    """TOML's own words ("Cannot declare ('plugins', 'cgi') twice") did
    not say that the list belongs in [plugins] as enable = [...]."""
    (tmp_path / "www").mkdir()
    (tmp_path / "site.toml").write_text('docroot = "www"\nplugins = ["cgi"]\n'
                                        '[plugins.cgi]\ntimeout = 5\n')
    result = check("--config", tmp_path / "site.toml")
    assert result.returncode == 2
    assert "write the list as enable = [...] in a [plugins] table" in result.stderr


# -- SIGTERM: what --grace cut short is said ------------------------------------------------

def test_a_stop_that_cuts_requests_says_which(server_factory, tmp_path):
    """A script still running when --grace ran out: its client's
    connection closed with no answer, and no log said anything."""
    root = cgi_root(tmp_path, "slow.sh", "sleep 30\n")
    srv = server_factory(root, "--plugins", "cgi", "--grace", "1")
    sock = srv.connect()
    sock.sendall(b"GET /cgi-bin/slow.sh HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_for(lambda: srv.proc.pid in _parents_of_sleepers(), what="the script")
    assert srv.stop() == 0
    sock.close()
    [line] = lines_of(srv, "--grace 1 s is over")
    assert line.endswith("closing 1 connection still busy (GET /cgi-bin/slow.sh)")


def _parents_of_sleepers():
    """The grandparents of running ``sleep 30`` processes (the worker runs
    the script's shell, which runs sleep)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() != b"sleep\x0030\x00":
                    continue
            found.add(_ppid(_ppid(int(pid))))
        except (OSError, ValueError):
            continue
    return found


def _ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[1])


# -- started as a daemon with standard output closed ----------------------------------------

def test_a_closed_standard_output_is_no_crash(server_factory, tmp_path):
    """`flashplug serve >&-`: Python left sys.stdout None, so the access
    log's once-a-second flush raised in the tick (a traceback each time,
    and the timer sweep stopped), and the exit ended in another."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.txt").write_text("a")
    srv = server_factory(root, preexec_fn=lambda: os.close(1))
    assert requests.get(srv.url + "/a.txt").status_code == 200
    time.sleep(1.5)                   # a tick or two, with a line to flush
    assert requests.get(srv.url + "/a.txt").status_code == 200
    assert srv.stop() == 0
    assert "Traceback" not in srv.log() and "Error" not in srv.log(), srv.log()


# -- a signal while the server is still starting --------------------------------------------

def test_sighup_and_sigusr1_during_start_do_not_end_it(tmp_path):
    """A reload or a logrotate landing while the configuration was being
    read killed the server (their default action).  The config file is a
    FIFO here, so the start waits inside its read, deterministically."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.txt").write_text("a")
    conf = tmp_path / "site.toml"
    os.mkfifo(conf)
    srv = start_server(root, "--config", conf, tmp_path=tmp_path, wait=False)
    try:
        # Opening the write end succeeds once the server is in its open().
        writer = wait_for(lambda: _open_writer(conf), what="the server reading its config")
        srv.proc.send_signal(signal.SIGHUP)
        srv.proc.send_signal(signal.SIGUSR1)
        with os.fdopen(writer, "w") as f:
            f.write('access_log = "off"\n')
        wait_for(lambda: lines_of(srv, "Serving "), what="the start")
        assert requests.get(srv.url + "/a.txt").status_code == 200
        assert srv.proc.poll() is None
    finally:
        srv.stop()


def _open_writer(path):
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return None

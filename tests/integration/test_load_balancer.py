"""Behind a load balancer, against a real server: the PROXY protocol
(--proxy-protocol), trusted forwarded headers (--trusted-proxies), the
health endpoint (--health-path) and the drain before a stop
(--shutdown-delay).  HAProxy itself: test_haproxy.py."""
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time

import pytest

from conftest import free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
GET = b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a file\n")
    (root / "healthz").write_bytes(b"a file of the site, shadowed by --health-path\n")
    shutil.copytree(os.path.join(REPO, "cgi-bin"), root / "cgi-bin")
    return root


def v2_header(src, sport, dport=80, command=0x1):
    af, family, dst = (socket.AF_INET6, 0x21, "2001:db8::1") if ":" in src \
        else (socket.AF_INET, 0x11, "10.0.0.1")
    pack = socket.inet_pton(af, src) + socket.inet_pton(af, dst)
    block = pack + struct.pack("!HH", sport, dport) + b"\x01\x00\x08http/1.1"   # an ALPN TLV
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


def exchange(port, data, source="127.0.0.1", timeout=10):
    """Send ``data`` from ``source``; everything the server sends until it
    closes (b"" when it closes without a word, even by a reset)."""
    with socket.socket() as s:
        s.settimeout(timeout)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def access_lines(path, want, timeout=5):
    """The access log's whole lines once it has ``want`` of them (it is
    flushed once a second; a line still without its newline is mid-write)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().split("\n")[:-1] if path.exists() else []
        if len(lines) >= want or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


# -- the PROXY protocol -------------------------------------------------------------

def test_proxy_v1_and_v2_name_the_client(server_factory, site, tmp_path):
    log = tmp_path / "access.log"
    s = server_factory(site, "--proxy-protocol", "--access-log", log)
    r1 = exchange(s.port, b"PROXY TCP4 203.0.113.7 10.0.0.1 40001 80\r\n" + GET)
    r2 = exchange(s.port, v2_header("2001:db8::7", 40002) + GET)
    r3 = exchange(s.port, b"PROXY UNKNOWN\r\n" + GET)                          # no address
    r4 = exchange(s.port, V2_SIGNATURE + b"\x20\x00\x00\x00" + GET)              # LOCAL
    for r in (r1, r2, r3, r4):
        assert r.startswith(b"HTTP/1.1 200 OK\r\n") and r.endswith(b"a file\n")
    lines = access_lines(log, 4)
    assert [line.split()[0] for line in lines] == ["203.0.113.7", "2001:db8::7",
                                                   "127.0.0.1", "127.0.0.1"]


def test_header_split_over_several_packets(server_factory, site, tmp_path):
    log = tmp_path / "access.log"
    s = server_factory(site, "--proxy-protocol", "--access-log", log)
    data = v2_header("198.51.100.9", 5000) + GET
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        for piece in (data[:5], data[5:17], data[17:30], data[30:]):
            c.sendall(piece)
            time.sleep(0.05)
        assert c.recv(65536).startswith(b"HTTP/1.1 200 OK")
    assert access_lines(log, 1)[0].startswith("198.51.100.9 ")


@pytest.mark.parametrize("data", [
    GET,                                                          # no header at all
    b"PROXY TCP4 203.0.113.7 10.0.0.1 40001\r\n" + GET,             # malformed v1
    V2_SIGNATURE + b"\x21\x11\x00\x04abcd" + GET,                 # v2, block too short
])
def test_no_valid_header_is_closed_without_a_response(server_factory, site, data):
    s = server_factory(site, "--proxy-protocol")
    assert exchange(s.port, data) == b""
    assert "no PROXY protocol header" in s.log() or "v1:" in s.log() or "v2:" in s.log()


def test_slow_header_times_out_like_a_slow_head(server_factory, site):
    s = server_factory(site, "--proxy-protocol", "--header-timeout", "1")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"PROXY TCP4 203.0.113.7")
        assert c.recv(100) == b""            # closed by the server, no response
    assert "within --header-timeout" in s.log()


def test_listener_without_the_option_reads_no_header(server_factory, site):
    s = server_factory(site)
    r = exchange(s.port, b"PROXY TCP4 203.0.113.7 10.0.0.1 40001 80\r\n" + GET)
    assert r.startswith(b"HTTP/1.1 400 ")


def test_header_comes_before_tls(server_factory, site, tmp_path):
    from tls_certs import write_pair
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert, key = write_pair(ca, tmp_path, "127.0.0.1")
    log = tmp_path / "access.log"
    redirect = free_port()
    s = server_factory(site, "--proxy-protocol", "--tls-cert", cert, "--tls-key", key,
                       "--redirect-http", redirect, "--access-log", log)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw:
        raw.sendall(v2_header("192.0.2.44", 7000))
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as c:
            c.sendall(GET)
            answer = b""
            while chunk := c.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK")
    # The --redirect-http port is a listener of the server too.
    assert exchange(redirect, GET) == b""
    answer = exchange(redirect, v2_header("192.0.2.45", 7001) + GET)
    assert answer.startswith(b"HTTP/1.1 308 ")
    assert [line.split()[0] for line in access_lines(log, 2)] == ["192.0.2.44", "192.0.2.45"]


# -- trusted proxies -------------------------------------------------------------------

def get_with(port, target, headers=(), source="127.0.0.1"):
    head = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    return exchange(port, (head + "\r\n").encode(), source=source)


def test_trusted_proxy_names_the_client_everywhere(server_factory, site, tmp_path):
    log = tmp_path / "access.log"
    s = server_factory(site, "--plugins", "cgi,status", "--trusted-proxies", "127.0.0.1",
                       "--access-log", log)
    forwarded = [("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 127.0.0.1")]
    # The CGI environment.
    body = get_with(s.port, "/cgi-bin/env.py", forwarded).partition(b"\r\n\r\n")[2]
    env = dict(line.split("=", 1) for line in body.decode().splitlines() if "=" in line)
    assert env["REMOTE_ADDR"] == env["REMOTE_HOST"] == "203.0.113.7"
    assert "REMOTE_PORT" not in env                  # X-Forwarded-For carries none
    # The status page's access rules: the client is not local any more.
    assert get_with(s.port, "/server-status", forwarded).startswith(b"HTTP/1.1 403 ")
    assert get_with(s.port, "/server-status").startswith(b"HTTP/1.1 200 ")
    # A cached file (the quickest path must not log the proxy instead).
    for _ in range(3):
        assert get_with(s.port, "/a.txt", forwarded).startswith(b"HTTP/1.1 200 ")
    clients = [line.split()[0] for line in access_lines(log, 6)]
    assert clients == ["203.0.113.7", "203.0.113.7", "127.0.0.1"] + ["203.0.113.7"] * 3


def test_headers_from_an_untrusted_peer_are_never_believed(server_factory, site, tmp_path):
    log = tmp_path / "access.log"
    s = server_factory(site, "--plugins", "cgi,status", "--trusted-proxies", "127.0.0.1",
                       "--access-log", log)
    forwarded = [("X-Forwarded-For", "203.0.113.7")]
    body = get_with(s.port, "/cgi-bin/env.py", forwarded, source="127.0.0.2")
    assert b"REMOTE_ADDR=127.0.0.2\n" in body
    # Still local (loopback) for the status page: the header changed nothing.
    assert get_with(s.port, "/server-status", forwarded, source="127.0.0.2") \
        .startswith(b"HTTP/1.1 200 ")
    assert [line.split()[0] for line in access_lines(log, 2)] == ["127.0.0.2", "127.0.0.2"]


def test_trusted_proxies_under_blocking_architectures(server_factory, site, tmp_path):
    log = tmp_path / "access.log"
    s = server_factory(site, "--arch", "mt", "--trusted-proxies", "127.0.0.1",
                       "--access-log", log)
    for _ in range(2):
        assert get_with(s.port, "/a.txt", [("X-Forwarded-For", "203.0.113.7")]) \
            .startswith(b"HTTP/1.1 200 ")
    assert [line.split()[0] for line in access_lines(log, 2)] == ["203.0.113.7"] * 2


def test_forwarded_header_with_a_port(server_factory, site, tmp_path):
    s = server_factory(site, "--plugins", "cgi", "--trusted-proxies", "127.0.0.0/8",
                       "--real-ip-header", "forwarded", "--access-log", "off")
    body = get_with(s.port, "/cgi-bin/env.py", [
        ("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https'),
        ("X-Forwarded-For", "6.6.6.6")])
    assert b"REMOTE_ADDR=2001:db8:cafe::17\n" in body
    assert b"REMOTE_PORT=4711\n" in body


def test_proxy_protocol_peer_is_the_one_checked(server_factory, site, tmp_path):
    # The balancer's PROXY header names a CDN node we trust; its header
    # names the client.
    log = tmp_path / "access.log"
    s = server_factory(site, "--proxy-protocol", "--trusted-proxies", "198.51.100.0/24",
                       "--access-log", log)
    xff = b"X-Forwarded-For: 203.0.113.7\r\n"
    request = GET.replace(b"\r\n\r\n", b"\r\n" + xff + b"\r\n")
    assert exchange(s.port, v2_header("198.51.100.20", 1) + request).startswith(b"HTTP/1.1 200")
    assert exchange(s.port, v2_header("192.0.2.1", 1) + request).startswith(b"HTTP/1.1 200")
    assert [line.split()[0] for line in access_lines(log, 2)] == ["203.0.113.7", "192.0.2.1"]


# -- health and drain -------------------------------------------------------------------

def test_health_endpoint_shadows_the_site_and_fails_once_stopping(server_factory, site):
    s = server_factory(site, "--health-path", "/healthz", "--shutdown-delay", "3",
                       "--access-log", "off")
    for method in (b"GET", b"HEAD", b"OPTIONS"):
        r = exchange(s.port, method + b" /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert r.startswith(b"HTTP/1.1 200 OK\r\n"), r
        assert b"no-store" in r
    assert exchange(s.port, b"GET /healthz HTTP/1.0\r\n\r\n").endswith(b"\r\n\r\nok\n")
    s.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 2
    while exchange(s.port, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    r = exchange(s.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 503 ") and r.endswith(b"draining\n")
    # Everything else is still served, new connections too, during the delay.
    assert exchange(s.port, GET).endswith(b"a file\n")
    assert s.proc.wait(10) == 0
    assert "--shutdown-delay" in s.log()


def test_health_endpoint_comes_before_plugins(server_factory, site):
    s = server_factory(site, "--plugins", "status", "--status-path", "/healthz",
                       "--health-path", "/healthz")
    r = exchange(s.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 200 ") and r.endswith(b"\r\n\r\nok\n")


def test_second_signal_ends_the_delay(server_factory, site):
    s = server_factory(site, "--health-path", "/healthz", "--shutdown-delay", "600")
    s.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while "--shutdown-delay" not in s.log():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(10) == 0


def test_health_with_workers(server_factory, site):
    s = server_factory(site, "--health-path", "/healthz", "--workers", "2",
                       "--shutdown-delay", "2", "--access-log", "off")
    assert exchange(s.port, b"GET /healthz HTTP/1.0\r\n\r\n").endswith(b"ok\n")
    s.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 2
    while not exchange(s.port, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 503"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert s.proc.wait(10) == 0


# -- bad options -------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--trusted-proxies", "10.0.0.1/8"], "has host bits set; the network is 10.0.0.0/8"),
    (["--trusted-proxies", "proxy.example"], "not an IP address or CIDR network"),
    (["--health-path", "healthz"], "expected a plain URL path such as /healthz"),
    (["--health-path", "/a/../b"], "expected a plain URL path"),
    (["--shutdown-delay", "-1"], "must be 0 to 3600 seconds"),
    (["--real-ip-header", "x-real-ip"], "invalid choice"),
    (["--proxy-protocol", "--arch", "mt"], "--proxy-protocol needs --arch amped or sped"),
    (["--health-path", "/h", "--arch", "mp"], "--health-path needs --arch amped or sped"),
])
def test_bad_options_fail_fast(site, tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(site), "--port", "0",
                        *args], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_config_file_keys(server_factory, site, tmp_path):
    config = tmp_path / "flashplug.toml"
    config.write_text('proxy_protocol = true\ntrusted_proxies = ["10.0.0.0/8", "127.0.0.1"]\n'
                      'real_ip_header = "x-forwarded-for"\nhealth_path = "/healthz"\n'
                      'shutdown_delay = 0.5\n')
    s = server_factory(site, "--config", config)
    r = exchange(s.port, b"PROXY TCP4 10.1.2.3 10.0.0.1 1 80\r\nGET /healthz HTTP/1.0\r\n\r\n")
    assert r.endswith(b"ok\n")

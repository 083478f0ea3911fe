"""HTTPS end to end: a real server with certificates made by trustme.

Keys are made per test (never committed); clients verify against the test
CA, as a browser would against a public one.
"""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest
import requests

from tests.procfs import rss_kib
from tests.tls_certs import PAYLOAD, ca, site, write_pair  # noqa: F401 - fixtures


def https(server):
    return f"https://localhost:{server.port}"


def client_context(ca_path, **kw):
    ctx = ssl.create_default_context(cafile=str(ca_path))
    for name, value in kw.items():
        setattr(ctx, name, value)
    return ctx


def tls_connect(server, ctx, name="localhost", timeout=5):
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=name)


def read_response(sock):
    """One HTTP/1.1 response with a Content-Length: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:")][0])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return head, body


def test_requests_verified_against_the_ca(server_factory, site):
    root, cert, key, ca_path = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    assert "on https://127.0.0.1:" in s.log()
    with requests.Session() as session:
        r = session.get(https(s) + "/", verify=str(ca_path))
        assert r.status_code == 200 and r.content == b"<h1>secure</h1>\n"
        big = session.get(https(s) + "/big.bin", verify=str(ca_path))
        assert big.content == PAYLOAD
        ranged = session.get(https(s) + "/big.bin", verify=str(ca_path),
                             headers={"Range": "bytes=1000-2999"})
        assert ranged.status_code == 206 and ranged.content == PAYLOAD[1000:3000]
        listing = session.get(https(s) + "/sub/", verify=str(ca_path))
        assert listing.status_code == 200 and "a.txt" in listing.text
        assert "Strict-Transport-Security" not in r.headers   # off by default
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(https(s) + "/")          # not a CA the system trusts


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_curl_alpn_and_tls13(server_factory, site, tmp_path):
    root, cert, key, ca_path = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    out = tmp_path / "big.out"
    # --http1.1: ALPN then offers http/1.1 alone (tests/integration/test_h2.py
    # has curl's default, h2).
    proc = subprocess.run(["curl", "-sS", "-v", "--http1.1", "--cacert", str(ca_path), "-o",
                           str(out), https(s) + "/big.bin"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == PAYLOAD
    assert "ALPN: server accepted http/1.1" in proc.stderr or \
        "ALPN, server accepted to use http/1.1" in proc.stderr
    assert "TLSv1.3" in proc.stderr


def test_tls12_ciphers_have_forward_secrecy_and_aead(server_factory, site):
    root, cert, key, ca_path = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    ctx = client_context(ca_path, maximum_version=ssl.TLSVersion.TLSv1_2)
    with tls_connect(s, ctx) as sock:
        name, version, _ = sock.cipher()
        assert version == "TLSv1.2" and name.startswith("ECDHE-") and \
            ("GCM" in name or "CHACHA20" in name)
        assert sock.compression() is None
        assert sock.selected_alpn_protocol() is None  # the client offered none
    # A client that offers only CBC suites with RSA key exchange is refused.
    weak = client_context(ca_path, maximum_version=ssl.TLSVersion.TLSv1_2)
    weak.set_ciphers("AES128-SHA:AES256-SHA")
    with pytest.raises(ssl.SSLError):
        tls_connect(s, weak).close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_old_protocols_refused_cleanly(server_factory, site):
    root, cert, key, ca_path = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    try:
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_connect(s, old).close()
    if shutil.which("openssl"):
        proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{s.port}",
                               "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"],
                              input="", capture_output=True, text=True, timeout=20)
        assert proc.returncode != 0
        assert "Cipher is (NONE)" in proc.stdout or "alert" in proc.stderr
    r = requests.get(https(s) + "/", verify=str(ca_path))   # still serving
    assert r.status_code == 200
    assert "Traceback" not in s.log()


def test_plain_http_to_the_tls_port_gets_nginx_400(server_factory, site):
    root, cert, key, ca_path = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    with s.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"The plain HTTP request was sent to HTTPS port" in data
    with s.connect() as sock:             # garbage that is neither: closed
        sock.sendall(b"\x00\x01\x02junk")
        assert sock.recv(100) == b""
    assert requests.get(https(s) + "/", verify=str(ca_path)).status_code == 200
    assert "Traceback" not in s.log()


def test_session_resumption(server_factory, site):
    root, cert, key, ca_path = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    ctx = client_context(ca_path)
    with tls_connect(s, ctx) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        read_response(sock)               # TLS 1.3 tickets come after the handshake
        session = sock.session
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as again:
        again.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head, body = read_response(again)
        assert again.session_reused and body == b"<h1>secure</h1>\n"


def test_certificates_by_sni(server_factory, site, ca, tmp_path):
    root, cert, key, ca_path = site
    a_cert, a_key = write_pair(ca, tmp_path / "certs", "a.test", stem="a")
    b_cert, b_key = write_pair(ca, tmp_path / "certs", "*.b.test", stem="b")
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key, "--tls-cert", a_cert,
                       "--tls-key", a_key, "--tls-cert", b_cert, "--tls-key", b_key)
    ctx = client_context(ca_path)

    def names_for(server_name, context=ctx):
        with tls_connect(s, context, name=server_name) as sock:
            return [v for k, v in sock.getpeercert()["subjectAltName"]]
    assert names_for("a.test") == ["a.test"]
    assert names_for("A.Test") == ["a.test"]
    assert names_for("www.b.test") == ["*.b.test"]
    assert "localhost" in names_for("localhost")
    # No server name at all (an IP literal sends none): the first certificate.
    anyone = client_context(ca_path, check_hostname=False)
    assert "localhost" in names_for(None, anyone)
    # A name nobody has: the default certificate, which then fails the check.
    with pytest.raises(ssl.SSLCertVerificationError):
        names_for("other.test")
    if shutil.which("openssl"):
        proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{s.port}",
                               "-servername", "a.test", "-CAfile", str(ca_path)],
                              input="", capture_output=True, text=True, timeout=20)
        assert "DNS:a.test" in subprocess.run(
            ["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=proc.stdout,
            capture_output=True, text=True).stdout


def test_sighup_reloads_certificates_under_load_without_failures(server_factory, site, ca,
                                                                 tmp_path):
    root, cert, key, ca_path = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key, "--access-log", "off")
    ctx = client_context(ca_path)

    def serial():
        with tls_connect(s, ctx) as sock:
            return sock.getpeercert()["serialNumber"]
    before = serial()
    failures, done = [], threading.Event()
    counts = [0, 0]

    def new_connections(i):
        while not done.is_set():
            try:
                r = requests.get(https(s) + "/index.html", verify=str(ca_path), timeout=10)
                assert r.status_code == 200 and r.content == b"<h1>secure</h1>\n"
                counts[i] += 1
            except Exception as e:  # noqa: BLE001 - collected, asserted below
                failures.append(repr(e))

    kept = tls_connect(s, ctx)            # opened before the reload, used after
    workers = [threading.Thread(target=new_connections, args=(i,)) for i in range(2)]
    for w in workers:
        w.start()
    try:
        time.sleep(0.5)
        write_pair(ca, tmp_path / "certs", "localhost", "127.0.0.1")  # new files, same paths
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while serial() == before:
            assert time.monotonic() < deadline, s.log()
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        done.set()
        for w in workers:
            w.join()
    kept.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert read_response(kept)[1] == b"<h1>secure</h1>\n"
    kept.close()
    assert not failures, failures[:3]
    assert min(counts) > 0
    assert "reloading the TLS certificates" in s.log()
    assert "TLS certificates reloaded" in s.log()


def test_a_broken_reload_keeps_the_old_certificates(server_factory, site):
    root, cert, key, ca_path = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    assert requests.get(https(s) + "/", verify=str(ca_path)).status_code == 200
    key.write_bytes(b"not a key\n")
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "not reloaded" not in s.log():
        assert time.monotonic() < deadline, s.log()
        time.sleep(0.1)
    assert requests.get(https(s) + "/", verify=str(ca_path)).status_code == 200
    assert "Traceback" not in s.log()


def test_sighup_under_a_master_reloads_certificates_with_the_configuration(
        server_factory, site, ca, tmp_path):
    """With a master, SIGHUP reloads the whole configuration: the new
    workers read the certificates again; a broken key keeps the old
    workers and their certificates."""
    root, cert, key, ca_path = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key, "--workers", "2")
    ctx = client_context(ca_path)

    def serials():
        found = set()
        for _ in range(6):
            with tls_connect(s, ctx) as sock:
                found.add(sock.getpeercert()["serialNumber"])
        return found
    before = serials()
    write_pair(ca, tmp_path / "certs", "localhost", "127.0.0.1")  # new files, same paths
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while "configuration reloaded" not in s.log():
        assert time.monotonic() < deadline, s.log()
        time.sleep(0.1)
    after = serials()
    assert len(after) == 1 and not after & before
    key.write_bytes(b"not a key\n")
    s.proc.send_signal(signal.SIGHUP)
    while "configuration not reloaded" not in s.log():
        assert time.monotonic() < deadline, s.log()
        time.sleep(0.1)
    assert serials() == after
    assert "Traceback" not in s.log()


def test_stalled_handshake_is_closed_after_the_header_timeout(server_factory, site):
    root, cert, key, ca_path = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key, "--header-timeout", "1")
    with s.connect(timeout=10) as silent, s.connect(timeout=10) as partial:
        partial.sendall(b"\x16\x03\x01\x02\x00\x01")   # the start of a ClientHello
        assert silent.recv(100) == b""
        assert partial.recv(100) == b""
    assert requests.get(https(s) + "/", verify=str(ca_path)).status_code == 200


def test_slow_reader_of_a_big_file_holds_little_memory(server_factory, site):
    root, cert, key, ca_path = site
    size = 64 * 1024 * 1024
    with open(root / "huge.bin", "wb") as f:
        f.truncate(size)                   # sparse: no disk needed, pages are zeros
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    requests.get(https(s) + "/", verify=str(ca_path))   # warm up the server
    base = rss_kib(s.proc.pid)
    ctx = client_context(ca_path)
    readers = []
    for _ in range(4):
        sock = tls_connect(s, ctx, timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.recv(1024)
        readers.append(sock)
    time.sleep(1.5)                        # the server sends until the sockets are full
    grown = rss_kib(s.proc.pid) - base
    # Four stalled 64 MiB downloads: at most a send's worth of ciphertext
    # each (256 KiB) plus buffers, nowhere near a file.
    assert grown < 16 * 1024, f"server grew by {grown} KiB"
    got = 0
    for _ in range(200):                  # now read a little: it still flows
        got += len(readers[0].recv(65536))
    assert got > 1024 * 1024
    for sock in readers:
        sock.close()


def test_redirect_port_and_hsts(server_factory, site):
    root, cert, key, ca_path = site
    from tests.conftest import free_port
    plain = free_port()
    (root / ".well-known" / "acme-challenge").mkdir(parents=True)
    (root / ".well-known" / "acme-challenge" / "tok123").write_bytes(b"tok123.thumb")
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key, "--redirect-http", plain,
                       "--hsts", "31536000")
    r = requests.get(f"http://127.0.0.1:{plain}/sub/a.txt?x=1&y=%20", allow_redirects=False)
    assert r.status_code == 308
    assert r.headers["Location"] == f"https://127.0.0.1:{s.port}/sub/a.txt?x=1&y=%20"
    assert "Strict-Transport-Security" not in r.headers        # never over plain HTTP
    r = requests.post(f"http://localhost:{plain}/form", data=b"x=1", allow_redirects=False)
    assert r.status_code == 308
    assert r.headers["Location"] == f"https://localhost:{s.port}/form"
    # The same request twice (a remembered head) is still redirected.
    for _ in range(2):
        r = requests.get(f"http://127.0.0.1:{plain}/index.html", allow_redirects=False)
        assert r.status_code == 308
    followed = requests.get(f"http://localhost:{plain}/index.html", verify=str(ca_path))
    assert followed.url == https(s) + "/index.html"
    assert followed.content == b"<h1>secure</h1>\n"
    assert followed.headers["Strict-Transport-Security"] == "max-age=31536000"
    challenge = requests.get(f"http://127.0.0.1:{plain}/.well-known/acme-challenge/tok123",
                             allow_redirects=False)
    assert challenge.status_code == 200 and challenge.content == b"tok123.thumb"
    assert "Strict-Transport-Security" not in challenge.headers


CGI_SCRIPT = """#!/bin/sh
printf 'Content-Type: text/plain\\n\\n'
printf '%s %s %s\\n' "$HTTPS" "$REQUEST_SCHEME" "$SERVER_PORT"
"""


def test_cgi_sees_https_and_status_works(server_factory, site):
    root, cert, key, ca_path = site
    (root / "cgi-bin").mkdir()
    script = root / "cgi-bin" / "env.sh"
    script.write_text(CGI_SCRIPT)
    os.chmod(script, 0o755)
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key,
                       "--plugins", "cgi,autoindex,status")
    r = requests.get(https(s) + "/cgi-bin/env.sh", verify=str(ca_path))
    assert r.text == f"on https {s.port}\n"
    status = requests.get(https(s) + "/server-status", verify=str(ca_path),
                          headers={"Accept": "application/json"})
    assert status.status_code == 200 and "status_counts" in status.json()


def test_key_open_to_others_gets_a_warning(server_factory, site):
    root, cert, key, ca_path = site
    os.chmod(key, 0o644)
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    assert "permissions 0644 let group or others read the private key; chmod 600 it" in s.log()


@pytest.mark.parametrize("extra, message", [
    (("--arch", "mt"), "--tls needs --arch amped or sped"),
    (("--tls-key", "{key}"), "each --tls-cert needs its --tls-key"),
    (("--tls-cert", "missing.pem", "--tls-key", "{key}"), "--tls-cert missing.pem: no such file"),
])
def test_bad_tls_options_are_one_line(site, tmp_path, extra, message):
    root, cert, key, ca_path = site
    import sys
    args = [a.format(key=key) for a in extra]
    proc = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(root), "--port", "0",
                           "--tls-cert", str(cert), "--tls-key", str(key), *args],
                          capture_output=True, text=True, timeout=30, cwd=str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith("flashplug: error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_wrong_key_and_redirect_without_tls(site, ca, tmp_path):
    import sys
    root, cert, key, ca_path = site
    from cryptography.hazmat.primitives import serialization
    _, other_key = write_pair(ca, tmp_path / "certs", "x.test", stem="x")
    locked = tmp_path / "certs" / "locked.key"
    locked.write_bytes(serialization.load_pem_private_key(key.read_bytes(), None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    for args, message in (
            (["--tls-cert", str(cert), "--tls-key", str(other_key)], "is not the key of"),
            (["--tls-cert", str(cert), "--tls-key", str(locked)], "is encrypted with a pass"),
            (["--redirect-http", "8081"], "--redirect-http needs HTTPS")):
        proc = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(root), "--port",
                               "0", *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_config_file_keys_relative_to_the_file_and_sped(server_factory, site, tmp_path):
    root, cert, key, ca_path = site
    conf = tmp_path / "certs" / "site.toml"
    conf.write_text('tls_cert = "site.pem"\ntls_key = ["site.key"]\nhsts = 60\n'
                    'arch = "sped"\n')
    s = server_factory(root, "--config", conf)
    r = requests.get(https(s) + "/big.bin", verify=str(ca_path))
    assert r.content == PAYLOAD and r.headers["Strict-Transport-Security"] == "max-age=60"


def test_redirect_without_host_uses_the_local_address(server_factory, site):
    root, cert, key, ca_path = site
    from tests.conftest import free_port
    plain = free_port()
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key, "--redirect-http", plain)
    with socket.create_connection(("127.0.0.1", plain), timeout=5) as sock:
        sock.sendall(b"GET /x HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 308 Permanent Redirect\r\n")
    assert f"\r\nLocation: https://127.0.0.1:{s.port}/x\r\n".encode() in data
    # An absolute-form target: its authority is the request's host, and its
    # path and query are kept (RFC 9112 §3.2.2), whatever Host says.
    with socket.create_connection(("127.0.0.1", plain), timeout=5) as sock:
        sock.sendall(b"GET http://Example.ORG:8080/a?b=1 HTTP/1.1\r\nHost: other.test\r\n"
                     b"Connection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert f"\r\nLocation: https://example.org:{s.port}/a?b=1\r\n".encode() in data

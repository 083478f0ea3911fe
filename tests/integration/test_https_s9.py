"""HTTPS edge cases, probed as the RFCs and other servers' bug reports
would: ALPN with nothing in common, SNI spellings, hellos split over many
segments, handshakes that are not TLS at all, clients that vanish
mid-response, the redirect port's Host handling.  Compared with nginx
(what each answer mirrors is said in the test)."""
import shutil
import socket
import ssl
import struct
import subprocess
import time

import pytest

from flashplug.tls import Certificates
from tests.tls_certs import ca, site, write_pair  # noqa: F401 - fixtures


def hello_bytes(server_name, alpn=None):
    """A real ClientHello (a Python client's, TLS 1.2 and 1.3) as bytes, and
    the client that made it, to finish the handshake by hand."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read(), client, incoming, outgoing


def read_all(sock):
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


NO_APPLICATION_PROTOCOL = b"\x15\x03\x03\x00\x02\x02\x78"


@pytest.fixture
def https_server(server_factory, site):
    root, cert, key, ca_path = site
    return server_factory(root, "--tls-cert", cert, "--tls-key", key), ca_path


def test_alpn_with_no_common_protocol_gets_the_alert(https_server):
    """RFC 7301 §3.2: a server that supports none of the client's protocols
    SHALL answer with a fatal no_application_protocol alert (nginx does);
    OpenSSL through Python would have gone on with no protocol."""
    s, ca_path = https_server
    ctx = ssl.create_default_context(cafile=str(ca_path))
    ctx.set_alpn_protocols(["spdy/3", "foo"])
    with pytest.raises(ssl.SSLError, match="(?i)no.application.protocol"):
        ctx.wrap_socket(s.connect(), server_hostname="localhost")
    # The same ClientHello in 7-byte segments: the alert still comes, in
    # place of the ServerHello.
    hello, *_ = hello_bytes("localhost", ["foo"])
    with s.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(hello), 7):
            sock.sendall(hello[i:i + 7])
            time.sleep(0.002)
        assert read_all(sock) == NO_APPLICATION_PROTOCOL
    assert "Traceback" not in s.log()


@pytest.mark.parametrize("alpn, chosen", [
    (None, None),                           # no ALPN at all: HTTP/1.1, as ever
    (["http/1.0"], "http/1.0"),             # curl --http1.0; nginx offers it too
    (["foo", "http/1.1"], "http/1.1"),      # one in common is enough
    (["h2", "http/1.1"], "h2"),
])
def test_alpn_choices_that_work(https_server, alpn, chosen):
    s, ca_path = https_server
    ctx = ssl.create_default_context(cafile=str(ca_path))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with ctx.wrap_socket(s.connect(), server_hostname="localhost") as sock:
        assert sock.selected_alpn_protocol() == chosen
        if chosen != "h2":
            sock.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            assert read_all(sock).startswith(b"HTTP/1.1 200 OK\r\n")


def test_hello_split_over_many_segments_and_not_tls_at_all(https_server):
    """A ClientHello in 7-byte TCP segments finishes its handshake; an
    SSLv2-style hello, random bytes and a broken record are closed without
    a response or a traceback (nginx: the same, or an alert)."""
    s, ca_path = https_server
    hello, client, incoming, outgoing = hello_bytes("localhost", ["http/1.1"])
    with s.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(hello), 7):
            sock.sendall(hello[i:i + 7])
            time.sleep(0.002)
        while True:
            incoming.write(sock.recv(65536))
            try:
                client.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
        assert client.selected_alpn_protocol() == "http/1.1"
    sslv2 = bytes.fromhex("802e010301001500000010") + bytes.fromhex("0300800100800700c006004002"
                                                                    "0080040080") + bytes(16)
    for junk in (sslv2, bytes(range(1, 256)), b"\x16\x03\x01\x00\x20" + bytes(32)):
        with s.connect() as sock:
            sock.sendall(junk)
            answer = read_all(sock)
        assert answer == b"" or answer.startswith(b"\x15\x03"), answer   # nothing, or an alert
    assert "Traceback" not in s.log()


def test_sni_spellings_choose_the_certificate_as_nginx_does(server_factory, site, ca, tmp_path):
    """Case and a trailing dot do not matter (RFC 6066 §3, DNS names); a
    wildcard covers one label only (RFC 6125 §6.4.3), never an empty one;
    an IP literal (not allowed in SNI) or an unknown name gets the default
    certificate, as nginx's default server."""
    root, cert, key, ca_path = site
    b_cert, b_key = write_pair(ca, tmp_path / "certs", "b.test", stem="b")
    w_cert, w_key = write_pair(ca, tmp_path / "certs", "*.w.test", stem="w")
    certs = Certificates([(str(cert), str(key), ()), (str(b_cert), str(b_key), ()),
                          (str(w_cert), str(w_key), ())])
    default, b, w = certs.contexts
    for name, expected in (("B.TEST", b), ("b.test.", b), ("X.w.test", w), ("x.w.test.", w),
                           ("y.x.w.test", default), ("w.test", default), (".w.test", default),
                           ("127.0.0.1", default), ("nope.test", default), (None, default)):
        assert certs.context_for(name) is expected, name
    # The same through a real handshake (what the client sees).
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key, "--tls-cert", b_cert,
                       "--tls-key", b_key, "--tls-cert", w_cert, "--tls-key", w_key)
    ctx = ssl.create_default_context(cafile=str(ca_path))
    ctx.check_hostname = False

    def names(server_name):
        with ctx.wrap_socket(s.connect(), server_hostname=server_name) as sock:
            return {v for _, v in sock.getpeercert()["subjectAltName"]}
    assert names("B.Test") == names("b.test.") == {"b.test"}
    assert names("a.w.test") == {"*.w.test"}
    assert "localhost" in names("a.b.w.test") and "localhost" in names("unknown.test")


@pytest.fixture
def two_certificates(server_factory, site, ca, tmp_path):
    """A server with the site's certificate (localhost, 127.0.0.1, the
    default) and one for b.test and *.w.test."""
    root, cert, key, ca_path = site
    b_cert, b_key = write_pair(ca, tmp_path / "certs", "b.test", "*.w.test", stem="b")
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key,
                       "--tls-cert", b_cert, "--tls-key", b_key)
    return s, ca_path


def status_over(s, ca_path, server_name, host, times=1):
    """The statuses of ``times`` GETs with Host ``host``, one keep-alive
    connection whose SNI is ``server_name`` (a 421 closes it)."""
    ctx = ssl.create_default_context(cafile=str(ca_path))
    statuses = []
    with ctx.wrap_socket(s.connect(), server_hostname=server_name) as sock:
        for _ in range(times):
            sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return statuses
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += sock.recv(65536)
            statuses.append(int(head.split(b" ")[1]))
    return statuses


def test_a_host_another_certificate_covers_gets_421(two_certificates):
    """RFC 9110 §7.4: a request for an https origin must come over a
    connection whose certificate is valid for it; else 421 (§15.5.20), so
    that the client opens a connection for that name.  Asked again and
    again (the cached paths remember heads), the answer stays 421; a name
    the connection's certificate covers, or one no certificate covers (an
    IP address, an unknown name, as nginx's default server), is served."""
    s, ca_path = two_certificates
    assert status_over(s, ca_path, "b.test", "b.test", times=4) == [200] * 4
    assert status_over(s, ca_path, "b.test", "X.W.test.", times=2) == [200] * 2
    for _ in range(3):
        assert status_over(s, ca_path, "localhost", "b.test") == [421]
        assert status_over(s, ca_path, "localhost", "a.w.test") == [421]
    assert status_over(s, ca_path, "localhost", "localhost", times=3) == [200] * 3
    for host in ("127.0.0.1", "unknown.test", "a.b.w.test"):
        assert status_over(s, ca_path, "localhost", host, times=2) == [200] * 2
    assert status_over(s, ca_path, "b.test", "localhost") == [421]


def test_h2_connection_reuse_for_another_certificate_gets_421_on_the_stream(two_certificates):
    """RFC 9113 §9.1.2: a client that reused an HTTP/2 connection for a
    name its certificate does not cover gets 421 on that stream, and the
    connection goes on for the names it does cover."""
    from tests.h2_client import H2Client
    s, ca_path = two_certificates
    client = H2Client(s.port, tls_ca=ca_path)      # SNI localhost
    try:
        for _ in range(2):
            status, _, body = client.get("/index.html", authority="b.test")
            assert status == 421 and b"Misdirected" in body
            assert client.get("/index.html", authority="localhost")[0] == 200
            assert client.get("/index.html", authority="127.0.0.1")[0] == 200
    finally:
        client.close()


def test_one_certificate_never_misdirects(https_server):
    """With one certificate every name gets it: nothing to check, any Host
    is served (a name no certificate covers), as before."""
    s, ca_path = https_server
    assert status_over(s, ca_path, "localhost", "b.test", times=3) == [200] * 3


def test_renegotiation_refused_no_early_data_and_vanishing_clients(https_server, site):
    """A TLS 1.2 renegotiation gets the no_renegotiation alert (nginx:
    the same); session tickets allow no 0-RTT data (max_early_data 0, so
    no replayable request, RFC 8446 §8); a client that goes away in the
    middle of a big response, with no close_notify or with a reset, leaves
    no traceback and the server serving."""
    s, ca_path = https_server
    if shutil.which("openssl"):
        proc = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{s.port}", "-tls1_2",
             "-servername", "localhost", "-CAfile", str(ca_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = proc.communicate(b"R\n", timeout=10)     # "R": renegotiate
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        assert b"RENEGOTIATING" in out and b"no renegotiation" in out, out[-2000:]
        proc = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{s.port}", "-servername",
             "localhost", "-CAfile", str(ca_path), "-ign_eof"],
            input=b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            capture_output=True, timeout=10)
        assert b"HTTP/1.1 200 OK" in proc.stdout
        assert b"Max Early Data: 0" in proc.stdout and b"Max Early Data: 1" not in proc.stdout
    ctx = ssl.create_default_context(cafile=str(ca_path))
    for reset in (False, True):
        raw = s.connect()
        sock = ctx.wrap_socket(raw, server_hostname="localhost")
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert sock.recv(65536)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        socket.socket(fileno=sock.detach()).close()      # no close_notify
    assert status_over(s, ca_path, "localhost", "localhost") == [200]
    time.sleep(0.5)
    assert "Traceback" not in s.log()


def test_hsts_on_every_https_answer_never_on_plain_http(server_factory, site):
    """--hsts is sent on HTTPS error responses too (nginx's
    ``add_header ... always``), over HTTP/1.1 and HTTP/2, and never over
    plain HTTP (RFC 6797 §7.2): not on the redirect port's 308s, 400s and
    404s, nor on the 400 for plain HTTP sent to the HTTPS port."""
    from tests.conftest import free_port
    from tests.h2_client import H2Client
    root, cert, key, ca_path = site
    plain = free_port()
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key, "--redirect-http", plain,
                       "--hsts", "600")
    hsts = b"\r\nStrict-Transport-Security: max-age=600\r\n"
    ctx = ssl.create_default_context(cafile=str(ca_path))
    for request, status in ((b"GET /missing HTTP/1.1\r\nHost: localhost\r\n", b"404"),
                            (b"GET / HTTP/1.1\r\n", b"400"),                 # no Host
                            (b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n", b"200")):
        with ctx.wrap_socket(s.connect(), server_hostname="localhost") as sock:
            sock.sendall(request + b"Connection: close\r\n\r\n")
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 " + status) and hsts in answer, answer[:300]
    client = H2Client(s.port, tls_ca=ca_path)
    try:
        status, headers, _ = client.get("/missing")
        assert status == 404 and headers[b"strict-transport-security"] == b"max-age=600"
    finally:
        client.close()
    for port, request in ((plain, b"GET /x HTTP/1.1\r\nHost: localhost\r\n"),
                          (plain, b"GET /x HTTP/1.1\r\n"),
                          (plain, b"GET /.well-known/acme-challenge/none HTTP/1.1\r\n"
                                  b"Host: localhost\r\n"),
                          (s.port, b"GET /x HTTP/1.1\r\nHost: localhost\r\n")):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request + b"Connection: close\r\n\r\n")
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 "), answer
        assert b"strict-transport-security" not in answer.lower()


REDIRECTS = [
    # Path and query kept, byte for byte; the Host's port replaced by the HTTPS port.
    (b"GET /a%20b/c?x=1&y=%2F HTTP/1.1\r\nHost: Example.ORG:8080",
     "https://example.org:{p}/a%20b/c?x=1&y=%2F"),
    (b"GET /a HTTP/1.1\r\nHost: [::1]:8080", "https://[::1]:{p}/a"),
    (b"GET /a HTTP/1.1\r\nHost: example.org.", "https://example.org:{p}/a"),
    (b"GET /a HTTP/1.0", "https://127.0.0.1:{p}/a"),              # no Host: the address
    (b"GET http://x.test:81/p?q HTTP/1.1\r\nHost: y.test", "https://x.test:{p}/p?q"),
    (b"GET //evil.test/x HTTP/1.1\r\nHost: a.test", "https://a.test:{p}//evil.test/x"),
    (b"HEAD /h HTTP/1.1\r\nHost: a.test", "https://a.test:{p}/h"),
]
BAD_HOSTS = [b"a.test\rLocation: https://evil.test/", b"a.test\r\n Location: https://evil.test/",
             b"evil.test/x?", b"evil.test\\@a.test", b"user@evil.test", b"a b", b"a.test\x00"]


def test_redirect_port_locations_and_bad_hosts(server_factory, site):
    """308 to the same path and query on the HTTPS port, for each way a
    request names its host (RFC 9110 §15.4.9, RFC 9112 §3.2); a HEAD's has
    no body.  A Host with CR, LF, NUL or characters no host has gets 400
    and no Location: nothing of it reaches a header (nginx: 400 too)."""
    from tests.conftest import free_port
    root, cert, key, ca_path = site
    plain = free_port()
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key, "--redirect-http", plain)

    def ask(head):
        with socket.create_connection(("127.0.0.1", plain), timeout=5) as sock:
            sock.sendall(head + b"\r\nConnection: close\r\n\r\n")
            return read_all(sock)
    for request_head, location in REDIRECTS:
        head, _, body = ask(request_head).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 308 Permanent Redirect\r\n"), (request_head, head)
        assert ("\r\nLocation: " + location.format(p=s.port) + "\r\n").encode() \
            in head + b"\r\n", head
        if request_head.startswith(b"HEAD"):
            assert body == b""
    for host in BAD_HOSTS:
        answer = ask(b"GET /a HTTP/1.1\r\nHost: " + host)
        assert answer.startswith(b"HTTP/1.1 400 "), (host, answer)
        assert b"location" not in answer.lower() and b"evil" not in answer


def test_a_server_name_that_is_not_ascii_leaves_no_traceback(two_certificates):
    """SNI must be ASCII (A-labels, RFC 6066 §3); raw UTF-8 fails CPython's
    decoding before the certificate is chosen.  The handshake ends with an
    alert and the log shows no traceback (a client could repeat it at
    will); the server goes on."""
    s, ca_path = two_certificates
    hello, *_ = hello_bytes("xx.test")
    assert hello.count(b"xx.test") == 1
    for _ in range(3):
        with s.connect() as sock:
            sock.sendall(hello.replace(b"xx.test", "é.test".encode()))
            answer = read_all(sock)
        assert answer == b"" or answer.startswith(b"\x15\x03"), answer
    assert status_over(s, ca_path, "b.test", "b.test") == [200]
    time.sleep(0.3)
    log = s.log()
    assert "Traceback" not in log and "Exception ignored" not in log, log


def test_a_challenge_hello_in_two_segments_still_gets_the_challenge_certificate(site, ca,
                                                                              tmp_path):
    """TLS-ALPN-01 (RFC 8737): the CA's ClientHello names the server and
    acme-tls/1.  A long one (a post-quantum key share: Go's, so the CA's
    too, is over 1.2 KB) comes in two TCP segments; the certificate is
    chosen once it is whole, not from the first segment alone."""
    from flashplug.transport import TLSTransport
    root, cert, key, ca_path = site
    challenge, challenge_key = write_pair(ca, tmp_path / "certs", "a.test", stem="challenge")
    certs = Certificates([(str(cert), str(key), ()),
                          (str(challenge), str(challenge_key), (), "acme-tls/1")])
    hello, client, incoming, outgoing = hello_bytes("a.test", ["acme-tls/1"])
    server_sock, client_sock = socket.socketpair()
    server_sock.setblocking(False)
    transport = TLSTransport(server_sock, certs)
    buf = bytearray(65536)
    half = len(hello) // 2
    for piece in (hello[:half], hello[half:]):
        client_sock.sendall(piece)
        with pytest.raises(BlockingIOError):
            transport.recv_into(buf)
    client_sock.settimeout(5)
    while True:
        incoming.write(client_sock.recv(65536))
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            pass
    assert client.selected_alpn_protocol() == "acme-tls/1"
    assert client.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(
        challenge.read_text().split("-----END CERTIFICATE-----")[0]
        + "-----END CERTIFICATE-----\n")
    transport.close()
    client_sock.close()


def test_acme_requests_refused_for_their_nonce_are_retried():
    """RFC 8555 §6.5: a request the CA refuses with badNonce is retried
    with a fresh nonce.  certbot's library tries twice; pebble refuses 5%
    of good nonces, so a whole order failed now and then (a retry in 10
    minutes).  Here the CA refuses three times, then answers."""
    pytest.importorskip("acme", reason="pip install 'flashplug[acme]'")
    from acme import messages
    from flashplug_plugins.acme.client import Network

    answers = []

    def post_once(*args, **kwargs):
        answers.append(args)
        if len(answers) <= 3:
            raise messages.Error(typ="urn:ietf:params:acme:error:badNonce")
        return "answered"
    net = Network.__new__(Network)
    net._post_once = post_once
    assert net.post("https://ca.test/finalize", b"{}") == "answered" and len(answers) == 4
    answers.clear()

    def refused(*args, **kwargs):
        answers.append(args)
        raise messages.Error(typ="urn:ietf:params:acme:error:rejectedIdentifier")
    net._post_once = refused
    with pytest.raises(messages.Error):
        net.post("https://ca.test/new-order", b"{}")
    assert len(answers) == 1       # other errors are not retried

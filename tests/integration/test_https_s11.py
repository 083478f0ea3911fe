"""HTTPS: the end of a client's TLS stream (session 11)."""
import re
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from tests.tls_certs import ca, site  # noqa: F401 - fixtures


def tls_client(sock, ca_path):
    """A TLS 1.3 client over memory BIOs on a blocking socket, so that its
    close_notify can go without a FIN after it: ``(tls, outgoing, pump)``,
    ``pump()`` sending what it wrote and reading one segment into it."""
    ctx = ssl.create_default_context(cafile=str(ca_path))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")

    def pump():
        if outgoing.pending:
            sock.sendall(outgoing.read())
        data = sock.recv(65536)
        incoming.write(data)
        return data
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pump()
    if outgoing.pending:
        sock.sendall(outgoing.read())
    return tls, outgoing, pump


def test_close_notify_ends_the_connection_without_waiting_for_the_fin(server_factory, site):
    """A client's close_notify ends its stream (RFC 8446 §6.1) as a FIN
    does: an idle keep-alive connection is closed at once, as nginx
    closes it, not when the client's FIN or the keep-alive timeout
    comes (``_ssl`` reads a close_notify as 0 bytes, not as an error)."""
    root, cert, key, ca_path = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key,
                       "--keepalive-timeout", "30")
    with s.connect() as sock:
        sock.settimeout(10)
        tls, outgoing, pump = tls_client(sock, ca_path)
        tls.write(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
        response = b""
        while b"\r\n\r\n" not in response:
            pump()
            try:
                response += tls.read(65536)
            except ssl.SSLWantReadError:
                pass
        assert response.startswith(b"HTTP/1.1 200 ")
        try:
            tls.unwrap()          # writes the close_notify, then wants the server's
        except ssl.SSLWantReadError:
            pass
        sock.sendall(outgoing.read())
        start = time.monotonic()
        sock.settimeout(5)
        try:
            while sock.recv(65536):
                pass              # the rest of the response, if any
        except socket.timeout:
            raise AssertionError("the server still holds the connection open "
                                 "after the client's close_notify") from None
        assert time.monotonic() - start < 2
    assert "Traceback" not in s.log()


def negotiated(port, *options):
    """The cipher suite ``openssl s_client`` (with ``options``) gets."""
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *options],
                         input="", capture_output=True, text=True, timeout=30).stdout
    return re.search(r"Cipher is (\S+)", out).group(1)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_the_client_order_of_cipher_suites_is_honoured(server_factory, site):
    """Mozilla's "intermediate" profile, as nginx by default
    (``ssl_prefer_server_ciphers off``): every suite on offer is strong,
    so the client's first choice is taken, in TLS 1.3 and in TLS 1.2.
    (Python's server contexts prefer their own order unless told.)"""
    root, cert, key, _ = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key)
    assert negotiated(s.port, "-tls1_3", "-ciphersuites",
                      "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384") == "TLS_AES_128_GCM_SHA256"
    assert negotiated(s.port, "-tls1_3", "-ciphersuites",
                      "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256") == "TLS_AES_256_GCM_SHA384"
    first_256 = ("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                 "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    assert negotiated(s.port, "-tls1_2", "-cipher", first_256).endswith("AES256-GCM-SHA384")

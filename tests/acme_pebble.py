"""A real ACME CA for the acme plugin's tests: Debian's ``pebble``, on
loopback, with a tiny DNS server of our own so that pebble's checks of
``*.test`` names reach 127.0.0.1 (and ``fail.test`` does not resolve).

``pebble_factory(http_port, tls_port)`` starts a pebble whose HTTP-01
and TLS-ALPN-01 checks go to those flashplug ports; its HTTPS certificate
comes from trustme (Debian's package ships none), and the test CA's file
is what ``--acme-ca-bundle`` gets.
"""
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest
import requests

from tests.conftest import free_port

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
#: Names our DNS server says do not exist: their validation fails.
NXDOMAIN = {"fail.test"}


class DNSServer(threading.Thread):
    """Answers A queries with 127.0.0.1 (NXDOMAIN for ``NXDOMAIN``), any
    other type with no records (RFC 1035 §4.1)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def run(self):
        while True:
            try:
                query, peer = self.sock.recvfrom(512)
                self.sock.sendto(self.answer(query), peer)
            except OSError:
                return
            except IndexError:
                continue

    @staticmethod
    def answer(query):
        pos, labels = 12, []
        while query[pos]:
            labels.append(query[pos + 1:pos + 1 + query[pos]].decode("ascii").lower())
            pos += 1 + query[pos]
        question = query[12:pos + 5]
        qtype = int.from_bytes(query[pos + 1:pos + 3], "big")
        name = ".".join(labels)
        flags = 0x8180 if name not in NXDOMAIN else 0x8183     # response, RD, RA; rcode
        answers = b""
        if qtype == 1 and name not in NXDOMAIN:
            answers = (b"\xc0\x0c" + (1).to_bytes(2, "big") + (1).to_bytes(2, "big")
                       + (60).to_bytes(4, "big") + (4).to_bytes(2, "big")
                       + socket.inet_aton("127.0.0.1"))
        header = query[:2] + flags.to_bytes(2, "big") + (1).to_bytes(2, "big") \
            + (1 if answers else 0).to_bytes(2, "big") + b"\x00\x00\x00\x00"
        return header + question + answers

    def close(self):
        self.sock.close()


class Pebble:
    def __init__(self, proc, port, mgmt_port, ca_path, log_path):
        self.proc = proc
        self.directory = f"https://127.0.0.1:{port}/dir"
        self.port = port
        self.mgmt = f"https://127.0.0.1:{mgmt_port}"
        self.ca_path = ca_path
        self.log_path = log_path

    def root_pem(self):
        """The root that signs what this pebble issues (its management API)."""
        r = requests.get(self.mgmt + "/roots/0", verify=str(self.ca_path), timeout=10)
        r.raise_for_status()
        return r.text

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_pebble(tmp_path, ca, dns_port, http_port, tls_port, port=None):
    """A pebble on 127.0.0.1 whose checks go to ``http_port``/``tls_port``."""
    folder = tmp_path / f"pebble-{time.monotonic_ns()}"
    folder.mkdir()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    ca_path = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    port = port or free_port()
    mgmt_port = free_port()
    (folder / "pebble.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{port}",
        "managementListenAddress": f"127.0.0.1:{mgmt_port}",
        "certificate": str(folder / "cert.pem"), "privateKey": str(folder / "key.pem"),
        "httpPort": http_port, "tlsPort": tls_port,
        "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
    env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_VA_ALWAYS_VALID="0",
               PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0")
    log_path = folder / "pebble.log"
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen([PEBBLE, "-config", str(folder / "pebble.json"),
                                 "-dnsserver", f"127.0.0.1:{dns_port}"],
                                stdout=logf, stderr=subprocess.STDOUT, cwd=str(folder),
                                env=env)
    pebble = Pebble(proc, port, mgmt_port, ca_path, log_path)
    deadline = time.monotonic() + 15
    while True:
        try:
            requests.get(pebble.directory, verify=str(ca_path), timeout=2)
            return pebble
        except requests.exceptions.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pebble.stop()
                raise RuntimeError(f"pebble did not start:\n{pebble.log()}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def dns():
    server = DNSServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def pebble_factory(tmp_path, ca, dns):
    if not os.path.exists(PEBBLE):
        pytest.skip("pebble is not installed (Debian: apt-get install pebble)")
    started = []

    def factory(http_port, tls_port, port=None):
        pebble = start_pebble(tmp_path, ca, dns.port, http_port, tls_port, port)
        started.append(pebble)
        return pebble
    yield factory
    for pebble in started:
        pebble.stop()

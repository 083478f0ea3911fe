"""The TLS transport on its own: a socketpair, the server's TLSTransport
on one end, a sans-I/O client (SSLObject over memory BIOs) on the other,
both stepped by hand."""
import os
import socket
import ssl
import types

import pytest

from flashplug.residency import OFFLOAD, WOULD_BLOCK, FileRange, FileSender
from flashplug.tls import Certificates
from flashplug.transport import PLAIN_HTTP_ANSWER, TLSError, TLSTransport

trustme = pytest.importorskip("trustme", reason="pip install trustme (the test extra)")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, key = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return ca, Certificates([(str(cert), str(key), ())])


class Client:
    """A TLS client that moves bytes only when told to."""

    def __init__(self, ca, sock):
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        ctx.set_alpn_protocols(["http/1.1"])
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    def pump_out(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def pump_in(self):
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        self.incoming.write(data)

    def handshake(self):
        try:
            self.tls.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False
        finally:
            self.pump_out()


def unconnected(pki):
    """A server transport and a test client over a socket pair, before
    the handshake."""
    ca, certs = pki
    server_sock, client_sock = socket.socketpair()
    server_sock.setblocking(False)
    client_sock.setblocking(False)
    return TLSTransport(server_sock, certs), Client(ca, client_sock)


def connected(pki):
    transport, client = unconnected(pki)
    buf = bytearray(65536)
    for _ in range(10):
        done = client.handshake()
        try:
            transport.recv_into(buf)
        except BlockingIOError:
            pass
        client.pump_in()
        if done and transport.handshaken:
            break
    assert transport.handshaken and client.handshake()
    return transport, client


def test_handshake_then_bytes_both_ways(pki):
    transport, client = connected(pki)
    assert client.tls.selected_alpn_protocol() == "http/1.1"
    client.tls.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    client.pump_out()
    buf = bytearray(65536)
    n = transport.recv_into(buf)
    assert bytes(buf[:n]) == b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with pytest.raises(BlockingIOError):
        transport.recv_into(buf)                       # nothing more yet
    assert transport.send(b"HTTP/1.1 200 OK\r\n\r\n") == 19
    assert transport.backlog == 0
    client.pump_in()
    out = b""
    while True:
        try:
            out += client.tls.read(65536)
        except ssl.SSLWantReadError:
            break
    assert out == b"HTTP/1.1 200 OK\r\n\r\n"


def test_a_slow_reader_costs_one_send_of_ciphertext(pki):
    transport, client = connected(pki)
    woken = []
    transport.on_backlog = lambda: woken.append(transport.backlog)
    chunk = bytes(TLSTransport.SEND_MAX)
    taken = 0
    with pytest.raises(BlockingIOError):
        for _ in range(10_000):             # the client reads nothing
            taken += transport.send(chunk)
    assert woken, "the driver was not told to watch for writing"
    # What the socket did not take is at most one send's records.
    assert 0 < transport.backlog <= TLSTransport.SEND_MAX + 16 * 1024
    assert taken < 64 * 1024 * 1024
    # The client reads; the backlog drains on flush and sends go on.
    while transport.flush():
        client.pump_in()
        try:
            while client.tls.read(1 << 20):
                pass
        except ssl.SSLWantReadError:
            pass
    assert transport.send(b"more") == 4


def test_plain_http_gets_nginx_400_and_an_error(pki):
    _, certs = pki
    a, b = socket.socketpair()
    a.setblocking(False)
    transport = TLSTransport(a, certs)
    b.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(TLSError, match="plain HTTP"):
        transport.recv_into(bytearray(4096))
    assert b.recv(4096) == PLAIN_HTTP_ANSWER
    a.close()
    b.close()


def test_sni_picks_the_context_and_falls_back_to_the_default(pki):
    _, certs = pki
    assert certs.context_for("LOCALHOST.") is certs.default
    assert certs.context_for(None) is certs.default
    assert certs.context_for("nobody.test") is certs.default
    # One certificate answers every name: no Python call per handshake.
    assert certs.default.sni_callback is None


def test_tls13_tickets_wait_for_the_response_or_go_at_once(pki):
    for with_request in (True, False):
        transport, client = unconnected(pki)
        buf = bytearray(65536)
        client.handshake()                             # ClientHello
        with pytest.raises(BlockingIOError):
            transport.recv_into(buf)                   # the server's flight
        client.pump_in()
        client.tls.do_handshake()                      # done: Finished waits in outgoing
        if with_request:
            client.tls.write(b"GET / HTTP/1.1\r\n\r\n")
        client.pump_out()                              # Finished (+ the request): one send
        if with_request:
            assert transport.recv_into(buf) == 18
            with pytest.raises(BlockingIOError):
                client.sock.recv(65536)                # no tickets alone on the wire
            assert transport.send(b"HTTP/1.1 200 OK\r\n\r\n") == 19
            data = client.sock.recv(65536)             # tickets and response, one send
        else:
            with pytest.raises(BlockingIOError):
                transport.recv_into(buf)
            data = client.sock.recv(65536)             # the tickets, at once
        client.incoming.write(data)
        got = b""
        try:
            while True:
                got += client.tls.read(65536)
        except ssl.SSLWantReadError:
            pass
        assert got == (b"HTTP/1.1 200 OK\r\n\r\n" if with_request else b"")
        assert client.tls.session is not None and client.tls.session.has_ticket
        client.sock.close()
        transport.sock.close()


class _Full:
    """A copying transport whose socket is full."""
    zero_copy = False
    backlog = 5000

    def flush(self):
        return self.backlog

    def send(self, data, flags=0):
        raise AssertionError("nothing may be read or sent while the backlog waits")


def test_copy_path_reads_nothing_while_the_transport_is_full(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100_000)
    fd = os.open(path, os.O_RDONLY)
    try:
        stats = types.SimpleNamespace(residency_probes=0, residency_hits=0,
                                      residency_offloads=0, sendfile_calls=0)
        sender = FileSender(types.SimpleNamespace(stats=stats), probe=True)
        entry = types.SimpleNamespace(fd=fd, size=100_000, map_addr=0, fspath=str(path))
        item = FileRange(entry, 0, 100_000)
        assert sender.send(_Full(), item) is WOULD_BLOCK
        assert stats.residency_probes == 0 and item.left == 100_000
    finally:
        os.close(fd)


def test_copy_path_offloads_pages_that_are_not_resident(tmp_path):
    if not hasattr(os, "RWF_NOWAIT"):
        pytest.skip("no RWF_NOWAIT here")
    path = tmp_path / "f"
    path.write_bytes(b"y" * 300_000)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        stats = types.SimpleNamespace(residency_probes=0, residency_hits=0,
                                      residency_offloads=0, sendfile_calls=0)
        sender = FileSender(types.SimpleNamespace(stats=stats), probe=True)
        entry = types.SimpleNamespace(fd=fd, size=300_000, map_addr=0, fspath=str(path))

        class Sink:
            zero_copy = False
            backlog = 0
            got = b""

            def flush(self):
                return 0

            def send(self, data, flags=0):
                Sink.got += bytes(data)
                return len(data)
        outcome = sender.send(Sink(), FileRange(entry, 0, 300_000))
        if outcome is OFFLOAD:                 # the pages really left memory
            assert Sink.got == b""
        os.pread(fd, 300_000, 0)               # a helper's read_in, in effect
        item = FileRange(entry, 0, 300_000)
        Sink.got = b""
        sender.send(Sink(), item)
        assert Sink.got == b"y" * 300_000 and item.left == 0
    finally:
        os.close(fd)


def test_several_records_in_one_read_and_a_record_split_across_reads(pki):
    transport, client = connected(pki)
    client.tls.write(b"first ")
    client.tls.write(b"second")
    client.pump_out()                                  # two records, one segment
    buf = bytearray(65536)
    n = transport.recv_into(buf)
    assert bytes(buf[:n]) == b"first second"
    client.tls.write(b"x" * 5000)
    record = client.outgoing.read()
    client.sock.sendall(record[:100])                  # half a record: nothing yet
    with pytest.raises(BlockingIOError):
        transport.recv_into(buf)
    client.sock.sendall(record[100:])
    assert transport.recv_into(buf) == 5000

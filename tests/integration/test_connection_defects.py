"""Defects of the connection layer found from outside (issue 11), each kept
as a test against a real server process."""
import os
import resource
import socket
import time

import pytest

from tests.procfs import cpu_seconds, rss_kib

ARCHES = ["amped", "sped", "mt", "mp"]


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "a.txt").write_text("a\n")
    (root / "big.bin").write_bytes(os.urandom(6_000_000))
    (root / "1k.bin").write_bytes(b"k" * 1024)
    (root / "first.txt").write_text("first\n")
    return root


def read_all(sock):
    data = bytearray()
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return bytes(data)
        data += chunk


def split_responses(data):
    """(status, body) per response in ``data`` (Content-Length framing only)."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data[:200]
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        out.append((status, rest[:length]))
        data = rest[length:]
    return out


@pytest.mark.parametrize("extra", [(), ("--cache-file-max", "8m")], ids=["fd", "memory"])
@pytest.mark.parametrize("arch", ARCHES)
def test_pipelined_large_files_to_a_slow_reader_stay_framed(site, server_factory, arch, extra):
    # The blocking drivers once left a response's unsent tail queued and
    # wrote the next response's head into the middle of its body.
    server = server_factory(site, "--arch", arch, "--procs", "2", "--access-log", "off", *extra)
    big = (site / "big.bin").read_bytes()
    for _ in range(2):   # a cold and then a cached answer, in every process of mp
        warm = server.connect()
        warm.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert split_responses(read_all(warm))[0][1] == big
        warm.close()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(1)
    responses = split_responses(read_all(sock))
    sock.close()
    assert [status for status, _ in responses] == [200, 200]
    assert all(body == big for _, body in responses)


@pytest.mark.parametrize("arch", ARCHES)
def test_a_thousand_pipelined_requests_are_all_answered(site, server_factory, arch):
    # They were answered by recursion, which hit the interpreter's limit at
    # about 330 and left the connection wedged in CLOSE-WAIT.
    server = server_factory(site, "--arch", arch, "--procs", "2", "--access-log", "off")
    sock = server.connect(timeout=20)
    sock.sendall(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
                 + b"GET /1k.bin HTTP/1.1\r\nHost: x\r\n\r\n" * 999
                 + b"GET /1k.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    responses = split_responses(read_all(sock))
    sock.close()
    assert len(responses) == 1001
    assert responses[0][0] == 404
    assert all(r == (200, b"k" * 1024) for r in responses[1:])
    assert "Traceback" not in server.log()


def test_pipelining_without_reading_keeps_memory_bounded(site, server_factory):
    # Each connection sends far more pipelined requests than the server may
    # parse ahead, and reads nothing: the server parses at most the pipeline
    # limit ahead and stops reading while its output is queued, so its
    # memory does not grow with what the clients send.
    server = server_factory(site, "--access-log", "off")
    before = rss_kib(server.proc.pid)
    burst = b"GET /nx HTTP/1.1\r\nHost: x\r\n\r\n" * 9000
    socks = []
    for _ in range(50):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", server.port))
        s.setblocking(False)
        socks.append([s, memoryview(burst)])
    # Push until every connection's send side is full (the server stopped
    # reading) or all was sent.
    progress = True
    while progress:
        progress = False
        for pair in socks:
            s, left = pair
            if not left:
                continue
            try:
                n = s.send(left[:65536])
            except BlockingIOError:
                continue
            pair[1] = left[n:]
            progress = True
        if progress:
            continue
        time.sleep(0.2)   # give the server a turn; stop once nobody moves
        for s, left in socks:
            if left:
                try:
                    n = s.send(left[:65536])
                except BlockingIOError:
                    continue
                progress = True
    # Wait until the server has done all it can (its CPU time stops
    # growing: every connection is blocked on its client), noting the peak.
    peak = rss_kib(server.proc.pid)
    cpu = cpu_seconds(server.proc.pid)
    for _ in range(100):
        time.sleep(0.3)
        peak = max(peak, rss_kib(server.proc.pid))
        cpu, last = cpu_seconds(server.proc.pid), cpu
        if cpu - last < 0.02:
            break
    grown = peak - before
    print("GROWN", grown)
    for s, _ in socks:
        s.close()
    # 50 x 9,000 queued requests cost hundreds of MB; the bound is a few.
    assert grown < 40 * 1024, f"RSS grew by {grown} KiB"
    check = server.connect()
    check.sendall(b"GET /1k.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert read_all(check).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("path", ["/dir/", "/cgi-bin/hello.sh", "/first.txt"])
def test_a_half_closed_client_is_answered(site, server_factory, path):
    # RFC 9112 §9.6: a client that shuts down its sending side has still
    # asked its question.  A listing (helper trip), a CGI script and a file
    # seen for the first time (helper trip) are all answered.
    import shutil
    shutil.copytree(os.path.join(os.path.dirname(__file__), "..", "..", "cgi-bin"),
                    site / "cgi-bin")
    server = server_factory(site, "--plugins", "autoindex,cgi", "--access-log", "off")
    for _ in range(3):
        sock = server.connect()
        sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        sock.shutdown(socket.SHUT_WR)
        reply = read_all(sock)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]


@pytest.mark.parametrize("arch", ARCHES)
def test_a_bad_request_behind_a_good_one_gets_its_own_status(site, server_factory, arch):
    server = server_factory(site, "--arch", arch, "--procs", "2", "--access-log", "off")
    sock = server.connect()
    sock.sendall(b"GET /first.txt HTTP/1.1\r\nHost: x\r\n\r\n8000 / HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = read_all(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"\r\n\r\nfirst\nHTTP/1.1 400 " in reply


def _limit_descriptors():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def test_out_of_descriptors_pauses_accepting(site, server_factory):
    # The server may use 64 descriptors at most: the accept loop once spun
    # on EMFILE, logging a line per try.
    server = server_factory(site, "--access-log", "off", preexec_fn=_limit_descriptors)
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(120)]
    cpu_before = cpu_seconds(server.proc.pid)
    time.sleep(2)
    cpu_used = cpu_seconds(server.proc.pid) - cpu_before
    for s in held:
        s.close()
    time.sleep(1.5)     # the pause ends and the backlog is served
    sock = server.connect()
    sock.sendall(b"GET /1k.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert read_all(sock).startswith(b"HTTP/1.1 200 ")
    sock.close()
    lines = [line for line in server.log().splitlines()
             if "open files" in line or "cannot accept" in line]
    assert 1 <= len(lines) <= 10, lines[:20]
    assert cpu_used < 1.0      # paused, not spinning on accept()

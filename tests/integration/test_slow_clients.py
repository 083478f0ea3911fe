"""A minimum transfer rate for slow readers and slow senders (issue #13
fault 6, in the manner of Apache's mod_reqtimeout MinRate).

A client that reads a response a few bytes at a time, or sends a body a few
bytes at a time, used to hold its connection and buffers for as long as it
kept making any progress at all.  Past ``--min-rate-grace`` the average
since the transfer began to wait on the client must stay above
``--min-rate`` bytes/s.  The figures under real attack (slowhttptest beside
nginx) are in docs/reliability.md; these tests check the mechanism, with
rates scaled so that each takes a few seconds.
"""
import socket
import time

import pytest

BIG = 8 * 1024 * 1024


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(b"x" * BIG)
    return root


TCP_ESTABLISHED = 1


def still_established(s):
    """The socket's TCP state (first byte of TCP_INFO) is ESTABLISHED: the
    server neither closed nor reset it.  (Bytes already in our receive
    buffer stay readable after a reset, so reading cannot tell.)"""
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_ESTABLISHED


def trickle_read(port, step, every, seconds):
    """GET /big.bin with a small receive buffer, reading ``step`` bytes every
    ``every`` s for up to ``seconds``; (bytes read, whether the server
    closed the connection)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    s.settimeout(every + 2)
    got = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(every)
            if not still_established(s):
                return got, True
            data = s.recv(step)
            if not data:
                return got, True
            got += len(data)
    except (ConnectionResetError, socket.timeout):
        return got, True
    finally:
        s.close()
    return got, False


def test_a_slow_reader_is_dropped_after_the_grace(server_factory, root):
    srv = server_factory(root, "--min-rate", "20k", "--min-rate-grace", "1",
                         "--access-log", "off")
    got, closed = trickle_read(srv.port, 32, 0.2, seconds=8)
    assert closed, "a reader at 160 bytes/s kept a connection past --min-rate-grace"
    assert got < BIG


def test_a_reader_above_the_rate_is_not_dropped(server_factory, root):
    srv = server_factory(root, "--min-rate", "20k", "--min-rate-grace", "1",
                         "--access-log", "off")
    got, closed = trickle_read(srv.port, 64 * 1024, 0.05, seconds=4)
    assert not closed and got > 200_000, (got, closed)


def test_min_rate_zero_keeps_only_the_send_timeout(server_factory, root):
    srv = server_factory(root, "--min-rate", "0", "--min-rate-grace", "1",
                         "--access-log", "off")
    got, closed = trickle_read(srv.port, 32, 0.2, seconds=4)
    assert not closed


def slow_body(port, content_length, step, every, seconds):
    """POST a body of ``content_length`` bytes, ``step`` bytes every
    ``every`` s; True when the server closed the connection within
    ``seconds``."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /cgi-bin/sink.sh HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
              % content_length)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            s.sendall(b"a" * step)
            time.sleep(every)
    except (BrokenPipeError, ConnectionResetError):
        return True
    finally:
        s.close()
    return False


def test_a_slow_body_is_dropped_after_the_grace(server_factory, root):
    (root / "cgi-bin").mkdir()
    script = root / "cgi-bin" / "sink.sh"
    script.write_text("#!/bin/sh\ncat >/dev/null\nprintf 'Content-Type: text/plain\\n\\nok'\n")
    script.chmod(0o755)
    srv = server_factory(root, "--plugins", "cgi", "--min-rate", "10k", "--min-rate-grace", "1",
                         "--header-timeout", "30", "--access-log", "off")
    # 100 bytes/s, each step well inside --header-timeout: only the rate
    # can end it.
    assert slow_body(srv.port, 1_000_000, 10, 0.1, seconds=10)


def server_send_queue(server_port, client_port):
    """Bytes the server's socket of this connection holds unacknowledged
    (/proc/net/tcp's tx_queue), or None when the socket is not found."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.split(":")[1], 16) == server_port and \
                    int(remote.split(":")[1], 16) == client_port:
                return int(fields[4].split(":")[0], 16)
    return None


@pytest.mark.parametrize("arch", ["amped", "mt"])
def test_a_reader_that_stops_reading_holds_a_bounded_send_queue(server_factory, root, arch):
    """Thousands of stalled readers must not hold megabytes of kernel memory
    each: that put the host's TCP into memory pressure under slowhttptest -X
    and slowed every client.  TCP_NOTSENT_LOWAT bounds what is queued beyond
    what the peer accepts (2.8 MB per socket without it)."""
    srv = server_factory(root, "--arch", arch)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", srv.port))
    try:
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(1.0)
        queued = server_send_queue(srv.port, s.getsockname()[1])
        assert queued is not None and 0 < queued <= 512 * 1024, queued
    finally:
        s.close()

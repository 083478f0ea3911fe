"""The HTTP/2 denial-of-service classes, each sent for real: the server
must close the offender (GOAWAY, then the end of the connection) and keep
answering another client meanwhile.

Frames a conforming client would never send are built by hand
(hyperframe, hpack); the rest go through the raw client of
tests/h2_client.py.
"""
import os

import pytest

h2 = pytest.importorskip("h2")
import h2.errors  # noqa: E402
import h2.settings  # noqa: E402
import hpack  # noqa: E402
from hyperframe.frame import (ContinuationFrame, DataFrame, HeadersFrame,  # noqa: E402
                              PingFrame, SettingsFrame)

from tests.h2_client import H2Client  # noqa: E402

PROTOCOL_ERROR = h2.errors.ErrorCodes.PROTOCOL_ERROR
ENHANCE_YOUR_CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
FIELDS = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/index.html"),
          (b":authority", b"localhost")]


@pytest.fixture
def server(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_bytes(b"<h1>home</h1>\n")
    (root / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    return server_factory(root, "--h2c", "--send-timeout", "1", "--keepalive-timeout", "30",
                          "--access-log", "off")


def assert_served(server):
    """Another client is answered, over HTTP/2 and over HTTP/1.1."""
    other = H2Client(server.port)
    status, _, body = other.get("/index.html")
    assert (status, body) == (200, b"<h1>home</h1>\n")
    other.close()
    with server.connect() as sock:
        sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")


def assert_closed_with(client, code, server, reason=None):
    found = client.goaway()
    client.close()
    assert found is not None and found[0] == code, found
    assert client.closed
    if reason is not None:
        assert reason in server.log()
    assert "Traceback" not in server.log()
    assert_served(server)


def test_rapid_reset(server):
    """CVE-2023-44487: streams opened and reset at once, thousands a second."""
    attacker = H2Client(server.port)
    for _ in range(1000):
        sid = attacker.h2.get_next_available_stream_id()
        attacker.h2.send_headers(sid, FIELDS, end_stream=True)
        attacker.h2.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    attacker.flush_quietly()
    assert_closed_with(attacker, ENHANCE_YOUR_CALM, server, "Rapid Reset")


def test_continuation_flood(server):
    """CVE-2024-27316 family: a header block that never ends."""
    attacker = H2Client(server.port)
    block = hpack.Encoder().encode(FIELDS)
    frames = [HeadersFrame(1, data=block).serialize()]
    frames += [ContinuationFrame(1, data=b"x" * 1000).serialize() for _ in range(2000)]
    try:
        attacker.send_raw(b"".join(frames))
    except OSError:
        pass      # closed under our feet: the GOAWAY is still to be read
    assert_closed_with(attacker, PROTOCOL_ERROR, server)


def test_hpack_bomb(server):
    """A small block that decodes to megabytes: one 4000-byte field put in
    the dynamic table, then referenced by a one-byte index 2000 times."""
    attacker = H2Client(server.port)
    encoder = hpack.Encoder()
    block = encoder.encode(FIELDS + [(b"x-bomb", b"b" * 4000)])
    again = encoder.encode([(b"x-bomb", b"b" * 4000)])
    assert len(again) == 1          # an index into the dynamic table
    attacker.send_raw(HeadersFrame(1, data=block + again * 2000,
                                   flags=["END_HEADERS", "END_STREAM"]).serialize())
    found = attacker.goaway()
    attacker.close()
    # h2 refuses the block while decoding it (past our 64 KiB header list).
    assert found is not None and found[0] == ENHANCE_YOUR_CALM
    assert "Traceback" not in server.log()
    assert_served(server)


@pytest.mark.parametrize("frame", [
    SettingsFrame(0).serialize(),
    PingFrame(0, opaque_data=b"12345678").serialize(),
], ids=["settings", "ping"])
def test_control_frame_floods(server, frame):
    attacker = H2Client(server.port)
    try:
        attacker.send_raw(frame * 5000)
    except OSError:
        pass
    assert_closed_with(attacker, ENHANCE_YOUR_CALM, server, "flood of control frames")


def test_empty_data_frame_flood(server):
    attacker = H2Client(server.port)
    sid = attacker.request("/index.html", method="POST", end=False)
    try:
        attacker.send_raw(DataFrame(sid, data=b"").serialize() * 5000)
    except OSError:
        pass
    assert_closed_with(attacker, ENHANCE_YOUR_CALM, server, "flood of control frames")


def test_zero_window_held_open(server):
    """A client that asks for a file and never opens its window is closed
    after --send-timeout (1 s here) of no progress."""
    attacker = H2Client(server.port,
                        settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    attacker.request("/big.bin")
    assert_served(server)            # meanwhile others are served
    assert_closed_with(attacker, ENHANCE_YOUR_CALM, server, "no progress sending")


def test_stream_id_exhaustion(server):
    """The last stream ID is served; a lower one after it is a connection
    error (RFC 9113 §5.1.1)."""
    attacker = H2Client(server.port)
    last = 2 ** 31 - 1
    encoder = hpack.Encoder()
    attacker.send_raw(HeadersFrame(last, data=encoder.encode(FIELDS),
                                   flags=["END_HEADERS", "END_STREAM"]).serialize())
    attacker.send_raw(HeadersFrame(5, data=encoder.encode(FIELDS),
                                   flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert_closed_with(attacker, PROTOCOL_ERROR, server)


def test_streams_per_connection_are_bounded(server):
    """After 1000 streams (nginx's keepalive_requests) the connection is
    closed: every one of them is answered, then GOAWAY (NO_ERROR) names
    the last stream served, so the client opens a new connection."""
    client = H2Client(server.port)
    sids = []
    for _ in range(10):
        batch = [client.request("/index.html") for _ in range(100)]
        sids += batch
        for sid in batch:
            assert client.response(sid)[0] == 200
    assert client.goaway() == (NO_ERROR, sids[-1])
    assert client.closed
    assert_served(server)


def test_a_request_body_that_never_comes(server_factory, tmp_path):
    """Slowloris over HTTP/2: streams opened for a body never sent are
    reset after --header-timeout, as the HTTP/1.1 body deadline; the
    connection itself stays usable."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_bytes(b"<h1>home</h1>\n")
    server = server_factory(root, "--h2c", "--header-timeout", "1", "--access-log", "off")
    client = H2Client(server.port)
    sids = [client.request("/index.html", method="POST", end=False) for _ in range(3)]
    for sid in sids:
        assert client.response(sid)[0] == ("reset", h2.errors.ErrorCodes.CANCEL)
    assert client.get("/index.html")[0] == 200
    client.close()

"""HTTP/2 conformance, case by case as h2spec checks it (RFC 9113 and
HPACK, RFC 7541).  h2spec numbers its cases by RFC 7540's sections; RFC
9113 keeps those rules, some under new numbers (7540's §8.1.2 is 9113's
§8.2 and §8.3).

h2spec is the conformance tool HTTP/2 servers are graded with; it cannot
be installed here (a Go module), so each of its cases is rebuilt from its
description: the same frames, sent raw over a plain socket with prior
knowledge (and a few over TLS after ALPN ``h2``), and the same verdicts:

* a *connection error* of type X: a GOAWAY with code X, then the server
  closes the connection (h2spec takes a bare close as well; we always
  send the GOAWAY, so we ask for it);
* a *stream error* of type X: RST_STREAM X on that stream, or a GOAWAY X
  (h2spec takes either; where the RFC's RST_STREAM matters to a real
  client, the test asks for it and for the connection going on);
* otherwise the answer h2spec waits for: a PING ACK, a SETTINGS ACK, a
  response HEADERS frame, a DATA frame of a given length.

Test names carry h2spec's section and case number (``test_6_5_2_1_...``
is section 6.5.2, case 1).  Run alone with::

    python -m pytest -q tests/integration/test_h2_conformance.py

and the h2c cases against another server on 127.0.0.1 (nginx with
``listen PORT http2``, to compare) with ``H2_CONFORMANCE_PORT=PORT``.
"""
import os
import socket
import ssl

import pytest

pytest.importorskip("h2")
import hpack  # noqa: E402
from h2.errors import ErrorCodes  # noqa: E402
from hyperframe.frame import (DataFrame, Frame, GoAwayFrame, HeadersFrame,  # noqa: E402
                              PingFrame, RstStreamFrame, SettingsFrame)

from conftest import start_server  # noqa: E402
from tests.tls_certs import write_pair  # noqa: E402

trustme = pytest.importorskip("trustme")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
INDEX = b"<h1>conformance</h1>\n"      # at least 5 bytes: the flow-control cases need them

# Frame types and flags (RFC 9113 §6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE = 0x4, 0x5

PROTOCOL = ErrorCodes.PROTOCOL_ERROR
FLOW_CONTROL = ErrorCodes.FLOW_CONTROL_ERROR
STREAM_CLOSED = ErrorCodes.STREAM_CLOSED
FRAME_SIZE = ErrorCodes.FRAME_SIZE_ERROR
REFUSED = ErrorCodes.REFUSED_STREAM
COMPRESSION = ErrorCodes.COMPRESSION_ERROR


def frame(kind, flags, sid, payload=b""):
    """One frame, as raw bytes: any length, type, flags and stream."""
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


def settings(*pairs):
    return b"".join(ident.to_bytes(2, "big") + value.to_bytes(4, "big") for ident, value in pairs)


def priority(depends_on=0, weight=255, exclusive=False):
    """A PRIORITY payload (the 5 octets HEADERS carries with PRIORITY too)."""
    return (depends_on | (0x80000000 if exclusive else 0)).to_bytes(4, "big") + bytes((weight,))


class Wire:
    """One raw HTTP/2 connection: what h2spec's Conn does.  ``handshake``
    sends the preface and SETTINGS (INITIAL_WINDOW_SIZE 65535, as h2spec),
    takes the server's SETTINGS and ACKs it, and waits for our ACK.  No
    window is handed back: every body here is far below 64 KiB (h2spec
    hands it back only once used up, which none of its cases reach)."""

    def __init__(self, server):
        self.server = server
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=3)
        if server.tls_ca is not None:
            ctx = ssl.create_default_context(cafile=str(server.tls_ca))
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.buf = b""
        self.closed = False
        self.encoder = hpack.Encoder()
        self.settings = {}          # the server's

    def handshake(self):
        self.send(PREFACE, frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 65535))))
        got_settings = got_ack = False
        while not (got_settings and got_ack):
            f = self.next()
            assert f is not None, "connection closed during the handshake"
            if isinstance(f, SettingsFrame):
                if "ACK" in f.flags:
                    got_ack = True
                else:
                    got_settings = True
                    self.settings = dict(f.settings)
                    self.send(frame(SETTINGS, ACK, 0))
        return self

    def send(self, *chunks):
        self.sock.sendall(b"".join(chunks))

    def fields(self, method="GET", path="/"):
        """h2spec's CommonHeaders."""
        scheme = "https" if self.server.tls_ca is not None else "http"
        return [(":method", method), (":scheme", scheme), (":path", path),
                (":authority", f"127.0.0.1:{self.server.port}")]

    def block(self, fields):
        return self.encoder.encode(fields)

    def headers(self, sid, fields=None, flags=END_STREAM | END_HEADERS, method="GET"):
        return frame(HEADERS, flags, sid, self.block(fields or self.fields(method)))

    def _read(self, n):
        while len(self.buf) < n:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            except (socket.timeout, TimeoutError):
                raise AssertionError("timed out waiting for the server") from None
            if not data:
                self.closed = True
                return None
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def next(self):
        """The server's next frame (hyperframe), or None once it closed."""
        head = self._read(9)
        if head is None:
            return None
        f, length = Frame.parse_frame_header(memoryview(head))
        body = self._read(length) if length else b""
        if body is None:
            return None
        f.parse_body(memoryview(body))
        return f

    def close(self):
        self.sock.close()


def connection_error(w, *codes):
    """VerifyConnectionError: a GOAWAY with one of ``codes``, then the close."""
    while True:
        f = w.next()
        assert f is not None, f"closed without a GOAWAY (expected {codes})"
        if isinstance(f, GoAwayFrame):
            assert ErrorCodes(f.error_code) in codes, (ErrorCodes(f.error_code), codes)
            break
        assert not isinstance(f, RstStreamFrame), f"RST_STREAM {f.error_code}, not a GOAWAY"
    while w.next() is not None:      # RFC 9113 §5.4.1: then the connection closes
        pass


def stream_error(w, sid, *codes):
    """VerifyStreamError: RST_STREAM on ``sid`` with one of ``codes``, or a
    GOAWAY with one.  Which of the two came: "stream" or "connection"."""
    while True:
        f = w.next()
        assert f is not None, f"closed without RST_STREAM or GOAWAY (expected {codes})"
        if isinstance(f, RstStreamFrame) and f.stream_id == sid:
            assert ErrorCodes(f.error_code) in codes, (ErrorCodes(f.error_code), codes)
            return "stream"
        if isinstance(f, GoAwayFrame):
            assert ErrorCodes(f.error_code) in codes, (ErrorCodes(f.error_code), codes)
            return "connection"


def expect(w, kind, where=lambda f: True):
    """VerifyEventType: the first frame of class ``kind`` (or classes) that
    ``where`` accepts, before any GOAWAY or the close."""
    while True:
        f = w.next()
        assert f is not None, f"closed before {kind}"
        assert not isinstance(f, GoAwayFrame), f"GOAWAY {ErrorCodes(f.error_code)} before {kind}"
        if isinstance(f, kind) and where(f):
            return f


def ping_ack(w, data=b"\0" * 8):
    """Send a PING: the connection must still answer it."""
    w.send(frame(PING, 0, 0, data))
    expect(w, PingFrame, lambda f: "ACK" in f.flags and f.opaque_data == data)


def response(w, sid=1):
    """VerifyHeadersFrame: the response HEADERS of stream ``sid``."""
    return expect(w, HeadersFrame, lambda f: f.stream_id == sid)


def stream_ended(w, sid=1):
    """VerifyStreamClose: the server ended stream ``sid``."""
    return expect(w, (DataFrame, HeadersFrame),
                  lambda f: f.stream_id == sid and "END_STREAM" in f.flags)


def dummy_fields(n, size=4000):
    """h2spec's DummyHeaders (its default --max-header-length is 4000)."""
    return [(f"x-dummy{i}", "x" * size) for i in range(n)]


# -- the servers ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("h2spec") / "root"
    root.mkdir()
    (root / "index.html").write_bytes(INDEX)
    return root


class OtherServer:
    """Another h2c server on 127.0.0.1 (nginx, to compare), named by
    H2_CONFORMANCE_PORT; it serves INDEX at ``/`` as ours does."""

    tls_ca = None

    def __init__(self, port):
        self.port = port

    def log(self):
        return ""


@pytest.fixture(scope="module")
def srv(root):
    if os.environ.get("H2_CONFORMANCE_PORT"):
        yield OtherServer(int(os.environ["H2_CONFORMANCE_PORT"]))
        return
    server = start_server(root, "--h2c", "--access-log", "off", "--keepalive-timeout", "30",
                          tmp_path=root.parent)
    server.tls_ca = None
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_srv(root):
    ca = trustme.CA()
    folder = root.parent
    cert, key = write_pair(ca, folder, "localhost", "127.0.0.1")
    ca_path = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    server = start_server(root, "--tls-cert", cert, "--tls-key", key, "--access-log", "off",
                          "--keepalive-timeout", "30", tmp_path=folder)
    server.tls_ca = ca_path
    yield server
    server.stop()


@pytest.fixture
def conn(srv):
    """A connection to the h2c server, after the handshake."""
    w = Wire(srv).handshake()
    yield w
    w.close()
    assert "Traceback" not in srv.log()


# -- 3.5 HTTP/2 connection preface ------------------------------------------------------

def test_3_5_1_preface_answered_with_settings(srv):
    w = Wire(srv)
    w.send(PREFACE, frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 65535))))
    first = w.next()
    assert isinstance(first, SettingsFrame) and "ACK" not in first.flags
    w.close()


def test_3_5_2_invalid_preface_closes(srv):
    """h2spec: VerifyConnectionClose (nothing was negotiated)."""
    w = Wire(srv)
    w.send(b"INVALID CONNECTION PREFACE\r\n\r\n")
    while w.next() is not None:
        pass
    w.close()


# -- 4.1 frame format, 5.5 extending HTTP/2 ---------------------------------------------

UNKNOWN_FRAME = frame(0x16, 0, 0, b"\0" * 8)


@pytest.mark.parametrize("raw", [
    UNKNOWN_FRAME,                                   # 4.1/1, 5.5/1: an unknown type
    frame(PING, 0x16, 0, b"\0" * 8),                 # 4.1/2: undefined flags
    frame(PING, 0x16, 0x80000000, b"\0" * 8),        # 4.1/3: the reserved bit set
], ids=["4_1_1_unknown_type", "4_1_2_undefined_flag", "4_1_3_reserved_bit"])
def test_4_1_ignored(conn, raw):
    conn.send(raw)
    ping_ack(conn)


def test_5_5_2_unknown_frame_inside_a_header_block(conn):
    conn.send(conn.headers(1, flags=END_STREAM), UNKNOWN_FRAME)
    connection_error(conn, PROTOCOL)


# -- 4.2 frame size ---------------------------------------------------------------------

def test_4_2_1_data_of_max_frame_size(conn):
    conn.send(conn.headers(1, conn.fields("POST"), flags=END_HEADERS),
              frame(DATA, END_STREAM, 1, b"x" * 16384))
    response(conn)


def test_4_2_2_data_over_max_frame_size(conn):
    conn.send(conn.headers(1, conn.fields("POST"), flags=END_HEADERS),
              frame(DATA, END_STREAM, 1, b"x" * 16385))
    stream_error(conn, 1, FRAME_SIZE)


def test_4_2_3_headers_over_max_frame_size(conn):
    block = conn.block(conn.fields() + dummy_fields(5))
    assert len(block) > 16384
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
    connection_error(conn, FRAME_SIZE)


# -- 4.3 header compression -------------------------------------------------------------

def test_4_3_1_invalid_header_block(conn):
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x40"))
    connection_error(conn, COMPRESSION)


def test_4_3_2_priority_inside_a_header_block(conn):
    conn.send(conn.headers(1, flags=0), frame(PRIORITY, 0, 1, priority()),
              frame(CONTINUATION, END_HEADERS, 1, conn.block(dummy_fields(1))))
    connection_error(conn, PROTOCOL)


def test_4_3_3_headers_of_another_stream_inside_a_header_block(conn):
    conn.send(conn.headers(1, flags=0), conn.headers(3),
              frame(CONTINUATION, END_HEADERS, 1, conn.block(dummy_fields(1))))
    connection_error(conn, PROTOCOL)


# -- 5.1 stream states ------------------------------------------------------------------

def test_5_1_1_idle_data(conn):
    conn.send(frame(DATA, END_STREAM, 1, b"test"))
    connection_error(conn, PROTOCOL)


def test_5_1_2_idle_rst_stream(conn):
    conn.send(frame(RST_STREAM, 0, 1, (ErrorCodes.CANCEL).to_bytes(4, "big")))
    connection_error(conn, PROTOCOL)


def test_5_1_3_idle_window_update(conn):
    conn.send(frame(WINDOW_UPDATE, 0, 1, (100).to_bytes(4, "big")))
    connection_error(conn, PROTOCOL)


def test_5_1_4_idle_continuation(conn):
    conn.send(frame(CONTINUATION, END_HEADERS, 1, conn.block(conn.fields())))
    connection_error(conn, PROTOCOL)


def test_5_1_5_half_closed_remote_data(conn):
    conn.send(conn.headers(1), frame(DATA, END_STREAM, 1, b"test"))
    stream_error(conn, 1, STREAM_CLOSED)


def test_5_1_6_half_closed_remote_headers(conn):
    conn.send(conn.headers(1), conn.headers(1))
    stream_error(conn, 1, STREAM_CLOSED)


def test_5_1_7_half_closed_remote_continuation(conn):
    conn.send(conn.headers(1), frame(CONTINUATION, END_HEADERS, 1, conn.block(conn.fields())))
    stream_error(conn, 1, STREAM_CLOSED, PROTOCOL)


def test_5_1_8_data_after_rst_stream(conn):
    conn.send(conn.headers(1, flags=END_HEADERS),
              frame(RST_STREAM, 0, 1, (ErrorCodes.CANCEL).to_bytes(4, "big")),
              frame(DATA, END_STREAM, 1, b"test"))
    stream_error(conn, 1, STREAM_CLOSED)


def test_5_1_9_headers_after_rst_stream(conn):
    conn.send(conn.headers(1, flags=END_HEADERS),
              frame(RST_STREAM, 0, 1, (ErrorCodes.CANCEL).to_bytes(4, "big")),
              conn.headers(1))
    stream_error(conn, 1, STREAM_CLOSED)


def test_5_1_10_continuation_after_rst_stream(conn):
    conn.send(conn.headers(1, flags=END_HEADERS),
              frame(RST_STREAM, 0, 1, (ErrorCodes.CANCEL).to_bytes(4, "big")),
              frame(CONTINUATION, END_HEADERS, 1, conn.block(dummy_fields(1))))
    stream_error(conn, 1, STREAM_CLOSED, PROTOCOL)


def test_5_1_11_closed_data(conn):
    conn.send(conn.headers(1))
    stream_ended(conn)
    conn.send(frame(DATA, END_STREAM, 1, b"test"))
    connection_error(conn, STREAM_CLOSED)


def test_5_1_12_closed_headers(conn):
    conn.send(conn.headers(1))
    stream_ended(conn)
    conn.send(conn.headers(1))
    connection_error(conn, STREAM_CLOSED)


def test_5_1_13_closed_continuation(conn):
    conn.send(conn.headers(1))
    stream_ended(conn)
    conn.send(frame(CONTINUATION, END_HEADERS, 1, conn.block(dummy_fields(1))))
    connection_error(conn, STREAM_CLOSED, PROTOCOL)


# -- 5.1.1 stream identifiers, 5.1.2 concurrency ----------------------------------------

def test_5_1_1_1_even_stream_id(conn):
    conn.send(conn.headers(2))
    connection_error(conn, PROTOCOL)


def test_5_1_1_2_stream_id_smaller_than_previous(conn):
    conn.send(conn.headers(5), conn.headers(3))
    connection_error(conn, PROTOCOL)


def test_5_1_2_1_more_streams_than_advertised(conn):
    limit = conn.settings[0x3]          # SETTINGS_MAX_CONCURRENT_STREAMS
    # A zero window keeps every stream open (its DATA cannot be sent).
    conn.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 0))))
    conn.send(b"".join(conn.headers(1 + 2 * i) for i in range(limit + 1)))
    # h2spec takes PROTOCOL_ERROR or REFUSED_STREAM, for the stream or the
    # connection; we refuse the one stream, as nginx: a client retries it.
    assert stream_error(conn, 1 + 2 * limit, REFUSED) == "stream"
    ping_ack(conn)


# -- 5.3.1 stream dependencies ----------------------------------------------------------

def test_5_3_1_1_headers_depending_on_itself(conn):
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, 1,
                    priority(depends_on=1) + conn.block(conn.fields())))
    stream_error(conn, 1, PROTOCOL)


def test_5_3_1_2_priority_depending_on_itself(conn):
    conn.send(frame(PRIORITY, 0, 1, priority(depends_on=1)))
    stream_error(conn, 1, PROTOCOL)


# -- 5.4.1 connection error handling ----------------------------------------------------

def test_5_4_1_invalid_ping_goaway_then_close(conn):
    """Cases 1 and 2: a GOAWAY first, then the TCP connection closes."""
    conn.send(frame(PING, 0, 3, b"\0" * 8))
    connection_error(conn, PROTOCOL)
    assert conn.closed


# -- 6.1 DATA ---------------------------------------------------------------------------

def test_6_1_1_data_on_stream_0(conn):
    conn.send(frame(DATA, END_STREAM, 0, b"test"))
    connection_error(conn, PROTOCOL)


def test_6_1_2_data_on_half_closed_remote_stream(conn):
    conn.send(conn.headers(1, conn.fields("POST")), frame(DATA, END_STREAM, 1, b"test"))
    stream_error(conn, 1, STREAM_CLOSED)


def test_6_1_3_data_with_invalid_pad_length(conn):
    fields = conn.fields("POST") + [("content-length", "4")]
    conn.send(conn.headers(1, fields, flags=END_HEADERS),
              frame(DATA, END_STREAM | PADDED, 1, b"\x06Test"))
    connection_error(conn, PROTOCOL)


# -- 6.2 HEADERS ------------------------------------------------------------------------

def test_6_2_1_priority_inside_a_header_block(conn):
    conn.send(conn.headers(1, flags=0), frame(PRIORITY, 0, 1, priority()),
              frame(CONTINUATION, END_HEADERS, 1, conn.block(dummy_fields(1))))
    connection_error(conn, PROTOCOL)


def test_6_2_2_headers_of_another_stream_inside_a_header_block(conn):
    conn.send(conn.headers(1, flags=0), conn.headers(3),
              frame(CONTINUATION, END_HEADERS, 1, conn.block(dummy_fields(1))))
    connection_error(conn, PROTOCOL)


def test_6_2_3_headers_on_stream_0(conn):
    conn.send(conn.headers(0))
    connection_error(conn, PROTOCOL)


def test_6_2_4_headers_with_invalid_pad_length(conn):
    block = conn.block(conn.fields())
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1,
                    bytes((len(block) + 2,)) + block))
    stream_error(conn, 1, PROTOCOL)


# -- 6.3 PRIORITY -----------------------------------------------------------------------

def test_6_3_1_priority_on_stream_0(conn):
    conn.send(frame(PRIORITY, 0, 0, priority()))
    connection_error(conn, PROTOCOL)


def test_6_3_2_priority_of_4_octets(conn):
    conn.send(conn.headers(1), frame(PRIORITY, 0, 1, b"\x80\0\0\x01"))
    stream_error(conn, 1, FRAME_SIZE)


def test_6_3_3_priority_for_idle_stream_then_lower_headers(conn):
    conn.send(frame(PRIORITY, 0, 3, priority()), conn.headers(1))
    response(conn)


# -- 6.4 RST_STREAM ---------------------------------------------------------------------

def test_6_4_1_rst_stream_on_stream_0(conn):
    conn.send(frame(RST_STREAM, 0, 0, (ErrorCodes.CANCEL).to_bytes(4, "big")))
    connection_error(conn, PROTOCOL)


def test_6_4_2_rst_stream_on_idle_stream(conn):
    conn.send(frame(RST_STREAM, 0, 1, (ErrorCodes.CANCEL).to_bytes(4, "big")))
    connection_error(conn, PROTOCOL)


def test_6_4_3_rst_stream_of_3_octets(conn):
    conn.send(conn.headers(1), frame(RST_STREAM, 0, 1, b"\0\0\0"))
    stream_error(conn, 1, FRAME_SIZE)


# -- 6.5 SETTINGS -----------------------------------------------------------------------

def test_6_5_1_settings_ack_with_payload(conn):
    conn.send(frame(SETTINGS, ACK, 0, b"\0"))
    connection_error(conn, FRAME_SIZE)


def test_6_5_2_settings_on_stream_1(conn):
    conn.send(frame(SETTINGS, 0, 1, settings((0x3, 100))))
    connection_error(conn, PROTOCOL)


def test_6_5_3_settings_of_9_octets(conn):
    conn.send(frame(SETTINGS, 0, 0, settings((0x3, 100)) + b"\0\x02\0"))
    stream_error(conn, 0, PROTOCOL, FRAME_SIZE)


@pytest.mark.parametrize("pair, code", [
    ((0x2, 2), PROTOCOL),                         # 6.5.2/1: ENABLE_PUSH not 0 or 1
    ((INITIAL_WINDOW_SIZE, 2**31), FLOW_CONTROL),  # 6.5.2/2: over 2^31-1
    ((MAX_FRAME_SIZE, 16383), PROTOCOL),          # 6.5.2/3: under the initial value
    ((MAX_FRAME_SIZE, 2**24), PROTOCOL),          # 6.5.2/4: over 2^24-1
], ids=["1_enable_push_2", "2_window_2_31", "3_max_frame_16383", "4_max_frame_2_24"])
def test_6_5_2_invalid_setting(conn, pair, code):
    conn.send(frame(SETTINGS, 0, 0, settings(pair)))
    connection_error(conn, code)


def test_6_5_2_5_unknown_setting_ignored(conn):
    conn.send(frame(SETTINGS, 0, 0, settings((0xFF, 1))))
    ping_ack(conn)


def test_6_5_3_1_settings_applied_in_order(conn):
    conn.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 100),
                                             (INITIAL_WINDOW_SIZE, 1))))
    expect(conn, SettingsFrame, lambda f: "ACK" in f.flags)
    conn.send(conn.headers(1))
    assert len(expect(conn, DataFrame).data) == 1


def test_6_5_3_2_settings_acknowledged(conn):
    conn.send(frame(SETTINGS, 0, 0, settings((0x2, 0))))
    expect(conn, SettingsFrame, lambda f: "ACK" in f.flags)


# -- 6.7 PING, 6.8 GOAWAY ---------------------------------------------------------------

def test_6_7_1_ping_answered_with_same_payload(conn):
    ping_ack(conn, b"h2spec\0\0")


def test_6_7_2_ping_ack_not_answered(conn):
    conn.send(frame(PING, ACK, 0, b"invalid\0"))
    conn.send(frame(PING, 0, 0, b"h2spec\0\0"))
    f = expect(conn, PingFrame)
    assert ("ACK" in f.flags, f.opaque_data) == (True, b"h2spec\0\0")


def test_6_7_3_ping_on_stream_1(conn):
    conn.send(frame(PING, 0, 1, b"\0" * 8))
    connection_error(conn, PROTOCOL)


def test_6_7_4_ping_of_6_octets(conn):
    conn.send(frame(PING, 0, 0, b"\0" * 6))
    connection_error(conn, FRAME_SIZE)


def test_6_8_1_goaway_on_stream_1(conn):
    conn.send(frame(GOAWAY, 0, 1, b"\0" * 8))
    connection_error(conn, PROTOCOL)


# -- 6.9 WINDOW_UPDATE ------------------------------------------------------------------

def test_6_9_1_window_update_of_0(conn):
    conn.send(frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\0"))
    connection_error(conn, PROTOCOL)


def test_6_9_2_window_update_of_0_on_a_stream(conn):
    conn.send(conn.headers(1, flags=END_HEADERS), frame(WINDOW_UPDATE, 0, 1, b"\0\0\0\0"))
    stream_error(conn, 1, PROTOCOL)


def test_6_9_3_window_update_of_3_octets(conn):
    conn.send(frame(WINDOW_UPDATE, 0, 0, b"\0\0\x01"))
    connection_error(conn, FRAME_SIZE)


def test_6_9_1_1_window_of_1(conn):
    conn.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 1))))
    expect(conn, SettingsFrame, lambda f: "ACK" in f.flags)
    conn.send(conn.headers(1))
    assert len(expect(conn, DataFrame).data) == 1


def test_6_9_1_2_connection_window_over_2_31(conn):
    big = (2**31 - 1).to_bytes(4, "big")
    conn.send(frame(WINDOW_UPDATE, 0, 0, big), frame(WINDOW_UPDATE, 0, 0, big))
    connection_error(conn, FLOW_CONTROL)


def test_6_9_1_3_stream_window_over_2_31(conn):
    """h2spec waits for the RST_STREAM itself here: a GOAWAY fails."""
    big = (2**31 - 1).to_bytes(4, "big")
    conn.send(conn.headers(1, flags=END_HEADERS),
              frame(WINDOW_UPDATE, 0, 1, big), frame(WINDOW_UPDATE, 0, 1, big))
    f = expect(conn, RstStreamFrame)
    assert (f.stream_id, ErrorCodes(f.error_code)) == (1, FLOW_CONTROL)


def test_6_9_2_1_initial_window_changed_after_headers(conn):
    conn.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 0))))
    expect(conn, SettingsFrame, lambda f: "ACK" in f.flags)
    conn.send(conn.headers(1))
    conn.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 1))))
    expect(conn, SettingsFrame, lambda f: "ACK" in f.flags)
    assert len(expect(conn, DataFrame).data) == 1


def test_6_9_2_2_negative_window(conn):
    conn.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 3))))
    expect(conn, SettingsFrame, lambda f: "ACK" in f.flags)
    conn.send(conn.headers(1))
    assert len(expect(conn, DataFrame).data) == 3
    conn.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 2))))   # window -1
    expect(conn, SettingsFrame, lambda f: "ACK" in f.flags)
    conn.send(frame(WINDOW_UPDATE, 0, 1, (2).to_bytes(4, "big")))         # window 1
    assert len(expect(conn, DataFrame).data) == 1


def test_6_9_2_3_initial_window_over_2_31(conn):
    conn.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 2**31))))
    connection_error(conn, FLOW_CONTROL)


# -- 6.10 CONTINUATION ------------------------------------------------------------------

def test_6_10_1_continuations_accepted(conn):
    conn.send(conn.headers(1, flags=END_STREAM),
              frame(CONTINUATION, 0, 1, conn.block(dummy_fields(1))),
              frame(CONTINUATION, END_HEADERS, 1, conn.block(dummy_fields(1))))
    response(conn)


def test_6_10_2_continuation_followed_by_data(conn):
    conn.send(conn.headers(1, conn.fields("POST"), flags=0),
              frame(CONTINUATION, 0, 1, conn.block(dummy_fields(1))),
              frame(DATA, END_STREAM, 1, b"test"))
    connection_error(conn, PROTOCOL)


def test_6_10_3_continuation_on_stream_0(conn):
    conn.send(conn.headers(1, flags=END_STREAM),
              frame(CONTINUATION, END_HEADERS, 0, conn.block(dummy_fields(1))))
    connection_error(conn, PROTOCOL)


def test_6_10_4_continuation_after_end_headers(conn):
    conn.send(conn.headers(1),
              frame(CONTINUATION, END_HEADERS, 1, conn.block(dummy_fields(1))))
    connection_error(conn, PROTOCOL)


def test_6_10_5_continuation_after_continuation_with_end_headers(conn):
    dummy = conn.block(dummy_fields(1))
    conn.send(conn.headers(1, flags=END_STREAM), frame(CONTINUATION, END_HEADERS, 1, dummy),
              frame(CONTINUATION, END_HEADERS, 1, dummy))
    connection_error(conn, PROTOCOL)


def test_6_10_6_continuation_after_data(conn):
    dummy = conn.block(dummy_fields(1))
    conn.send(conn.headers(1, conn.fields("POST"), flags=0), frame(DATA, END_STREAM, 1, b"test"),
              frame(CONTINUATION, 0, 1, dummy), frame(CONTINUATION, END_HEADERS, 0, dummy))
    connection_error(conn, PROTOCOL)


# -- 7 error codes ----------------------------------------------------------------------

def test_7_1_goaway_with_unknown_code_then_close(conn):
    """A client's GOAWAY (any code) with no stream open: the server closes."""
    conn.send(frame(GOAWAY, 0, 0, (0).to_bytes(4, "big") + (0xFF).to_bytes(4, "big")))
    while conn.next() is not None:
        pass


def test_7_2_rst_stream_with_unknown_code(conn):
    conn.send(conn.headers(1, conn.fields("POST"), flags=END_HEADERS),
              frame(RST_STREAM, 0, 1, (0xFF).to_bytes(4, "big")))
    ping_ack(conn)


# -- 8.1 HTTP request/response exchange -------------------------------------------------

def test_8_1_1_trailers_without_end_stream(conn):
    conn.send(conn.headers(1, conn.fields("POST"), flags=END_HEADERS),
              frame(DATA, 0, 1, b"test"),
              conn.headers(1, [("x-test", "ok")], flags=END_HEADERS))
    assert stream_error(conn, 1, PROTOCOL) == "stream"      # malformed (RFC 9113 §8.1)
    ping_ack(conn)


MALFORMED = {
    # 8.1.2/1
    "8_1_2_1_uppercase_name": lambda f: f + [("X-TEST", "ok")],
    # 8.1.2.1
    "8_1_2_1_1_unknown_pseudo": lambda f: f + [(":test", "ok")],
    "8_1_2_1_2_response_pseudo": lambda f: f + [(":status", "200")],
    "8_1_2_1_4_pseudo_after_regular": lambda f: [("x-test", "ok")] + f,
    # 8.1.2.2
    "8_1_2_2_1_connection": lambda f: f + [("connection", "keep-alive")],
    "8_1_2_2_2_te_not_trailers": lambda f: f + [("trailers", "test"),
                                                ("te", "trailers, deflate")],
    # 8.1.2.3
    "8_1_2_3_1_empty_path": lambda f: [f[0], f[1], (":path", ""), f[3]],
    "8_1_2_3_2_no_method": lambda f: f[1:],
    "8_1_2_3_3_no_scheme": lambda f: [f[0], f[2], f[3]],
    "8_1_2_3_4_no_path": lambda f: [f[0], f[1], f[3]],
    "8_1_2_3_5_two_methods": lambda f: f + [(":method", "GET")],
    "8_1_2_3_6_two_schemes": lambda f: f + [(":scheme", f[1][1])],
    "8_1_2_3_7_two_paths": lambda f: f + [(":path", "/")],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_8_1_2_malformed_request(conn, name):
    """A malformed request is a stream error (RFC 9113 §8.1.1); the
    connection serves the next stream."""
    conn.send(conn.headers(1, MALFORMED[name](conn.fields())))
    assert stream_error(conn, 1, PROTOCOL) == "stream"
    conn.send(conn.headers(3))
    response(conn, 3)


def test_8_1_2_1_3_pseudo_header_in_trailers(conn):
    conn.send(conn.headers(1, conn.fields("POST"), flags=END_HEADERS),
              frame(DATA, 0, 1, b"test"),
              conn.headers(1, [(":method", "POST")], flags=END_HEADERS))
    assert stream_error(conn, 1, PROTOCOL) == "stream"
    ping_ack(conn)


@pytest.mark.parametrize("frames", [
    [b"test"],                                # 8.1.2.6/1
    [b"test", b"test"],                       # 8.1.2.6/2: over several DATA frames
], ids=["1_one_data", "2_two_data"])
def test_8_1_2_6_content_length_mismatch(conn, frames):
    fields = conn.fields("POST") + [("content-length", "1")]
    data = [frame(DATA, 0, 1, chunk) for chunk in frames[:-1]]
    conn.send(conn.headers(1, fields, flags=END_HEADERS), *data,
              frame(DATA, END_STREAM, 1, frames[-1]))
    assert stream_error(conn, 1, PROTOCOL) == "stream"


# -- 8.2 server push --------------------------------------------------------------------

def test_8_2_1_push_promise_from_a_client(conn):
    conn.send(frame(PUSH_PROMISE, END_HEADERS, 1,
                    (3).to_bytes(4, "big") + conn.block(conn.fields())))
    connection_error(conn, PROTOCOL)


# -- HPACK (RFC 7541) -------------------------------------------------------------------

HPACK_ERRORS = {
    # name: (bytes before our fields, bytes after them)
    "2_3_3_1_index_past_the_tables": (b"", b"\xfe"),                # 126
    "2_3_3_2_name_index_past_the_tables": (b"", b"\x7f\x3f\x04test"),  # a literal, name 126
    "4_2_1_table_size_update_at_the_end": (b"", b"\x21"),
    "5_2_1_huffman_padding_over_7_bits": (b"", b"\x00\x85\xf2\xb2\x4a\x84\xff\x84\x49\x50\x9f\xff"),
    "5_2_2_huffman_padded_with_zeros": (b"", b"\x00\x85\xf2\xb2\x4a\x84\xff\x83\x49\x50\x90"),
    "5_2_3_huffman_with_eos": (b"", b"\x00\x85\xf2\xb2\x4a\x87\xff\xff\xff\xfd\x25\x42\x7f"),
    "6_1_1_index_0": (b"", b"\x80"),
    # 4097 (over the default SETTINGS_HEADER_TABLE_SIZE, which we keep)
    "6_3_1_table_size_over_the_setting": (b"\x3f\xe2\x1f", b""),
}


@pytest.mark.parametrize("name", sorted(HPACK_ERRORS))
def test_hpack_decoding_error(conn, name):
    assert conn.settings.get(0x1, 4096) == 4096
    before, after = HPACK_ERRORS[name]
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 1,
                    before + conn.block(conn.fields()) + after))
    connection_error(conn, COMPRESSION)


# -- generic: what every server must accept ---------------------------------------------

def test_generic_1_1_preface(srv):
    Wire(srv).handshake().close()


@pytest.mark.parametrize("name, send", [
    ("2_1_priority_on_idle_stream", lambda w: w.send(frame(PRIORITY, 0, 1, priority()))),
    ("2_4_rst_stream_on_half_closed_remote",
     lambda w: w.send(w.headers(1), frame(RST_STREAM, 0, 1, (8).to_bytes(4, "big")))),
    ("3_4_1_rst_stream",
     lambda w: w.send(w.headers(1, flags=END_HEADERS), frame(RST_STREAM, 0, 1, b"\0\0\0\x08"))),
    ("3_5_settings", lambda w: w.send(frame(SETTINGS, 0, 0, settings(
        (0x1, 4096), (0x2, 0), (0x3, 100), (0x4, 65535), (0x5, 16384), (0x6, 65536))))),
    ("3_9_1_window_update", lambda w: w.send(frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\x01"))),
], ids=lambda v: v if isinstance(v, str) else "")
def test_generic_connection_goes_on(conn, name, send):
    send(conn)
    ping_ack(conn)


def test_generic_3_8_1_goaway_from_client(conn):
    conn.send(frame(GOAWAY, 0, 0, b"\0" * 8))
    while conn.next() is not None:
        pass


@pytest.mark.parametrize("name", ["2_2_window_update", "2_3_priority"])
def test_generic_2_half_closed_remote_accepts(conn, name):
    """A stream with a zero window stays half-closed (remote) and takes a
    WINDOW_UPDATE (and PRIORITY) frame: its first DATA byte comes."""
    conn.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 0))), conn.headers(1))
    if name == "2_3_priority":
        conn.send(frame(PRIORITY, 0, 1, priority()))
    conn.send(frame(WINDOW_UPDATE, 0, 1, b"\0\0\0\x01"))
    assert len(expect(conn, DataFrame).data) == 1


def test_generic_2_5_priority_on_closed_stream(conn):
    conn.send(conn.headers(1))
    stream_ended(conn)
    conn.send(frame(PRIORITY, 0, 1, priority()))
    ping_ack(conn)


@pytest.mark.parametrize("name, frames", [
    ("3_1_1_data", lambda w: [frame(DATA, END_STREAM, 1, b"test")]),
    ("3_1_2_data_twice", lambda w: [frame(DATA, 0, 1, b"test"),
                                    frame(DATA, END_STREAM, 1, b"test")]),
    ("3_1_3_data_padded", lambda w: [frame(DATA, END_STREAM | PADDED, 1, b"\x08test" + b"\0" * 8)]),
    ("4_3_post", lambda w: [frame(DATA, END_STREAM, 1, b"test")]),
    ("4_4_post_with_trailers", lambda w: [
        frame(DATA, 0, 1, b"test"), w.headers(1, [("x-test", "ok")])]),
])
def test_generic_request_with_body(conn, name, frames):
    fields = conn.fields("POST")
    if name.startswith("4_4"):
        fields.append(("trailer", "x-test"))
    conn.send(conn.headers(1, fields, flags=END_HEADERS), *frames(conn))
    response(conn)


@pytest.mark.parametrize("name, make", [
    ("3_2_1_headers", lambda w: w.headers(1)),
    ("3_2_2_headers_padded", lambda w: frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1,
                                              b"\x08" + w.block(w.fields()) + b"\0" * 8)),
    ("3_2_3_headers_with_priority", lambda w: frame(
        HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, 1, priority() + w.block(w.fields()))),
    ("3_3_1_priority_weight_1", lambda w: frame(PRIORITY, 0, 1, priority(weight=0)) + w.headers(1)),
    ("3_3_2_priority_weight_256", lambda w: frame(PRIORITY, 0, 1, priority()) + w.headers(1)),
    ("3_3_3_priority_dependency", lambda w: frame(PRIORITY, 0, 3, priority(depends_on=1))
     + w.headers(1)),
    ("3_3_4_priority_exclusive", lambda w: frame(PRIORITY, 0, 1, priority(exclusive=True))
     + w.headers(1)),
    ("3_9_2_window_update_on_the_stream", lambda w: w.headers(1) + frame(
        WINDOW_UPDATE, 0, 1, b"\0\0\0\x01")),
    ("3_10_1_continuation", lambda w: w.headers(1, flags=END_STREAM) + frame(
        CONTINUATION, END_HEADERS, 1, w.block(dummy_fields(1, 10)))),
    ("3_10_2_continuations", lambda w: w.headers(1, flags=END_STREAM) + frame(
        CONTINUATION, 0, 1, w.block(dummy_fields(1, 10))) + frame(
        CONTINUATION, END_HEADERS, 1, w.block(dummy_fields(1, 10)))),
    ("4_1_get", lambda w: w.headers(1)),
    ("4_2_head", lambda w: w.headers(1, method="HEAD")),
])
def test_generic_request_answered(conn, name, make):
    conn.send(make(conn))
    response(conn)


HPACK_ACCEPTED = {
    "5_1_indexed": (b"", b"\xba"),
    "5_2_incremental_new_name_huffman": (
        b"", b"\x40\x87\xb5\x05\xb1\x61\xcc\x5a\x93\x84\x9c\x48\xac\xa4"),
    "5_3_incremental_new_name": (b"", b"\x40\x0a" + b"user-agent" + b"\x06h2spec"),
    "5_4_incremental_x_test_huffman": (b"", b"\x40\x85\xf2\xb2\x4a\x84\xff\x84\x9c\x48\xac\xa4"),
    "5_5_without_indexing_new_name": (b"", b"\x00\x0a" + b"user-agent" + b"\x06h2spec"),
    "5_6_without_indexing_huffman": (b"", b"\x00\x85\xf2\xb2\x4a\x84\xff\x84\x9c\x48\xac\xa4"),
    "5_7_never_indexed_new_name": (b"", b"\x10\x0a" + b"user-agent" + b"\x06h2spec"),
    "5_8_never_indexed_huffman": (b"", b"\x10\x85\xf2\xb2\x4a\x84\xff\x84\x9c\x48\xac\xa4"),
    "5_9_indexed_name": (b"", b"\x7a\x06h2spec"),     # user-agent (58) by index
    "5_10_table_size_update_0": (b"\x20", b""),
    "5_11_two_table_size_updates": (b"\x20\x3f\xe1\x1f", b""),     # 0, then 4096
}


@pytest.mark.parametrize("name", sorted(HPACK_ACCEPTED))
def test_generic_hpack_representation(conn, name):
    before, after = HPACK_ACCEPTED[name]
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 1,
                    before + conn.block(conn.fields()) + after))
    response(conn)


# -- the same over TLS, after ALPN h2 ---------------------------------------------------

def test_tls_request_answered(tls_srv):
    w = Wire(tls_srv).handshake()
    w.send(w.headers(1))
    response(w)
    assert len(expect(w, DataFrame).data) == len(INDEX)
    w.close()


@pytest.mark.parametrize("name, raw, code", [
    ("6_7_3_ping_on_stream_1", lambda w: frame(PING, 0, 1, b"\0" * 8), PROTOCOL),
    ("4_3_1_invalid_header_block", lambda w: frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x40"),
     COMPRESSION),
    ("6_9_1_2_window_over_2_31", lambda w: frame(WINDOW_UPDATE, 0, 0, b"\x7f\xff\xff\xff") * 2,
     FLOW_CONTROL),
])
def test_tls_connection_error(tls_srv, name, raw, code):
    w = Wire(tls_srv).handshake()
    w.send(raw(w))
    connection_error(w, code)
    w.close()


def test_tls_malformed_request_is_a_stream_error(tls_srv):
    w = Wire(tls_srv).handshake()
    w.send(w.headers(1, w.fields() + [("connection", "keep-alive")]))
    assert stream_error(w, 1, PROTOCOL) == "stream"
    w.send(w.headers(3))
    response(w, 3)
    w.close()

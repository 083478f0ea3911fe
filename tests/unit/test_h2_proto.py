"""flashplug.h2proto without a network: python-hyper h2's server connection
with our departures (RFC 9113 §4.3 COMPRESSION_ERROR, §8.1.1 a malformed
request as one stream's error, §5.1.2 REFUSED_STREAM, §5.1 DATA on a
closed stream, §6.5 a SETTINGS ACK with a payload), fed frames in memory.
tests/integration/test_h2_conformance.py checks them over the wire."""
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame

from flashplug.h2proto import BodyLengthMismatch, MalformedFields, Refused, ServerConnection

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def server():
    conn = ServerConnection(h2.config.H2Configuration(
        client_side=False, header_encoding=None, validate_inbound_headers=False))
    conn.initiate_connection()
    conn.receive_data(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # empty SETTINGS
    conn.data_to_send()
    return conn


def client_frames(length, body):
    client = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding=None))
    client.initiate_connection()
    client.data_to_send()
    client.send_headers(1, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"),
                            (b":authority", b"x"), (b"content-length", b"%d" % length)])
    block = client.data_to_send()
    return block + DataFrame(1, body, flags=["END_STREAM"]).serialize()


@pytest.mark.parametrize("length, body", [(1, b"xyz"), (5, b"xyz")])
def test_a_content_length_mismatch_is_an_event_not_a_connection_error(length, body):
    conn = server()
    events = conn.receive_data(client_frames(length, body))
    bad = [e for e in events if isinstance(e, BodyLengthMismatch)]
    assert len(bad) == 1 and (bad[0].stream_id, bad[0].expected) == (1, length)
    assert bad[0].flow_controlled_length == len(body)
    # No GOAWAY: the connection goes on.
    assert conn.state_machine.state != h2.connection.ConnectionState.CLOSED


def test_a_field_block_that_does_not_decode_is_a_compression_error():
    conn = server()
    frame = HeadersFrame(1, b"\xbf\x7f", flags=["END_HEADERS", "END_STREAM"])
    with pytest.raises(h2.exceptions.ProtocolError) as caught:
        conn.receive_data(frame.serialize())
    assert caught.value.error_code == ErrorCodes.COMPRESSION_ERROR


@pytest.mark.parametrize("lengths", [[b"abc"], [b"1", b"2"], [b"-1"], [b"1 2"]])
def test_a_content_length_that_is_no_length_resets_only_its_stream(lengths):
    """RFC 9113 §8.1.1 (and RFC 9110 §8.6): a malformed request is a
    stream error; h2 alone would end the connection."""
    conn = server()
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"),
              (b":authority", b"x")] + [(b"content-length", v) for v in lengths]
    encoder = hpack.Encoder()
    frame = HeadersFrame(1, encoder.encode(fields), flags=["END_HEADERS"])
    events = conn.receive_data(frame.serialize())
    assert [(type(e), e.stream_id) for e in events] == [(MalformedFields, 1)]
    sent = conn.data_to_send()
    assert sent[3] == 0x3 and int.from_bytes(sent[9:13], "big") == ErrorCodes.PROTOCOL_ERROR
    # The connection goes on: the next stream is a request.
    good = HeadersFrame(3, encoder.encode(fields[:4]), flags=["END_HEADERS", "END_STREAM"])
    events = conn.receive_data(good.serialize())
    assert [type(e) for e in events][:1] == [h2.events.RequestReceived]


def test_a_headers_frame_on_an_even_stream_stays_a_connection_error():
    conn = server()
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
              (b":authority", b"x")]
    frame = HeadersFrame(2, hpack.Encoder().encode(fields), flags=["END_HEADERS"])
    with pytest.raises(h2.exceptions.ProtocolError):
        conn.receive_data(frame.serialize())


FIELDS = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"x")]


def test_a_stream_past_the_limit_is_refused_alone():
    conn = server()
    conn.local_settings.max_concurrent_streams = 2
    conn.local_settings.acknowledge()
    encoder = hpack.Encoder()
    frames = b"".join(HeadersFrame(sid, encoder.encode(FIELDS), flags=["END_HEADERS", "END_STREAM"])
                      .serialize() for sid in (1, 3, 5))
    events = conn.receive_data(frames)
    assert [e.stream_id for e in events if isinstance(e, h2.events.RequestReceived)] == [1, 3]
    assert [(type(e), e.stream_id) for e in events if isinstance(e, Refused)] == [(Refused, 5)]
    sent = conn.data_to_send()
    assert sent[3] == 0x3 and int.from_bytes(sent[5:9], "big") == 5
    assert int.from_bytes(sent[9:13], "big") == ErrorCodes.REFUSED_STREAM
    # HPACK stayed in step: a later stream, once one closed, decodes.
    conn.reset_stream(1)
    events = conn.receive_data(HeadersFrame(7, encoder.encode(FIELDS), flags=[
        "END_HEADERS", "END_STREAM"]).serialize())
    assert dict(events[0].headers)[b":path"] == b"/"


def test_data_on_a_stream_both_sides_ended_is_a_connection_error():
    conn = server()
    conn.receive_data(HeadersFrame(1, hpack.Encoder().encode(FIELDS),
                                   flags=["END_HEADERS", "END_STREAM"]).serialize())
    conn.send_headers(1, [(b":status", b"204")], end_stream=True)
    with pytest.raises(h2.exceptions.ProtocolError) as caught:
        conn.receive_data(DataFrame(1, b"late", flags=["END_STREAM"]).serialize())
    assert caught.value.error_code == ErrorCodes.STREAM_CLOSED


def test_data_on_a_stream_we_reset_stays_a_stream_error():
    conn = server()
    conn.receive_data(HeadersFrame(1, hpack.Encoder().encode(FIELDS),
                                   flags=["END_HEADERS"]).serialize())
    conn.reset_stream(1, ErrorCodes.CANCEL)
    conn.data_to_send()
    conn.receive_data(DataFrame(1, b"in flight").serialize())
    # It crossed our RST_STREAM: RST_STREAM STREAM_CLOSED again, no GOAWAY.
    assert [kind for kind, _ in frames_of(conn.data_to_send())] == [0x3]
    assert conn.state_machine.state != h2.connection.ConnectionState.CLOSED


def frames_of(data):
    """(type, payload) of each frame in ``data``."""
    out = []
    while data:
        length = int.from_bytes(data[:3], "big")
        out.append((data[3], data[9:9 + length]))
        data = data[9 + length:]
    return out


def test_a_settings_ack_with_a_payload_is_a_frame_size_error():
    conn = server()
    with pytest.raises(h2.exceptions.ProtocolError) as caught:
        conn.receive_data(b"\x00\x00\x01\x04\x01\x00\x00\x00\x00\x00")
    assert caught.value.error_code == ErrorCodes.FRAME_SIZE_ERROR


def test_trailers_without_end_stream_reset_only_their_stream():
    conn = server()
    encoder = hpack.Encoder()
    conn.receive_data(HeadersFrame(1, encoder.encode(FIELDS), flags=["END_HEADERS"]).serialize())
    events = conn.receive_data(HeadersFrame(1, encoder.encode([(b"x-test", b"ok")]),
                                            flags=["END_HEADERS"]).serialize())
    assert [(type(e), e.stream_id) for e in events] == [(MalformedFields, 1)]
    assert conn.state_machine.state != h2.connection.ConnectionState.CLOSED

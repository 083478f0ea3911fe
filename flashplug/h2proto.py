"""Where our HTTP/2 framing departs from python-hyper ``h2``'s defaults.

Theory of operation: ``h2`` frames, checks flow control and decodes HPACK
for ``flashplug.h2conn``; in two places its error is not the one RFC 9113
names, and a client that checks the RFC (h2spec, nginx's behaviour) sees
the difference:

* A field block that does not decode is a connection error of type
  ``COMPRESSION_ERROR`` (§4.3); ``h2`` says ``PROTOCOL_ERROR``.
  :class:`RequestDecoder` raises our own :class:`CompressionError`, which
  ``h2`` passes through and answers with its code.
* A request whose DATA frames do not add up to its ``content-length`` is
  malformed, and a malformed request is a *stream* error of type
  ``PROTOCOL_ERROR`` (§8.1.1, §8.1.2); ``h2`` ends the whole connection,
  and every other request on it.  :class:`ServerConnection` turns that one
  check into a :class:`BodyLengthMismatch` event instead, which the driver
  answers with ``RST_STREAM``; nginx resets the stream too.
* A ``content-length`` that is no number, or two that differ, make the
  request malformed as well (RFC 9113 §8.1.1, RFC 9110 §8.6), so a
  stream error again; ``h2`` ends the connection.  :class:`ServerConnection`
  resets that stream itself and reports a :class:`MalformedFields` event.
  (Every other field check is ours, in ``flashplug.h2conn``: ``h2``'s
  inbound validation is off.)
"""
import h2.connection
import h2.events
import h2.exceptions
import hpack
from h2.errors import ErrorCodes
from h2.stream import StreamState


class CompressionError(h2.exceptions.ProtocolError):
    """A field block that does not decode (RFC 9113 §4.3)."""

    error_code = ErrorCodes.COMPRESSION_ERROR


class RequestDecoder(hpack.Decoder):
    """HPACK for requests; a decoding error is a :class:`CompressionError`
    (``h2`` turns only hpack's own errors into PROTOCOL_ERROR).  A header
    list over our limit stays ``h2``'s ENHANCE_YOUR_CALM (an HPACK bomb)."""

    def decode(self, data, raw=False):
        try:
            return super().decode(data, raw)
        except hpack.OversizedHeaderListError:
            raise
        except (hpack.HPACKError, IndexError, TypeError, UnicodeDecodeError) as e:
            raise CompressionError(f"field block does not decode: {e}") from None


class BodyLengthMismatch(h2.events.Event):
    """A stream's DATA went past, or ended short of, its ``content-length``
    (RFC 9113 §8.1.1).  ``flow_controlled_length``: the bytes of the frame
    that showed it, counted against the connection's window and never
    delivered as ``DataReceived``, so the driver gives them back."""

    def __init__(self, stream_id, flow_controlled_length, expected, actual):
        self.stream_id = stream_id
        self.flow_controlled_length = flow_controlled_length
        self.expected = expected
        self.actual = actual


class MalformedFields(h2.events.Event):
    """A request's field block that ``h2`` refused after opening its
    stream (a ``content-length`` that is no number, or two that differ);
    the stream is already reset with PROTOCOL_ERROR.  ``reason``: h2's
    message, for the log."""

    def __init__(self, stream_id, reason):
        self.stream_id = stream_id
        self.reason = reason


# The states of a stream whose opening HEADERS h2 accepted as frames.
_OPENED = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)


class ServerConnection(h2.connection.H2Connection):
    """``h2``'s connection with our HPACK decoder, and a content-length
    mismatch as an event for one stream rather than a connection error."""

    def __init__(self, config):
        super().__init__(config)
        self.decoder = RequestDecoder()
        self.decoder.max_header_list_size = self.DEFAULT_MAX_HEADER_LIST_SIZE

    def _receive_data_frame(self, frame):
        try:
            return super()._receive_data_frame(frame)
        except h2.exceptions.InvalidBodyLengthError as e:
            # h2 has counted the frame against both windows and left the
            # stream open; the driver resets it.
            return [], [BodyLengthMismatch(frame.stream_id, frame.flow_controlled_length,
                                           e.expected_length, e.actual_length)]

    def _receive_headers_frame(self, frame):
        opening = frame.stream_id not in self.streams
        try:
            return super()._receive_headers_frame(frame)
        except h2.exceptions.ProtocolError as e:
            # Only h2's plain ProtocolError raised after it opened a new
            # stream is about the fields (its content-length parse); its
            # subclasses, and errors on stream ids or states, stay
            # connection errors.
            stream = self.streams.get(frame.stream_id) if opening else None
            if (type(e) is not h2.exceptions.ProtocolError or stream is None
                    or stream.state_machine.state not in _OPENED):
                raise
            return stream.reset_stream(ErrorCodes.PROTOCOL_ERROR), [
                MalformedFields(frame.stream_id, str(e))]

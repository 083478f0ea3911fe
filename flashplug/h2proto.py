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
  inbound validation is off.)  So are trailers without ``END_STREAM``
  (§8.1: a HEADERS frame that is neither the first nor the last).
* A HEADERS frame past our ``SETTINGS_MAX_CONCURRENT_STREAMS`` is a stream
  error of type ``REFUSED_STREAM`` (§5.1.2; nginx's answer, which a client
  retries); ``h2`` ends the connection, and every stream on it.
  :class:`ServerConnection` admits the stream and resets it at once, so
  ``h2``'s books and the HPACK state stay whole, and reports a
  :class:`Refused` event.
* DATA on a stream both sides ended is a connection error of type
  ``STREAM_CLOSED`` (§5.1 "closed" allows it, RFC 7540 and h2spec require
  it); ``h2`` resets only the stream.  A stream we reset stays a stream
  error: the client's DATA may have crossed our RST_STREAM.
* A SETTINGS frame with ACK and a payload is a connection error of type
  ``FRAME_SIZE_ERROR`` (§6.5); ``h2`` says ``PROTOCOL_ERROR``
  (:class:`RequestFrames`).

The other stream errors ``h2`` answers as connection errors (a
WINDOW_UPDATE of 0 on a stream, a PRIORITY frame of the wrong length or
naming its own stream) stay so: §5.4 lets an endpoint treat any stream
error as a connection error, h2spec accepts either, and only a broken
client sends them.
"""
import h2.connection
import h2.events
import h2.exceptions
import h2.frame_buffer
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


class FrameSizeError(h2.exceptions.ProtocolError):
    """A frame whose length its type forbids (RFC 9113 §4.2, §6.5)."""

    error_code = ErrorCodes.FRAME_SIZE_ERROR


class RequestFrames(h2.frame_buffer.FrameBuffer):
    """``h2``'s frame buffer; a SETTINGS ACK with a payload is a
    :class:`FrameSizeError` (RFC 9113 §6.5) before hyperframe parses it."""

    def _validate_frame_length(self, length):
        super()._validate_frame_length(length)
        head = self._data         # the frame's header is still at its start
        if length and head[3] == 0x4 and head[4] & 0x1:
            raise FrameSizeError(f"SETTINGS ACK with {length} bytes of payload")


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


class Refused(h2.events.Event):
    """A stream opened past ``SETTINGS_MAX_CONCURRENT_STREAMS``; it is
    already reset with REFUSED_STREAM (RFC 9113 §5.1.2)."""

    def __init__(self, stream_id):
        self.stream_id = stream_id


# The states of a stream whose opening HEADERS h2 accepted as frames.
_OPENED = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)


class ServerConnection(h2.connection.H2Connection):
    """``h2``'s connection with our HPACK decoder and frame buffer, and the
    stream errors above as events for one stream rather than connection
    errors."""

    def __init__(self, config):
        super().__init__(config)
        self.decoder = RequestDecoder()
        self.decoder.max_header_list_size = self.DEFAULT_MAX_HEADER_LIST_SIZE
        self.incoming_buffer = RequestFrames(server=True)
        self._refusing = False

    @property
    def open_inbound_streams(self):
        # While a stream past the limit is admitted to be refused (below),
        # h2's own count must not end the connection first.
        return 0 if self._refusing else super().open_inbound_streams

    def _receive_data_frame(self, frame):
        try:
            return super()._receive_data_frame(frame)
        except h2.exceptions.InvalidBodyLengthError as e:
            # h2 has counted the frame against both windows and left the
            # stream open; the driver resets it.
            return [], [BodyLengthMismatch(frame.stream_id, frame.flow_controlled_length,
                                           e.expected_length, e.actual_length)]

    def _handle_data_on_closed_stream(self, events, exc, frame):
        # §5.1 "closed" (module docstring): only a stream that both sides
        # ended makes this the connection's error.
        if self._stream_is_closed_by_end(frame.stream_id):
            raise h2.exceptions.StreamClosedError(frame.stream_id)
        return super()._handle_data_on_closed_stream(events, exc, frame)

    def _receive_headers_frame(self, frame):
        try:
            return self._headers_checked(frame)
        except h2.exceptions.TooManyStreamsError:
            pass      # h2's first step: nothing changed yet, so admit it now
        self._refusing = True
        try:
            frames, events = self._headers_checked(frame)
        finally:
            self._refusing = False
        stream = self.streams.get(frame.stream_id)
        if stream is None or stream.state_machine.state not in _OPENED:
            return frames, events    # malformed as well: reset already
        return frames + stream.reset_stream(ErrorCodes.REFUSED_STREAM), [Refused(frame.stream_id)]

    def _headers_checked(self, frame):
        """h2's HEADERS, with a malformed request one stream's error."""
        opening = frame.stream_id not in self.streams
        try:
            return super()._receive_headers_frame(frame)
        except h2.exceptions.ProtocolError as e:
            # Only h2's plain ProtocolError raised after the stream opened
            # (its content-length parse) or took trailers (without
            # END_STREAM) is about the fields; its subclasses, and errors
            # on stream ids or states, stay connection errors.
            stream = self.streams.get(frame.stream_id)
            if (type(e) is not h2.exceptions.ProtocolError or stream is None
                    or not (opening or stream.state_machine.trailers_received)
                    or stream.state_machine.state not in _OPENED):
                raise
            return stream.reset_stream(ErrorCodes.PROTOCOL_ERROR), [
                MalformedFields(frame.stream_id, str(e))]

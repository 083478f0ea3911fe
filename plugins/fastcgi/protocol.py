"""FastCGI 1.0 records, sans-I/O: bytes in, events out; calls in, bytes out.

Theory of operation
-------------------
Everything on a FastCGI connection is a *record* (FastCGI 1.0 §3.3)::

    version:1  type:1  requestId:2  contentLength:2  paddingLength:1  reserved:1
    content[contentLength]  padding[paddingLength]

(big-endian).  A request is a ``BEGIN_REQUEST`` record, a stream of
``PARAMS`` records (name-value pairs, §3.4) ended by an empty one, and a
stream of ``STDIN`` records ended by an empty one.  The application answers
with ``STDOUT`` (and ``STDERR``) streams and one ``END_REQUEST``.  Records
with request id 0 are management records: ``GET_VALUES`` asks the
application for its limits, ``GET_VALUES_RESULT`` answers, ``UNKNOWN_TYPE``
says a management record type was not understood.

This module has two layers, both pure:

* :class:`RecordReader` turns bytes into :class:`Record` objects (framing
  only: version, lengths, padding); the ``encode_*`` functions produce the
  bytes of each record a web server sends.  An application (a test
  backend) reads with the first and answers with the second.
* :class:`ClientConnection` is the web server's side of one connection: it
  knows which request ids are open and turns the application's records into
  events (:class:`Stdout`, :class:`Stderr`, :class:`EndRequest`,
  :class:`Values`, :class:`UnknownType`), refusing every record that breaks
  the protocol.  It cuts the records itself, as the reader does, but hands
  each one's content straight to a sink (``receive_into``): this runs for
  every reply, and record objects would only be unpacked again.

Every violation raises :class:`ProtocolError` with a one-line cause for the
error log.  The checks (the reader's, then the connection's):

============================================  ===============================
what arrives                                  why it is refused
============================================  ===============================
a version byte other than 1                    not FastCGI 1.0 (or garbage)
a record type the application may not send    only STDOUT, STDERR,
(BEGIN_REQUEST, PARAMS, 12, ...)               END_REQUEST, GET_VALUES_RESULT
                                               and UNKNOWN_TYPE flow that way
a stream or END_REQUEST record for request     the id was never begun, or was
id 0, or for an id that is not open            already ended
STDOUT (STDERR) data after the empty record    the stream was closed
that closed that stream
an END_REQUEST whose content is not 8 bytes    §5.5 fixes its body
an UNKNOWN_TYPE whose content is not 8 bytes   §4.2 fixes its body
a management record with a non-zero id         §3.3: management ids are 0
a name-value pair whose lengths run past the   truncated or garbage pairs
content
the peer closing in the middle of a record     a crashed or broken backend
============================================  ===============================

Limits come from the format itself: a record's content is at most 65,535
bytes and its padding at most 255, so the reader never holds more than one
record (65,798 bytes) beyond what it has handed out.
"""
import struct
from typing import Dict, NamedTuple, Union

VERSION = 1

# Record types (§8).
BEGIN_REQUEST = 1
ABORT_REQUEST = 2
END_REQUEST = 3
PARAMS = 4
STDIN = 5
STDOUT = 6
STDERR = 7
DATA = 8
GET_VALUES = 9
GET_VALUES_RESULT = 10
UNKNOWN_TYPE = 11

TYPE_NAMES = {
    BEGIN_REQUEST: "BEGIN_REQUEST", ABORT_REQUEST: "ABORT_REQUEST",
    END_REQUEST: "END_REQUEST", PARAMS: "PARAMS", STDIN: "STDIN",
    STDOUT: "STDOUT", STDERR: "STDERR", DATA: "DATA",
    GET_VALUES: "GET_VALUES", GET_VALUES_RESULT: "GET_VALUES_RESULT",
    UNKNOWN_TYPE: "UNKNOWN_TYPE",
}

# Roles (§6) and the BEGIN_REQUEST flag (§5.1).
RESPONDER = 1
AUTHORIZER = 2
FILTER = 3
KEEP_CONN = 1

# END_REQUEST protocolStatus values (§5.5).
REQUEST_COMPLETE = 0
CANT_MPX_CONN = 1
OVERLOADED = 2
UNKNOWN_ROLE = 3

PROTOCOL_STATUS_NAMES = {
    REQUEST_COMPLETE: "REQUEST_COMPLETE", CANT_MPX_CONN: "CANT_MPX_CONN",
    OVERLOADED: "OVERLOADED", UNKNOWN_ROLE: "UNKNOWN_ROLE",
}

# GET_VALUES variables (§4.1).
MAX_CONNS = "FCGI_MAX_CONNS"
MAX_REQS = "FCGI_MAX_REQS"
MPXS_CONNS = "FCGI_MPXS_CONNS"

HEADER_LEN = 8
#: The most content one record carries (contentLength is 16 bits).
MAX_CONTENT = 0xFFFF
#: The largest name or value length a 4-byte length field can hold (§3.4).
MAX_PAIR_LENGTH = 0x7FFFFFFF

_HEADER = struct.Struct(">BBHHBx")
_BEGIN_BODY = struct.Struct(">HB5x")
_END_BODY = struct.Struct(">IB3x")
_UNKNOWN_BODY = struct.Struct(">B7x")
_LONG_LENGTH = struct.Struct(">I")
_PADS = [b"\0" * n for n in range(8)]
_BEGIN_KEEP = _BEGIN_BODY.pack(RESPONDER, KEEP_CONN)
_BEGIN_CLOSE = _BEGIN_BODY.pack(RESPONDER, 0)

# The types an application sends to a web server (the last two are
# management records, with request id 0).
_FROM_APP = frozenset({STDOUT, STDERR, END_REQUEST, GET_VALUES_RESULT, UNKNOWN_TYPE})

# Builds a NamedTuple without its Python-level __new__: records and events
# are made for every response.
_new_tuple = tuple.__new__


class ProtocolError(Exception):
    """The peer broke FastCGI 1.0; the message is the cause, one line.

    The connection cannot be trusted after it: close it.
    """


class Record(NamedTuple):
    type: int
    request_id: int
    content: bytes


# -- encoding -------------------------------------------------------------------

def encode_record(rtype, request_id, content=b""):
    """One record, padded to a multiple of 8 bytes (§3.3 recommends it).

    :raises ValueError: ``content`` over :data:`MAX_CONTENT` bytes or an id
        outside 0-65535.
    """
    n = len(content)
    if n > MAX_CONTENT:
        raise ValueError(f"record content of {n} bytes is over {MAX_CONTENT}")
    if not 0 <= request_id <= 0xFFFF:
        raise ValueError(f"request id {request_id} is outside 0-65535")
    pad = -n & 7
    return _HEADER.pack(VERSION, rtype, request_id, n, pad) + bytes(content) + _PADS[pad]


def encode_stream(rtype, request_id, data):
    """``data`` as records of ``rtype`` (as many as its size needs).

    Empty ``data`` gives the one empty record that ends the stream.
    """
    if not data:
        return encode_record(rtype, request_id)
    view = memoryview(data)
    return b"".join(encode_record(rtype, request_id, view[i:i + MAX_CONTENT])
                    for i in range(0, len(view), MAX_CONTENT))


def encode_begin_request(request_id, keep_conn=True, role=RESPONDER):
    """A BEGIN_REQUEST record (§5.1)."""
    body = _BEGIN_BODY.pack(role, KEEP_CONN if keep_conn else 0)
    return encode_record(BEGIN_REQUEST, request_id, body)


def encode_params(request_id, params):
    """The whole PARAMS stream for ``params`` (pairs or a mapping), closed
    by its empty record."""
    data = encode_pairs(params.items() if hasattr(params, "items") else params)
    return encode_stream(PARAMS, request_id, data) + encode_record(PARAMS, request_id)


def encode_stdin(request_id, data):
    """STDIN records for ``data``; ``b""`` ends the stream (end of body)."""
    return encode_stream(STDIN, request_id, data)


def encode_abort_request(request_id):
    """An ABORT_REQUEST record (§5.4): the client went away."""
    return encode_record(ABORT_REQUEST, request_id)


def encode_end_request(request_id, app_status=0, protocol_status=REQUEST_COMPLETE):
    """An END_REQUEST record (§5.5); an application (or a test one) sends it."""
    return encode_record(END_REQUEST, request_id,
                         _END_BODY.pack(app_status & 0xFFFFFFFF, protocol_status))


def encode_get_values(names=(MAX_CONNS, MAX_REQS, MPXS_CONNS)):
    """A GET_VALUES record asking for ``names`` (§4.1)."""
    return encode_record(GET_VALUES, 0, encode_pairs((name, "") for name in names))


def encode_pairs(pairs):
    """Name-value pairs (§3.4), given as a dict or pairs: each length in 1 byte below 128, else in 4
    bytes with the top bit set.  ``str`` is encoded as UTF-8 with
    surrogate escapes (the CGI environment's own bytes survive).

    This runs for every request, so the usual case, every name and value
    ASCII text under 128 characters, is one list of f-strings encoded once:
    its lengths are then characters below 128, which encode to the same
    single bytes.  Anything else (bytes, a long or non-ASCII value) leaves
    a pair out or makes the encoding fail, and the pairs are encoded one by
    one.
    """
    # (A dict's items are read twice without a copy; other pairs once.)
    pairs = pairs.items() if type(pairs) is dict else list(pairs)
    try:
        text = [f"{_CHARS[len(n)]}{_CHARS[len(v)]}{n}{v}" for n, v in pairs
                if type(n) is str is type(v)]
        if len(text) == len(pairs):
            return "".join(text).encode("ascii")
    except (IndexError, UnicodeEncodeError):
        pass
    out = []
    for name, value in pairs:
        if type(name) is not bytes:
            name = name.encode("utf-8", "surrogateescape")
        if type(value) is not bytes:
            value = value.encode("utf-8", "surrogateescape")
        out += (_length(len(name)), _length(len(value)), name, value)
    return b"".join(out)


_CHARS = [chr(n) for n in range(0x80)]


def _length(n):
    if n < 0x80:
        return bytes((n,))
    if n > MAX_PAIR_LENGTH:
        raise ValueError(f"a name or value of {n} bytes is over {MAX_PAIR_LENGTH}")
    return _LONG_LENGTH.pack(n | 0x80000000)


# -- decoding -------------------------------------------------------------------

def decode_pairs(content):
    """Name-value pairs (§3.4) -> list of ``(name, value)`` bytes.

    :raises ProtocolError: a length runs past the end of ``content``.
    """
    pairs = []
    pos, end = 0, len(content)
    while pos < end:
        lengths = []
        for _ in range(2):
            if pos >= end:
                raise ProtocolError("name-value pair cut short in its lengths")
            n = content[pos]
            if n & 0x80:
                if pos + 4 > end:
                    raise ProtocolError("name-value pair cut short in a 4-byte length")
                n = _LONG_LENGTH.unpack_from(content, pos)[0] & 0x7FFFFFFF
                pos += 4
            else:
                pos += 1
            lengths.append(n)
        nlen, vlen = lengths
        if pos + nlen + vlen > end:
            raise ProtocolError("name-value pair of %d+%d bytes runs past its record"
                                % (nlen, vlen))
        pairs.append((bytes(content[pos:pos + nlen]),
                      bytes(content[pos + nlen:pos + nlen + vlen])))
        pos += nlen + vlen
    return pairs


class RecordReader:
    """Bytes -> records (framing only; see the module comment).

    ``feed(data)`` returns the records completed so far; ``eof()`` says the
    peer closed, and raises if it did so in the middle of a record.
    """

    def __init__(self):
        self._buf = bytearray()

    @property
    def buffered(self):
        """Bytes held that do not make a whole record yet."""
        return len(self._buf)

    def feed(self, data):
        """:raises ProtocolError: a record with a version other than 1."""
        buf = self._buf
        if buf:
            buf += data
            src = buf
        else:
            # The usual case: nothing held back, so the records are cut
            # from ``data`` itself (one copy each, none for the buffer).
            src = data
        records = []
        pos = 0
        n = len(src)
        unpack = _HEADER.unpack_from
        while n - pos >= HEADER_LEN:
            version, rtype, rid, clen, plen = unpack(src, pos)
            if version != VERSION:
                raise ProtocolError("record version %d, not 1 (not FastCGI, or garbage: %r)"
                                    % (version, bytes(src[pos:pos + HEADER_LEN])))
            end = pos + HEADER_LEN + clen
            if end + plen > n:
                break
            records.append(_new_tuple(Record, (rtype, rid, bytes(src[pos + HEADER_LEN:end]))))
            pos = end + plen
        if src is buf:
            del buf[:pos]
        elif pos < n:
            buf += memoryview(data)[pos:]
        return records

    def eof(self):
        """:raises ProtocolError: the stream ended inside a record."""
        if self._buf:
            raise ProtocolError("connection closed %d bytes into a record" % len(self._buf))


# -- the web server's side of a connection --------------------------------------

class Stdout(NamedTuple):
    """Response bytes for ``request_id``; ``b""`` ends the stream."""
    request_id: int
    data: bytes


class Stderr(NamedTuple):
    """Error-log bytes for ``request_id``; ``b""`` ends the stream."""
    request_id: int
    data: bytes


class EndRequest(NamedTuple):
    """The request is over (and its id free again)."""
    request_id: int
    app_status: int
    protocol_status: int


class Values(NamedTuple):
    """GET_VALUES_RESULT: ``{name: value}`` as ``str`` (ASCII by §4.1)."""
    values: Dict[str, str]


class UnknownType(NamedTuple):
    """The application did not understand a management record we sent."""
    type: int


Event = Union[Stdout, Stderr, EndRequest, Values, UnknownType]


# The streams of an open request that have ended (ClientConnection._open).
_STDOUT_DONE = 1
_STDERR_DONE = 2


class ClientConnection:
    """One connection from the web server to a FastCGI application.

    ``begin(request_id, params, keep_conn)`` opens a request and returns the
    bytes that start it; ``stdin(request_id, data)`` and
    ``abort(request_id)`` give the bytes to send next; ``receive(data)``
    returns the events in the application's bytes.  An id stays open until
    its END_REQUEST arrives, aborted or not, so a late record for it is not
    mistaken for a violation.
    """

    def __init__(self):
        self._held = b""  # the start of a record that has not all arrived
        self._open = {}   # request id -> its ended streams (_STDOUT_DONE | _STDERR_DONE)

    @property
    def open_requests(self):
        return len(self._open)

    def is_open(self, request_id):
        return request_id in self._open

    def begin(self, request_id, params, keep_conn=True, end_stdin=False):
        """BEGIN_REQUEST and the PARAMS stream, and with ``end_stdin`` the
        empty STDIN record (a request without a body), in one buffer.
        ``params``: a mapping or a list of pairs, or pairs already encoded
        (:func:`encode_pairs`): bytes, or a tuple of such parts, sent in
        their order (so a part encoded once is not copied into another).

        :raises ValueError: the id is 0 (management) or already open.
        """
        if not 1 <= request_id <= 0xFFFF or request_id in self._open:
            raise ValueError(f"request id {request_id} is not free")
        self._open[request_id] = 0
        if type(params) is bytes:
            params = (params,)
        elif type(params) is not tuple:
            params = (encode_pairs(params.items() if hasattr(params, "items") else params),)
        n = sum(map(len, params))
        # The records around the PARAMS content depend only on the id and
        # the flags: made once for each (an id is usually 1, and reused).
        key = (request_id, keep_conn, end_stdin)
        frame = _FRAMES.get(key)
        if frame is None:
            frame = _FRAMES[key] = _frame(*key)
        if n <= MAX_CONTENT:
            pad = -n & 7
            return b"".join((frame[0], _HEADER.pack(VERSION, PARAMS, request_id, n, pad),
                             *params, _PADS[pad], frame[1]))
        return b"".join((frame[0], encode_stream(PARAMS, request_id, b"".join(params)),
                         frame[1]))

    def stdin(self, request_id, data):
        """STDIN records; ``b""`` closes the stream."""
        return encode_stdin(request_id, data)

    def abort(self, request_id):
        return encode_abort_request(request_id)

    def get_values(self, names=(MAX_CONNS, MAX_REQS, MPXS_CONNS)):
        return encode_get_values(names)

    def receive(self, data):
        """Events in ``data`` (an empty ``data`` is end of file).

        :raises ProtocolError: see the module comment for each check.
        """
        events = []
        self.receive_into(data, _Collect(events))
        return events

    def receive_into(self, data, sink):
        """Hand each event in ``data`` to ``sink`` as it is decoded, without
        building event objects (the web server's path: a reply is a few
        records, and this runs for each): ``sink.stdout(request_id, data)``,
        ``sink.stderr(request_id, data)``, ``sink.end(request_id,
        app_status, protocol_status)``, ``sink.values(values)`` and
        ``sink.unknown_type(type)``.  An empty ``data`` is end of file.

        :raises ProtocolError: see the module comment for each check.
        """
        if not data:
            if self._held:
                raise ProtocolError("connection closed %d bytes into a record"
                                    % len(self._held))
            return
        if self._held:
            data = self._held + data
            self._held = b""
        # Records are cut here, not by a RecordReader: no record objects,
        # and each content is one slice of the bytes read.
        opened = self._open
        unpack = _HEADER.unpack_from
        pos = 0
        n = len(data)
        while n - pos >= HEADER_LEN:
            version, rtype, rid, clen, plen = unpack(data, pos)
            if version != VERSION:
                raise ProtocolError("record version %d, not 1 (not FastCGI, or garbage: %r)"
                                    % (version, data[pos:pos + HEADER_LEN]))
            start = pos + HEADER_LEN
            end = start + clen
            if end + plen > n:
                break
            pos = end + plen
            if rtype == STDOUT or rtype == STDERR:      # the usual records first
                flag = _STDOUT_DONE if rtype == STDOUT else _STDERR_DONE
                done = opened.get(rid)
                if done is None:
                    raise ProtocolError("%s for request id %d, which is not open"
                                        % (TYPE_NAMES[rtype], rid))
                if done & flag:
                    raise ProtocolError("%s data for request id %d after its stream ended"
                                        % (TYPE_NAMES[rtype], rid))
                if not clen:
                    opened[rid] = done | flag
                (sink.stdout if rtype == STDOUT else sink.stderr)(rid, data[start:end])
                continue
            if rtype == END_REQUEST:
                if rid not in opened:
                    raise ProtocolError("END_REQUEST for request id %d, which is not open"
                                        % rid)
                if clen != _END_BODY.size:
                    raise ProtocolError("END_REQUEST body of %d bytes, not 8" % clen)
                del opened[rid]
                app_status, protocol_status = _END_BODY.unpack_from(data, start)
                sink.end(rid, app_status, protocol_status)
                continue
            content = data[start:end]
            if rtype not in _FROM_APP:
                raise ProtocolError("record type %s (%d) may not come from an application"
                                    % (TYPE_NAMES.get(rtype, "unknown"), rtype))
            # A management record.
            if rid != 0:
                raise ProtocolError("%s for request id %d, not 0" % (TYPE_NAMES[rtype], rid))
            if rtype == GET_VALUES_RESULT:
                try:
                    values = {k.decode("ascii"): v.decode("ascii")
                              for k, v in decode_pairs(content)}
                except UnicodeDecodeError:
                    raise ProtocolError("GET_VALUES_RESULT with non-ASCII names or "
                                        "values") from None
                sink.values(values)
                continue
            if len(content) != _UNKNOWN_BODY.size:
                raise ProtocolError("UNKNOWN_TYPE body of %d bytes, not 8" % len(content))
            sink.unknown_type(content[0])
        self._held = data[pos:] if pos < n else b""


#: (request id, keep_conn, end_stdin) -> _frame's answer, for begin().
_FRAMES = {}


def _frame(request_id, keep_conn, end_stdin):
    """``(before, after)``: the BEGIN_REQUEST record, and the empty PARAMS
    record with (``end_stdin``) the empty STDIN one."""
    before = (_HEADER.pack(VERSION, BEGIN_REQUEST, request_id, _BEGIN_BODY.size, 0)
              + (_BEGIN_KEEP if keep_conn else _BEGIN_CLOSE))
    after = _HEADER.pack(VERSION, PARAMS, request_id, 0, 0)
    if end_stdin:
        after += _HEADER.pack(VERSION, STDIN, request_id, 0, 0)
    return before, after


class _Collect:
    """The sink of :meth:`ClientConnection.receive`: events into a list."""

    __slots__ = ("events",)

    def __init__(self, events):
        self.events = events

    def stdout(self, rid, data):
        self.events.append(_new_tuple(Stdout, (rid, data)))

    def stderr(self, rid, data):
        self.events.append(_new_tuple(Stderr, (rid, data)))

    def end(self, rid, app_status, protocol_status):
        self.events.append(_new_tuple(EndRequest, (rid, app_status, protocol_status)))

    def values(self, values):
        self.events.append(Values(values))

    def unknown_type(self, rtype):
        self.events.append(UnknownType(rtype))


def limits(values, default_conns, default_reqs):
    """``(max_conns, max_reqs, multiplexed)`` from a GET_VALUES_RESULT.

    A value that is missing or not a positive integer keeps the default
    (``FCGI_MPXS_CONNS`` defaults to "no"), so a terse application works.
    """
    def positive(name, default):
        text = values.get(name, "")
        return int(text) if text.isdigit() and int(text) > 0 else default
    return (positive(MAX_CONNS, default_conns), positive(MAX_REQS, default_reqs),
            values.get(MPXS_CONNS, "0").strip() == "1")


"""Parsing a CGI script's response header block (RFC 3875 §6).

Theory of operation: the handler feeds stdout into ``find_header_end``
until it finds the blank line, then ``parse_header_block`` turns the block
into a :class:`CGIResponse` or raises :class:`CGIError` with a cause for the
error log (the client only sees 502).  Pure: bytes in, objects out.

Lines may end with LF or CRLF (§6.3: scripts rarely send CRLF).  The kind of
response follows from the CGI fields (§6.2):

=========================  ================================================
``Location: /path``         *local redirect*: the server answers as if the
(no Status, or 200)         client had asked for /path (other fields and
                            the body are dropped)
``Location: other``         *client redirect*: Status (default 302) and
                            Location go to the client, with the document
                            if the script sent a Content-Type; a Status
                            200 is no redirect status (§6.2.4): 302
                            without the document, as Apache answers
no ``Location``             *document*: Status (default 200); Content-Type
                            is required unless the body turns out empty,
                            which only the handler can see
=========================  ================================================

``Status`` must be three digits from 200 to 599 and an optional reason; a
script cannot send an interim (1xx) response.  Each field must pass the
kernel's check for plugin headers (:func:`flashplug.http.validate.field_error`:
a token name; no CR, NUL or other control character in the value), so a
script cannot split the response.  Hop-by-hop fields are dropped: framing
the response is the server's job.  So is knowing which statuses carry no
content (204, 205, 304: ``flashplug.http.framing``): their Content-Length is
dropped too, and the handler discards their body.
"""
import re
from typing import List, NamedTuple, Optional, Tuple

from flashplug.http.framing import (must_be_empty, strip_framing_for_status,
                                    strip_not_modified_metadata)
from flashplug.http.validate import CheckedFields, field_error
from flashplug.memo import Memo

#: A header block larger than this is garbage, not a slow script (Apache
#: and nginx cap a response header at 8-64 KiB).
MAX_HEADER_BLOCK = 64 * 1024

DOCUMENT, LOCAL_REDIRECT, CLIENT_REDIRECT = "document", "local-redirect", "client-redirect"

#: Fields that describe one connection; the server frames the response.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade",
})

_STATUS = re.compile(r"([2-5][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?\Z")
#: Digits a Content-Length may have (less than 1 EB, as a Range offset).
MAX_LENGTH_DIGITS = 18
#: The fields parse_header_block looks at; any other passes as it is.
_SPECIAL = frozenset({"status", "location", "content-type", "content-length"}) | HOP_BY_HOP
_END = re.compile(rb"\n\r?\n")


class CGIError(Exception):
    """The script's output is not a valid CGI response (the cause)."""


class CGIResponse(NamedTuple):
    kind: str
    status: int
    reason: Optional[str] = None
    headers: List[Tuple[str, str]] = ()   # (a list once parsed; a Response copies it)
    location: Optional[str] = None
    content_type: Optional[str] = None
    content_length: Optional[int] = None


def find_header_end(buf, start=0):
    """``(block_end, body_start)`` offsets of the blank line that ends the
    header block in ``buf``, or None if it has not arrived yet.

    ``start`` lets a caller with a growing buffer skip what it searched.
    """
    first = buf[:2]
    if first[:1] == b"\n":
        return 0, 1
    if first == b"\r\n":
        return 0, 2
    m = _END.search(buf, start - 2 if start > 2 else 0)
    return None if m is None else m.span()


def parse_header_block(block, local_redirects=True):
    """Parse the header lines (without the blank line) into a CGIResponse.

    With ``local_redirects`` False, a ``Location: /path`` is a client
    redirect too (302 unless a Status says otherwise) and keeps its other
    fields, as nginx treats a FastCGI application's answer.

    A block parsed lately is not parsed again (``_BLOCKS``): its
    CGIResponse is made anew, with a list of its own.
    """
    kept = _BLOCKS[local_redirects]
    known = kept.data.get(block)
    if known is not None:
        response, fields = known
        if fields is None:
            return response     # (a local redirect's: no list)
        kind, status, reason, _, location, content_type, content_length = response
        return _new_tuple(CGIResponse, (kind, status, reason, CheckedFields(fields), location,
                                        content_type, content_length))
    response = _parse_block(block, local_redirects)
    if len(block) <= _BLOCK_KEPT:
        headers = response.headers
        kept.put(block, (response, tuple(headers) if type(headers) is CheckedFields else None))
    return response


def _parse_block(block, local_redirects):
    """``parse_header_block`` of a block not kept."""
    if not block.strip():
        raise CGIError("empty header block")
    status = reason = location = content_type = content_length = None
    headers = []
    # Decoded once, whole (each octet one character: ISO-8859-1), then
    # cut into lines; a line seen before is not cut and checked again.
    checked = _LINES.data
    for line in block.decode("latin-1").split("\n"):
        known = checked.get(line)
        if known is None:
            known = _check_line(line)
        field, lname = known
        if lname not in _SPECIAL:
            headers.append(field)
            continue
        name, value = field
        if lname == "status":
            if status is not None:
                raise CGIError("more than one Status header")
            m = _STATUS.match(value)
            if m is None:
                raise CGIError("malformed Status %r" % _clip(value.encode("latin-1")))
            status = int(m.group(1))
            reason = m.group(2) or None
            continue
        if lname == "location":
            if location is not None:
                raise CGIError("more than one Location header")
            if not value:
                raise CGIError("empty Location header")
            location = value
        elif lname == "content-type":
            if content_type is not None:
                raise CGIError("more than one Content-Type header")
            content_type = value
        elif lname == "content-length":
            # (str.isdigit takes "²" and other digits; only ASCII ones count.
            # Over 18 digits no client can count to it: RFC 9110 §8.6 warns of
            # overflows, and nginx refuses such an upstream length too.)
            if content_length is not None or not (value.isascii() and value.isdigit()) \
                    or len(value) > MAX_LENGTH_DIGITS:
                raise CGIError("bad Content-Length %r" % _clip(value.encode("latin-1")))
            content_length = int(value)
        else:   # hop-by-hop
            continue
        headers.append(field)

    if (local_redirects and location is not None and _is_local(location)
            and status in (None, 200)):
        return CGIResponse(LOCAL_REDIRECT, 200, location=location)
    if location is not None:
        kind = CLIENT_REDIRECT
        if status == 200 and local_redirects:
            # RFC 3875 §6.2.4: a client redirect with a document has a
            # Status that means redirection; a 200 with an absolute Location
            # is the plain client redirect of §6.2.3, which has none.  So
            # Apache's mod_cgi answers it: 302, the script's body dropped.
            # (nginx keeps a FastCGI application's 200: local_redirects off.)
            status = None
            headers = [h for h in headers if h[0].lower() not in ("content-type",
                                                                  "content-length")]
            content_type = content_length = None
        if status is None:
            status, reason = 302, None
    else:
        kind, status = DOCUMENT, status or 200
    if status != 200 and must_be_empty(status):
        headers = strip_framing_for_status(status, headers)
        content_length = None
        if status == 304:
            headers = strip_not_modified_metadata(headers)
            content_type = None
    # Every field passed field_error (_check_line): the kernel need not
    # check them again.
    return _new_tuple(CGIResponse, (kind, status, reason, CheckedFields(headers), location,
                                    content_type, content_length))


#: Header lines already checked -> ``((name, value), lowercase name)``: a
#: backend sends the same few lines again and again.  Bounded (lines up
#: to _LINE_KEPT characters, _LINES_MAX of them).
_LINES_MAX = 512
_LINES = Memo(_LINES_MAX)
_LINE_KEPT = 256
# Builds a NamedTuple without its Python-level __new__.
_new_tuple = tuple.__new__
#: Whole header blocks parsed lately, by ``local_redirects``: block ->
#: its CGIResponse and its fields as a tuple (None: no list).  A script or a
#: backend answers the same page with the same block, byte for byte
#: (PHP's X-Powered-By and Content-Type).  Blocks up to _BLOCK_KEPT bytes,
#: _BLOCKS_MAX of each kind.
_BLOCKS_MAX = 256
_BLOCKS = {True: Memo(_BLOCKS_MAX), False: Memo(_BLOCKS_MAX)}
_BLOCK_KEPT = 1024


def _check_line(line):
    """One header line (a ``str``, maybe ending in CR) cut into its field
    and checked: ``((name, value), lowercase name)``.

    :raises CGIError: no colon, or a field the kernel would refuse.
    """
    text = line[:-1] if line[-1:] == "\r" else line
    name, colon, value = text.partition(":")
    value = value.strip(" \t")
    problem = field_error(name, value) if colon else "no colon"
    if problem is not None:
        raise CGIError("malformed header line %r: %s"
                       % (_clip(text.encode("latin-1")), problem))
    known = ((name, value), name.lower())
    if len(line) <= _LINE_KEPT:
        _LINES.put(line, known)
    return known


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?\Z")


def parse_nph_head(block):
    """An NPH script's own head (its status line and fields, without the
    blank line; lines may end in LF or CRLF) as a :class:`CGIResponse` of
    kind DOCUMENT, for a client the bytes cannot go to untouched (HTTP/2).

    The fields are checked as a CGI header block's are; hop-by-hop ones are
    dropped.  A chunked body is refused (:class:`CGIError`): its framing
    would reach the client as content.  RFC 3875 §5: the output of an NPH
    script is an HTTP response.
    """
    first, _, fields = block.partition(b"\n")
    m = _STATUS_LINE.match(first.rstrip(b"\r"))
    if m is None:
        raise CGIError("not an HTTP/1.x status line: %r" % _clip(first))
    status = int(m.group(1))
    if status < 200:
        raise CGIError("an interim status (%d) cannot end an NPH head" % status)
    reason = m.group(2).decode("latin-1") if m.group(2) else None
    headers, content_type, content_length = [], None, None
    for line in fields.decode("latin-1").split("\n") if fields else ():
        field, lname = _check_line(line)
        if lname == "transfer-encoding":
            raise CGIError("a chunked NPH body cannot be relayed over HTTP/2")
        if lname in HOP_BY_HOP:
            continue
        value = field[1]
        if lname == "content-length":
            if content_length is not None or not (value.isascii() and value.isdigit()) \
                    or len(value) > MAX_LENGTH_DIGITS:
                raise CGIError("bad Content-Length %r" % _clip(value.encode("latin-1")))
            content_length = int(value)
        elif lname == "content-type":
            content_type = value
        headers.append(field)
    if must_be_empty(status):
        headers = strip_framing_for_status(status, headers)
        content_length = None
    return CGIResponse(DOCUMENT, status, reason, headers, None, content_type, content_length)


def _is_local(location):
    """An abs-path (``/x``), not a network-path reference (``//host/x``)."""
    return location.startswith("/") and not location.startswith("//")


def _clip(data, limit=60):
    return data[:limit] + (b"..." if len(data) > limit else b"")

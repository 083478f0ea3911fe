"""Response framing for HTTP/1.1: a Response or a cache entry to wire bytes.

Theory of operation: ``send_response`` turns a handler's ``Response`` into a
status line, header lines (Date/Server from the App's once-a-second line,
Content-Length or chunked, Connection) and a body, and hands them to the
connection's driver: ``write`` for bytes, ``write_pair`` for a head and a big
in-memory body in one gather call, ``write_file`` for a range of an open
file.  ``write_entry`` does the same for a fresh cached file with the
entry's prebuilt header lines, the cached fast path.  Nothing here touches a
socket; where the bytes go is the driver's business.
"""
import socket

from flashplug.http.framing import FRAMING_FIELDS, SERVER_FIELDS, must_be_empty
from flashplug.http.status import reason
from flashplug.http.validate import ResponseMistake
from flashplug.static import FileBody

MSG_MORE = getattr(socket, "MSG_MORE", 0)
# A body in memory smaller than this is copied behind its header and sent
# with one send(); a bigger one goes out with sendmsg() of the two buffers,
# which costs a little more per call but copies nothing in user space.
JOIN_MAX = 16 * 1024
# A streaming handler waits once this much output is queued, so a slow
# client holds at most about this much of a response in our memory.
STREAM_HIGH_WATER = 256 * 1024
_STATUS_LINES = {}


def status_line(status, phrase=None):
    """The status line (bytes) for ``status``, with ``phrase`` or else the
    standard reason; the standard lines are made once."""
    if phrase is None or phrase == reason(status):
        # (A proxy passes its upstream's phrase on: mostly the standard one.)
        line = _STATUS_LINES.get(status)
        if line is None:
            line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {reason(status)}\r\n".encode()
        return line
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1", "replace")


def _connection_line(conn, version, keep):
    """The Connection line for a response (b"" for a persistent 1.1 one);
    a response that closes marks the connection closing, and so does a
    graceful stop (every response is then the connection's last)."""
    if keep and not conn.closing and not conn.app.stopping:
        return b"" if version == "1.1" else b"Connection: keep-alive\r\n"
    conn.closing = True
    conn.last_asked = not keep
    return b"Connection: close\r\n"


def write_not_modified(conn, version, keep, entry):
    """Write a 304 for a cached file from its prebuilt validator lines: the
    bytes ``send_response`` makes of ``Response(304, validators)``."""
    conn.write(b"".join((b"HTTP/1.1 304 Not Modified\r\n", conn.app.date_server_lines,
                         entry.validator_lines, _connection_line(conn, version, keep), b"\r\n")))


def write_entry(conn, head_only, version, keep, entry):
    """Write a 200 for a cached file: prebuilt header lines, then the body.
    Returns the body bytes sent."""
    conn_line = _connection_line(conn, version, keep)
    data = entry.data
    if data is not None and not head_only and len(data) < JOIN_MAX:
        # One buffer, one send for header and body.
        conn.write(b"".join((b"HTTP/1.1 200 OK\r\n", conn.app.date_server_lines,
                             entry.head_tail, conn_line, b"\r\n", data)))
        return entry.size
    head = b"".join((b"HTTP/1.1 200 OK\r\n", conn.app.date_server_lines,
                     entry.head_tail, conn_line, b"\r\n"))
    if head_only:
        conn.write(head)
        return 0
    if data is None:
        conn.write(head, MSG_MORE)
        conn.write_file(entry, 0, entry.size)
    else:
        conn.write_pair(head, data)  # too big to copy: one sendmsg
    return entry.size


async def send_response(conn, request, response, force_close=False, method=None):
    """Frame and write ``response`` on ``conn``; ``method`` is that of a
    message that could not be parsed (``request`` None), as far as read.

    Returns the response actually sent (a 500 replaces it when a
    response-headers hook fails) and the number of body bytes sent.
    """
    app = conn.app
    # The rules of the site that answers (a request that could not be
    # parsed is the default site's).
    site = app.default_site if request is None else request.server._site
    rules = site.rules
    if rules is not None and not response.raw:
        rules.apply(request.path if request is not None else None, response)
    hook = site.response_headers_hook if request is not None else None
    if hook is not None and not response.raw:
        try:
            hook(request=request, response=response)
        except Exception as exc:  # noqa: BLE001 - a failing hook fails this response
            app.log_plugin_error(exc, request)
            await close_response(response)
            response = await app.error_answer(request, 500, "Internal Server Error")
            if rules is not None:
                rules.apply(request.path, response)
    if response.upgrade is not None:
        if request is not None and request is conn.active \
                and conn.upgrade_rest is not None and hasattr(conn, "tunnel"):
            conn.head_sent = True
            return response, await _switch_protocols(conn, response)
        response = await app.mistake_answer(request, ResponseMistake(
            "answered 101 to a request that asked for no Upgrade", "a plugin"))
    conn.head_sent = True
    if response.raw:
        conn.closing = True
        return response, await _send_stream(conn, response.stream, chunked=False)
    head, head_only, chunked = _head(conn, request, response, force_close, method)
    stream = response.stream
    if head_only:
        conn.write(head)
        await close_response(response)
        return response, 0
    if stream is not None:
        conn.write(head)
        length = None if chunked else _declared_length(response.headers)
        return response, await _send_stream(conn, stream, chunked, length)
    return response, _write_whole(conn, head, response.body)


def _declared_length(headers):
    """The Content-Length a streamed response states (checked to be one
    number), or None."""
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value)
    return None


def send_now(conn, request, response):
    """``send_response`` for a handler's usual answer, without a coroutine:
    a whole body (or none), no Upgrade, no raw stream, and no
    response-headers hook on the request's site (a hook's failure is
    answered with an error page, a file to look up).  Returns the body
    bytes sent, or None (nothing done) when the response needs
    ``send_response``."""
    site = request.server._site
    if response.stream is not None or response.upgrade is not None or response.raw \
            or site.response_headers_hook is not None:
        return None
    if site.rules is not None:
        site.rules.apply(request.path, response)
    conn.head_sent = True
    head, head_only, _ = _head(conn, request, response, False)
    if head_only:
        conn.write(head)
        return 0
    return _write_whole(conn, head, response.body)


def _head(conn, request, response, force_close, method=None):
    """The response head (bytes) of ``response`` on ``conn``, whether it
    goes without a body (a HEAD, or a status that carries none) and
    whether the body is sent chunked.  Marks the connection closing when
    the response is its last.  ``method``: see ``send_response``."""
    app = conn.app
    status = response.status
    if request is not None:
        method = request.method
    # A client still waiting for "100 Continue" gets no more answers on
    # this connection (see RequestCycle._answered_early).
    keep = (not force_close and not response.close and not conn.closing
            and not app.stopping and request is not None and request.keep_alive
            and (conn.continue_for is not request or request.complete))
    # 1xx, 204, 205 and 304 carry no content whatever the handler says; the
    # framing fields it gave go too (flashplug.http.framing), and 205 is
    # framed as empty.
    empty = must_be_empty(status)
    head_only = method == "HEAD" or empty
    body = response.body
    stream = response.stream
    # A list of fields checked before (a handler's usual answer) comes
    # with its lines written already (found by the check:
    # Response._block); else they are written here.
    block = response._block
    if block is not None and not (empty and block.has_length):
        encoded, has_length = block.lines, block.has_length
    else:
        fields = []
        has_length = False
        for name, value in response.headers:
            lname = name.lower()
            if lname in SERVER_FIELDS or (empty and lname in FRAMING_FIELDS):
                continue
            if lname == "content-length":
                has_length = True
            fields.append(f"{name}: {value}\r\n")
        # The fields encoded at once (a plugin's values were checked to be
        # ISO-8859-1; "replace" is for the kernel's own responses).
        encoded = "".join(fields).encode("latin-1", "replace")
    lines = [status_line(status, response.reason), app.date_server_lines, encoded]
    chunked = False
    if status == 205:
        lines.append(b"Content-Length: 0\r\n")
    elif stream is not None:
        if not has_length and not head_only:
            if request is not None and request.version == "1.1":
                chunked = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                keep = False  # HTTP/1.0: the end of the body is the close
    elif not empty and not has_length:
        lines.append(b"Content-Length: %d\r\n"
                     % (body.length if type(body) is FileBody else len(body)))
    if keep:
        if request.version == "1.0":
            lines.append(b"Connection: keep-alive\r\n")
    else:
        lines.append(b"Connection: close\r\n")
        conn.closing = True
        conn.last_asked = request is not None and not request.keep_alive
    lines.append(b"\r\n")
    return b"".join(lines), head_only, chunked


def _write_whole(conn, head, body):
    """Write ``head`` and a whole ``body`` (bytes, or a FileBody's ranges);
    the body bytes sent."""
    if type(body) is FileBody:
        entry = body.entry
        parts = body.parts
        if len(parts) == 1 and entry.data is not None and body.length < JOIN_MAX:
            offset, count = parts[0]  # small, in memory: one write for all
            conn.write(head + entry.data[offset:offset + count])
            return count
        conn.write(head, MSG_MORE if entry.data is None else 0)
        for part in body.parts:
            if type(part) is bytes:
                conn.write(part)
            elif entry.data is not None:
                offset, count = part
                conn.write(entry.data[offset:offset + count])
            else:
                conn.write_file(entry, part[0], part[1])
        return body.length
    conn.write(head + body if body else head)
    return len(body)


async def _switch_protocols(conn, response):
    """Send the 101 (RFC 9110 §15.2.2), then let the plugin's ``upgrade``
    pipe bytes until it returns; the connection closes after it.  Returns
    the bytes the plugin sent."""
    lines = [status_line(101, response.reason), conn.app.date_server_lines]
    for name, value in response.headers:
        lname = name.lower()
        if lname not in SERVER_FIELDS and lname != "content-length":
            lines.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
    lines.append(b"Connection: upgrade\r\n\r\n")
    conn.closing = True
    conn.write(b"".join(lines))
    return await conn.tunnel(response.upgrade)


async def _send_stream(conn, stream, chunked, length=None):
    """Write ``stream``'s chunks; ``length`` is the Content-Length the head
    stated.  The body ends where that length says: a byte past it would be
    read by the client as the start of the next response (a plugin's
    stream could answer for the request after it), and a body that ends
    short leaves the client waiting for the rest, so either cuts the
    response off and closes the connection."""
    sent = 0
    try:
        async for chunk in stream:
            if not chunk:
                continue
            if conn.closed:
                raise ConnectionError("client went away")
            if length is not None and len(chunk) > length - sent:
                conn.write(chunk[:length - sent])
                sent = length
                raise ResponseMistake(
                    f"{getattr(stream, 'owner', 'a plugin')} streamed more than its "
                    f"Content-Length of {length} bytes; the response was cut off there")
            if chunked:
                conn.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            else:
                conn.write(chunk)
            sent += len(chunk)
            if conn.out_bytes > STREAM_HIGH_WATER:
                await conn.drain()
        if chunked:
            conn.write(b"0\r\n\r\n")
        elif length is not None and sent < length:
            raise ResponseMistake(
                f"{getattr(stream, 'owner', 'a plugin')} ended its stream after {sent} of "
                f"its Content-Length of {length} bytes; the response was cut off")
    except BaseException as exc:   # (a cancel too: the connection dropped)
        exc.bytes_sent = sent   # for the access-log line of a cut-off response
        raise
    finally:
        await _close_stream(stream)
    return sent


async def close_response(response):
    if response is not None and response.stream is not None:
        await _close_stream(response.stream)


async def _close_stream(stream):
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - the stream's own cleanup failing is logged by it
            pass

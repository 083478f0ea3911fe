"""The CGI request handler: locate, spawn, feed, parse, stream.

Theory of operation, for one request:

1. **Locate** the script in a helper (``script.locate``: stat calls may wait
   on the disk, so they stay off the loop).  404/403 here.
2. **Body.**  With a Content-Length, the body streams from the connection
   into the child's stdin as the child reads it.  A chunked body has no
   length to put in ``CONTENT_LENGTH``, so it is spooled first: in memory up
   to ``SPOOL_MEMORY``, beyond that into an unlinked temporary file (written
   by helpers) that becomes the child's stdin directly.  Over the limit: 413.
3. **Spawn** through the process manager (``flashplug.procs``), which may
   queue the request for a slot (503 when it cannot).
4. **Header block.**  Read stdout until the blank line, within the
   timeout (504 if not; 502 if the script ends first or sends garbage).
5. **Answer** by kind: a document streams the rest of stdout to the
   client as it arrives (the kernel chunk-encodes or closes); a local
   redirect is re-dispatched inside the server; a client redirect goes out
   with its Location; an NPH script's output goes out untouched.

The response body is an async iterator whose ``aclose()`` the kernel calls
when it stops early (client gone, HEAD): the process group is killed then,
or, for HEAD, left to end when it next writes to its closed stdout.  After
headers are sent, the timeout becomes an idle limit between two reads of
stdout: a slow script that keeps talking is fine, a silent one is killed.
"""
import asyncio
import errno
import ipaddress
import logging
import os
import tempfile

from flashplug import HTTPError, Headers, Request, Response
from flashplug.http.framing import must_be_empty
from flashplug.http.paths import decode_path
from flashplug.procs import PIPE, Busy, stderr_text

from .env import build_env, search_argv
from .output import NoHead, OutputBody, read_head
from .response import (CLIENT_REDIRECT, LOCAL_REDIRECT, MAX_HEADER_BLOCK, CGIError,
                       parse_header_block, parse_nph_head)
from .script import NOT_EXECUTABLE, Forbidden, Found, NotAScript, NotFound, locate

log = logging.getLogger("flashplug.cgi")

#: A chunked body up to this size is kept in memory and piped; a larger one
#: is spooled to a temporary file (and written there in batches this big).
SPOOL_MEMORY = 256 * 1024

#: Local redirects one request may follow (Apache's LimitInternalRecursion
#: default is 10 too).
MAX_REDIRECTS = 10

#: A body that is complete by the time the headers are parsed, and no
#: larger than this, goes out with a Content-Length in one write.
SMALL_BODY = 64 * 1024

#: Seconds a client told "busy" should wait before retrying.
RETRY_AFTER = "1"
#: The fix for a script the kernel would not start, by errno (execve(2)):
#: http.server ran .py files with its own interpreter, #! line or not.
SPAWN_HINTS = {
    errno.ENOEXEC: " (no #! line: start it with one, such as #!/usr/bin/env python3)",
    errno.ENOENT: " (the interpreter its #! line names does not exist, or the line "
                  "ends in a Windows CR)",
}

# Request headers that describe the original body, which a re-dispatched
# GET does not have.
_BODY_HEADERS = frozenset({"content-length", "content-type", "transfer-encoding"})


class CGIHandler:
    """Runs scripts for one worker; ``manager`` is set at start-up."""

    def __init__(self, settings, docroot, base_env, show_dotfiles, follow_symlinks,
                 cache_valid):
        self.settings = settings
        self.docroot = docroot
        self.base_env = base_env
        self.show_dotfiles = show_dotfiles
        self.follow_symlinks = follow_symlinks
        self.manager = None
        self._found = Found(cache_valid)   # by (prefix, path)

    def for_mount(self, prefix, root, exts=None):
        """The route handler for one CGI directory (or the extension mode)."""
        async def handler(request):
            return await self.handle(request, prefix, root, exts)
        return handler

    async def _locate(self, request, prefix, root, exts):
        key = (prefix, request.path)
        now = request.server.loop.time()
        script = self._found.get(key, now)
        if script is not None:
            return script
        try:
            script = await request.server.helpers.run(
                locate, request.path, prefix, root, exts,
                self.show_dotfiles, self.follow_symlinks)
        except NotFound:
            raise HTTPError(404, "Not Found") from None
        except Forbidden as e:
            raise _forbidden(request, e) from None
        self._found.put(key, script, now)
        return script

    async def handle(self, request, prefix, root, exts):
        helpers = request.server.helpers
        try:
            script = await self._locate(request, prefix, root, exts)
        except NotAScript:
            return await request.server.serve_static(request)   # a folder named x.cgi

        body, length, spool = await take_body(request, helpers, self.settings.max_body,
                                              "--cgi-max-body")
        timeout = self.settings.timeout
        env = build_env(request, script, self.base_env, self.docroot, length,
                        self.settings.pass_authorization)
        argv = [script.filename, *search_argv(request.method, request.query)]
        name = script.script_name
        try:
            proc = await self.manager.spawn(
                script.filename, argv, env, script.dir,
                stdin=spool.fileno() if spool else (PIPE if body else None),
                on_stderr=lambda line: log.warning("%s: %s", name, stderr_text(line)),
                queue_timeout=timeout)
        except Busy as e:
            log.warning("%s: 503: %s", name, e)
            raise HTTPError(503, "Service Unavailable",
                            headers=[("Retry-After", RETRY_AFTER)]) from None
        except OSError as e:
            hint = SPAWN_HINTS.get(e.errno, "")
            if e.errno == errno.EACCES and self.settings.creds is not None:
                hint = (f" (scripts run as uid {self.settings.creds[0]}, not as the server: "
                        f"it needs x on every folder above the script and r+x on it, "
                        f"chmod o+rx; or --cgi-user names another user)")
            log.error("%s: 502: cannot run %s: %s%s", name, script.filename, e.strerror, hint)
            raise HTTPError(502, "Bad Gateway") from None
        finally:
            if spool is not None:
                spool.close()  # the child has its own descriptor

        feeder = None
        if body:
            feeder = asyncio.ensure_future(_feed(proc, body, timeout))
        try:
            if script.nph:
                return await self._nph(request, proc, name, feeder)
            return await self._respond(request, proc, name, feeder)
        except BaseException:
            _stop(proc, feeder, kill=True)
            raise

    async def _read_head(self, proc, name):
        """Read stdout up to the end of the header block: (block, rest)."""
        try:
            return await read_head(proc.read, self.settings.timeout)
        except TimeoutError:
            log.error("%s: 504: no response header within %gs; killed",
                      name, self.settings.timeout)
            raise HTTPError(504, "Gateway Timeout") from None
        except NoHead as e:
            if e.too_large:
                why, linger = "sent a header block over %d bytes" % MAX_HEADER_BLOCK, 0.0
            else:
                why, linger = _why_no_head(e.partial), 0.5
        await _fail(proc, name, why, linger)

    async def _respond(self, request, proc, name, feeder):
        block, rest = await self._read_head(proc, name)
        try:
            cgi = parse_header_block(block)
        except CGIError as e:
            await _fail(proc, name, str(e))
        timeout = self.settings.timeout

        if cgi.kind == LOCAL_REDIRECT:
            _stop(proc, feeder, grace=timeout)
            return await self._local_redirect(request, cgi.location, name)
        if must_be_empty(cgi.status):
            # 204, 205, 304: whatever the script wrote after its header
            # block is not content; it is dropped, not forwarded.
            _stop(proc, feeder, grace=timeout)
            return Response(cgi.status, cgi.headers, b"", reason=cgi.reason)
        if cgi.content_length is None:
            rest, complete = _take_ready(proc, rest)
        else:
            complete = False
        if cgi.content_type is None:
            if cgi.kind != CLIENT_REDIRECT:
                # A document may leave out Content-Type only if it is empty.
                if rest or (not complete and await _read_or_fail(proc, name, timeout)):
                    await _fail(proc, name, "sent a body without Content-Type")
            _stop(proc, feeder, grace=timeout)
            return Response(cgi.status, cgi.headers, b"", reason=cgi.reason)
        if complete:
            _stop(proc, feeder, grace=timeout)
            return Response(cgi.status, cgi.headers, rest, reason=cgi.reason)
        body = _Body(proc, feeder, rest, name, timeout, cgi.content_length,
                     head=request.method == "HEAD")
        return Response(cgi.status, cgi.headers, stream=body, reason=cgi.reason)

    async def _nph(self, request, proc, name, feeder):
        timeout = self.settings.timeout
        if request.version == "2.0":
            return await self._nph_translated(request, proc, name, feeder)
        first = await _read_or_fail(proc, name, timeout)
        if not first:
            await _fail(proc, name, "produced no output", linger=0.5)
        body = _Body(proc, feeder, first, name, timeout, None, head=False)
        return Response(200, stream=body, raw=True)

    async def _nph_translated(self, request, proc, name, feeder):
        """An NPH script's response to an HTTP/2 request: its HTTP/1.x head
        has no place on an HTTP/2 stream, so it is parsed (and checked) like
        a CGI header block, and the body relayed up to its Content-Length."""
        block, rest = await self._read_head(proc, name)
        try:
            cgi = parse_nph_head(block)
        except CGIError as e:
            await _fail(proc, name, f"NPH head: {e}")
        timeout = self.settings.timeout
        if must_be_empty(cgi.status):
            _stop(proc, feeder, grace=timeout)
            return Response(cgi.status, cgi.headers, b"", reason=cgi.reason)
        body = _Body(proc, feeder, rest, name, timeout, cgi.content_length,
                     head=request.method == "HEAD")
        return Response(cgi.status, cgi.headers, stream=body, reason=cgi.reason)

    async def _local_redirect(self, request, location, name):
        hops = request.state.get("cgi_redirects", 0) + 1
        if hops > MAX_REDIRECTS:
            log.error("%s: 500: more than %d local redirects (last to %s)",
                      name, MAX_REDIRECTS, location)
            raise HTTPError(500, "Too many local redirects")
        target = location.partition("#")[0]
        raw_path, _, query = target.partition("?")
        try:
            path = decode_path(raw_path)
        except HTTPError:
            log.error("%s: 502: bad local redirect to %r", name, location)
            raise HTTPError(502, "Bad Gateway") from None
        headers = Headers([(k, v) for k, v in request.headers if k not in _BODY_HEADERS])
        new = Request("HEAD" if request.method == "HEAD" else "GET", target,
                      raw_path, path, query, request.version, headers)
        for attr in ("remote_addr", "remote_port", "server_addr", "server_port",
                     "server", "user", "auth_type", "scheme", "start_time",
                     "keep_alive", "conditional"):
            setattr(new, attr, getattr(request, attr))
        new.body = _once(b"")
        new.state = dict(request.state, cgi_redirects=hops)
        return await request.server.dispatch(new)


def _too_large(request, size, limit, option):
    """The 413 for a body over the plugin's own limit, with its one
    error-log line naming the option (as nginx's "client intended to send
    too large body"); ``size``: the declared length, or what came so far."""
    log.error("client %s intended to send too large body: %d bytes, over %s %d: \"%s %s\"",
              request.remote_addr, size, option, limit, request.method, request.target)
    return HTTPError(413, "Content Too Large", close=True)


async def take_body(request, helpers, limit, option):
    """``(chunks, length, spool_file)`` for the request body.

    ``chunks`` is an async iterable to pipe (or None), ``length`` the
    value for CONTENT_LENGTH (None without a body), ``spool_file`` an
    open file to use as stdin instead of a pipe.  A body over ``limit``
    bytes is a 413, logged with ``option``, the flag that set the limit.
    The fastcgi plugin uses it too.
    """
    if request.content_length is not None:
        if request.content_length > limit:
            raise _too_large(request, request.content_length, limit, option)
        return (request.body if request.content_length else None,
                request.content_length, None)
    if not request.chunked:
        return None, None, None
    size, held, pending, spool = 0, [], 0, None
    try:
        async for chunk in request.body:
            size += len(chunk)
            if size > limit:
                raise _too_large(request, size, limit, option)
            held.append(chunk)
            pending += len(chunk)
            if pending >= SPOOL_MEMORY:
                if spool is None:
                    spool = await helpers.run(tempfile.TemporaryFile)
                await helpers.run(spool.write, b"".join(held))
                held.clear()
                pending = 0
        if spool is None:
            data = b"".join(held)
            return (_once(data) if data else None), size, None
        if held:
            await helpers.run(spool.write, b"".join(held))
        await helpers.run(spool.flush)
        os.lseek(spool.fileno(), 0, os.SEEK_SET)
        return None, size, spool
    except BaseException:
        if spool is not None:
            spool.close()
        raise


class _Body(OutputBody):
    """The rest of stdout as the response body; a hard stop kills the
    process group (a HEAD's script may end when it next writes)."""

    hard_stop = "killed"

    def __init__(self, proc, feeder, first, name, timeout, content_length, head):
        super().__init__(first, log, name, timeout, content_length, head)
        self._proc = proc
        self._feeder = feeder

    def _read(self):
        return self._proc.read(self._timeout)

    def _stop(self, hard):
        _stop(self._proc, self._feeder, kill=hard, grace=self._timeout)


def _stop(proc, feeder, kill=False, grace=None):
    if feeder is not None:
        feeder.cancel()
    proc.finish(kill=kill, grace=grace)


async def _fail(proc, name, why, linger=0.0):
    """Answer 502 and log why, with the exit status when the script ends
    within ``linger`` seconds (it usually does, once its output is closed);
    kill it either way."""
    code = proc.returncode
    if code is None and linger:
        try:
            code = await asyncio.wait_for(proc.wait(), linger)
        except asyncio.TimeoutError:
            pass
    proc.finish(kill=True)
    status = ("" if code is None else
              f" (exit status {code})" if code >= 0 else f" (killed by signal {-code})")
    log.error("%s: 502: %s%s", name, why, status)
    raise HTTPError(502, "Bad Gateway")


def _take_ready(proc, body):
    """Add to ``body`` what stdout already holds, without waiting.

    Returns ``(body, complete)``; complete when end of file was seen and the
    body is at most SMALL_BODY.  A quick script has usually written
    everything and exited by the time its headers are parsed; its response
    then goes out in one write, with a Content-Length.
    """
    while len(body) <= SMALL_BODY:
        data = proc.read_nowait()
        if data is None:
            return body, False
        if not data:
            return body, True
        body += data
    return body, False


def _why_no_head(buf):
    """The cause to log for output that ended before its blank line."""
    if not buf:
        return "closed its output without sending anything"
    try:
        parse_header_block(buf.rstrip(b"\r\n"))
    except CGIError as e:
        return f"sent no header block ({e})"
    return "ended inside its header block"


async def _read_or_fail(proc, name, timeout):
    try:
        return await proc.read(timeout)
    except TimeoutError:
        log.error("%s: 504: no output within %gs; killed", name, timeout)
        raise HTTPError(504, "Gateway Timeout") from None


async def _feed(proc, body, timeout):
    """Copy the request body into the child's stdin, then close it."""
    try:
        async for chunk in body:
            await proc.write(chunk, timeout)
    except (BrokenPipeError, TimeoutError):
        pass  # the script stopped reading: its choice (CGI §4.2)
    except ConnectionError:
        pass  # the client went away; the handler is being cancelled
    finally:
        proc.close_stdin()


async def _once(data):
    if data:
        yield data


def _forbidden(request, refusal):
    """The 403 for a script that cannot run, its cause logged.

    A missing exec bit is the usual set-up mistake, so it is a warning that
    says the fix; the other causes (a folder, a FIFO) are debug lines.  A
    client on loopback is the operator at their own machine: the page says
    the cause too.  Anyone else gets a bare 403.
    """
    what = f"{refusal.path} {refusal.cause}"
    if refusal.cause == NOT_EXECUTABLE:
        log.warning("%s (chmod +x %s)", what, refusal.fspath)
    else:
        log.debug("%s", what)
    try:
        local = ipaddress.ip_address(request.remote_addr.partition("%")[0])
    except ValueError:
        local = None
    if local is not None and getattr(local, "ipv4_mapped", None):
        local = local.ipv4_mapped
    if local is not None and local.is_loopback:
        return HTTPError(403, f"{refusal.path} {refusal.cause}")
    return HTTPError(403, "Forbidden")

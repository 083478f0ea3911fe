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
import ipaddress
import logging
import os
import tempfile

from flashplug import HTTPError, Headers, Request, Response
from flashplug.http.framing import must_be_empty
from flashplug.http.paths import decode_path
from flashplug.procs import PIPE, Busy

from .env import build_env, search_argv
from .response import (CLIENT_REDIRECT, LOCAL_REDIRECT, MAX_HEADER_BLOCK,
                       CGIError, find_header_end, parse_header_block)
from .script import NOT_EXECUTABLE, Forbidden, NotFound, locate

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

#: Script lookups kept (each for the kernel's --cache-valid seconds).
FOUND_CACHE_ENTRIES = 1024

#: Seconds a client told "busy" should wait before retrying.
RETRY_AFTER = "1"

# Request headers that describe the original body, which a re-dispatched
# GET does not have.
_BODY_HEADERS = frozenset({"content-length", "content-type", "transfer-encoding"})


class ScriptFailed(Exception):
    """The script broke its response after the headers went out; the kernel
    aborts the connection so the client sees a truncated response."""


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
        # (prefix, path) -> (Script, expiry): a hit skips the helper round
        # trip; entries expire like the static file caches', so a script
        # removed or made non-executable stops running within cache_valid.
        self._found = {}
        self._cache_valid = cache_valid

    def for_mount(self, prefix, root, exts=None):
        """The route handler for one CGI directory (or the extension mode)."""
        async def handler(request):
            return await self.handle(request, prefix, root, exts)
        return handler

    async def _locate(self, request, prefix, root, exts):
        key = (prefix, request.path)
        now = request.server.loop.time()
        hit = self._found.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            script = await request.server.helpers.run(
                locate, request.path, prefix, root, exts,
                self.show_dotfiles, self.follow_symlinks)
        except NotFound:
            raise HTTPError(404, "Not Found") from None
        except Forbidden as e:
            raise _forbidden(request, e) from None
        if self._cache_valid > 0:
            if len(self._found) >= FOUND_CACHE_ENTRIES:
                self._found.clear()
            self._found[key] = (script, now + self._cache_valid)
        return script

    async def handle(self, request, prefix, root, exts):
        helpers = request.server.helpers
        script = await self._locate(request, prefix, root, exts)

        body, length, spool = await self._take_body(request, helpers)
        timeout = self.settings.timeout
        env = build_env(request, script, self.base_env, self.docroot, length,
                        self.settings.pass_authorization)
        argv = [script.filename, *search_argv(request.method, request.query)]
        name = script.script_name
        try:
            proc = await self.manager.spawn(
                script.filename, argv, env, script.dir,
                stdin=spool.fileno() if spool else (PIPE if body else None),
                on_stderr=lambda line: log.warning(
                    "%s: %s", name, line.decode("utf-8", "replace")),
                queue_timeout=timeout)
        except Busy as e:
            log.warning("%s: 503: %s", name, e)
            raise HTTPError(503, "Service Unavailable",
                            headers=[("Retry-After", RETRY_AFTER)]) from None
        except OSError as e:
            log.error("%s: 502: cannot run %s: %s", name, script.filename, e.strerror)
            raise HTTPError(502, "Bad Gateway") from None
        finally:
            if spool is not None:
                spool.close()  # the child has its own descriptor

        feeder = None
        if body:
            feeder = asyncio.ensure_future(_feed(proc, body, timeout))
        try:
            if script.nph:
                return await self._nph(proc, name, feeder)
            return await self._respond(request, proc, name, feeder)
        except BaseException:
            _stop(proc, feeder, kill=True)
            raise

    async def _take_body(self, request, helpers):
        """``(chunks, length, spool_file)`` for the request body.

        ``chunks`` is an async iterable to pipe (or None), ``length`` the
        value for CONTENT_LENGTH (None without a body), ``spool_file`` an
        open file to use as stdin instead of a pipe.
        """
        limit = self.settings.max_body
        if request.content_length is not None:
            if request.content_length > limit:
                raise HTTPError(413, "Content Too Large", close=True)
            return (request.body if request.content_length else None,
                    request.content_length, None)
        if not request.chunked:
            return None, None, None
        size, held, pending, spool = 0, [], 0, None
        try:
            async for chunk in request.body:
                size += len(chunk)
                if size > limit:
                    raise HTTPError(413, "Content Too Large", close=True)
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

    async def _read_head(self, proc, name):
        """Read stdout up to the end of the header block: (block, rest)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.timeout
        buf = b""
        while True:
            try:
                data = await proc.read(max(0.0, deadline - loop.time()))
            except TimeoutError:
                log.error("%s: 504: no response header within %gs; killed",
                          name, self.settings.timeout)
                raise HTTPError(504, "Gateway Timeout") from None
            if not data:
                await _fail(proc, name, _why_no_head(buf), linger=0.5)
            searched = len(buf)
            buf += data
            end = find_header_end(buf, searched)
            if end is not None:
                return buf[:end[0]], buf[end[1]:]
            if len(buf) > MAX_HEADER_BLOCK:
                await _fail(proc, name, "sent a header block over %d bytes" % MAX_HEADER_BLOCK)

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

    async def _nph(self, proc, name, feeder):
        timeout = self.settings.timeout
        first = await _read_or_fail(proc, name, timeout)
        if not first:
            await _fail(proc, name, "produced no output", linger=0.5)
        body = _Body(proc, feeder, first, name, timeout, None, head=False)
        return Response(200, stream=body, raw=True)

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


class _Body:
    """The rest of stdout as the response body (an async iterator).

    A class rather than an async generator: the kernel may ``aclose()`` it
    before the first ``__anext__`` (HEAD, client gone), and an unstarted
    generator would skip its ``finally`` and leak the process.
    """

    def __init__(self, proc, feeder, first, name, timeout, content_length, head):
        self._proc = proc
        self._feeder = feeder
        self._first = first
        self._name = name
        self._timeout = timeout
        self._left = content_length  # bytes the script promised, if it did
        self._head = head
        self._done = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._first:
            data, self._first = self._first, b""
            return self._limit(data)
        if self._done:
            raise StopAsyncIteration
        try:
            data = await self._proc.read(self._timeout)
        except TimeoutError:
            self._end(kill=True)
            log.error("%s: silent for %gs after sending headers; killed, "
                      "response cut short", self._name, self._timeout)
            raise ScriptFailed("script timed out") from None
        if data:
            return self._limit(data)
        self._end(kill=False)
        if self._left:
            log.error("%s: ended %d bytes short of its Content-Length; "
                      "response cut short", self._name, self._left)
            raise ScriptFailed("short body")
        raise StopAsyncIteration

    def _limit(self, data):
        if self._left is None:
            return data
        if len(data) >= self._left:
            data = data[:self._left]
            self._end(kill=False)  # extra bytes past Content-Length are dropped
        self._left -= len(data)
        return data

    def _end(self, kill):
        if not self._done:
            self._done = True
            _stop(self._proc, self._feeder, kill=kill, grace=self._timeout)

    async def aclose(self):
        # HEAD: the script may finish; anything else: the client is gone.
        self._end(kill=not self._head)


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

"""The FastCGI request handler: locate, send, parse, stream.

Theory of operation, for one request:

1. **Locate.**  By extension (``.php``): the script is the first segment
   of the path with that extension, found in a helper by the cgi plugin's
   ``script.locate`` (404/403 there; the file need not be executable), and
   the rest of the path is ``PATH_INFO``.  By prefix (``/app``): the prefix
   is ``SCRIPT_NAME`` and the rest of the path ``PATH_INFO``, as a WSGI
   mount point; nothing is looked up on disk.
2. **Environment.**  The cgi plugin's (httpoxy-safe), with
   ``SCRIPT_FILENAME`` and ``DOCUMENT_ROOT`` as php-fpm needs them, sent
   as PARAMS in parts, each encoded only when it can change: its
   ``fixed_env`` once per handler, its ``connection_env`` once per client
   connection (addresses, scheme, version), its ``script_env`` once per
   script found, and its ``message_env`` (the request line and fields)
   once per message sent again without a body.  Unlike CGI, ``Authorization`` is passed: a
   FastCGI backend is the operator's own application (nginx passes it
   too).
3. **Send.**  The pool admits the request (503 when its queue is full),
   picks a connection and writes ``BEGIN_REQUEST`` and ``PARAMS``; the body
   streams as ``STDIN`` records while the response is read.  A chunked body
   is spooled first (``take_body``): PHP needs ``CONTENT_LENGTH``.
4. **Header block.**  The exchange cuts it out of ``STDOUT`` as it
   arrives and wakes the handler once it is whole (one wait, up to the
   timeout: 504), which parses it with the cgi plugin's parser (502 on
   garbage).  ``Location: /x`` is a client redirect here, as in nginx.
5. **Answer.**  A reply that has all arrived with its head (the usual
   PHP page: one read) goes out from memory with a Content-Length in one
   write; a longer one streams as it arrives.

A request that fails on a reused keep-alive connection before any output
(the backend closed it as we sent) is retried once on a new connection if
it has no body and an idempotent method (RFC 9110 §9.2.2: the backend may
have run a POST before it closed).  A client that goes away (the kernel
cancels the handler, or closes the body stream) aborts the request at the
backend.
"""
import asyncio
import functools
import logging

from flashplug import HTTPError, Response
from flashplug.http.message import IDEMPOTENT_METHODS
from flashplug.memo import Memo
from flashplug.procs import Busy
from flashplug_plugins.cgi.env import (connection_env, connection_facts, fixed_env, message_env,
                                       script_env)
from flashplug_plugins.cgi.handler import take_body
from flashplug_plugins.cgi.output import OutputBody, OutputFailed
from flashplug_plugins.cgi.response import CGIError, parse_header_block
from flashplug_plugins.cgi.script import (Forbidden, Found, NotAScript, NotFound, Script,
                                         locate)

from .pool import BackendError, BackendTimeout
from .protocol import encode_pairs

log = logging.getLogger("flashplug.fastcgi")

#: A response complete by the time its head is parsed, and no larger than
#: this, goes out with a Content-Length in one write.
SMALL_BODY = 64 * 1024
#: Bytes read at a time from a spooled (chunked) request body.
SPOOL_READ = 64 * 1024
#: Client connections whose PARAMS are kept encoded; past that the
#: memory starts again empty.
CONNECTIONS_KEPT = 1024
#: Request messages (line and fields) whose PARAMS, of up to MESSAGE_SIZE
#: bytes, are kept encoded, the same way.
MESSAGES_KEPT = 256
MESSAGE_SIZE = 4096
#: Seconds a client told "busy" should wait before retrying.
RETRY_AFTER = "1"


class FastCGIHandler:
    """Runs requests for one worker; ``pools`` is filled at start-up."""

    def __init__(self, settings, docroot, base_env, show_dotfiles, follow_symlinks,
                 cache_valid):
        self.settings = settings
        self.docroot = docroot
        # The PARAMS every request of this handler shares, encoded once.
        self.fixed_params = encode_pairs(fixed_env(base_env, docroot))
        # ... and those of each client connection (connection_env), encoded
        # at its first request.
        self._by_connection = Memo(CONNECTIONS_KEPT)
        # ... and those of each request message (message_env) sent again.
        self._by_message = Memo(MESSAGES_KEPT)
        self.show_dotfiles = show_dotfiles
        self.follow_symlinks = follow_symlinks
        self.pools = {}   # Mapping.name -> Pool
        self._found = Found(cache_valid)   # by (ext, path), as in the cgi plugin

    def for_mapping(self, mapping):
        """The route handler for one ``--fastcgi`` mapping: :meth:`handle`
        with the mapping bound (a partial, not a coroutine around it), and
        :meth:`start_reply` beside it (``flashplug.reply``)."""
        handler = functools.partial(self.handle, mapping)
        handler.start_reply = functools.partial(self.start_reply, mapping)
        return handler

    def start_reply(self, mapping, request, reply):
        """The usual request without a task: no body, its script found
        lately (or a prefix mapping's), a slot and a connection free.  It
        is begun here, and answered from the exchange's wake-up through
        ``reply``.  False, with nothing done, for anything else: then
        :meth:`handle` answers."""
        if request.content_length is not None or request.chunked:
            return False
        if mapping.prefix is None:
            found = self._found.get((mapping.ext, request.path), request.server.loop.time())
            if found is None:
                return False
            script_params = found[1]
        else:
            script_params = self._prefix_params(mapping, request)
        pool = self.pools[mapping.name]
        exchange = pool.begin_now(self._params(request, script_params, None), False)
        if exchange is None:
            return False
        if exchange.error is not None or exchange.stdout_done:
            # It failed as it was sent (the connection broke): nothing will
            # wake a wait, so answer now.
            self._reply_ready(mapping, request, reply, exchange)
            return True
        waiter = exchange.ready(exchange.conn.loop.time() + self.settings.timeout)
        reply.on_cancel = exchange.abort
        waiter.add_done_callback(
            functools.partial(self._reply_ready, mapping, request, reply, exchange))
        return True

    def _reply_ready(self, mapping, request, reply, exchange, waiter=None):
        """The exchange of :meth:`start_reply` woke (``waiter``, the wait
        that ended), or failed at once: answer through ``reply``."""
        if reply.done():
            return    # the client went away (``on_cancel`` aborted the exchange)
        reply.on_cancel = None
        name = self.pools[mapping.name].name
        try:
            if exchange.head is None:
                _stop(exchange, None, abort=True)
                try:
                    self._head_failed(exchange, waiter and waiter.exception(), name,
                                      retry=request.method in IDEMPOTENT_METHODS)
                except _Retry:
                    reply.follow(self.handle(mapping, request, fresh=True))
                    return
            response = self._respond(request, exchange, None, name)
        except Exception as exc:  # noqa: BLE001 - answered as the coroutine's failure
            if exchange.head is not None:
                _stop(exchange, None, abort=True)
            reply.fail(exc)
            return
        reply.send(response)

    async def _locate(self, request, mapping, key):
        """``(script, its script_env as PARAMS)``, kept in ``_found``."""
        now = request.server.loop.time()
        try:
            script = await request.server.helpers.run(functools.partial(
                locate, request.path, "/", self.docroot, (mapping.ext,),
                show_dotfiles=self.show_dotfiles, follow_symlinks=self.follow_symlinks,
                executable=False))
        except NotFound:
            raise HTTPError(404, "Not Found") from None
        except Forbidden:
            raise HTTPError(403, "Forbidden") from None
        found = (script, encode_pairs(script_env(script, self.docroot)))
        self._found.put(key, found, now)
        return found

    async def handle(self, mapping, request, script=None, fresh=False):
        """Answer ``request`` through ``mapping``'s backend, for ``script``
        (by default the one the mapping locates: by extension, the first
        segment of the path with it; by prefix, the prefix itself, as a
        WSGI mount point, with nothing looked up on disk).  ``fresh``: on
        a new connection, with no retry (a kept-alive one just failed)."""
        if script is not None:
            script_params = encode_pairs(script_env(script, self.docroot))
        elif mapping.prefix is None:
            # A script found lately is taken from the cache, with its
            # variables encoded, without a helper's round trip.
            key = (mapping.ext, request.path)
            found = self._found.get(key, request.server.loop.time())
            if found is None:
                try:
                    found = await self._locate(request, mapping, key)
                except NotAScript:
                    return await request.server.serve_static(request)   # a folder named x.php
            script_params = found[1]
        else:
            script_params = self._prefix_params(mapping, request)
        pool = self.pools[mapping.name]
        name = pool.name
        if request.content_length is None and not request.chunked:
            body = length = None        # (take_body's answer, without its coroutine)
        else:
            body, length, spool = await take_body(request, request.server.helpers,
                                                  self.settings.max_body, "--fastcgi-max-body")
            if spool is not None:
                body = _spooled(spool, request.server.helpers)
        params = self._params(request, script_params, length)
        timeout = self.settings.timeout
        retried = fresh
        while True:
            exchange = None if retried else pool.begin_now(params, body is not None)
            if exchange is None:
                exchange = await self._begin(pool, name, params, body is not None,
                                             fresh=retried)
            feeder = None
            if body is not None:
                feeder = asyncio.ensure_future(_feed(exchange, body, timeout))
            error = None
            try:
                # The exchange wakes us once its header block is whole (or
                # the output ends, or fails): one wait, one future.
                if exchange.head is None and exchange.error is None \
                        and not exchange.stdout_done:
                    await exchange.ready(exchange.conn.loop.time() + timeout)
            except BackendTimeout as e:
                error = e
            except BaseException:
                _stop(exchange, feeder, abort=True)
                raise
            if exchange.head is not None:
                break
            _stop(exchange, feeder, abort=True)
            try:
                self._head_failed(exchange, error, name, retry=not retried and body is None
                                  and request.method in IDEMPOTENT_METHODS)
            except _Retry:
                retried = True
        try:
            return self._respond(request, exchange, feeder, name)
        except BaseException:
            _stop(exchange, feeder, abort=True)
            raise

    def _head_failed(self, exchange, error, name, retry):
        """Raise what an exchange that gave no head (stopped already) is
        answered with: ``error`` (a :class:`BackendTimeout`, or None) a
        504, a broken or refused request a 502 or 503, or :class:`_Retry`
        when ``retry`` is allowed and it failed on a reused connection
        before any output (the backend closed it as we sent)."""
        if error is not None:
            log.error("%s: 504: no response header within %gs; request aborted",
                      name, self.settings.timeout)
            raise HTTPError(504, "Gateway Timeout")
        e = exchange.error or BackendError(exchange.head_cause)
        if retry and not exchange.received and exchange.conn.served >= 2:
            log.info("%s: a kept-alive connection failed (%s); trying a new one", name, e)
            raise _Retry
        log.error("%s: %d: %s", name, e.status, e)
        raise HTTPError(e.status, "Bad Gateway" if e.status == 502 else "Service Unavailable")

    def _prefix_params(self, mapping, request):
        """A prefix mapping's :func:`script_env` as PARAMS: the prefix is
        ``SCRIPT_NAME``, the rest of the path ``PATH_INFO``."""
        script_name = mapping.prefix[:-1]
        return encode_pairs(script_env(Script(
            self.docroot + script_name, script_name, request.path[len(script_name):],
            self.docroot), self.docroot))

    def _params(self, request, script_params, length):
        """The request's PARAMS in parts, each encoded once where it does
        not change (Authorization passes: see the module notes)."""
        return (self.fixed_params, self._connection_params(request), script_params,
                self._message_params(request, length))

    def _connection_params(self, request):
        """The request's :func:`connection_env` as PARAMS, encoded once for
        each client connection's facts (its addresses, scheme, version)."""
        facts = connection_facts(request)
        params = self._by_connection.data.get(facts)
        if params is None:
            params = self._by_connection.put(facts, encode_pairs(connection_env(facts)))
        return params

    def _message_params(self, request, length):
        """The request's :func:`message_env` as PARAMS, encoded once for
        each message without a body or a user (a client sends the same
        line and fields again and again): it depends on nothing else."""
        if length is not None or request.user is not None or request.auth_type is not None:
            return encode_pairs(message_env(request, length, True))
        key = (request.method, request.target, request.raw_path, request.query,
               request.server_addr, tuple(request.headers))
        params = self._by_message.data.get(key)
        if params is None:
            params = encode_pairs(message_env(request, None, True))
            if len(params) <= MESSAGE_SIZE:
                self._by_message.put(key, params)
        return params

    async def _begin(self, pool, name, params, has_body, fresh):
        timeout = self.settings.timeout
        try:
            if pool.learned is None:
                await pool.learn()
            await pool.slots.acquire(timeout)
        except Busy as e:
            log.warning("%s: 503: %s", name, e)
            raise HTTPError(503, "Service Unavailable",
                            headers=[("Retry-After", RETRY_AFTER)]) from None
        except BackendError as e:
            log.error("%s: 502: %s", name, e)
            raise HTTPError(502, "Bad Gateway") from None
        except BackendTimeout as e:
            log.error("%s: 504: %s", name, e)
            raise HTTPError(504, "Gateway Timeout") from None
        try:
            conn = None if fresh else pool.spare_connection()
            if conn is None:
                conn = await pool.connection(fresh)
        except BaseException as e:
            pool.slots.release()
            if isinstance(e, BackendError):
                log.error("%s: 502: %s", name, e)
                raise HTTPError(502, "Bad Gateway") from None
            if isinstance(e, BackendTimeout):
                log.error("%s: 504: %s", name, e)
                raise HTTPError(504, "Gateway Timeout") from None
            raise
        pool.requests += 1
        return conn.start(params, has_body)

    def _respond(self, request, exchange, feeder, name):
        try:
            cgi = parse_header_block(exchange.head, local_redirects=False)
        except CGIError as e:
            log.error("%s: 502: %s", name, e)
            raise HTTPError(502, "Bad Gateway") from None
        if exchange.ended and exchange.error is None and exchange.buffered <= SMALL_BODY:
            # The usual reply: all of it came with the head.  One response
            # from memory, nothing to stream and nothing left to stop.
            body = exchange.read_nowait() if exchange.chunks else b""
            if cgi.content_length is not None:
                if len(body) < cgi.content_length:
                    log.error("%s: 502: response %d bytes short of its Content-Length",
                              name, cgi.content_length - len(body))
                    raise HTTPError(502, "Bad Gateway")
                body = body[:cgi.content_length]
            if feeder is not None:
                feeder.cancel()
            if request.method == "HEAD" and cgi.content_length is None:
                # PHP sends no body for HEAD: a Content-Length of 0 would
                # misstate the GET's; the kernel frames an empty stream
                # without one.
                return Response(cgi.status, cgi.headers, stream=_Nothing(),
                                reason=cgi.reason)
            return Response(cgi.status, cgi.headers, body, reason=cgi.reason)
        stream = _Body(exchange, feeder, b"", name, self.settings.timeout,
                       cgi.content_length, head=request.method == "HEAD")
        return Response(cgi.status, cgi.headers, stream=stream, reason=cgi.reason)


class _Retry(Exception):
    """Send the request once more, on a new connection."""


class _Body(OutputBody):
    """The rest of STDOUT as the response body; a hard stop aborts the
    request at the backend (a HEAD's request runs on, its output dropped)."""

    hard_stop = "request aborted"

    def __init__(self, exchange, feeder, first, name, timeout, content_length, head):
        super().__init__(first, log, name, timeout, content_length, head)
        self._exchange = exchange
        self._feeder = feeder

    async def _read(self):
        try:
            return await self._exchange.read(self._timeout)
        except BackendTimeout:
            raise TimeoutError from None
        except BackendError as e:
            raise OutputFailed(str(e)) from None

    def _stop(self, hard):
        _stop(self._exchange, self._feeder, abort=hard)

    def _finished(self):
        return self._exchange.stdout_done


class _Nothing:
    """An empty response stream."""

    def __aiter__(self):
        return self

    async def __anext__(self):
        raise StopAsyncIteration

    async def aclose(self):
        pass


def _stop(exchange, feeder, abort=False):
    """Done with ``exchange``: drop the rest of its output, or (``abort``)
    tell the backend to stop the request."""
    if feeder is not None:
        feeder.cancel()
    if abort:
        exchange.abort()
    else:
        exchange.finish()


async def _feed(exchange, body, timeout):
    """Copy the request body into STDIN records, then close the stream."""
    try:
        async for chunk in body:
            await exchange.send_stdin(chunk, timeout)
        await exchange.send_stdin(b"", timeout)
    except (BackendError, BackendTimeout):
        pass  # the reader reports what went wrong with the backend
    except ConnectionError:
        pass  # the client went away; the handler is being cancelled


async def _spooled(spool, helpers):
    """A spooled (chunked) request body, read back in helpers."""
    try:
        while True:
            data = await helpers.run(spool.read, SPOOL_READ)
            if not data:
                return
            yield data
    finally:
        spool.close()

"""The request cycle: route, handler, response hooks, framing, log and stats.

Theory of operation: requests leave the protocol (``flashplug.http.h1``) in
order; ``RequestCycle`` answers them one at a time.  ``_start`` routes the
oldest one.  A fresh cached file is answered on the spot (no Task, no
hook); a route handler with ``start_reply`` starts the request with no
task and answers later through a ``Reply`` (``flashplug.reply``), which
stands in ``task`` meanwhile; anything else runs the handler as a task
(``_serve``) through the driver's ``spawn``.  When a request is answered and its body is in,
``_finish_request`` moves on.  Queued requests are taken by a loop
(``_dispatch``), never by recursion, so a thousand pipelined cached
requests cost a thousand turns of one loop, not a thousand stack frames.

``_account`` is the only place that counts a response in the stats and
writes its access-log line; every path (remembered head, cached file,
handler, error) ends there.

What the cycle needs from its driver: ``write``, ``write_pair``,
``write_file``, ``drain``, ``spawn``, ``pause_reading``/``resume_reading``,
``_close_when_flushed``, ``abort`` and the ``closed``/``out_bytes`` fields.

Size: over ~400 lines because the request cycle is one state machine
(the remembered-head, cached-target and full paths, ``_account`` and the
handoff to the next pipelined request) whose steps call each other; split,
the order of a response's life would be spread across files.
"""
import asyncio
import logging
import types

from flashplug.cache import still_fresh
from flashplug.errors import HTTPError
from flashplug.framing import close_response as _close_stream
from flashplug.framing import (send_now, send_response, status_line, write_entry,
                               write_not_modified)
from flashplug.http.body import EMPTY_BODY
from flashplug.http.conditionals import evaluate
from flashplug.http.dates import depends_on_year
from flashplug.http.framing import FRAMING_FIELDS
from flashplug.http.h1 import PAUSE_PIPELINE, PAUSE_REVALIDATE, PAUSE_UPGRADE
from flashplug.http.h1_checks import keep_alive as _keep_alive
from flashplug.http.h1_checks import valid_host as _valid_host
from flashplug.http.validate import ResponseMistake, check_headers, check_response
from flashplug.reply import Reply, given, raising
from flashplug.static import target_key

log = logging.getLogger("flashplug.connection")
_COROUTINE = types.CoroutineType


# The fields of the protocol and the request cycle, shared by both drivers.
SESSION_SLOTS = (
    "app", "peer_addr", "peer_port", "local_addr", "local_port", "parser", "state",
    "closed", "closing", "pending", "active", "task", "eof", "header_timeout",
    "keepalive_timeout", "target_path_ok", "deadline", "continue_for", "_answered",
    "deferred", "active_handler", "head_sent", "now", "feeding", "unparsed",
    "dispatching", "out_bytes", "scheme", "m_url", "m_headers", "m_head_bytes", "m_hosts",
    "m_noted", "m_request", "m_body", "m_connection", "m_host", "m_answer", "m_open",
    "m_site", "m_chunks", "m_overhead", "m_sizes", "m_rate_start", "m_rate_base",
    "upgrade_rest", "uncached", "last_asked", "m_whole", "m_known", "m_held")


def init_session(conn, app, peer, local, now):
    """Set the protocol's and the request cycle's fields of a new connection."""
    conn.app = app
    conn.peer_addr = peer[0] if isinstance(peer, tuple) else ""
    conn.peer_port = peer[1] if isinstance(peer, tuple) else 0
    conn.local_addr, conn.local_port = (local[0], local[1]) if isinstance(local, tuple) \
        else ("", 0)
    conn.parser = None           # made when bytes arrive, dropped when idle
    conn.state = "idle"
    conn.closed = False
    conn.closing = False         # close once the output queue drains
    conn.last_asked = False      # the client said its request was its last (RFC 9112 §9.6)
    conn.pending = []           # parsed requests behind the active one (at most MAX_PIPELINE)
    conn.active = None           # the request being answered
    conn.task = None
    conn.eof = False             # the client will send no more (half-close)
    conn.header_timeout = app.config.header_timeout
    conn.keepalive_timeout = app.config.keepalive_timeout
    # The quickest paths answer without a Request, so without its client
    # address: App.target_path_ok is off when that may come from a header.
    conn.target_path_ok = app.target_path_ok
    conn.now = now
    conn.deadline = now + conn.header_timeout
    conn.continue_for = None     # request that may still need "100 Continue"
    conn._answered = False       # the active request's response is queued
    conn.deferred = False        # the active request waits for its body's end
    conn.active_handler = None   # the route chosen for the active request
    conn.head_sent = False       # the active request's response head is out
    conn.feeding = False         # inside H1Protocol.feed
    conn.unparsed = None         # input kept back by the pipeline bound
    conn.dispatching = False     # inside RequestCycle._dispatch
    conn.out_bytes = 0
    conn.scheme = "http"         # "https" over TLS (the driver sets it from its transport)
    conn.m_open = False
    conn.m_site = None           # the site _target_entry chose, for _answer_by_target
    conn.upgrade_rest = None     # bytes after an Upgrade request's head, once one came
    conn.m_sizes = None          # a chunked body's ChunkSizes (flashplug.http.chunks)
    conn.uncached = None         # the head being parsed, when _not_cached said so
    conn.m_whole = None          # the head being parsed, when it came whole (known_requests)
    conn.m_held = None           # a request line's first bytes, until it ends (h1._line_whole)
    conn._reset_message()


class KnownHead:
    """What a remembered shape of request head (``known_key``) asks for,
    but the target, and what its log line needs."""

    __slots__ = ("head_only", "version", "keep_alive", "referer", "agent", "method", "site",
                 "validators", "steady", "judged_etag", "judged_mtime", "not_modified")

    def __init__(self, head_only, version, keep_alive, referer, agent, site, validators):
        self.head_only = head_only      # HEAD rather than GET
        self.version = version          # "1.1" or "1.0"
        self.keep_alive = keep_alive    # the request allows another after it
        self.referer = referer
        self.agent = agent
        self.method = "HEAD" if head_only else "GET"
        self.site = site                # the Vhost that answered it
        # If-None-Match / If-Modified-Since (a dict, as _answer_by_target
        # takes it), or None: weighed against the target's entry.
        self.validators = validators
        # The ETag (the object) and modification time they were last
        # weighed against, and whether that gave a 304: ``evaluate``
        # depends on nothing else, unless a date's century depends on the
        # current year (RFC 850); then the validators are not ``steady``
        # and are weighed each time.  (Not the entry itself: that would
        # keep an evicted file's bytes alive.)
        ims = None if validators is None else validators.get("if-modified-since")
        self.steady = ims is None or not depends_on_year(ims)
        self.judged_etag = self.judged_mtime = None
        self.not_modified = False


class ErrorItem:
    """Stands in the request queue for a message that failed to parse.

    ``line``: what was read of it for the access log, ``(method, target,
    version, referer, agent)`` (str or None), or None when not even its
    request line was (logged ``"-"``); nginx too logs what it could read.
    ``method``: its method (str) as far as read, or None; the answer to a
    HEAD has no content (RFC 9110 §9.3.2), an error's neither.
    """

    __slots__ = ("status", "message", "line", "method")

    def __init__(self, status, message, line=None, method=None):
        self.status = status
        self.message = message
        self.line = line
        self.method = method if method is not None or line is None else line[0]


# Fields an interim response may not carry (Request.send_interim): a 1xx
# has no content to frame, and ends no connection.
_NOT_INTERIM = FRAMING_FIELDS | {"connection"}


class RequestCycle:
    """Answers a connection's requests in order (a base of each driver's
    connection class)."""

    __slots__ = ()
    # A driver with an output queue of its own that ``_hold_line``s the
    # log line of a response still in it (flashplug.connection, an HTTP/2
    # stream); the blocking driver has sent all by then.
    holds_lines = False
    out = ()
    lost = 0

    # -- the remembered-head and cached paths -------------------------------------

    def _answer_known(self, known, path, target, data):
        """Answer request bytes ``data`` of a shape seen before
        (``_answer_by_target`` remembered it), for the request-target
        ``target`` whose path is ``path`` (bytes, see ``known_key``),
        without parsing them.  False: the cache has no entry for the path,
        so the request takes the full path."""
        static = known.site.static
        entry = static.by_target.data.get(path)
        if entry is None or entry.dead or entry.vary:
            # (A negotiated file's head is never remembered, but the file
            # may have become one since: its answer needs the parse.)
            return False
        if not static.cache.is_fresh(entry, self.now):
            self._revalidate_known(known, path, target, entry, data)
            return True
        entry.used = True
        self.app.stats.cache_hits += 1
        validators = known.validators
        if validators is None:
            not_modified = False
        elif known.judged_etag is entry.etag and known.judged_mtime == entry.mtime:
            not_modified = known.not_modified
        else:
            not_modified = evaluate(known.method, validators.get, entry.etag, entry.mtime) == 304
            if known.steady:
                known.judged_etag, known.judged_mtime = entry.etag, entry.mtime
                known.not_modified = not_modified
        if not_modified:
            write_not_modified(self, known.version, known.keep_alive, entry)
            status, size = 304, 0
        else:
            status = 200
            size = write_entry(self, known.head_only, known.version, known.keep_alive, entry)
        self._account(status, size, known.method, target.decode("latin-1"), known.version,
                      known.referer, known.agent, known.site)
        if self.closing:
            self._close_when_flushed()
        else:
            self.deadline = self.now + self.keepalive_timeout   # deadline_for("idle")
        return True

    def _revalidate_known(self, known, path, target, entry, data):
        """The file behind a known head is due for its stat (--cache-valid):
        one helper trip, then the answer.  If the file changed, the bytes are
        parsed after all, and the full path reloads it."""
        self.state = "busy"
        self.deadline = self.deadline_for(self.now)
        self.pause_reading(PAUSE_REVALIDATE)   # a pipelined request waits its turn
        started = self.now
        self.app.stats.cache_revalidations += 1

        def done(fresh, error):
            if self.closed:
                return
            self.now = self.clock()
            self.state = "idle"
            self.resume_reading(PAUSE_REVALIDATE)
            if fresh and not entry.dead:
                entry.trust(started)
                if self._answer_known(known, path, target, data):
                    return
            self.m_answer = None
            self.feed(data, self.now)
        self.app.helpers.call(still_fresh, (entry,), done)

    def _not_cached(self, head):
        """True when the target in the request line of ``head`` (bytes, a
        whole head) has no entry in the cache: then neither a remembered
        head nor the scanned path can answer it (a routed path, a file not
        read yet), and the request goes straight to the parser.  False
        when it may have one, or with sites (each has its own entries)."""
        app = self.app
        if app.sites is not None:
            return False
        start = head.find(b" ") + 1
        end = head.find(b" ", start)
        return start > 0 and end > 0 and \
            target_key(head[start:end]) not in app.default_site.static.by_target.data

    def _target_entry(self, method, version, target, host):
        """The quickest path's test: the fresh cache entry a plain GET/HEAD
        (``method`` bytes, ``version`` str, as llhttp read them) of
        ``target`` (bytes) with Host ``host`` is answered from, or None
        (then the request takes the full path).  The site it belongs to is
        left in ``m_site``: with sites, chosen by the raw Host value (one
        dict lookup); an absolute-form target's own authority could name
        another, but such a target is only remembered by the site that
        authority chose, so a wrong site finds no entry for it.  A file
        negotiated on Accept-Encoding (``entry.variants``) is sent as
        ``_target_variant`` says."""
        if method != b"GET" and method != b"HEAD":
            return None
        if version != "1.1" and version != "1.0":
            return None
        sites = self.app.sites
        site = self.app.default_site if sites is None else sites.for_value(host)
        if not site.target_path_ok:
            return None
        entry = site.static.entry_for_target(target)
        if entry is None or not _valid_host(host):
            return None
        self.m_site = site
        return entry

    def _target_variant(self, entry, accept):
        """The variant of a negotiated ``entry`` that Accept-Encoding
        ``accept`` (bytes or None) chooses, if it is ready, else None (then
        the request takes the full path)."""
        return self.m_site.static.ready_variant(
            None if accept is None else accept.decode("latin-1"), entry)

    def _answer_by_target(self, entry, method, version, referer, agent, validators=None):
        """Answer from ``entry`` (``_target_entry``'s) with no Request object;
        ``method`` (bytes) and ``version`` (str) as llhttp read them;
        ``referer`` and ``agent`` (bytes or None) are for the log.

        ``validators``: a dict of If-None-Match and If-Modified-Since (str,
        the only preconditions present), evaluated as ``respond_with``
        would: 304 from the entry's prebuilt lines, else the 200.  What a
        ``KnownHead`` needs is left in ``m_answer``, should the head's shape
        be remembered (never for a negotiated file: a KnownHead has no
        variant).
        """
        head_only = method == b"HEAD"
        method = "HEAD" if head_only else "GET"
        referer = referer.decode("latin-1") if referer is not None else None
        agent = agent.decode("latin-1") if agent is not None else None
        keep = _keep_alive(version, self.m_connection)
        self.app.stats.cache_hits += 1
        if validators is not None and \
                evaluate(method, validators.get, entry.etag, entry.mtime) == 304:
            write_not_modified(self, version, keep, entry)
            status, size = 304, 0
        else:
            status, size = 200, write_entry(self, head_only, version, keep, entry)
        if not entry.vary:
            self.m_answer = (head_only, version, keep, referer, agent, self.m_site, validators)
        self._account(status, size, method, self.m_url.decode("latin-1"), version, referer, agent,
                      self.m_site)
        self.state = "busy"
        self.deadline = self.deadline_for(self.now)

    def _account(self, status, size, method, target, version, referer, agent, site,
                 user=None, client=None):
        """Count one response and write its access-log line (the only place
        either happens; ``method`` None: a request that could not be parsed;
        ``site``: the Vhost that answered; ``client``: the request's client
        address (``remote_addr``), else the connection's peer).

        ``size`` is the body bytes handed to the driver.  While the
        driver's queue (``out``) still holds some, the line waits
        (``_hold_line``) until they are sent or the connection drops, and
        then logs the body bytes that went (nginx's ``$body_bytes_sent``);
        the stats count the response now."""
        app = self.app
        app.stats.count_response(status, size)
        if app.access_log is not None:
            if self.out and self.holds_lines and not self.closed:
                self._hold_line(status, size, method, target, version, referer, agent,
                                site.name, user, client)
                return
            if self.lost:
                # Cut off: its last bytes were queued when the connection
                # dropped (flashplug.connection's close).
                size, self.lost = max(0, size - self.lost), 0
            self._write_line(status, size, method, target, version, referer, agent,
                             site.name, user, client)

    def _write_line(self, status, size, method, target, version, referer, agent, site_name,
                    user, client):
        """The access-log line of a response (``_account``'s fields, the
        site by its name), now."""
        self.app.access_log.log(client or self.peer_addr, user, method, target, version,
                                status, size, referer, agent, site_name, self.local_port)

    def _log(self, request, status, size):
        app = self.app
        if request is None:
            self._account(status, size, None, None, None, None, None, app.default_site)
            return
        headers = request.headers
        site = request.server._site
        logged = app.access_log is not None   # else the fields would be looked up for nothing
        self._account(status, size, request.method, request.target, request.version,
                      headers.get("referer") if logged else None,
                      headers.get("user-agent") if logged else None, site, request.user,
                      request.remote_addr)
        if site.request_done_hook is not None:
            try:
                site.request_done_hook(request=request, status=status, bytes_sent=size,
                                       duration=self.clock() - request.start_time)
            except Exception as exc:  # noqa: BLE001
                app.log_plugin_error(exc, request)

    # -- answering in order ----------------------------------------------------------

    def _start(self, request):
        """Answer ``request`` now; it is the oldest unanswered one."""
        app = self.app
        if type(request) is ErrorItem:
            self.active = request
            self.task = self.spawn(self._send_error(None, request.status, request.message,
                                                    request.line, request.method))
            return
        if self.deferred:
            self.deferred = False        # its body is now read: the route is known
            handler = self.active_handler
        else:
            self.active = request
            self._answered = False
            self.head_sent = False
            try:
                handler = request.server._site.router.match(request)
            except Exception as exc:  # noqa: BLE001 - a failing route hook fails this request
                handler = raising(exc)
            self.active_handler = handler
        if handler is None and request.body is not EMPTY_BODY and not request.complete:
            # The static handler ignores bodies; they are read and thrown away.
            request.body.abandoned = True
            if self.continue_for is None:
                # Answer once the body is over, so a broken body still gets
                # its 400 instead of a 200 followed by garbage.
                self.deferred = True
                return
            # A client waiting for "100 Continue" gets the final answer now
            # instead (RFC 9110 §10.1.1), the connection's last
            # (_answered_early).
            request.keep_alive = False
        if handler is None and request.path is not None and request.method in ("GET", "HEAD"):
            site = request.server._site
            entry = site.static.fast_entry(request)
            if entry is not None:
                # A fresh cache entry needs no helper: answer now, no Task.
                # A file negotiated on Accept-Encoding is sent the same way
                # once its variant is ready; else (a 406, or a variant still
                # to be made) it takes the Response path, or a Task.
                if site.fast_path_ok and not request.conditional:
                    ready = entry if entry.variants is None else site.static.ready_variant(
                        request.headers.get("accept-encoding"), entry)
                    if ready is not None:
                        app.stats.cache_hits += 1
                        self._send_cached(request, entry, ready)
                        return
                if self._send_cached_response(request, entry):
                    return
        elif handler is not None and app.reply_starters:
            known = app.reply_starters.get(id(handler))
            if known is not None and known[0] is handler:
                # A gateway's handler that answers from a callback: no task.
                reply = self.task = Reply(self, request, known[1])
                try:
                    if known[2](request, reply):
                        return
                except Exception as exc:  # noqa: BLE001 - as if its coroutine had raised
                    reply.fail(exc)
                    return
                reply.cancel()   # declined, having done nothing: the coroutine answers
        self.task = self.spawn(self._serve(request, handler))

    def _send_cached_response(self, request, entry):
        """A cached file for a request with conditionals or ranges, or
        negotiated, or while hooks want to see each Response: built and sent
        without suspending.  False (nothing done) when its compressed variant
        is still to be made: then the request takes the full path."""
        app = self.app
        site = request.server._site
        try:
            response = site.static.respond_with(request, entry)
        except HTTPError as e:
            if site.error_pages is not None and site.error_pages.page_for(e.status):
                # Its page is a file to look up (flashplug.errorpages): a task.
                self.task = self.spawn(self._serve(request, raising(e)))
                return
            response = app.error_response(request, e.status, e.message, e.headers, e.close)
        if response is None:
            return False
        app.stats.cache_hits += 1
        coro = send_response(self, request, response)
        try:
            coro.send(None)
        except StopIteration as stop:
            response, sent = stop.value
        else:  # pragma: no cover - a cached response never waits
            coro.close()
            raise RuntimeError("a cached response waited")
        self._log(request, response.status, sent)
        self._answered = True
        if request.complete:
            self._finish_request()
        else:
            self._answered_early(request)
        return True

    def _remember_loaded(self, request):
        """After the static handler answered ``request`` (its file was
        loaded, or stat'ed again): remember its target exactly as ``_start``
        would on the next such request, which then finds the file with a
        fresh entry and sends it by ``_send_cached``.  So that next request
        takes the quickest paths at once, instead of the full path first."""
        if request.method not in ("GET", "HEAD") or request.path is None \
                or request.conditional:
            return
        site = request.server._site
        if not site.fast_path_ok:
            return
        static = site.static
        entry = static.fast_entry(request)
        if entry is not None and (entry.variants is None or static.ready_variant(
                request.headers.get("accept-encoding"), entry) is not None):
            static.remember_target(request.target.encode("latin-1"), entry)

    def _send_cached(self, request, entry, sent):
        """Send ``sent``: ``entry`` itself, or the variant negotiation chose."""
        request.server._site.static.remember_target(request.target.encode("latin-1"), entry)
        size = write_entry(self, request.method == "HEAD", request.version,
                           request.keep_alive, sent)
        self._log(request, 200, size)
        self._answered = True
        if request.complete:
            self._finish_request()
        else:
            self._answered_early(request)

    async def _serve(self, request, handler, answer=None):
        """Answer ``request`` with ``handler``'s Response, or with what
        ``answer`` gives (an awaitable of a Response, already checked: a
        ``Reply``'s), and send it."""
        app = self.app
        owner = response = None
        try:
            # A route's handler (the router gives none for a path that did
            # not decode, or "*"), else the static files; an HTTPError
            # either raises is answered by failure_answer as respond would.
            if answer is None:
                known = app.route_handlers.get(id(handler))
                if known is not None and known[0] is handler and request.method != "TRACE":
                    # A Route's handler: its coroutine awaited and its answer
                    # checked here, as App.checked would (one coroutine less).
                    answer = handler(request)
                    if type(answer) is _COROUTINE:
                        owner = known[1]
                    else:
                        answer = app.checked(request, answer, known[1])
                else:
                    answer = (app.respond(request, None) if handler is None
                              else app.run_handler(handler, request))
            response = await answer
            if owner is not None:
                response = check_response(response, owner)
        except ResponseMistake as mistake:
            response = await app.mistaken(request, response, mistake, owner)
        except Exception as exc:  # noqa: BLE001 - one request fails, not the server
            response = await app.failure_answer(request, exc)
        except SystemExit as exc:
            # A plugin's sys.exit() (a command-line helper called from a
            # handler) fails its request too: out of a task it would end
            # the event loop, and the worker with every connection on it.
            response = await app.failure_answer(request, exc)
        if self.closed:
            await _close_stream(response)
            return
        try:
            sent = send_now(self, request, response)
            if sent is None:
                response, sent = await send_response(self, request, response)
        except asyncio.CancelledError as exc:
            # The connection dropped (a failed send, --send-timeout) while
            # a streamed body was going out.
            if self.closed and self.head_sent:
                self._log(request, response.status, getattr(exc, "bytes_sent", 0))
            raise
        except Exception as exc:  # noqa: BLE001
            await _close_stream(response)
            self._send_failed(request, response, exc)
            return
        self._after_send(request, response, sent, handler)

    def _send_checked(self, request, response):
        """Send a checked ``response`` (a ``Reply``'s) now when
        ``send_now`` can; else in a task."""
        try:
            sent = send_now(self, request, response)
        except Exception as exc:  # noqa: BLE001
            self._send_failed(request, response, exc)
            return
        if sent is None:
            self.task = self.spawn(self._serve(request, self.active_handler, given(response)))
            return
        self._after_send(request, response, sent, self.active_handler)

    def _send_failed(self, request, response, exc):
        """Sending ``response`` failed with ``exc``: the connection ends.
        Cut off part-way, the response still gets its log line, with the
        bytes that went out (as nginx logs it)."""
        if isinstance(exc, ConnectionError):
            # The client went away, or the backend's connection broke,
            # mid-body.
            if self.head_sent:
                self._log(request, response.status, getattr(exc, "bytes_sent", 0))
        else:
            log.error("error while sending the response to %s %s: %r",
                      request.method, request.target, exc)
            self._log(request, response.status, getattr(exc, "bytes_sent", 0))
        self.abort()

    def _after_send(self, request, response, sent, handler):
        """``response`` to ``request`` went out (``sent`` body bytes): log
        it and go on."""
        self._log(request, response.status, sent)
        if handler is None and response.status == 200:
            self._remember_loaded(request)
        self.task = None
        self._answered = True
        if request.complete:
            self._finish_request()
        else:
            self._answered_early(request)

    def _answered_early(self, request):
        """``request`` is answered before its body ended: the rest is read
        and thrown away, so the connection stays usable; unless the client
        waits for a "100 Continue" it never got (RFC 9110 §10.1.1): it may
        never send the body, or send its next request in its place, so the
        answer said "Connection: close" (``framing._head``) and the
        connection closes once it is sent (Go's net/http and Node.js do
        the same)."""
        request.body.discard()
        if self.continue_for is request:
            # Its body may be on its way even so: a lingering close, so
            # that it does not reset the connection under our answer.
            self.last_asked = False
            self._close_when_flushed()

    def _finish_request(self):
        """The active request is answered and its body is in: go on."""
        self.active = None
        self.continue_for = None
        if self.closing or self.closed:
            self._close_when_flushed()
            return
        if not self.dispatching:
            self._dispatch()

    def _dispatch(self):
        """Answer queued requests in order, by iteration: a request answered
        from the cache finishes inside ``_start``, and this loop takes the
        next one (``_finish_request`` sees ``dispatching`` and returns)."""
        pending = self.pending
        if pending:
            self.dispatching = True
            try:
                while pending and self.active is None and not self.closing and not self.closed:
                    self._start(pending.pop(0))
            finally:
                self.dispatching = False
        if self.closed or self.active is not None:
            return
        if self.closing:
            self._close_when_flushed()
            return
        if self.m_request is None and self.state != "idle" and self.state != "head":
            self.state = "idle"
            self.deadline = self.now + self.keepalive_timeout   # deadline_for("idle")
        if self.upgrade_rest is not None:
            # An Upgrade no plugin took (a 101 closes the connection): the
            # bytes after its head are the next requests (h1._after_upgrade).
            # Kept as a pipeline's rest: reading resumes once it is parsed.
            self.unparsed, self.upgrade_rest = self.upgrade_rest, None
            self.pause_reading(PAUSE_PIPELINE)
            self.resume_reading(PAUSE_UPGRADE)
        if self.unparsed is not None:
            self.resume_parsing()
        if self.eof and self.active is None and not self.pending and self.unparsed is None \
                and not self.closed:
            self._close_when_flushed()   # a half-closed client has had all its answers

    def _queue_error(self, status, message, line=None, method=None):
        """Answer, in turn, a request that could not be parsed; then close.

        Requests parsed before it are still answered first, in order;
        ``line`` is what the access log shows of it and ``method`` its
        method as far as read (see ErrorItem).
        """
        request = self.m_request
        self.unparsed = None
        if request is not None:
            # Its head was parsed and queued, but the message is broken.
            if request in self.pending:
                self.pending.remove(request)
            elif request is self.active:
                if self.task is not None:
                    self.task.cancel()
                self.active = None
                self.deferred = False
        item = ErrorItem(status, message, line, method)
        if self.active is None:
            self._start(item)
        else:
            self.pending.append(item)

    async def _send_error(self, request, status, message, line=None, method=None):
        self.closing = True
        if status == 413:
            # The client gets a page; the operator a line naming the limit
            # (nginx: "client intended to send too large body").
            log.error("client %s intended to send too large body, over --max-body-size %d: "
                      "\"%s %s\"", self.peer_addr, self.app.config.max_body_size,
                      *(line[:2] if line is not None else ("-", "-")))
        response = await self.app.error_answer(request, status, message)
        try:
            response, sent = await send_response(self, request, response, force_close=True,
                                                 method=method)
        except (ConnectionError, OSError):
            self.abort()
            return
        if line is not None:
            self._account(status, sent, *line, self.app.default_site)
        else:
            self._log(request, status, sent)
        self.active = None
        self.pending.clear()
        self._close_when_flushed()

    def send_continue(self):
        """Tell a client waiting to send the active request's body to go on;
        never once its final response head is out (a 1xx after it would land
        in its body: RFC 9110 §15.2)."""
        request = self.continue_for
        if request is not None and request is self.active and not self.head_sent:
            self.continue_for = None
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def send_interim(self, request, status, headers):
        """``Request.send_interim``: write a 1xx head for the active
        ``request`` (an H2Stream makes it an informational HEADERS)."""
        if type(status) is not int or not 102 <= status <= 199:
            raise ResponseMistake(f"interim status {status!r}: 102 to 199 (100 is the "
                                  f"kernel's, 101 an upgrade)")
        check_headers(headers)
        for name, _ in headers:
            if name.lower() in _NOT_INTERIM:
                raise ResponseMistake(f"{name} in a {status} response: a 1xx has no content")
        if request is not self.active or self.head_sent or self.closed \
                or request.version == "1.0":
            return False
        self.write(b"".join((status_line(status),
                             *(f"{n}: {v}\r\n".encode("latin-1") for n, v in headers),
                             b"\r\n")))
        return True

    def log_internal_error(self, exc):
        log.error("error while parsing a request from %s: %r", self.peer_addr, exc)


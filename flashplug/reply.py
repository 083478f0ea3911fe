"""A handler's answer given later from a callback: no task per request.

A gateway's handler (FastCGI, the proxy) spends most of a request waiting
for its backend, and its answer arrives in a protocol's
``data_received``.  Run as a coroutine, that costs a task per request, a
step to start it and another to resume its chain of coroutines when the
answer comes.  A route handler may offer a plain method beside its
``async def``, ``handler.start_reply(request, reply)``: it starts the
request and returns True, then answers later by a call on ``reply`` (this
module's :class:`Reply`) from any callback; or it returns False having
done nothing, and the kernel runs the coroutine as usual.  (Both the
HTTP/1.1 connection and an HTTP/2 stream take it, through
``RequestCycle``.)  The answer gets every check a coroutine's does
(``check_response``, the same framing, the same error answers).
"""
from flashplug.http.validate import ResponseMistake, check_response
from flashplug.framing import close_response


class Reply:
    """The answer to one request, promised by a handler's ``start_reply``.

    The handler calls exactly one of :meth:`send`, :meth:`fail` and
    :meth:`follow`, once; after the client went away each does nothing
    but close a response's stream.  ``on_cancel``: a plain callable
    (no argument) the handler may set, called once if the client goes
    away (or its connection breaks) before the answer; the handler stops
    its backend's work there, as a cancelled coroutine would.

    To the connection it stands where a task would (``done``,
    ``cancel``).
    """

    __slots__ = ("_conn", "_request", "_owner", "on_cancel", "_over")

    def __init__(self, conn, request, owner):
        self._conn = conn
        self._request = request
        self._owner = owner          # "plugin 'NAME'", for the error log
        self.on_cancel = None
        self._over = False

    def send(self, response):
        """Answer with ``response`` (a :class:`flashplug.Response`), checked
        and framed as a handler's return value is: a mistake in it is a
        logged 500."""
        conn = self._conn
        if self._took(response):
            try:
                response = check_response(response, self._owner)
            except ResponseMistake:
                # Answered as a coroutine's mistake is (a 500, its stream closed).
                self._run(given(response))
                return
            conn._send_checked(self._request, response)

    def fail(self, exc):
        """Answer as if the handler had raised ``exc`` (an ``HTTPError``
        gives its status, anything else a logged 500)."""
        if self._took(None):
            self._run(raising(exc)(self._request))

    def follow(self, coro):
        """Answer with what the coroutine ``coro`` returns, run and checked
        as a handler's is (in a task): the way back to ``async`` code,
        e.g. to retry on a new backend connection."""
        if self._took(None):
            self._run(coro)
        else:
            coro.close()

    def _run(self, coro):
        """Answer with ``coro``'s Response, checked, in a task."""
        conn = self._conn
        request = self._request
        conn.task = conn.spawn(conn._serve(request, conn.active_handler,
                                           conn.app.checked(request, coro, self._owner)))

    def _took(self, response):
        """True the first time an answer comes while the client is there;
        else a response's stream is closed (its ``finally`` runs)."""
        if self._over or self._conn.closed:
            self._over = True
            if response is not None and response.stream is not None:
                self._conn.spawn(close_response(response))
            return False
        self._over = True
        return True

    # -- what the connection sees of it (as of a task)

    def done(self):
        return self._over

    def cancel(self):
        if self._over:
            return
        self._over = True
        stop = self.on_cancel
        if stop is not None:
            self.on_cancel = None
            stop()


async def given(response):
    """An awaitable of ``response``, where a coroutine is wanted."""
    return response


def raising(exc):
    """A handler that fails with ``exc`` (a route hook's, or a Reply's)."""
    async def handler(request):
        raise exc
    return handler

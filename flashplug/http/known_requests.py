"""Request heads a worker parsed before, with what the parse made of them.

Theory of operation: a client of a plugin's route (a load generator, a
browser between cookie changes, an app's own polling) sends the same head
again and again, byte for byte.  The full parse of a head (llhttp with a
callback per field, the Host, version and target checks, percent-decoding
the path, choosing the site) depends on nothing but its bytes and the
worker's configuration, so a head seen before need not be parsed again:
``H1Protocol`` looks a whole head up here first and, when it is known,
makes its ``Request`` from the ``ParsedHead`` the first full parse left
(``ParsedHead.request``), then queues it as the parse would.  What is
decided per connection or per request (the client's address, the local
address, the scheme, the start time) and the route are worked out anew
each time.

Only heads the parse found to be one whole message with nothing after it
are remembered: no body (no Content-Length, Transfer-Encoding or Expect),
no Upgrade, no CONNECT, a connection kept alive, a path that decodes, and
answered by a plugin's handler (the cached path has quicker ways of its
own).  llhttp is then back in the state it started the head in, so
leaving it out changes nothing for the next message.  A head is
remembered on its second sight: a head seen once (a browser's changing
cookie, a cache-busting query) would cost more to remember than it saves.
Bounded: ``KNOWN_REQUESTS`` heads of up to ``KNOWN_REQUEST_SIZE`` bytes
(about 1 MiB), forgotten all at once when full, as ``StaticFiles``'
remembered heads are.

Sans I/O: no socket, no loop, no clock.
"""
from flashplug.http.body import EMPTY_BODY
from flashplug.http.message import Headers, Request
from flashplug.memo import Memo

KNOWN_REQUESTS = 256
KNOWN_REQUEST_SIZE = 4096


class ParsedHead:
    """What the full parse made of one whole request head: the parts of
    its ``Request`` the head alone decides (the fields as ``str`` pairs,
    the target split and decoded, keep-alive, whether it carries
    conditionals, the site chosen by its host)."""

    __slots__ = ("method", "target", "raw_path", "path", "query", "version", "items",
                 "conditional", "server")

    def __init__(self, request):
        self.method = request.method
        self.target = request.target
        self.raw_path = request.raw_path
        self.path = request.path
        self.query = request.query
        self.version = request.version
        self.items = tuple(request.headers._items)   # a handler may change the list
        self.conditional = request.conditional
        self.server = request.server

    def request(self):
        """A new ``Request``, as the full parse of the head makes it (but
        for the per-connection fields the connection sets)."""
        headers = Headers.__new__(Headers)
        headers._items = list(self.items)
        request = Request(self.method, self.target, self.raw_path, self.path, self.query,
                          self.version, headers)
        request.body = EMPTY_BODY
        request.conditional = self.conditional
        request.server = self.server
        return request


class KnownRequests:
    """The worker's remembered heads: ``get(head)`` gives a head's
    ``ParsedHead`` or None."""

    __slots__ = ("heads", "seen", "get")

    def __init__(self, limit=KNOWN_REQUESTS):
        self.heads = Memo(limit)
        self.seen = Memo(limit * 4)     # hash of a head parsed before -> seen_before
        self.get = self.heads.data.get

    def seen_before(self, head):
        """Was ``head`` (bytes) parsed before, and not found to be the
        static files' (``refuse``)?  Notes it if not seen.  Only its hash
        is kept: a collision merely remembers a head a sight early."""
        key = hash(head)
        mark = self.seen.data.get(key)
        if mark is not None:
            return mark
        self.seen.put(key, True)
        return False

    def refuse(self, head):
        """``head`` went to no plugin's handler: it is never remembered, and
        not looked at again."""
        self.seen.data[hash(head)] = False     # (seen_before just noted it)

    def remember(self, head, parsed):
        """Note ``parsed``, a ``ParsedHead``, as what ``head`` makes."""
        self.heads.put(head, parsed)

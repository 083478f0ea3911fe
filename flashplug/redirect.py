"""``--redirect-http PORT``: plain HTTP answered with a redirect to HTTPS.

Theory of operation: connections accepted on the redirect port are
ordinary event-loop connections (``flashplug.connection.Connection``) that
see the worker's App through ``PlainView``: the same caches, helpers, stats
and access log, but a router that answers every request with ``308
Permanent Redirect`` to the same path and query on the HTTPS port (RFC 9110
§15.4.9: the method and body are kept, unlike 301), and header lines
without ``Strict-Transport-Security`` (RFC 6797 §7.2: never over plain
HTTP).  Only ``/.well-known/acme-challenge/`` is served from the document
root, so an ACME HTTP-01 check (RFC 8555 §8.3) still finds its token.
The cached fast paths are off on these connections, so a file never skips
the redirect.
"""
from flashplug.connection import Connection
from flashplug.http.message import Response

ACME_PREFIX = "/.well-known/acme-challenge/"


def https_location(host, default_host, https_port, target):
    """The https URL for ``target`` on ``host`` (a valid Host header value,
    maybe with a port; ``default_host`` when empty)."""
    host = host or default_host
    if host.startswith("["):
        host = host[:host.index("]") + 1]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    elif ":" in host:          # a bare IPv6 address (the local one)
        host = f"[{host}]"
    port = "" if https_port == 443 else f":{https_port}"
    if not target.startswith("/"):
        target = "/"   # "*" or an absolute form: the site's root
    return f"https://{host}{port}{target}"


class _RedirectRouter:
    """Every path but ACME's challenges goes to the redirect handler."""

    route_hook = None

    def __init__(self, https_port):
        self.https_port = https_port

    def match(self, request):
        if request.path is not None and request.path.startswith(ACME_PREFIX):
            return None     # the static handler serves the token file
        return self.redirect

    async def redirect(self, request):
        location = https_location(request.host, request.server_addr, self.https_port,
                                  request.target)
        return Response(308, [("Location", location), ("Content-Type", "text/plain")],
                        f"Moved to {location}\n".encode("latin-1", "replace"))


class PlainView:
    """The worker's App as the redirect port's connections see it."""

    fast_path_ok = False
    h2c = False      # plain HTTP/1.1 only: its answers are redirects

    def __init__(self, app, https_port):
        self._app = app
        self.router = _RedirectRouter(https_port)

    @property
    def date_server_lines(self):
        return self._app.plain_date_server_lines

    def __getattr__(self, name):
        return getattr(self._app, name)


class RedirectConnection(Connection):
    """One connection on the redirect port."""

    __slots__ = ()

    def __init__(self, view, transport, peer):
        super().__init__(view, transport, peer)
        # The App's address is the HTTPS listener's; ours is another port.
        self.local_addr, self.local_port = transport.local_address()[:2]

    def _answer_known(self, known, data):
        return False   # remembered heads are answers, never redirects

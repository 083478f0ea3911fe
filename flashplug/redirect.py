"""``--redirect-http PORT``: plain HTTP answered with a redirect to HTTPS.

Theory of operation: connections accepted on the redirect port are
ordinary event-loop connections (``flashplug.connection.Connection``) that
see the worker's App through ``PlainView``: the same caches, helpers, stats
and access log, but a router that answers every request with ``308
Permanent Redirect`` to the same path and query on the HTTPS port (RFC 9110
§15.4.9: the method and body are kept, unlike 301), and header lines
without ``Strict-Transport-Security`` (RFC 6797 §7.2: never over plain
HTTP).  Only ``/.well-known/acme-challenge/`` is served as on the HTTPS
port (by the acme plugin when it is on, else from the document root), so
an ACME HTTP-01 check (RFC 8555 §8.3) still finds its token.
The cached fast paths are off on these connections, so a file never skips
the redirect.
"""
from flashplug.connection import Connection
from flashplug.facade import Server
from flashplug.http.message import Response

ACME_PREFIX = "/.well-known/acme-challenge/"


def https_location(host, default_host, https_port, path):
    """The https URL for ``path`` (the raw path and query) on ``host``
    (``Request.host``: no port; ``default_host``, an address, when empty)."""
    host = host or default_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"     # a bare IPv6 address (the local one)
    port = "" if https_port == 443 else f":{https_port}"
    if not path.startswith("/"):
        path = "/"   # "*": the site's root
    return f"https://{host}{port}{path}"


class _RedirectRouter:
    """Every path but ACME's challenges goes to the redirect handler."""

    route_hook = None
    by_host = False

    def __init__(self, https_port, router):
        self.https_port = https_port
        self.router = router

    def match(self, request):
        if request.path is not None and request.path.startswith(ACME_PREFIX):
            return self.router.match(request)   # a plugin's route, else the token file
        return self.redirect

    async def redirect(self, request):
        path = request.raw_path + ("?" + request.query if request.query else "")
        location = https_location(request.host, request.server_addr, self.https_port, path)
        return Response(308, [("Location", location), ("Content-Type", "text/plain")],
                        f"Moved to {location}\n".encode("latin-1", "replace"))


class _PlainSite:
    """A site (``flashplug.app.Vhost``) as the redirect port serves it: its
    static files for ACME's tokens, the redirect for everything else."""

    fast_path_ok = target_path_ok = False

    def __init__(self, app, site, https_port):
        self._site = site
        # ACME's challenges go to the site's own routes (the acme plugin's).
        self.router = _RedirectRouter(https_port, site.router)
        self.facade = Server(app, self)

    def __getattr__(self, name):
        return getattr(self._site, name)


class _PlainSites:
    """The worker's SiteTable, giving each site's _PlainSite."""

    def __init__(self, app, sites, https_port):
        self.default = _PlainSite(app, sites.default, https_port)
        self._plain = {id(site): _PlainSite(app, site, https_port) for site in sites.all()}
        self._plain[id(sites.default)] = self.default
        self._sites = sites

    def choose(self, host):
        return self._plain[id(self._sites.choose(host))]


class PlainView:
    """The worker's App as the redirect port's connections see it."""

    fast_path_ok = target_path_ok = False
    h2c = False      # plain HTTP/1.1 only: its answers are redirects

    def __init__(self, app, https_port):
        self._app = app
        self.sites = None if app.sites is None else _PlainSites(self, app.sites, https_port)
        self.default_site = self.sites.default if self.sites is not None \
            else _PlainSite(self, app.default_site, https_port)

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

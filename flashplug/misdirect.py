"""421 Misdirected Request: a request for a name this TLS connection's
certificate does not cover.

Theory of operation: RFC 9110 §7.4 has a server reject a request for an
``https`` origin that came over a connection secured by a certificate not
valid for it; §15.5.20's 421 tells the client to open a connection for
that name (RFC 9113 §9.1.2), as a browser that reused an HTTP/2
connection for another name must.  With one certificate, or certificates
that cover each other's names, that cannot happen: nothing is checked.
Otherwise ``Certificates.checked`` names the certificates whose
connections can be misdirected, and only those connections (found once,
after the handshake) see the App through ``CheckedView``: its ``sites``
asks ``Certificates.misdirects`` as it chooses each request's site, and
the cached paths, which choose no site per request, are off for them.
Every other connection runs as before, with nothing added per request.
"""
from flashplug.http.h1_checks import ProtocolError


def checked_view(app, transport):
    """The App as ``transport``'s connection must see it: ``app`` itself,
    or a ``CheckedView`` when its certificate can be misdirected."""
    certificates = transport.certificates
    ctx = transport.tls.context
    if ctx not in certificates.checked:
        return app
    return CheckedView(app, certificates, ctx)


class _NoKnownRequests:
    """No request head is answered from memory: each is parsed, so each
    has its site chosen (and checked)."""

    def get(self, head):
        return None

    def seen_before(self, head):
        return False


class _CheckedSites:
    """The App's sites (or its one site) chosen by host, after the check."""

    def __init__(self, app, certificates, ctx):
        self._sites = app.sites
        self._default = app.default_site
        self._certificates = certificates
        self._ctx = ctx

    def choose(self, host):
        if self._certificates.misdirects(self._ctx, host):
            raise ProtocolError(421, "Misdirected Request: this connection's certificate "
                                     f"is not for {host}; open a new connection for it")
        return self._default if self._sites is None else self._sites.choose(host)


class CheckedView:
    """The worker's App for one connection whose requests are checked."""

    target_path_ok = False
    known_requests = _NoKnownRequests()

    def __init__(self, app, certificates, ctx):
        self._app = app
        self.sites = _CheckedSites(app, certificates, ctx)

    def __getattr__(self, name):
        return getattr(self._app, name)

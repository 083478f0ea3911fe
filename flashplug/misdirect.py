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
after the handshake) see the App through a checked view, one per such
certificate, with the App's attributes (its ``__dict__``, shared) but
four of its own.  Its ``misdirect`` is the check: the drivers (``h1.py``,
``h2conn.py``) call it once per parsed request, where the request's host
(Host, or the target's authority or ``:authority``) is known, before its
site is chosen and it is routed; it raises the 421.  The cached paths
answer a head without parsing it, so each is kept from answering a
misdirected one: its ``sites.for_value`` (the quickest path's site, by
the raw Host value) checks once per Host value, and sends a misdirected
one to the full path; the heads remembered whole (``known_heads``,
``known_shapes``) include the Host line but answer any connection, so the
view has its own, filled only with heads answered after the check; and
no request head is replayed (``known_requests``) without the check.
Every other connection runs as before: the App's ``misdirect`` is None.
"""
from flashplug.http.h1_checks import ProtocolError, host_name
from flashplug.memo import Memo


def checked_view(app, transport):
    """The App as ``transport``'s connection must see it: ``app`` itself,
    or the checked view of its certificate when that can be misdirected."""
    certificates = transport.certificates
    ctx = transport.tls.context
    if ctx not in certificates.checked:
        return app
    view = certificates.views.get(ctx)
    if view is None or view.__dict__ is not app.__dict__:
        view = certificates.views[ctx] = _checked(app, certificates, ctx)
    return view


def _checked(app, certificates, ctx):
    """A view of ``app`` sharing its attributes (its ``__dict__``: a
    change to the App, such as the Date line each second, shows in the view
    too), with ``misdirect``, ``sites``, ``static`` and ``known_requests``
    replaced by properties (data descriptors, so they win over the shared
    ones)."""
    def misdirect(host):
        if certificates.misdirects(ctx, host):
            raise ProtocolError(421, "Misdirected Request: this connection's certificate "
                                     f"is not for {host}; open a new connection for it")

    sites = _CheckedSites(app, certificates, ctx)
    static = _CheckedStatic(app.static)
    cls = type("Checked" + type(app).__name__, (type(app),), {
        "misdirect": property(lambda self: misdirect),
        "sites": property(lambda self: sites),
        "static": property(lambda self: static),
        "known_requests": property(lambda self: _NO_KNOWN_REQUESTS),
    })
    view = object.__new__(cls)
    view.__dict__ = app.__dict__
    return view


class _NoKnownRequests:
    """No request head is answered from memory: each is parsed, so each
    has its site chosen (and checked)."""

    def get(self, head):
        return None

    def seen_before(self, head):
        return False


class _Misdirected:
    """What ``for_value`` gives for a misdirected Host: no cached answer,
    so the full path chooses the site, and answers 421."""

    target_path_ok = False


class _CheckedSites:
    """The App's sites (or its one site): the full path's choice as the
    App's (its request was checked first), the cached path's checked."""

    def __init__(self, app, certificates, ctx):
        self._sites = app.sites
        self._certificates = certificates
        self._ctx = ctx
        self._passed = None        # the last raw Host value that passed
        self.default = app.default_site

    def choose(self, host):
        return self.default if self._sites is None else self._sites.choose(host)

    def for_value(self, value):
        if value != self._passed:
            if self._certificates.misdirects(
                    self._ctx, (host_name(value) or "") if value is not None else ""):
                return _Misdirected
            self._passed = value
        return self.default if self._sites is None else self._sites.for_value(value)

    def all(self):
        return [self.default] if self._sites is None else self._sites.all()


class _CheckedStatic:
    """The App's static files with the remembered heads of one certificate's
    connections: every head in them passed that certificate's check (it
    was answered through ``for_value``), and a head names its host."""

    def __init__(self, static):
        self._static = static
        self.known_heads = Memo(static.target_memory)
        self.known_shapes = Memo(static.target_memory)

    def __getattr__(self, name):
        return getattr(self._static, name)


_NO_KNOWN_REQUESTS = _NoKnownRequests()

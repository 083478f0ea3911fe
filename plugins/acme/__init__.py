"""acme: automatic certificates from an ACME CA (RFC 8555), as Caddy does.

Theory of operation: ``--acme-domains a.example,b.example`` turns HTTPS on
with one certificate per name, got and renewed from the CA (Let's Encrypt
unless ``--acme-directory`` says otherwise) by certbot's ``acme`` library.
The work is split by kind:

* ``settings``  the options, checked at start;
* ``store``     the state directory: account key, keys, certificates,
                challenges, the lock (all file work);
* ``schedule``  when to renew and when to retry (pure);
* ``client``    the ACME protocol through the library (blocks on the network);
* ``orderer``   the thread that orders, in one worker, off the event loop.

The kernel sees the certificates through ``flashplug_tls_certificates``
(the store's files, read at start and on each reload) and the HTTP-01
tokens through a route for ``/.well-known/acme-challenge/``, answered on
the HTTPS port and on the ``--redirect-http`` port.  Until a name's first
certificate arrives, handshakes for it fail (there is nothing to show).
"""
import logging
import os

from flashplug import HTTPError, Response, Route, UsageError, hookimpl

from .settings import Settings, add_options
from .store import ACME_TLS_1, Store

log = logging.getLogger("flashplug.acme")

ACME_PREFIX = "/.well-known/acme-challenge/"

# "settings", "store" and the "loaded" plugin manager they were read for;
# "orderer" per worker.
_state = {}


def _setup(config):
    """The settings and store, read once per load of the configuration:
    the TLS hook runs before ``flashplug_configure``, and both see the same
    load.  Each load (the start, a master's SIGHUP) has its own plugin
    manager (site views share it), so a reload reads the changed settings
    instead of keeping the first ones."""
    if _state.get("loaded") is not config.plugin_manager:
        settings = Settings.from_config(config)
        _state["settings"] = settings
        _state["store"] = Store(settings.state, settings.directory)
        _state["loaded"] = config.plugin_manager
    return _state["settings"], _state["store"]


@hookimpl
def flashplug_addoption(parser):
    add_options(parser)


@hookimpl
def flashplug_tls_certificates(config):
    settings, store = _setup(config)
    return (store.installed(settings.domains)
            + [(cert, key, ACME_TLS_1) for cert, key in store.alpn_challenges()])


@hookimpl
def flashplug_configure(config):
    settings, store = _setup(config)
    try:
        import acme.client  # noqa: F401 - only checking it is there
        import josepy  # noqa: F401
    except ImportError:
        raise UsageError("the acme plugin needs certbot's acme library: "
                         "pip install 'flashplug[acme]'") from None
    try:
        warning = store.prepare()
    except OSError as e:
        raise UsageError(f"--acme-state {settings.state}: {e.strerror}; give a folder "
                         f"the server's user may create and write") from None
    if not os.access(settings.state, os.W_OK | os.X_OK):
        raise UsageError(f"--acme-state {settings.state}: not writable by this user; "
                         f"chown it to the user the server runs as")
    if warning:
        log.warning(warning)
    if "http-01" in settings.challenges and config.get("redirect_http") is None:
        log.warning("--acme-challenge http-01 without --redirect-http: the CA checks "
                    "http://NAME/ on port 80, which this server does not listen on")


@hookimpl
def flashplug_routes():
    return [Route(prefix=ACME_PREFIX, handler=_token, methods=("GET", "HEAD"))]


@hookimpl
def flashplug_startup(app):
    from .orderer import Orderer
    settings, store = _state["settings"], _state["store"]
    orderer = _state["orderer"] = Orderer(settings, store, app)
    orderer.start()


@hookimpl
def flashplug_status():
    """Each name's certificate, from the worker that orders (the others
    report nothing: under --workers N, ask again to reach it)."""
    orderer = _state.get("orderer")
    if orderer is None or orderer.lock is None:
        return None
    return {"acme_certificates": orderer.report()}


@hookimpl
def flashplug_shutdown():
    orderer = _state.pop("orderer", None)
    if orderer is not None:
        orderer.stop()    # a daemon thread: an order in flight dies with the process


async def _token(request):
    """An HTTP-01 key authorization (RFC 8555 §8.3), read by a helper."""
    path = _state["store"].http_token_path(request.path[len(ACME_PREFIX):])
    body = None if path is None else await request.server.helpers.run(_read, path)
    if body is None:
        raise HTTPError(404, "Not Found")
    return Response(200, [("Content-Type", "application/octet-stream")], body)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None

"""The flashplug plugin API.

Every hook a plugin may implement is declared here; these docstrings are the
hook reference (``docs/plugins.md`` is checked against them by a test).

A plugin is a module (or object) with functions marked ``@hookimpl``::

    from flashplug import hookimpl

    @hookimpl
    def flashplug_response_headers(request, response):
        response.headers.append(("X-Hello", "world"))

Hooks fall into two phases:

* start-up hooks run once, in this order: ``flashplug_addoption``,
  ``flashplug_configure``, ``flashplug_routes``, then (on the event loop of
  each worker) ``flashplug_startup``; ``flashplug_shutdown`` runs on the way
  out;
* per-request hooks.  The kernel looks once, at start, at which of them have
  an implementation among the enabled plugins, and never calls one that has
  none, so an unused hook costs a static request nothing.

A hook implementation may accept fewer arguments than the spec names (pluggy
passes only those it asks for), so new arguments can be added later without
breaking plugins.
"""
import pluggy

hookspec = pluggy.HookspecMarker("flashplug")


# -- start-up -----------------------------------------------------------------

@hookspec(historic=True)
def flashplug_addoption(parser):
    """Add command-line options for this plugin.

    Called once while the command line is being built, for every installed
    plugin (so ``flashplug serve --help`` shows them all), enabled or not.
    Historic: a plugin registered later still gets the call.

    Name every option ``--NAME-...`` after the plugin, so that its value is
    stored as ``NAME_...``; the same setting can then come from the
    ``[plugins.NAME]`` table of the config file, with the prefix dropped
    (``--cgi-timeout`` is ``timeout`` under ``[plugins.cgi]``).

    An option spelled exactly ``--NAME`` (with ``default=None``) is the
    plugin's one flag for the common case: when it has a value, from the
    command line or the config file, the plugin is enabled without
    ``--plugins`` (``--fastcgi .php=unix:/run/php/php-fpm.sock``).

    :param parser: the ``argparse.ArgumentParser`` of ``flashplug serve``.
        Call ``parser.add_argument_group("NAME")`` to keep options together
        in ``--help``.
    :return: ignored.
    """


@hookspec(historic=True)
def flashplug_configure(config):
    """Check and take in this plugin's settings; fail fast on bad ones.

    Called once after the command line and config file are read, only for
    enabled plugins, in the master before any worker is forked and before
    the server accepts a connection (the port is bound, and with ``--user``
    root is already given up).  Historic.

    Raise :class:`flashplug.UsageError` with a one-line message that names
    the setting, what was given and what is allowed; the CLI prints it and
    exits with status 2.

    With ``[[site]]`` tables it still runs once: with the top-level Config
    when the top level enables the plugin, else with the view of the first
    site that does.  Each site's own root and options come through
    ``flashplug_routes(config)`` and ``request.server.config``.

    :param config: the :class:`flashplug.config.Config`.  ``config.get(name)``
        returns an option's value (command line over config file over
        default); ``config.docroot`` is the absolute document root.
    :return: ignored.
    """


@hookspec
def flashplug_routes(config):
    """Claim requests by exact path, URL prefix or file extension.

    Called once at start (in each worker, and once before the port is
    bound, to check the routes), and with ``[[site]]`` tables once more for
    each site that enables the plugin, with that site's ``config``: build
    the routes from it (``config.docroot`` is the site's root,
    ``config.get(...)`` its options) and each site gets its own.  The
    kernel builds a mount table per site from the routes returned for it; a request's decoded path is matched by an exact
    ``Route(path=...)``, then by the longest ``Route(prefix=...)`` (whole
    path segments: ``"/hello"`` claims ``/hello``, ``/hello/`` and
    ``/hello/x``, never ``/helloworld``), then by ``Route(ext=...)``, before
    it reaches the static handler.  A Route whose handler is not an ``async
    def`` is refused: the server does not start, and says which plugin.

    :param config: the :class:`flashplug.config.Config`, or a site's view
        of it (``config.site`` is then the site's name, else None).
    :return: a list of :class:`flashplug.Route` (or None).
    """


@hookspec
def flashplug_startup(app):
    """Acquire resources on the event loop (process pools, connections).

    Called in each worker after the loop starts and before the first request.
    An exception stops the worker with a one-line cause that names the
    plugin; with one worker the server exits with status 1, and a master
    whose workers keep failing this way gives up the same way.  Check what
    can be checked earlier, in ``flashplug_configure``.

    :param app: the running server, a :class:`flashplug.facade.Server`:
        ``app.config``, ``app.helpers`` (``await app.helpers.run(fn, *args)``
        runs blocking work off the loop), ``app.stats``, ``app.loop`` (see
        "The server object" in docs/plugins.md).
    :return: None, or an awaitable that the kernel awaits before serving.
    """


@hookspec
def flashplug_shutdown(app):
    """Release what ``flashplug_startup`` acquired.

    Called once in each worker when the server stops, after in-flight
    requests finished or the grace period ran out.

    :param app: the running server, a :class:`flashplug.facade.Server`.
    :return: None, or an awaitable that the kernel awaits.
    """


@hookspec
def flashplug_status(app):
    """Report this plugin's state to the status page.

    Called by the status plugin each time it renders a snapshot, on the
    event loop of the worker that answers: read what the plugin already
    holds, do no blocking work.

    :param app: the server object (:class:`flashplug.facade.Server`).
    :return: None, or a dict of ``{name: value}``.  A value is an ``int``
        or ``str``, or a table: a list of dicts with the same keys (one row
        per backend, say), whose ``str`` columns label its ``int`` ones.
        Name each entry after the plugin (``fastcgi_backends``).
    """


@hookspec
def flashplug_tls_certificates(config):
    """List the TLS certificates this plugin manages (the acme plugin's).

    Called when the server loads its certificates: once at start, in the
    master before ``flashplug_configure`` (so read the plugin's settings
    from ``config`` here), and again in a helper thread of each worker on
    every reload (SIGHUP, or ``app.reload_certificates()``).  It may read
    the disk; it must not block for long.

    Returning a list, even an empty one, turns HTTPS on: the server listens
    with TLS, and names without a certificate yet fail their handshake.

    :param config: the :class:`flashplug.config.Config`.
    :return: None (this plugin provides no HTTPS), or a list of
        ``(cert, key)`` tuples of PEM file paths (a full chain, its key),
        served by SNI after the ``--tls-cert`` ones; a ``(cert, key,
        alpn)`` tuple is a certificate reserved for handshakes that offer
        the ALPN protocol ``alpn`` and its server name (RFC 8737's
        ``acme-tls/1`` challenge), never shown to other clients.
        A file that cannot be read fails the start (or the reload: the old
        certificates stay).
    """


# -- per request ----------------------------------------------------------------

@hookspec(firstresult=True)
def flashplug_route_request(request):
    """Claim a request that no route's prefix or extension matched.

    Called for each such request, before the static handler, only when some
    enabled plugin implements it.  Keep it cheap: it runs on the event loop
    for every unmatched request.  Stops at the first non-None result.

    :param request: the :class:`flashplug.Request`.
    :return: an ``async def handler(request) -> Response`` to handle it, or
        None to pass (the handler itself, not ``handler(request)``).  A plain
        ``def`` handler, or its call, is a mistake: the client gets a 500 and
        the error log names the plugin.
    """


@hookspec(firstresult=True)
def flashplug_directory(request, fspath):
    """Answer a request for a directory that has no index file.

    Called when the static handler resolves a URL ending in ``/`` to a
    directory without ``index.html``.  Stops at the first non-None result;
    when no plugin answers, the kernel sends 404.

    :param request: the :class:`flashplug.Request`.
    :param fspath: the directory's absolute path on disk (inside the
        document root, already checked for symlink escapes).
    :return: an awaitable that produces a :class:`flashplug.Response`
        (typically the coroutine of an ``async def``), or None to pass.
        Anything else, or a Response the kernel's checks refuse, gives the
        client a 500 and the error log a line naming the plugin.
    """


@hookspec
def flashplug_response_headers(request, response):
    """Adjust the headers of a response before it is sent.

    Called for every response that goes through the kernel's framing (not
    for raw NPH responses), static or dynamic, including errors.  Modify
    ``response.headers`` (a list of ``(name, value)`` pairs of ``str``) in
    place.  The response is checked afterwards as a handler's is: a field
    the kernel refuses (a CR, LF or NUL in a value, a name that is no
    token), a status or body set wrong, or a ``Content-Length`` the body
    does not have turns it into a 500, and the error log names the plugins
    implementing this hook.

    :param request: the :class:`flashplug.Request`.
    :param response: the :class:`flashplug.Response` about to be sent.
    :return: ignored.
    """


@hookspec(firstresult=True)
def flashplug_error_page(request, status, message):
    """Render the body of an error response.

    Called when the kernel answers with an error status (4xx, 5xx) it
    generated itself, or a handler raised as an HTTPError, and the
    ``error_pages`` of the request's site (its own, else the top level's)
    names no page for that status (a page the site's owner named comes
    first).  Stops at the first non-None result; without
    one the kernel sends its own short HTML page.

    :param request: the :class:`flashplug.Request`, or None when the request
        could not be parsed.
    :param status: the status code.
    :param message: a short, safe explanation (never contains request data).
    :return: a :class:`flashplug.Response` to send instead (its status is
        forced to ``status``), or None.  A Response the kernel's checks
        refuse is logged and the kernel's own page is sent instead.
    """


@hookspec
def flashplug_request_done(request, status, bytes_sent, duration):
    """Observe a finished request (logging, statistics).

    Called once the whole response has been handed to the connection (a
    large body may still be on its way to the client then), or the
    connection failed.  Runs on the event loop: do no blocking work.

    :param request: the :class:`flashplug.Request`.
    :param status: the status code sent.
    :param bytes_sent: body bytes handed to the connection; for a response
        cut off after that, the access log's size (the bytes that reached
        the socket) can be smaller.
    :param duration: seconds from the request line to that moment.
    :return: ignored.
    """

"""What plugins see of the running server: the documented ``Server`` object.

Theory of operation: a plugin gets this object, never the App itself, as
``app`` in ``flashplug_startup``/``flashplug_shutdown`` and as
``request.server`` on every request.  It names the stable surface (what
docs/plugins.md lists under "The server object"), so the kernel's internals
can change without breaking a plugin; a test fails when a bundled plugin
reads anything else.

Every method runs on the event loop, which owns every value it reads, so
nothing here needs a lock (except ``reload_certificates``, which any
thread may call).
"""
import os
import signal

from flashplug import supervisor


class Server:
    """The running worker, as plugins may use it.

    - ``config``: the Config (``config.docroot``, ``config.get("cgi_timeout")``);
      on a request, its site's view (docs/configuration.md, "Virtual hosts").
    - ``loop``: the worker's event loop (None under ``--arch mt``/``mp``).
    - ``helpers``: the helper pool; ``await helpers.run(fn, *args)`` runs
      blocking work off the loop; ``helpers.size`` is its thread count
      (0: disk work runs inline).
    - ``stats``: the kernel's counters; ``stats.as_dict()``.
    """

    __slots__ = ("_app", "_site", "config", "loop", "helpers", "stats")

    def __init__(self, app, site):
        self._app = app
        self._site = site            # the app.Vhost whose requests carry this object
        self.config = site.config
        self.loop = app.loop
        self.helpers = app.helpers
        self.stats = app.stats

    def reload_certificates(self):
        """Make every worker of this server read its TLS certificates again,
        as SIGHUP does (under ``--workers N`` the master's SIGHUP, which it
        passes on to them all).  Returns at once; the workers reload in
        their helpers within milliseconds.  Safe to call from any thread."""
        os.kill(supervisor.master_pid or os.getpid(), signal.SIGHUP)

    async def dispatch(self, request):
        """The Response for a request the plugin made up (a CGI local
        redirect): routed and answered as if a client had sent it."""
        return await self._app.respond(request)

    async def serve_static(self, request):
        """The static handler's Response for ``request`` (a file, a folder's
        index or listing, or its redirect to the folder's URL with a
        ``/``), its routes skipped: for a route handler that finds the path
        is not its own, as a script route does for a folder named like a
        script (``/x.php/``)."""
        return await self._site.static.handle(request)

    def connection_counts(self):
        """(active, reading, writing, waiting) client connections, as nginx
        counts them: writing while a request is in hand (being answered or
        pipelined behind it) or output is queued; reading while a request is
        arriving; waiting otherwise (idle keep-alive)."""
        reading = writing = waiting = 0
        connections = self._app.connections
        for conn in connections:
            if conn.active is not None or conn.out or conn.pending:
                writing += 1
            elif conn.state == "head" or conn.state == "body":
                reading += 1
            else:
                waiting += 1
        return len(connections), reading, writing, waiting

    def cache_info(self):
        """The file cache's occupancy and bounds, as a dict: ``entries``,
        ``max_entries``, ``bytes``, ``max_bytes``, ``open_files``,
        ``max_open_files``."""
        cache = self._app.static.cache
        return {"entries": len(cache), "max_entries": cache.max_entries,
                "bytes": cache.bytes, "max_bytes": cache.max_bytes,
                "open_files": cache.open_files, "max_open_files": cache.max_open}

    def plugin_status(self):
        """What enabled plugins report through ``flashplug_status``, merged
        into one dict: ``int``/``str`` scalars and tables (lists of dicts);
        a value of any other shape is left out."""
        found = {}
        for result in self.config.plugin_manager.hook.flashplug_status(app=self):
            for name, value in (result or {}).items():
                if isinstance(value, (int, str)) or (
                        isinstance(value, list) and all(isinstance(r, dict) for r in value)):
                    found[name] = value
        return found

"""One worker: an event loop, its App, its listener and its connections.

Theory of operation: ``Worker.run`` makes a loop (uvloop when installed),
builds the App on it, runs the plugins' start-up hooks, then accepts
connections, each one a ``flashplug.connection.Connection`` over a
``SocketTransport``, or a ``TLSTransport`` when HTTPS is on (SIGHUP
reloads its certificates: ``_reload_certificates``); with
``--redirect-http`` it accepts on that port too (``flashplug.redirect``).  Out of descriptors, it pauses accepting for a moment
(``flashplug.listener``).  With ``--proxy-protocol`` each socket first
waits for its PROXY header (``flashplug.proxied``).  On SIGTERM/SIGINT
the health endpoint starts failing; after SIGTERM it serves on for
``--shutdown-delay`` seconds; then it stops accepting, lets the
connections in flight finish within ``--grace`` seconds (``_drain``), and
runs the shutdown hooks.  SIGQUIT (a reload's old worker) is the same stop
with no delay and no deadline.  SIGUSR1 and SIGHUP are the supervisor's
(``handle_operator_signals``).  The drain must lose no request, or a
reload would: see ``_drain``.
"""
import asyncio
import logging
import os
import signal
import socket
import time

from flashplug import systemd
from flashplug.app import App
from flashplug.connection import Connection
from flashplug.h2conn import H2Connection
from flashplug.listener import ACCEPT_PAUSE, OUT_OF_RESOURCES, AcceptPause
from flashplug.proxied import ProxyHeaderReader
from flashplug.supervisor import handle_operator_signals
from flashplug.redirect import PlainView, RedirectConnection
from flashplug.tls import reload_certificates
from flashplug.transport import SocketTransport, TLSTransport

log = logging.getLogger("flashplug.server")

# Accept at most this many connections per readiness event, so a flood of
# new connections cannot starve the ones already open.
ACCEPT_BATCH = 64

#: On a graceful stop, a keep-alive connection is closed once it has stayed
#: idle this long (seconds).  One whose client is about to send its next
#: request (a load generator, a page fetching its images) gets that request
#: answered with ``Connection: close`` instead of a close under its feet.
DRAIN_IDLE = 0.2


def import_uvloop():
    """uvloop, or None where it cannot be imported."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def new_loop():
    uvloop = import_uvloop()
    if uvloop is None:
        log.info("uvloop is not installed; using asyncio's own event loop")
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Worker:
    def __init__(self, config, listener, redirect=None, accepting=None):
        """``accepting(True)`` is called once the worker accepts connections
        (the master's cue, or systemd's READY=1 without a master),
        ``accepting(False)`` once a stop closed its listener."""
        self.config = config
        self.accepting = accepting
        self.listener = listener
        self.redirect = redirect
        self.loop = new_loop()
        self.app = None
        self.stopped = None
        self.drain_until = float("inf")   # --grace's deadline, once a stop asks for it
        self.grace_asked = False          # stop() was called (retire() alone: no deadline)
        self.accept_pause = AcceptPause()
        self.proxy_protocol = bool(config.get("proxy_protocol"))
        self.proxy_waiting = set()   # sockets whose PROXY header has not come yet
        self.hurry = None            # set during --shutdown-delay: end it early

    def run(self):
        asyncio.set_event_loop(self.loop)
        try:
            return self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()

    async def _main(self):
        loop = self.loop
        app = self.app = App(self.config, loop, self.listener)
        self.stopped = loop.create_future()
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop, sig)
            loop.add_signal_handler(signal.SIGQUIT, self.retire)
            handle_operator_signals(loop, reload=self._reload_certificates
                                    if app.certificates is not None else None)
        except (ValueError, RuntimeError):
            pass  # not the main thread (an in-process test): stop() is called directly
        # After the signal handlers: a stop during start-up still runs shutdown.
        await _call_async_hooks(app.pm.hook.flashplug_startup, app=app.facade)
        loop.add_reader(self.listener.fileno(), self._accept)
        if self.redirect is not None:
            view = PlainView(app, self.config.port)
            loop.add_reader(self.redirect.fileno(), self._accept_redirect, view)
        app.tick()
        app.static.revalidate_ahead()   # then every FileCache.period seconds
        if self.accepting is not None:
            self.accepting(True)
        await self._shutdown_delay(await self.stopped)
        await self._drain()
        await _call_async_hooks(app.pm.hook.flashplug_shutdown, app=app.facade)
        app.helpers.close()
        if app.access_log is not None:
            app.access_log.close()
        app.static.cache.clear()
        return 0

    def _accept(self):
        for sock, peer in self._accepted(self.listener):
            self._open(sock, peer, self._connect)

    def _accept_redirect(self, view):
        for sock, peer in self._accepted(self.redirect):
            self._open(sock, peer, lambda sock, peer: RedirectConnection(
                view, _plain(sock), peer))

    def _open(self, sock, peer, connect):
        """Serve a new socket: at once, or once its PROXY header says
        whose it is (``--proxy-protocol``, before TLS and HTTP)."""
        if self.proxy_protocol:
            sock.setblocking(False)
            ProxyHeaderReader(self.loop, sock, peer, self.config.header_timeout,
                              self.proxy_waiting, connect)
        else:
            connect(sock, peer)

    def _connect(self, sock, peer):
        certificates = self.app.certificates
        if certificates is None:
            transport = _plain(sock)
        else:
            sock.setblocking(False)
            transport = TLSTransport(sock, certificates)
        Connection(self.app, transport, peer)

    def _accepted(self, listener):
        """Up to ACCEPT_BATCH new connections' sockets (still blocking: the
        transport made for each sets it non-blocking, one call per socket)."""
        # (The listener's family, asked once: ``socket.family`` makes an
        # enum member on every call.)
        tcp = listener.family in (socket.AF_INET, socket.AF_INET6)
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in OUT_OF_RESOURCES:
                    self._pause_accepting(e)
                    return
                continue  # the client gave up before we accepted (ECONNABORTED)
            if tcp:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.app.stats.connections_total += 1
            yield sock, peer

    def _pause_accepting(self, error):
        self.accept_pause.note(error)
        self.loop.remove_reader(self.listener.fileno())
        self.loop.call_later(ACCEPT_PAUSE, self._resume_accepting)

    def _resume_accepting(self):
        if not self.app.stopping:
            self.loop.add_reader(self.listener.fileno(), self._accept)

    def _reload_certificates(self):
        """SIGHUP: read the certificates and keys again, in a helper (they
        are files, and a plugin may list its own); new handshakes use them,
        open connections keep theirs.  A file that fails keeps the old ones,
        with one error line."""
        def done(certificates, error):
            if error is not None:
                log.error("SIGHUP: TLS certificates not reloaded, still serving the old "
                          "ones: %s", error)
                return
            self.app.certificates = certificates
            log.info("TLS certificates reloaded by worker %d (%d certificates)",
                     os.getpid(), len(certificates.contexts))
        self.app.helpers.call(reload_certificates, (self.config,), done)

    def stop(self, sig=signal.SIGINT):
        """Begin a graceful stop within ``--grace`` (``sig``: the signal
        that asked for it); asked again during ``--shutdown-delay``, end the
        delay now; during a reload's drain (``retire``), give it the
        deadline."""
        systemd.notify("STOPPING=1")   # without a master; a master's child says nothing
        self.grace_asked = True
        if self.app is not None and self.app.stopping:     # already draining
            self.drain_until = min(self.drain_until, time.monotonic() + self.config.grace)
        if not self.stopped.done():
            self.stopped.set_result(sig)
        elif self.hurry is not None and not self.hurry.done():
            self.hurry.set_result(None)

    def retire(self):
        """SIGQUIT, from the master once a reload's workers accept: graceful
        stop with no ``--shutdown-delay`` and no deadline, so a long
        download is not cut; each connection still ends by its own timeouts
        (``--send-timeout``, keep-alive, the handler's).  A SIGTERM after
        it sets the deadline."""
        if not self.stopped.done():
            self.stopped.set_result(signal.SIGQUIT)

    async def _shutdown_delay(self, sig):
        """The health check fails from now on; on SIGTERM (a service
        manager's or an orchestrator's stop) go on serving, accepting too,
        for ``--shutdown-delay`` seconds, so the balancer sees the failing
        check and moves traffic away before anything closes (Caddy's
        ``shutdown_delay``).  SIGINT, from a terminal, does not wait."""
        self.app.draining = True
        delay = self.config.get("shutdown_delay") or 0
        if not delay or sig != signal.SIGTERM:
            return
        log.info("stopping: health checks fail from now on; serving on for %g s "
                 "(--shutdown-delay) while the balancer drains this server", delay)
        self.hurry = self.loop.create_future()
        await asyncio.wait([self.hurry], timeout=delay)

    async def _drain(self):
        """Graceful stop: no new connections; finish what is in flight.

        The listening socket stays open in the master and in the next
        generation, so connections not yet accepted wait there.  Every
        response from now on says ``Connection: close`` (``app.stopping``),
        and an HTTP/2 connection refuses new streams (REFUSED_STREAM, safe to
        retry) and sends GOAWAY once its open ones are answered; an HTTP/1.1
        connection is closed once it has been idle for DRAIN_IDLE (its
        deadline, reset by every response, unchanged that long) and the
        kernel holds no byte of a next request for it, so a request
        already on its way is answered, not reset.
        """
        app = self.app
        app.stopping = True
        for conn in list(app.connections):
            if isinstance(conn, H2Connection):
                # HTTP/2 has no "Connection: close" to say it: without
                # this it took new streams, then was closed bare (RFC 9113
                # §6.8 asks for a GOAWAY).
                conn.closing = True
        self.loop.remove_reader(self.listener.fileno())
        self.listener.close()
        if self.redirect is not None:
            self.loop.remove_reader(self.redirect.fileno())
            self.redirect.close()
        if self.accepting is not None:
            self.accepting(False)
        for reader in list(self.proxy_waiting):
            reader.close()     # no request yet: nothing to finish
        if self.grace_asked:
            self.drain_until = time.monotonic() + self.config.grace
        idle_since = {}        # connection -> (its deadline, when first seen idle)
        while time.monotonic() < self.drain_until:
            now = time.monotonic()
            for conn in list(app.connections):
                if conn.state == "idle" and conn.active is None and not conn.out \
                        and not conn.pending and conn.unparsed is None:
                    seen = idle_since.get(conn)
                    if seen is None or seen[0] != conn.deadline:
                        idle_since[conn] = (conn.deadline, now)
                    elif now - seen[1] >= DRAIN_IDLE and not conn.transport.unread():
                        # (A request already in the kernel's queue, not yet
                        # read since timers run before I/O: served next.)
                        conn.close()
            if not app.connections:
                break
            await asyncio.sleep(0.05)
        left = list(app.connections)
        if left:
            # The operator learns why these clients got no (whole) answer.
            busy = [f"{c.active.method} {c.active.target}" for c in left
                    if getattr(c.active, "method", None)]
            log.warning("stopping: --grace %g s is over; closing %d connection%s still "
                        "busy%s", self.config.grace, len(left), "s" if len(left) > 1 else "",
                        f" ({', '.join(busy[:5])}{', ...' if len(busy) > 5 else ''})"
                        if busy else "")
        for conn in left:
            conn.abort()


def _plain(sock):
    """The transport of a plain-HTTP socket: the socket itself, taken over."""
    transport = SocketTransport(sock)
    transport.setblocking(False)
    return transport


async def _call_async_hooks(hook, **kwargs):
    for result in hook(**kwargs):
        if result is not None and hasattr(result, "__await__"):
            await result

"""The ordering thread: gets, renews and installs the certificates.

Theory of operation: each worker starts one ``Orderer`` thread; the one
that takes the state directory's lock (``Store.try_lock``) orders, the
others only wait for the lock (so with ``--workers N`` one process talks
to the CA, and another takes over if it dies; two servers sharing a state
directory do not order twice).  The thread is not one of the worker's disk
helpers: an order waits on the network for seconds, and would hold a
helper the static files need.  The loop itself never waits for it.

For each name the thread keeps a due time: now when there is no stored
certificate, its renewal time when there is one (``schedule``), and after
a failed order a retry delay that doubles with each failure.  A new
certificate is written to the store and every worker told to reload
(``app.reload_certificates()``, the SIGHUP path): new handshakes use it,
open connections keep the old one.

Challenges: an HTTP-01 key authorization is a file that every worker's
route reads (``flashplug_plugins.acme``), so it is live the moment it is
written.  A TLS-ALPN-01 certificate must be in every worker's TLS setup:
the thread writes it, asks for a reload, and waits until a handshake of
its own (``acme-tls/1`` to our port) is answered with it before telling
the CA to look.
"""
import logging
import os
import socket
import ssl
import threading
import time

from .schedule import renewal_time, retry_delay, validity, when
from .settings import MAX_RETRY, UNREACHED_RETRY
from .store import ACME_TLS_1, HTTP01, write_private

log = logging.getLogger("flashplug.acme")

#: Seconds between tries for the lock while another process orders: after
#: a reload, a new worker takes over within this of the old one's exit (a
#: try is one flock call).
LOCK_RETRY = 5.0
#: Seconds to wait for our own workers to show a TLS-ALPN-01 certificate.
ALPN_SHOWN_WITHIN = 10.0
#: The longest sleep: the wall clock may jump (a suspended machine), so
#: due times are looked at again at least this often.
LONGEST_SLEEP = 3600.0


class Orderer(threading.Thread):
    def __init__(self, settings, store, server):
        super().__init__(name="flashplug-acme", daemon=True)
        self.settings = settings
        self.store = store
        self.server = server
        self.stopping = threading.Event()
        self.due = dict.fromkeys(settings.domains, 0.0)
        self.failures = dict.fromkeys(settings.domains, 0)
        self.expires = dict.fromkeys(settings.domains)   # a certificate's notAfter, or None
        self.client = None
        self.announced = False     # the account's line is logged once
        self.reload_wanted = False
        self.lock = None           # the state directory's lock, held for good once taken

    def stop(self):
        self.stopping.set()

    def run(self):
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - the server serves on; say why we stopped
            log.error("ACME: ordering stopped by an unexpected error: %s: %s",
                      type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))

    def _run(self):
        while (lock := self.store.try_lock()) is None:
            if self.stopping.wait(LOCK_RETRY):
                return
        self.lock = lock
        log.info("ACME: worker %d orders certificates for %s from %s", os.getpid(),
                 ", ".join(self.settings.domains), self.settings.directory)
        for name in self.settings.domains:
            self.due[name] = self._stored_due(name)
        while not self.stopping.is_set():
            for name in self.settings.domains:
                if self.due[name] <= time.time() and not self.stopping.is_set():
                    self._attempt(name)
            if self.reload_wanted:
                self.reload_wanted = False
                self.server.reload_certificates()
            self.stopping.wait(min(max(0.0, min(self.due.values()) - time.time()),
                                   LONGEST_SLEEP))

    def report(self):
        """One row per name for the status page (read on the loop; each
        value is replaced whole by this thread, never changed in place)."""
        return [{"name": name,
                 "valid_until": when(self.expires[name]) if self.expires[name] else "none yet",
                 "next_order": when(self.due[name]) if self.due[name] else "now",
                 "failures": self.failures[name]} for name in self.settings.domains]

    def _stored_due(self, name):
        pem = self.store.read_cert(name)
        if pem is None:
            return 0.0
        try:
            not_before, not_after = validity(pem)
        except ValueError:
            log.warning("ACME: %s: the stored certificate cannot be read; ordering a new one",
                        name)
            return 0.0
        due = renewal_time(not_before, not_after)
        self.expires[name] = not_after
        log.info("ACME: %s: certificate valid until %s, renewal due %s", name,
                 when(not_after), when(due))
        return due

    def _attempt(self, name):
        from .client import describe, unreached
        renewing = self.store.read_cert(name) is not None
        try:
            key, chain = self._client().order(name, self._publish, self._withdraw)
            not_before, not_after = validity(chain)
            self.store.save_cert(name, chain, key)
        except Exception as exc:  # noqa: BLE001 - every failure is retried (a full disk too)
            self.client = None    # next time: read the directory, find the account again
            self.failures[name] += 1
            first = self.settings.retry
            if unreached(exc):
                first = min(first, UNREACHED_RETRY)
            delay = retry_delay(self.failures[name], first, MAX_RETRY)
            self.due[name] = time.time() + delay
            log.error("ACME: %s: no certificate (%s failure in a row): %s; retrying in %s",
                      name, _nth(self.failures[name]), describe(exc), _seconds(delay))
            log.debug("ACME: %s: order failed", name, exc_info=True)
            return
        self.failures[name] = 0
        self.expires[name] = not_after
        due = renewal_time(not_before, not_after)
        self.due[name] = due if due > time.time() else time.time() + self.settings.retry
        self.reload_wanted = True
        log.info("ACME: %s: certificate %s, valid until %s, renewal due %s", name,
                 "renewed" if renewing else "obtained", when(not_after), when(due))

    def _client(self):
        if self.client is None:
            from .client import Client, load_or_make_account_key
            key = load_or_make_account_key(self.store.account_key, write_private)
            client = Client(self.settings, key)
            client.connect()
            if not self.announced:
                self.announced = True
                log.info("ACME: account ready at %s (terms of service agreed to: %s)",
                         self.settings.directory, client.terms or "none given")
            self.client = client
        return self.client

    # -- challenges ------------------------------------------------------------------

    def _publish(self, name, challb, account_key):
        chall = challb.chall
        if chall.typ == HTTP01:
            token = chall.encode("token")
            if self.store.http_token_path(token) is None:
                raise ValueError(f"the CA sent a token that is not base64url: {token!r}")
            self.store.publish_http(token, chall.validation(account_key))
            return [self.store.http_token_path(token)]
        from .client import challenge_certificate
        cert, key = challenge_certificate(name, chall.validation(account_key))
        self.store.publish_alpn(name, cert, key)
        self.server.reload_certificates()
        self._await_shown(name, cert)
        return list(self.store.alpn_paths(name))

    def _withdraw(self, paths):
        self.store.withdraw(paths)
        if not paths[0].startswith(self.store.http_dir):
            self.reload_wanted = True     # drop the challenge certificate too

    def _await_shown(self, name, cert_pem):
        """Wait until our port answers an ``acme-tls/1`` handshake for
        ``name`` with the challenge certificate ``cert_pem`` (the workers
        reloaded), or ALPN_SHOWN_WITHIN seconds; the CA tells if not."""
        want = ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii"))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols([ACME_TLS_1])
        config = self.server.config
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
            config.bind, config.bind)
        deadline = time.monotonic() + ALPN_SHOWN_WITHIN
        while time.monotonic() < deadline and not self.stopping.is_set():
            try:
                with socket.create_connection((host, config.port), timeout=2) as raw, \
                        ctx.wrap_socket(raw, server_hostname=name) as tls:
                    if tls.getpeercert(binary_form=True) == want:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        log.warning("ACME: %s: our own TLS-ALPN-01 check did not see the challenge "
                    "certificate within %g s; asking the CA anyway", name, ALPN_SHOWN_WITHIN)


def _nth(n):
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def _seconds(s):
    if s < 120:
        return f"{s:g} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"

"""TLS settings and certificates: the server's SSLContexts, chosen by SNI.

Theory of operation: ``load_certificates(pairs)`` reads each ``--tls-cert``
/ ``--tls-key`` pair into an ``ssl.SSLContext`` with the security defaults
below, and learns the names each certificate is for from its
subjectAltName.  The result, a ``Certificates``, hands out one
``ssl.SSLObject`` per connection (``new_session``), over memory BIOs, so
the event loop drives the handshake and never blocks on it
(``flashplug.transport.TLSTransport``).  The first pair is the default:
it answers clients that send no server name (SNI, RFC 6066 §3) or one no
certificate covers, as nginx's default server does.

Plugins add certificates through ``flashplug_tls_certificates`` (the acme
plugin's, issued by an ACME CA): after the ``--tls-cert`` pairs, so a
manual certificate stays the default.  A plugin may provide HTTPS before
it has any certificate (the first ACME order is still running): then
there is no default, and a handshake for a name without a certificate
fails with a TLS alert.  A certificate a plugin reserves for one ALPN
protocol (the TLS-ALPN-01 challenge certificate of RFC 8737, for
``acme-tls/1``) is never chosen by SNI alone: it answers only a
ClientHello that names both its server name and that protocol, which
``special_session`` reads from the connection's first bytes
(``client_hello``) before OpenSSL sees them.

On SIGHUP a worker builds a new ``Certificates`` in a helper and swaps it
in: handshakes begin with the new one, connections already open keep the
context they started with, so nothing is dropped.

Security defaults (Mozilla's "intermediate" profile): TLS 1.2 and 1.3
only; for TLS 1.2 only ECDHE key exchange with AES-GCM or ChaCha20-Poly1305
(forward secrecy, AEAD); no TLS compression (CRIME); no renegotiation at
all; ALPN offers ``h2``, ``http/1.1`` and ``http/1.0`` (no ``h2`` with
``--no-http2``), and a client that offers ALPN but none of these gets the
``no_application_protocol`` alert (RFC 7301 §3.2; ``refuses_alpn``); TLS
1.3 session tickets for resumption.  RFC 9113 §9.2
asks more of HTTP/2 over TLS 1.2 (no compression, no renegotiation, an
ephemeral key exchange and an AEAD suite): these defaults are all that.
"""
import logging
import os
import re
import ssl
import stat
import sys
import time

from flashplug.errors import UsageError

log = logging.getLogger("flashplug.tls")

#: TLS 1.2 cipher suites (OpenSSL names): Mozilla "intermediate", ECDHE
#: only.  TLS 1.3 suites are all AEAD with forward secrecy; OpenSSL's
#: defaults are kept.
TLS12_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
))
# http/1.0 last, as nginx offers it: a client that speaks nothing newer
# (curl --http1.0) gets it rather than the no_application_protocol alert.
ALPN = ["h2", "http/1.1", "http/1.0"]
ALPN_H1 = ["http/1.1", "http/1.0"]
_OID_SAN = "subjectAltName"


def alpn_for(config):
    """The ALPN protocols to offer: ``h2`` too unless ``--no-http2``."""
    return ALPN if config.get("http2", True) else ALPN_H1


def server_context(cert, key, alpn=ALPN):
    """An SSLContext for one certificate chain and key, with our defaults;
    ``alpn``: the ALPN protocols it offers, in order.  Without ``cert`` it
    has no certificate (handshakes on it fail).

    Raises UsageError naming the file and the fix.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    # The client's order of cipher suites, not ours (Python's server
    # default): every suite offered is strong, and the client knows which
    # its hardware runs fastest (AES-128-GCM first, for browsers and
    # h2load: a cheaper handshake and records than AES-256-GCM-SHA384).
    # Mozilla's "intermediate" profile and nginx do the same.
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.set_alpn_protocols(alpn)
    if cert is None:
        return ctx
    for path, flag in ((cert, "--tls-cert"), (key, "--tls-key")):
        if os.path.isdir(path):
            raise UsageError(f"{flag} {path} is a folder; give the PEM file in it")
        if not os.path.isfile(path):
            raise UsageError(f"{flag} {path}: no such file")
    def encrypted():
        # Without this, OpenSSL would ask for a pass phrase on the terminal.
        raise UsageError(f"--tls-key {key} is encrypted with a pass phrase; the server "
                         f"cannot ask for it: decrypt it with "
                         f"`openssl pkey -in {key} -out {key}.plain`")
    try:
        ctx.load_cert_chain(cert, key, password=encrypted)
    except PermissionError:
        raise UsageError(f"--tls-key {key}: permission denied; the server must be able "
                         f"to read it") from None
    except ssl.SSLError as e:
        raise UsageError(_load_error(cert, key, e.reason or str(e))) from None
    return ctx


#: OpenSSL's reasons for a key that is not the certificate's: the same
#: algorithm with another key, or another algorithm (an RSA key with an
#: ECDSA certificate fills a slot that has no certificate).
_MISMATCH = ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED")


def _load_error(cert, key, reason):
    """The one-line cause and fix for a pair OpenSSL refused: a key that
    belongs to another certificate, the two files swapped, or a file that
    holds no PEM block of its kind ("[SSL] PEM lib" alone names neither)."""
    if reason.upper() in _MISMATCH:
        return (f"--tls-key {key} is not the key of --tls-cert {cert}; give the key made "
                f"with this certificate (compare `openssl x509 -in {cert} -noout -pubkey` "
                f"with `openssl pkey -in {key} -pubout`)")
    cert_pem, key_pem = _pem_labels(cert), _pem_labels(key)
    if "CERTIFICATE" not in cert_pem and "CERTIFICATE" in key_pem:
        return (f"--tls-cert {cert} and --tls-key {key} are swapped: the certificate "
                f"chain goes to --tls-cert, the private key to --tls-key")
    if "CERTIFICATE" not in cert_pem:
        return (f"--tls-cert {cert} holds no PEM certificate (-----BEGIN CERTIFICATE-----); "
                f"give the certificate chain, such as certbot's fullchain.pem")
    if not any(label.endswith("PRIVATE KEY") for label in key_pem):
        return (f"--tls-key {key} holds no PEM private key (-----BEGIN PRIVATE KEY-----); "
                f"give the key, such as certbot's privkey.pem")
    return (f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate chain and "
            f"private key ({reason})")


def _pem_labels(path):
    """The labels of the PEM blocks in a file (``{"CERTIFICATE"}``); empty
    when it cannot be read.  Called at start and in reload helpers only."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError:
        return set()
    return {m.decode("ascii", "replace")
            for m in re.findall(rb"^-----BEGIN ([A-Z0-9 ]+)-----", data, re.M)}


def certificate_names(cert):
    """The DNS names (lowercase) a PEM certificate's subjectAltName lists
    (its first certificate: the leaf of a full chain)."""
    try:
        decoded = ssl._ssl._test_decode_cert(cert)  # the stdlib's own X.509 decoder
    except (ssl.SSLError, OSError, AttributeError):
        return []
    return [value.lower() for kind, value in decoded.get(_OID_SAN, ()) if kind == "DNS"]


def key_permission_warning(key):
    """A warning line when a private key file is open to group or others
    (ssh refuses such a key; we warn), else None."""
    try:
        mode = os.stat(key).st_mode
    except OSError:
        return None
    if stat.S_IMODE(mode) & 0o077:
        return (f"--tls-key {key}: permissions {stat.S_IMODE(mode):04o} let group or "
                f"others read the private key; chmod 600 it")
    return None


def expiry_warning(cert, now=None):
    """A warning line when a PEM certificate's leaf is outside its validity
    (RFC 5280 §4.1.2.5: browsers refuse it), else None.  Served anyway, as
    nginx does: the operator may be about to replace it."""
    try:
        decoded = ssl._ssl._test_decode_cert(cert)
        not_before = ssl.cert_time_to_seconds(decoded["notBefore"])
        not_after = ssl.cert_time_to_seconds(decoded["notAfter"])
    except (ssl.SSLError, OSError, AttributeError, KeyError, ValueError):
        return None
    now = time.time() if now is None else now
    if now > not_after:
        return (f"--tls-cert {cert}: the certificate expired on {decoded['notAfter']}; "
                f"browsers refuse it: renew it (certbot renew) and reload (SIGHUP)")
    if now < not_before:
        return (f"--tls-cert {cert}: the certificate is not valid before "
                f"{decoded['notBefore']}; browsers refuse it until then: is the clock right?")
    return None


def pairs_from(config):
    """The certificates the configuration names, as ``(cert, key, names)``:
    each ``--tls-cert``/``--tls-key`` pair (``names`` empty), then each
    ``[[site]]``'s ``tls_cert``/``tls_key`` with the site's names.
    UsageError when the flags do not pair up."""
    certs = config.get("tls_cert") or []
    keys = config.get("tls_key") or []
    if len(certs) != len(keys):
        raise UsageError(f"each --tls-cert needs its --tls-key: got {len(certs)} "
                         f"certificate(s) and {len(keys)} key(s)")
    return [(cert, key, ()) for cert, key in zip(certs, keys)] + [
        (*site.tls, site.names) for site in getattr(config, "sites", ()) if site.tls]


def plugin_pairs(config):
    """The certificates enabled plugins manage (``flashplug_tls_certificates``):
    a list of ``(cert, key)`` and ``(cert, key, alpn)`` tuples, or None when
    no plugin provides HTTPS.  UsageError for a malformed item."""
    pm = config.plugin_manager
    if pm is None:
        return None
    found = None
    for impl in pm.hook.flashplug_tls_certificates.get_hookimpls():
        result = impl.function(config=config)
        if result is None:
            continue
        found = found or []
        for item in result:
            if not (isinstance(item, tuple) and len(item) in (2, 3)
                    and all(isinstance(part, str) for part in item)):
                raise UsageError(f"plugin {impl.plugin_name!r}: flashplug_tls_certificates "
                                 f"must return (cert, key) or (cert, key, alpn) tuples of "
                                 f"str, got {item!r}")
            found.append(item)
    return found


def configured_pairs(config):
    """Every certificate to serve, as ``Certificates`` takes them: the
    ``--tls-cert``/``--tls-key`` pairs and the sites' ones, then the
    plugins' ones; None when HTTPS is off."""
    pairs = pairs_from(config)
    managed = plugin_pairs(config)
    if not pairs and managed is None:
        return None
    return pairs + [(cert, key, (), *alpn) for cert, key, *alpn in managed or ()]


def client_hello(data):
    """The server name (lowercase) and ALPN protocols a ClientHello offers:
    ``(name or None, (protocol, ...))``, read from the first bytes of a
    connection (RFC 8446 §4.1.2; server_name, RFC 6066 §3; ALPN, RFC 7301
    §3.1).  ``(None, ())`` when ``data`` does not start with a whole one
    (a ClientHello split over several records is not read)."""
    try:
        if data[0] != _HANDSHAKE or data[5] != _CLIENT_HELLO:
            return None, ()
        length = int.from_bytes(data[6:9], "big")
        hello = data[9:9 + length]
        if len(hello) < length or length > int.from_bytes(data[3:5], "big") - 4:
            return None, ()
        pos = 2 + 32                                          # version, random
        pos += 1 + hello[pos]                                 # session id
        pos += 2 + int.from_bytes(hello[pos:pos + 2], "big")  # cipher suites
        pos += 1 + hello[pos]                                 # compression methods
        end = pos + 2 + int.from_bytes(hello[pos:pos + 2], "big")
        pos += 2
        name, protocols = None, []
        while pos + 4 <= end:
            kind = int.from_bytes(hello[pos:pos + 2], "big")
            size = int.from_bytes(hello[pos + 2:pos + 4], "big")
            ext = hello[pos + 4:pos + 4 + size]
            pos += 4 + size
            if kind == _EXT_SERVER_NAME and len(ext) > 5 and ext[2] == 0:   # host_name
                name = bytes(ext[5:5 + int.from_bytes(ext[3:5], "big")]).decode(
                    "ascii", "replace").lower()
            elif kind == _EXT_ALPN:
                items, i = ext[2:2 + int.from_bytes(ext[:2], "big")], 0
                while i < len(items):
                    protocols.append(bytes(items[i + 1:i + 1 + items[i]]).decode(
                        "ascii", "replace"))
                    i += 1 + items[i]
        return name, tuple(protocols)
    except IndexError:
        return None, ()


_HANDSHAKE, _CLIENT_HELLO = 0x16, 0x01
_EXT_SERVER_NAME, _EXT_ALPN = 0, 16
_ALPN_TYPE = _EXT_ALPN.to_bytes(2, "big")


class Certificates:
    """The certificates one worker serves, by server name.

    ``entries``: ``(cert, key, names)`` tuples, the first the default; an
    ``(cert, key, names, alpn)`` tuple is reserved for handshakes that offer
    that ALPN protocol (``special_session``).

    A site's certificate answers the site's own names first (exact and
    ``*.`` wildcards, as a site chooses requests), then the names in its
    subjectAltName, like every other certificate.
    """

    def __init__(self, entries, alpn=ALPN):
        self.alpn = frozenset(alpn)
        self.by_name = {}
        self.contexts = []
        self.alpn_only = {}       # server name -> (ALPN protocol, context)
        served = []
        for cert, key, names, *reserved in entries:
            if reserved:
                ctx = server_context(cert, key, reserved)
                for name in certificate_names(cert):
                    self.alpn_only[name] = (reserved[0], ctx)
                continue
            ctx = server_context(cert, key, alpn)
            served.append(cert)
            self.contexts.append(ctx)
            for name in names:
                self.by_name[name] = ctx
        names_of = {ctx: set() for ctx in self.contexts}
        for name, ctx in self.by_name.items():
            names_of[ctx].add(name)
        for cert, ctx in zip(served, self.contexts):
            for name in certificate_names(cert):
                self.by_name.setdefault(name, ctx)
                names_of[ctx].add(name)
        self.names_of = names_of
        # The contexts whose connections may be asked for a name another
        # certificate covers and theirs does not (misdirects): only theirs
        # pay for a check per request.
        self.checked = frozenset(
            ctx for ctx in self.contexts
            if any(other is not ctx and not _covers(names_of[ctx], name)
                   for name, other in self.by_name.items()))
        self.views = {}     # a checked context -> the App as its connections see it (misdirect)
        # No certificate yet (a plugin's first one is on its way): a context
        # without one, so a handshake fails with an alert, never a crash.
        self.default = self.contexts[0] if self.contexts else server_context(None, None)
        if len(self.contexts) > 1:
            # With one certificate every name gets it: no Python call into
            # each handshake to say so.
            self.default.sni_callback = self._choose
            if sys.unraisablehook is not _unraisable:
                _unraisable.previous = sys.unraisablehook
                sys.unraisablehook = _unraisable

    def context_for(self, name):
        """The context for a server name: exact, then one wildcard label."""
        if name is None:
            return self.default
        return self._owner(name.lower().rstrip(".")) or self.default

    def _owner(self, name):
        """The context of the certificate for ``name`` (lowercase, no
        trailing dot): exact, then a wildcard for its first label, never an
        empty one (".example.org"), as SiteTable; None when none is."""
        ctx = self.by_name.get(name)
        if ctx is None:
            label, _, parent = name.partition(".")
            ctx = self.by_name.get("*." + parent) if label and parent else None
        return ctx

    def misdirects(self, ctx, host):
        """True when a request for ``host`` (``Request.host``: lowercase,
        no port) came over a connection whose certificate (``ctx``) does
        not cover it while another certificate does: RFC 9110 §7.4 has
        such a request rejected, with 421 (§15.5.20), so that the client
        opens a connection for the name (RFC 9113 §9.1.2).  A name no
        certificate covers (an IP address, an unknown name) is served, as
        nginx serves it with its default certificate; so is one the
        connection's certificate covers too (HTTP/2's connection reuse,
        RFC 9113 §9.1.1)."""
        if not host:
            return False
        owner = self._owner(host)
        return owner is not None and owner is not ctx \
            and not _covers(self.names_of.get(ctx, ()), host)

    def _choose(self, sslobj, name, _ctx):
        ctx = self.context_for(name)
        if ctx is not sslobj.context:
            sslobj.context = ctx
        return None

    def unreadable_name(self, hello):
        """Did the handshake of the ClientHello ``hello`` (bytes) fail
        because its server name is not ASCII?  Asked only of a handshake
        that failed.

        With an SNI callback set, CPython decodes the name as ASCII before
        it calls the callback; raw UTF-8 (RFC 6066 §3 wants A-labels)
        fails that decoding, and ``_ssl.c`` then ends the handshake with
        the ``internal_error`` alert itself: the callback never runs, so
        it cannot return ``ALERT_DESCRIPTION_UNRECOGNIZED_NAME``.  The
        transport sends that alert instead of OpenSSL's.  Without a
        callback (one certificate) OpenSSL takes any name."""
        if self.default.sni_callback is None:
            return False
        name = client_hello(hello)[0]
        return name is not None and not name.isascii()

    def new_session(self, incoming, outgoing):
        """A server-side SSLObject for one connection, over memory BIOs."""
        return self.default.wrap_bio(incoming, outgoing, server_side=True)

    def refuses_alpn(self, hello):
        """True when the ClientHello ``hello`` (bytes) offers ALPN protocols
        and none is ours: RFC 7301 §3.2 then asks for a fatal
        ``no_application_protocol`` alert, as nginx sends, where OpenSSL
        through Python would go on with no protocol.  Asked only of a
        handshake that chose no protocol, so a usual one pays nothing."""
        if _ALPN_TYPE not in hello:
            return False    # no ALPN extension: skip the parse (most clients without one)
        protocols = client_hello(hello)[1]
        return bool(protocols) and self.alpn.isdisjoint(protocols)

    def special_session(self, hello, incoming, outgoing):
        """A session on the certificate reserved for the server name and an
        ALPN protocol the ClientHello ``hello`` offers (RFC 8737's
        ``acme-tls/1``), or None for an ordinary handshake."""
        name, protocols = client_hello(hello)
        reserved = self.alpn_only.get(name)
        if reserved is None or reserved[0] not in protocols:
            return None
        return reserved[1].wrap_bio(incoming, outgoing, server_side=True)


def _unraisable(unraisable):
    """``sys.unraisablehook`` while an SNI callback is set: a server name
    that is not ASCII (raw UTF-8, where RFC 6066 §3 wants A-labels) fails
    CPython's decoding before the callback runs, and CPython would print
    a traceback for each such handshake, one a client can repeat at will.
    The handshake ends with an alert either way; it is logged at debug
    level, like any other failed handshake.  Anything else goes to the
    hook that was there before."""
    error = unraisable.exc_value
    if isinstance(error, UnicodeDecodeError) and error.object == unraisable.object:
        log.debug("TLS handshake refused: a server name that is not ASCII: %r",
                  bytes(error.object[:80]))
        return
    _unraisable.previous(unraisable)


def _covers(names, host):
    """Whether a certificate for ``names`` (lowercase, ``*.`` wildcards)
    covers ``host``: exactly, or by a wildcard for one non-empty label
    (RFC 6125 §6.4.3)."""
    if host in names:
        return True
    label, _, parent = host.partition(".")
    return bool(label and parent) and "*." + parent in names


def load_certificates(config):
    """The configured Certificates, or None when TLS is off.  Warns about
    key files others can read (the ``--tls-key`` ones: a plugin keeps its
    own keys private) and certificates out of their validity."""
    pairs = configured_pairs(config)
    if pairs is None:
        return None
    certificates = Certificates(pairs, alpn_for(config))
    _warn(config)     # after loading: a pair that fails gets its one-line error alone
    return certificates


def reload_certificates(config):
    """Certificates read afresh (SIGHUP, in a helper thread); UsageError
    when a file fails."""
    certificates = Certificates(configured_pairs(config) or [], alpn_for(config))
    _warn(config)
    return certificates


def _warn(config):
    """The warnings about the configured pairs: a key others can read, a
    certificate out of its validity."""
    # Once per pair: a site may name the top level's pair again.
    for cert, key in dict.fromkeys((cert, key) for cert, key, _ in pairs_from(config)):
        for warning in (key_permission_warning(key), expiry_warning(cert)):
            if warning:
                log.warning(warning)

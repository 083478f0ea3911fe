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

On SIGHUP a worker builds a new ``Certificates`` in a helper and swaps it
in: handshakes begin with the new one, connections already open keep the
context they started with, so nothing is dropped.

Security defaults (Mozilla's "intermediate" profile): TLS 1.2 and 1.3
only; for TLS 1.2 only ECDHE key exchange with AES-GCM or ChaCha20-Poly1305
(forward secrecy, AEAD); no TLS compression (CRIME); no renegotiation at
all; ALPN offers ``h2`` then ``http/1.1`` (``http/1.1`` alone with
``--no-http2``); TLS 1.3 session tickets for resumption.  RFC 9113 §9.2
asks more of HTTP/2 over TLS 1.2 (no compression, no renegotiation, an
ephemeral key exchange and an AEAD suite): these defaults are all that.
"""
import logging
import os
import ssl
import stat

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
ALPN = ["h2", "http/1.1"]
ALPN_H1 = ["http/1.1"]
_OID_SAN = "subjectAltName"


def alpn_for(config):
    """The ALPN protocols to offer: ``h2`` too unless ``--no-http2``."""
    return ALPN if config.get("http2", True) else ALPN_H1


def server_context(cert, key, alpn=ALPN):
    """An SSLContext for one certificate chain and key, with our defaults.

    Raises UsageError naming the file and the fix.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.set_alpn_protocols(alpn)
    for path, flag in ((cert, "--tls-cert"), (key, "--tls-key")):
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
        reason = e.reason or str(e)
        if "KEY_VALUES_MISMATCH" in reason.upper():
            raise UsageError(f"--tls-key {key} is not the key of --tls-cert {cert}") from None
        raise UsageError(f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate "
                         f"chain and private key ({reason})") from None
    return ctx


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


class Certificates:
    """The certificates one worker serves, by server name.

    A site's certificate answers the site's own names first (exact and
    ``*.`` wildcards, as a site chooses requests), then the names in its
    subjectAltName, like every other certificate.
    """

    def __init__(self, triples, alpn=ALPN):
        self.by_name = {}
        self.contexts = []
        for cert, key, names in triples:
            ctx = server_context(cert, key, alpn)
            self.contexts.append(ctx)
            for name in names:
                self.by_name[name] = ctx
        for (cert, _, _), ctx in zip(triples, self.contexts):
            for name in certificate_names(cert):
                self.by_name.setdefault(name, ctx)
        self.default = self.contexts[0]
        self.default.sni_callback = self._choose

    def context_for(self, name):
        """The context for a server name: exact, then one wildcard label."""
        if name is None:
            return self.default
        name = name.lower().rstrip(".")
        ctx = self.by_name.get(name)
        if ctx is None:
            _, dot, parent = name.partition(".")
            ctx = self.by_name.get("*." + parent) if dot else None
        return ctx or self.default

    def _choose(self, sslobj, name, _ctx):
        ctx = self.context_for(name)
        if ctx is not sslobj.context:
            sslobj.context = ctx
        return None

    def new_session(self, incoming, outgoing):
        """A server-side SSLObject for one connection, over memory BIOs."""
        return self.default.wrap_bio(incoming, outgoing, server_side=True)


def load_certificates(config):
    """The configured Certificates, or None when TLS is off.  Warns about
    key files others can read."""
    pairs = pairs_from(config)
    if not pairs:
        return None
    for _, key, _ in pairs:
        warning = key_permission_warning(key)
        if warning:
            log.warning(warning)
    return Certificates(pairs, alpn_for(config))

"""One ACME account and its orders (RFC 8555 §7.3-7.4), through certbot's
``acme`` library.

The library is synchronous (``requests`` underneath) and every method
here blocks on the network: only the ordering thread
(``flashplug_plugins.acme.orderer``) calls them.  Keys are EC P-256, so
making one costs well under a millisecond of CPU (an RSA key would hold
the interpreter for tens of milliseconds, beside the event loop).

``acme`` 3.0 and later no longer ship TLS-ALPN-01 (certbot never answers
it), so its two message types (RFC 8737 §3) are declared here on the
library's own base classes; the challenge certificate is built with
``cryptography``.
"""
import datetime
import hashlib

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flashplug import __version__

#: id-pe-acmeIdentifier (RFC 8737 §6.1).
ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
# Seconds for one HTTP exchange with the CA, and for an order's checks.
NETWORK_TIMEOUT = 30
# Tries of one request the CA refuses for its nonce (badNonce): certbot's
# library tries twice; pebble refuses 5% of good nonces, and an order's ten
# or so requests then failed about one run in forty.
NONCE_TRIES = 5
ORDER_TIMEOUT = 90


@challenges.ChallengeResponse.register
class TLSALPN01Response(challenges.KeyAuthorizationChallengeResponse):
    """The answer to a tls-alpn-01 challenge: an empty object, as for http-01."""
    typ = "tls-alpn-01"


@challenges.Challenge.register
class TLSALPN01(challenges.KeyAuthorizationChallenge):
    """The tls-alpn-01 challenge (RFC 8737 §3)."""
    response_cls = TLSALPN01Response
    typ = response_cls.typ

    def validation(self, account_key, **unused):
        """The SHA-256 digest of the key authorization, which the challenge
        certificate carries in its acmeIdentifier extension."""
        return hashlib.sha256(self.key_authorization(account_key).encode("ascii")).digest()


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def challenge_certificate(name, digest):
    """A self-signed TLS-ALPN-01 certificate for ``name`` carrying
    ``digest`` (RFC 8737 §3): ``(cert_pem, key_pem)``."""
    key = new_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            # The extension's value is the DER OCTET STRING of the digest.
            .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER, b"\x04\x20" + digest),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)


def load_or_make_account_key(path, write):
    """The account key stored at ``path``, made (and written with
    ``write(path, pem)``) the first time."""
    try:
        with open(path, "rb") as f:
            return serialization.load_pem_private_key(f.read(), password=None)
    except FileNotFoundError:
        key = new_key()
        write(path, key_pem(key))
        return key


class Network(client.ClientNetwork):
    """certbot's ClientNetwork, retrying a request refused for its nonce
    up to NONCE_TRIES times (RFC 8555 §6.5: the client should retry with
    a fresh nonce; the library fetches one when its pool is empty)."""

    def post(self, *args, **kwargs):
        for _ in range(NONCE_TRIES - 1):
            try:
                return self._post_once(*args, **kwargs)
            except messages.Error as error:
                if error.code != "badNonce":
                    raise
        return self._post_once(*args, **kwargs)


class Client:
    """An ACME account at one CA.  Every method blocks on the network."""

    def __init__(self, settings, account_key):
        self.settings = settings
        self.net = Network(
            jose.JWKEC(key=account_key), alg=jose.ES256,
            verify_ssl=settings.ca_bundle or True, timeout=NETWORK_TIMEOUT,
            user_agent=f"flashplug/{__version__} acme-python")
        self.acme = None
        self.terms = None

    def connect(self):
        """Read the CA's directory and find or create our account
        (RFC 8555 §7.3: the same key finds the same account).  Agrees to
        the CA's terms of service, which ``terms`` then names."""
        directory = client.ClientV2.get_directory(self.settings.directory, self.net)
        self.acme = client.ClientV2(directory, self.net)
        self.terms = getattr(directory.meta, "terms_of_service", None)
        email = self.settings.email
        registration = messages.NewRegistration.from_data(
            email=email, terms_of_service_agreed=True) if email else \
            messages.NewRegistration(terms_of_service_agreed=True)
        try:
            self.acme.new_account(registration)
        except errors.ConflictError as existing:
            self.net.account = messages.RegistrationResource(
                uri=existing.location, body=messages.Registration())

    def order(self, name, publish, withdraw):
        """A new key and certificate for ``name``: ``(key_pem, fullchain_pem)``.

        ``publish(name, challb, account_key)`` puts one of the order's
        challenges out (returns what to take back afterwards);
        ``withdraw(that)`` takes it back when the order is over, whatever
        its end.  Raises the library's errors (``describe`` words them).
        """
        key = key_pem(new_key())
        orderr = self.acme.new_order(crypto_util.make_csr(key, [name]))
        out = []
        try:
            for authzr in orderr.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue      # the CA remembers an earlier validation
                challb = self._pick(authzr)
                out.append(publish(name, challb, self.net.key))
                self.acme.answer_challenge(challb, challb.chall.response(self.net.key))
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_TIMEOUT)
            orderr = self.acme.poll_and_finalize(orderr, deadline)
        finally:
            for item in out:
                withdraw(item)
        return key, orderr.fullchain_pem.encode("ascii")

    def _pick(self, authzr):
        offered = {challb.chall.typ: challb for challb in authzr.body.challenges}
        for typ in self.settings.challenges:
            if typ in offered:
                return offered[typ]
        raise NoChallenge(f"the CA offers {', '.join(sorted(offered)) or 'no challenge'} "
                          f"for {authzr.body.identifier.value}, none of "
                          f"--acme-challenge {','.join(self.settings.challenges)}")


class NoChallenge(Exception):
    """The CA offers no challenge type we answer."""


def unreached(exc):
    """Did the order fail for want of a connection to the CA (refused,
    unreachable, no DNS, reset), rather than by the CA's answer?"""
    return (isinstance(exc, requests.exceptions.ConnectionError)
            and not isinstance(exc, requests.exceptions.SSLError))


def describe(exc):
    """One line for what made an order fail."""
    if isinstance(exc, errors.ValidationError):
        problems = [f"{challb.chall.typ}: {challb.error.detail or challb.error.typ}"
                    for authzr in exc.failed_authzrs for challb in authzr.body.challenges
                    if challb.error is not None]
        return "the CA could not validate it (" + "; ".join(problems) + ")"
    if isinstance(exc, messages.Error):
        return f"the CA refused: {exc.detail or exc.typ}"
    if isinstance(exc, requests.exceptions.SSLError):
        return (f"the CA's HTTPS certificate is not trusted ({exc}); for a test CA give "
                f"--acme-ca-bundle")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"cannot reach the CA: {type(exc).__name__}"
    if isinstance(exc, (requests.exceptions.Timeout, errors.TimeoutError)):
        return "the CA did not answer in time"
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")

"""The state directory: what the acme plugin keeps between runs.

Layout (``--acme-state DIR``, mode 0700; every key 0600)::

    DIR/lock                          flock()ed by the one process that orders
    DIR/CA/account.key                the ACME account's key (EC P-256, PEM)
    DIR/CA/NAME/fullchain.pem         the certificate and its chain
    DIR/CA/NAME/privkey.pem           its key
    DIR/challenges/http-01/TOKEN      a key authorization being checked
    DIR/challenges/tls-alpn-01/NAME.pem, NAME.key
                                      a challenge certificate being checked

CA is the directory URL made into a file name, so certificates of a test
CA never pass for production ones.  Files are written whole under a
temporary name and renamed into place, so a reader sees the old file or
the new one, never half of one.  Every function here touches the disk:
call them from a helper or the ordering thread, never the event loop.
"""
import fcntl
import os
import re
import stat
from urllib.parse import urlsplit

HTTP01, TLSALPN01 = "http-01", "tls-alpn-01"
#: The ALPN protocol a CA offers when it checks TLS-ALPN-01 (RFC 8737 §6.2).
ACME_TLS_1 = "acme-tls/1"
# What a CA's token may hold (RFC 8555 §8.1: base64url).
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}\Z")


def ca_folder(directory_url):
    """A file name for an ACME directory URL: its host and path."""
    parts = urlsplit(directory_url)
    return re.sub(r"[^A-Za-z0-9.-]+", "_", f"{parts.netloc}{parts.path}").strip("_")


class Store:
    """Paths and safe writes under one state directory, for one CA."""

    def __init__(self, root, directory_url):
        self.root = root
        self.ca = os.path.join(root, ca_folder(directory_url))
        self.account_key = os.path.join(self.ca, "account.key")
        self.http_dir = os.path.join(root, "challenges", HTTP01)
        self.alpn_dir = os.path.join(root, "challenges", TLSALPN01)

    def prepare(self):
        """Make the folders, 0700.  A state directory that group or others
        may enter is closed (returned as a warning line); UsageError-worthy
        problems raise OSError."""
        warning = None
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        mode = stat.S_IMODE(os.stat(self.root).st_mode)
        if mode & 0o077:
            os.chmod(self.root, 0o700)
            warning = (f"--acme-state {self.root}: permissions {mode:04o} let group or "
                       f"others in; changed to 0700 (it holds private keys)")
        for folder in (self.ca, self.http_dir, self.alpn_dir):
            os.makedirs(folder, mode=0o700, exist_ok=True)
        return warning

    # -- certificates ------------------------------------------------------------

    def cert_paths(self, name):
        folder = os.path.join(self.ca, name)
        return os.path.join(folder, "fullchain.pem"), os.path.join(folder, "privkey.pem")

    def read_cert(self, name):
        """The stored full chain for ``name`` (PEM bytes), or None."""
        try:
            with open(self.cert_paths(name)[0], "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def save_cert(self, name, fullchain_pem, key_pem):
        """Install a certificate and its key (the key first: a reload in
        between finds the pair mismatched, fails, and keeps the old one)."""
        cert, key = self.cert_paths(name)
        os.makedirs(os.path.dirname(cert), mode=0o700, exist_ok=True)
        write_private(key, key_pem)
        write_private(cert, fullchain_pem)

    def installed(self, names):
        """``(cert, key)`` paths of the names that have a certificate."""
        pairs = []
        for name in names:
            cert, key = self.cert_paths(name)
            if os.path.exists(cert) and os.path.exists(key):
                pairs.append((cert, key))
        return pairs

    # -- challenges ---------------------------------------------------------------

    def http_token_path(self, token):
        """The file of an HTTP-01 token, or None for a token no CA sends."""
        return os.path.join(self.http_dir, token) if TOKEN.match(token) else None

    def publish_http(self, token, key_authorization):
        write_private(self.http_token_path(token), key_authorization.encode("ascii"))

    def alpn_paths(self, name):
        return (os.path.join(self.alpn_dir, name + ".pem"),
                os.path.join(self.alpn_dir, name + ".key"))

    def publish_alpn(self, name, cert_pem, key_pem):
        cert, key = self.alpn_paths(name)
        write_private(key, key_pem)
        write_private(cert, cert_pem)

    def alpn_challenges(self):
        """``(cert, key)`` of every TLS-ALPN-01 challenge certificate out."""
        try:
            files = os.listdir(self.alpn_dir)
        except OSError:     # none yet (flashplug_configure reports a bad --acme-state)
            return []
        pairs = []
        for entry in sorted(files):
            if entry.endswith(".pem") and entry[:-4] + ".key" in files:
                pairs.append((os.path.join(self.alpn_dir, entry),
                              os.path.join(self.alpn_dir, entry[:-4] + ".key")))
        return pairs

    def withdraw(self, paths):
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    # -- the one process that orders -------------------------------------------------

    def try_lock(self):
        """An open file holding the state directory's lock, or None when
        another process (another worker, another server) holds it."""
        fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd


def write_private(path, data):
    """Write ``data`` to ``path`` whole, mode 0600, replacing it atomically."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise

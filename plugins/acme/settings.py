"""The acme plugin's options: flags, checks, defaults.

Every flag is declared with ``default=None`` so ``Settings.from_config``
can tell "not given" from a value, from the command line or from
``[plugins.acme]`` in the config file; a bad value is a one-line
UsageError naming the flag.
"""
import os
import re
from dataclasses import dataclass
from typing import Optional, Tuple

from flashplug import UsageError
from flashplug_plugins.cgi.options import parse_seconds

#: Let's Encrypt's production directory (RFC 8555 §7.1.1).
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
#: The challenge types the plugin answers (RFC 8555 §8.3, RFC 8737 §3).
CHALLENGES = ("http-01", "tls-alpn-01")
#: Seconds before the first retry after a failure; each further failure
#: doubles it up to MAX_RETRY.  Ten minutes keeps a broken name at three
#: attempts an hour, under Let's Encrypt's five failed validations per
#: name and hour.
DEFAULT_RETRY = 600.0
MAX_RETRY = 86400.0
#: Seconds before the first retry when the CA could not be reached at all
#: (no connection: nothing was ordered, no limit counts it), if less than
#: the retry: a server started before the network or the CA is up gets its
#: first certificate seconds later, not ten minutes later.
UNREACHED_RETRY = 5.0

# A DNS name as CAs issue for it: LDH labels (RFC 5890 A-labels included).
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


def default_state_dir():
    """/var/lib/flashplug/acme for root, else $XDG_DATA_HOME/flashplug/acme
    (~/.local/share/flashplug/acme), like other daemons' state."""
    if os.geteuid() == 0:
        return "/var/lib/flashplug/acme"
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "flashplug", "acme")


def add_options(parser):
    g = parser.add_argument_group("acme", "automatic certificates over ACME (RFC 8555); "
                                          "see docs/https.md")
    # "--acme" is the plugin's enabling flag (the kernel's convention);
    # errors and the docs name the longer spelling, listed last.
    g.add_argument("--acme", "--acme-domains", dest="acme_domains", action="append",
                   default=None, metavar="NAMES",
                   help="get and renew a certificate for each of these comma-separated "
                        "DNS names, and serve HTTPS with them (enables the plugin; "
                        "may repeat)")
    g.add_argument("--acme-email", dest="acme_email", default=None, metavar="ADDRESS",
                   help="contact address for the CA's expiry and policy mail (optional)")
    g.add_argument("--acme-directory", dest="acme_directory", default=None, metavar="URL",
                   help=f"the CA's ACME directory (default: Let's Encrypt, {LETS_ENCRYPT})")
    g.add_argument("--acme-state", dest="acme_state", default=None, metavar="DIR",
                   help="where the account key, keys and certificates live (mode 0700; "
                        "default: /var/lib/flashplug/acme as root, else "
                        "~/.local/share/flashplug/acme)")
    g.add_argument("--acme-ca-bundle", dest="acme_ca_bundle", default=None, metavar="FILE",
                   help="PEM CA certificates that sign the directory's HTTPS (a test CA "
                        "such as pebble's; default: the system's)")
    g.add_argument("--acme-challenge", dest="acme_challenge", default=None,
                   metavar="TYPES",
                   help="challenge types to answer, in order of preference (default: "
                        "http-01,tls-alpn-01 with --redirect-http, else tls-alpn-01)")
    g.add_argument("--acme-retry", dest="acme_retry", default=None, metavar="SECONDS",
                   help=f"wait before retrying a failed order; doubles after each "
                        f"failure up to a day (default: {DEFAULT_RETRY:g})")


def parse_domains(value):
    """The names a ``--acme-domains`` value lists (a str or a TOML list),
    lowercase, in order, without repeats.  UsageError for a name no CA
    would issue for over HTTP-01 or TLS-ALPN-01."""
    items = value if isinstance(value, (list, tuple)) else [value]
    names = []
    for item in items:
        for name in str(item).split(","):
            name = name.strip().lower().rstrip(".")
            if not name:
                continue
            if name.startswith("*."):
                raise UsageError(f"--acme-domains: {name!r}: a wildcard needs the DNS-01 "
                                 f"challenge, which flashplug does not answer; list the "
                                 f"names themselves")
            labels = name.split(".")
            if len(name) > 253 or len(labels) < 2 or labels[-1].isdigit() or \
                    not all(_LABEL.match(label) for label in labels):
                raise UsageError(f"--acme-domains: {name!r} is not a DNS name a CA issues "
                                 f"certificates for (like example.org)")
            if name not in names:
                names.append(name)
    if not names:
        raise UsageError("--acme-domains: no name given; expected names like "
                         "example.org,www.example.org")
    return tuple(names)


def _retry(value):
    seconds = parse_seconds("--acme-retry", value, DEFAULT_RETRY)
    if seconds < 1:
        raise UsageError(f"--acme-retry: at least 1 second (a CA limits failed orders), "
                         f"got {value!r}")
    return seconds


@dataclass(frozen=True)
class Settings:
    domains: Tuple[str, ...]
    directory: str
    email: Optional[str]
    state: str                 # absolute
    ca_bundle: Optional[str]   # absolute, or None: the system's CAs
    challenges: Tuple[str, ...]
    retry: float               # seconds

    @classmethod
    def from_config(cls, config):
        directory = str(config.get("acme_directory") or LETS_ENCRYPT)
        if not directory.startswith("https://"):   # RFC 8555 §6.1
            raise UsageError(f"--acme-directory: expected an https:// URL, got {directory!r}")
        email = config.get("acme_email")
        if email is not None and not re.fullmatch(r"[^@\s,:]+@[^@\s,:]+\.[^@\s,:]+",
                                                  str(email)):
            raise UsageError(f"--acme-email: expected an address like admin@example.org, "
                             f"got {email!r}")
        bundle = config.get("acme_ca_bundle")
        if bundle is not None:
            bundle = os.path.abspath(str(bundle))
            if not os.path.isfile(bundle):
                raise UsageError(f"--acme-ca-bundle {bundle}: no such file")
        redirect = config.get("redirect_http") is not None
        chosen = config.get("acme_challenge")
        if chosen is None:
            challenges = CHALLENGES if redirect else ("tls-alpn-01",)
        else:
            challenges = tuple(c.strip() for c in str(chosen).split(",") if c.strip())
            unknown = [c for c in challenges if c not in CHALLENGES]
            if unknown or not challenges:
                raise UsageError(f"--acme-challenge: expected some of "
                                 f"{','.join(CHALLENGES)}, got {chosen!r}")
        return cls(domains=parse_domains(config.get("acme_domains")),
                   directory=directory,
                   email=str(email) if email is not None else None,
                   state=os.path.abspath(str(config.get("acme_state") or default_state_dir())),
                   ca_bundle=bundle, challenges=challenges,
                   retry=_retry(config.get("acme_retry")))

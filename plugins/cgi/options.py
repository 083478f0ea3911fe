"""The cgi plugin's options: command-line flags, checks, defaults.

Theory of operation: every flag is declared with ``default=None`` so that
``settings_from`` can tell "not given" from a value, whether it came from the
command line or from ``[plugins.cgi]`` in the config file (which may hold
TOML numbers and lists, not only strings).  ``settings_from`` checks each
value and resolves the defaults once, at start-up, into a frozen
:class:`Settings`; a bad value is a one-line ``UsageError``.
"""
import os
import pwd
from dataclasses import dataclass
from typing import Optional, Tuple

from flashplug import UsageError
from flashplug.config import cgi_dir_path, cgi_ext_list

#: Concurrent scripts per worker; enough to keep two cores busy with
#: scripts that wait on I/O, few enough not to thrash a small machine.
DEFAULT_MAX_PROCS = 16
#: Requests that may wait for a slot before 503s start.
DEFAULT_QUEUE = 128
#: Seconds a script has to send its headers (and may stay silent after).
DEFAULT_TIMEOUT = 60.0

#: The CGI folders when no --cgi-dir is given: http.server's
#: ``cgi_directories``, so its users' ``/htbin/`` scripts run too.
DEFAULT_DIRS = ("/cgi-bin/", "/htbin/")

_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


@dataclass(frozen=True)
class Settings:
    dirs: Tuple[Tuple[str, str], ...]    # (URL prefix ending in "/", absolute dir)
    exts: Optional[Tuple[str, ...]]       # extension mode, or None
    max_procs: int
    queue: int
    timeout: float
    pass_env: Tuple[str, ...]
    pass_authorization: bool
    max_body: int
    creds: Optional[Tuple[int, int, Tuple[int, ...]]] = None  # run scripts as (uid, gid, groups)


def add_options(parser):
    g = parser.add_argument_group("cgi", "CGI/1.1 scripts (RFC 3875); see docs/cgi.md")
    g.add_argument("--cgi-dir", dest="cgi_dir", action="append", default=None,
                   metavar="URLPREFIX[=PATH]",
                   help="run the executables in PATH as scripts under URLPREFIX "
                        "(PATH defaults to DOCROOT/URLPREFIX); repeatable "
                        "(default: /cgi-bin/ and /htbin/, as http.server)")
    g.add_argument("--cgi-ext", dest="cgi_ext", action="append", default=None,
                   metavar=".EXT[,.EXT]",
                   help="also run executables with these extensions anywhere "
                        "under DOCROOT, e.g. .cgi,.py")
    g.add_argument("--cgi-max-procs", dest="cgi_max_procs", default=None, metavar="N",
                   help=f"scripts running at once, per worker (default: {DEFAULT_MAX_PROCS})")
    g.add_argument("--cgi-queue", dest="cgi_queue", default=None, metavar="N",
                   help="requests waiting for a free slot before 503 "
                        f"(default: {DEFAULT_QUEUE})")
    g.add_argument("--cgi-timeout", dest="cgi_timeout", default=None, metavar="S",
                   help="seconds a script has to send its headers, and may then "
                        "stay silent; also the longest wait in the queue "
                        f"(default: {DEFAULT_TIMEOUT:g})")
    g.add_argument("--cgi-pass-env", dest="cgi_pass_env", action="append", default=None,
                   metavar="NAME[=VALUE]",
                   help="pass this server environment variable (or set it to VALUE) "
                        "to scripts; repeatable (default: only PATH)")
    g.add_argument("--cgi-pass-authorization", dest="cgi_pass_authorization",
                   action="store_true", default=None,
                   help="pass the Authorization header as HTTP_AUTHORIZATION")
    g.add_argument("--cgi-user", dest="cgi_user", default=None, metavar="NAME|UID",
                   help="run scripts as this user, in its group (needs root; "
                        "default: nobody when the server runs as root, else the "
                        "server's own user)")
    g.add_argument("--cgi-max-body", dest="cgi_max_body", default=None, metavar="BYTES",
                   help="largest request body for a script, with optional k/m/g "
                        "(default: the server's --max-body-size)")


def settings_from(config):
    docroot = config.docroot
    dirs = tuple(_dir(d, docroot) for d in _items(config.get("cgi_dir")) or DEFAULT_DIRS)
    seen = set()
    for prefix, _ in dirs:
        if prefix in seen:
            raise UsageError(f"--cgi-dir: {prefix} is given twice")
        seen.add(prefix)
    exts = cgi_ext_list(config.get("cgi_ext"))
    kernel_max = config.get("max_body_size")
    max_body = config.get("cgi_max_body")
    return Settings(
        dirs=dirs,
        exts=exts or None,
        max_procs=parse_int("--cgi-max-procs", config.get("cgi_max_procs"), DEFAULT_MAX_PROCS, 1),
        queue=parse_int("--cgi-queue", config.get("cgi_queue"), DEFAULT_QUEUE, 0),
        timeout=parse_seconds("--cgi-timeout", config.get("cgi_timeout"), DEFAULT_TIMEOUT),
        pass_env=tuple(_env_name(n) for n in _items(config.get("cgi_pass_env"))),
        pass_authorization=bool(config.get("cgi_pass_authorization")),
        max_body=kernel_max if max_body is None else parse_size("--cgi-max-body", max_body),
        creds=run_as(config.get("cgi_user"), "--cgi-user"),
    )


#: Scripts of a server running as root (without --user) run as this user,
#: as they did under ``python -m http.server --cgi``: a script's bug must
#: not be root's.
ROOT_DEFAULT_USER = "nobody"


def run_as(user, flag):
    """(uid, gid, supplementary gids) for the processes ``flag``
    (``--cgi-user``, ``--fastcgi-user``) names the user of, or None to run
    them as the server itself runs.  Called after the server gave up root
    for ``--user``, so "still root" means no ``--user`` was given."""
    if user is None:
        if os.geteuid() != 0:
            return None
        user = ROOT_DEFAULT_USER
    user = str(user)
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise UsageError(f"{flag} {user}: no such user on this machine") from None
    if entry.pw_uid == os.geteuid():
        return None
    if os.geteuid() != 0:
        raise UsageError(f"{flag} {user}: running processes as another user needs "
                         f"the server to run as root; leave {flag} out")
    try:
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    except OSError:
        groups = (entry.pw_gid,)
    return entry.pw_uid, entry.pw_gid, groups


def _items(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _dir(item, docroot):
    item = str(item)
    prefix, eq, path = item.partition("=")
    if not prefix.startswith("/") or "//" in prefix or "/." in prefix:
        raise UsageError(f"--cgi-dir: expected URLPREFIX[=PATH] with URLPREFIX "
                         f"starting with '/', got {item!r}")
    if not prefix.endswith("/"):
        prefix += "/"
    if eq and not path:
        raise UsageError(f"--cgi-dir: {item!r}: PATH is empty")
    path = cgi_dir_path(item, docroot)
    # A default directory may be missing (its URLs are then 404s); one
    # the operator named must exist.
    if (eq or prefix not in DEFAULT_DIRS) and not os.path.isdir(path):
        raise UsageError(f"--cgi-dir: {item!r}: {path} is not a directory")
    return prefix, path


def parse_int(flag, value, default, minimum):
    """``value`` (a flag's or a TOML key's) as an int >= ``minimum``;
    ``default`` when unset.  Raises UsageError naming ``flag``."""
    if value is None:
        return default
    try:
        n = int(str(value).strip())
    except ValueError:
        n = None
    if n is None or n < minimum:
        what = "a positive" if minimum > 0 else "a non-negative"
        raise UsageError(f"{flag}: expected {what} integer, got {str(value)!r}")
    return n


def parse_seconds(flag, value, default):
    """``value`` as a positive, finite number of seconds; ``default`` when
    unset.  Raises UsageError naming ``flag``."""
    if value is None:
        return default
    try:
        s = float(str(value).strip())
    except ValueError:
        s = None
    if s is None or not s > 0 or s == float("inf"):
        raise UsageError(f"{flag}: expected a positive number of seconds, "
                         f"got {str(value)!r}")
    return s


def parse_size(flag, value):
    """``value`` as a positive size in bytes, suffix k, m or g allowed.
    Raises UsageError naming ``flag``."""
    text = str(value).strip().lower()
    factor = _SUFFIXES.get(text[-1:], 1)
    digits = text[:-1] if factor > 1 else text
    if not digits.isdigit() or int(digits) == 0:
        raise UsageError(f"{flag}: expected a positive size in bytes "
                         f"(suffix k, m or g allowed), got {str(value)!r}")
    return int(digits) * factor


def _env_name(item):
    item = str(item)
    name = item.partition("=")[0]
    if not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
        raise UsageError(f"--cgi-pass-env: expected NAME or NAME=VALUE, got {item!r}")
    return item

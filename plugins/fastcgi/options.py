"""The fastcgi plugin's options: flags, checks, defaults.

Theory of operation: as in the cgi plugin, every flag defaults to None so
that "not given" is visible, whether a value came from the command line or
from ``[plugins.fastcgi]`` in the config file; ``settings_from`` checks
each one and resolves defaults once, into a frozen :class:`Settings`.  A bad
value is a one-line ``UsageError`` naming the flag.

``--fastcgi`` is the one flag of the common case, and giving it enables the
plugin (the kernel enables a plugin whose ``--NAME`` option has a value)::

    --fastcgi .php=unix:/run/php/php8.2-fpm.sock     # by extension
    --fastcgi /app=127.0.0.1:9000                    # by URL prefix
    --fastcgi .php=spawn:/usr/bin/php-cgi            # a backend we supervise

In the config file the same list is ``backend = [...]``.
"""
import os
import shlex
from dataclasses import dataclass
from typing import Optional, Tuple

from flashplug import UsageError
from flashplug_plugins.cgi.options import parse_int, parse_seconds, parse_size, run_as

from .pool import Address

#: Connections per backend per worker (more if the backend multiplexes).
#: Debian's php-fpm pool has pm.max_children = 5 and states no
#: FCGI_MAX_CONNS; each child serves one kept-alive connection until it
#: closes, so a sixth connection would wait unserved (and its request
#: time out).  Past five, say so: --fastcgi-max-conns.
DEFAULT_MAX_CONNS = 5
#: Requests that may wait for a connection before 503s start.
DEFAULT_QUEUE = 128
#: Seconds to connect, to send the response head, and of silence after it.
DEFAULT_TIMEOUT = 60.0
#: Processes per supervised backend, per worker.
DEFAULT_PROCS = 2
#: Requests a supervised process serves before it is replaced (0: never).
DEFAULT_MAX_REQUESTS = 0



@dataclass(frozen=True)
class Mapping:
    """One ``--fastcgi`` item: where requests go."""
    prefix: Optional[str]                # "/app/" (prefix mode), or None
    ext: Optional[str]                   # ".php" (extension mode), or None
    address: Optional[Address]           # an external backend, or None
    command: Optional[Tuple[str, ...]]   # argv of a supervised backend, or None
    text: str                            # as given, for logs and errors

    @property
    def name(self):
        return self.prefix or self.ext


@dataclass(frozen=True)
class Settings:
    mappings: Tuple[Mapping, ...]
    index: Optional[str]
    fallback: Optional[str]
    max_conns: int
    queue: int
    timeout: float
    procs: int
    max_requests: int
    max_body: int
    creds: Optional[Tuple[int, int, Tuple[int, ...]]]   # spawn: processes run as this


def add_options(parser):
    g = parser.add_argument_group("fastcgi", "FastCGI backends (php-fpm, flup); "
                                  "see docs/fastcgi.md")
    g.add_argument("--fastcgi", "--fastcgi-backend", dest="fastcgi_backend",
                   action="append", default=None, metavar="WHERE=BACKEND",
                   help="send requests for WHERE (an extension such as .php, or a URL "
                        "prefix such as /app) to BACKEND: unix:PATH, HOST:PORT, or "
                        "spawn:COMMAND (a process pool flashplug runs); repeatable; "
                        "enables the plugin")
    g.add_argument("--fastcgi-index", dest="fastcgi_index", default=None, metavar="NAME",
                   help="file run for a directory URL that has no index.html, "
                        "e.g. index.php (extension backends; default: none)")
    g.add_argument("--fastcgi-fallback", dest="fastcgi_fallback", default=None,
                   metavar="URL", help="script run for a request whose path is no file or "
                                       "directory, e.g. /index.php (a front controller: "
                                       "nginx's try_files $uri $uri/ /index.php)")
    g.add_argument("--fastcgi-max-conns", dest="fastcgi_max_conns", default=None,
                   metavar="N", help="connections to each backend, per worker; lowered "
                                     "to the backend's FCGI_MAX_CONNS; for php-fpm at most "
                                     "pm.max_children / --workers "
                                     f"(default: {DEFAULT_MAX_CONNS})")
    g.add_argument("--fastcgi-queue", dest="fastcgi_queue", default=None, metavar="N",
                   help=f"requests waiting for a backend before 503 (default: {DEFAULT_QUEUE})")
    g.add_argument("--fastcgi-timeout", dest="fastcgi_timeout", default=None, metavar="S",
                   help="seconds to connect and to send the response head, and the "
                        "longest silence after it; then 504 "
                        f"(default: {DEFAULT_TIMEOUT:g})")
    g.add_argument("--fastcgi-procs", dest="fastcgi_procs", default=None, metavar="N",
                   help="processes per spawn: backend, per worker "
                        f"(default: {DEFAULT_PROCS})")
    g.add_argument("--fastcgi-max-requests", dest="fastcgi_max_requests", default=None,
                   metavar="N", help="requests a spawned process serves before it is "
                                     "replaced (default: 0, never)")
    g.add_argument("--fastcgi-user", dest="fastcgi_user", default=None, metavar="NAME|UID",
                   help="run spawn: backends as this user, in its group (needs root; "
                        "default: nobody when the server runs as root, else the "
                        "server's own user)")
    g.add_argument("--fastcgi-max-body", dest="fastcgi_max_body", default=None,
                   metavar="BYTES", help="largest request body, with optional k/m/g "
                                         "(default: the server's --max-body-size)")


def settings_from(config):
    items = config.get("fastcgi_backend")
    items = list(items) if isinstance(items, (list, tuple)) else [items] if items else []
    if not items:
        raise UsageError("fastcgi: no backend; give --fastcgi .php=unix:/run/php/php-fpm.sock "
                         "or --fastcgi /app=127.0.0.1:9000")
    mappings = tuple(_mapping(str(item)) for item in items)
    seen = set()
    for m in mappings:
        if m.name in seen:
            raise UsageError(f"--fastcgi: {m.name} is mapped twice")
        seen.add(m.name)
    index = config.get("fastcgi_index")
    if index is not None:
        index = str(index).strip()
        if not index or "/" in index or index.startswith("."):
            raise UsageError(f"--fastcgi-index: expected a file name such as index.php, "
                             f"got {index!r}")
        if not any(m.ext and index.endswith(m.ext) for m in mappings):
            raise UsageError(f"--fastcgi-index {index}: no --fastcgi extension backend "
                             f"runs it (map e.g. .php first)")
    fallback = config.get("fastcgi_fallback")
    if fallback is not None:
        fallback = str(fallback).strip()
        if (not fallback.startswith("/") or "//" in fallback or "/." in fallback
                or "?" in fallback or "%" in fallback):
            raise UsageError(f"--fastcgi-fallback: expected a script's URL path such as "
                             f"/index.php, got {fallback!r}")
        if not any(m.ext and fallback.endswith(m.ext) for m in mappings):
            raise UsageError(f"--fastcgi-fallback {fallback}: no --fastcgi extension "
                             f"backend runs it (map e.g. .php first)")
    max_body = config.get("fastcgi_max_body")
    return Settings(
        mappings=mappings,
        index=index,
        fallback=fallback,
        max_conns=parse_int("--fastcgi-max-conns", config.get("fastcgi_max_conns"),
                       DEFAULT_MAX_CONNS, 1),
        queue=parse_int("--fastcgi-queue", config.get("fastcgi_queue"), DEFAULT_QUEUE, 0),
        timeout=parse_seconds("--fastcgi-timeout", config.get("fastcgi_timeout"), DEFAULT_TIMEOUT),
        procs=parse_int("--fastcgi-procs", config.get("fastcgi_procs"), DEFAULT_PROCS, 1),
        max_requests=parse_int("--fastcgi-max-requests", config.get("fastcgi_max_requests"),
                          DEFAULT_MAX_REQUESTS, 0),
        max_body=config.get("max_body_size") if max_body is None else parse_size("--fastcgi-max-body", max_body),
        # As the cgi plugin's scripts: PHP run by a server started as root
        # must not be root's (php-fpm refuses to run as root for the same reason).
        creds=run_as(config.get("fastcgi_user"), "--fastcgi-user")
        if any(m.command for m in mappings) else None,
    )


def _mapping(item):
    where, eq, backend = item.partition("=")
    where = where.strip()
    backend = backend.strip()
    usage = (f"--fastcgi: expected .EXT=BACKEND or /PREFIX=BACKEND with BACKEND "
             f"unix:PATH, HOST:PORT or spawn:COMMAND, got {item!r}")
    if not eq or not backend:
        raise UsageError(usage)
    prefix = ext = None
    if where.startswith("."):
        if len(where) < 2 or "/" in where:
            raise UsageError(usage)
        ext = where
    elif where.startswith("/"):
        if "//" in where or "/." in where:
            raise UsageError(usage)
        prefix = where if where.endswith("/") else where + "/"
    else:
        raise UsageError(usage)
    address = command = None
    if backend.startswith("spawn:"):
        try:
            command = tuple(shlex.split(backend[6:]))
        except ValueError as e:
            raise UsageError(f"--fastcgi {item!r}: {e}") from None
        if not command:
            raise UsageError(f"--fastcgi {item!r}: spawn: needs a command")
        if not os.path.isabs(command[0]):
            raise UsageError(f"--fastcgi {item!r}: spawn: needs an absolute program "
                             f"path, e.g. spawn:/usr/bin/php-cgi")
        if not os.access(command[0], os.X_OK):
            raise UsageError(f"--fastcgi {item!r}: {command[0]} is not an executable")
    else:
        try:
            address = Address(backend)
        except ValueError as e:
            raise UsageError(f"--fastcgi {item!r}: {e}") from None
    return Mapping(prefix, ext, address, command, item)

"""The proxy plugin's options: flags, checks, defaults.

Theory of operation: as in the cgi and fastcgi plugins, every flag
defaults to None so that "not given" is visible, whether a value came from
the command line or from ``[plugins.proxy]`` in the config file;
``settings_from`` checks each one and resolves defaults once, into a frozen
:class:`Settings`.  A bad value is a one-line ``UsageError`` naming the flag.

``--proxy`` is the one flag of the common case, and giving it enables the
plugin::

    --proxy /app=http://127.0.0.1:9000             # /app/x -> /app/x upstream
    --proxy /app=http://127.0.0.1:9000/            # /app/x -> /x (prefix replaced)
    --proxy /app=unix:/run/app.sock                # a Unix socket
    --proxy /=http://127.0.0.1:9000,http://127.0.0.1:9001   # balanced

An upstream URL with a path replaces the matched prefix with that path, as
nginx's ``proxy_pass http://host/uri/`` does; without one the request
target goes upstream as the client sent it.  In the config file the list
is ``pass = [...]``.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

from flashplug import UsageError
from flashplug_plugins.cgi.options import parse_int, parse_seconds

#: Seconds to open a connection to an upstream (nginx: proxy_connect_timeout).
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Longest silence while reading a response (nginx: proxy_read_timeout).
DEFAULT_READ_TIMEOUT = 60.0
#: Longest stall while sending a request (nginx: proxy_send_timeout).
DEFAULT_SEND_TIMEOUT = 60.0
#: Failures within --proxy-fail-timeout that take an upstream out
#: (nginx's max_fails; 0: never taken out).
DEFAULT_MAX_FAILS = 1
#: Seconds an upstream stays out, and the window failures are counted in
#: (nginx's fail_timeout).
DEFAULT_FAIL_TIMEOUT = 10.0
#: Idle keep-alive connections kept per upstream, per worker (nginx's
#: upstream ``keepalive``).
DEFAULT_KEEPALIVE = 32

BALANCE = ("round-robin", "least-conn")


@dataclass(frozen=True)
class Upstream:
    """Where one upstream listens: ``host``/``port``, or ``path`` (Unix)."""
    host: Optional[str]
    port: Optional[int]
    path: Optional[str]      # a Unix socket, or None
    text: str                # as given, for logs and the status page

    @property
    def authority(self):
        """The upstream's host[:port], for a request that has no Host."""
        if self.path is not None:
            return "localhost"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"


@dataclass(frozen=True)
class Mapping:
    """One ``--proxy`` item: a URL prefix and the upstreams behind it."""
    prefix: str                      # "/app/" (always ends in "/")
    upstreams: Tuple[Upstream, ...]
    rewrite: Optional[str]           # the prefix's replacement ("/" ...), or None
    text: str


@dataclass(frozen=True)
class Settings:
    mappings: Tuple[Mapping, ...]
    balance: str
    connect_timeout: float
    read_timeout: float
    send_timeout: float
    max_fails: int
    fail_timeout: float
    keepalive: int
    files_first: bool


def add_options(parser):
    g = parser.add_argument_group("proxy", "HTTP reverse proxy; see docs/proxy.md")
    g.add_argument("--proxy", "--proxy-pass", dest="proxy_pass", action="append",
                   default=None, metavar="PREFIX=UPSTREAM[,UPSTREAM...]",
                   help="send requests under the URL PREFIX to the upstreams, each "
                        "http://HOST:PORT[/PATH] or unix:PATH, balanced when several; "
                        "repeatable; enables the plugin")
    g.add_argument("--proxy-balance", dest="proxy_balance", default=None,
                   choices=BALANCE, help="how to pick among several upstreams "
                                         "(default: round-robin)")
    g.add_argument("--proxy-connect-timeout", dest="proxy_connect_timeout", default=None,
                   metavar="S", help="seconds to connect to an upstream; then the next "
                                     "upstream, or 504 "
                                     f"(default: {DEFAULT_CONNECT_TIMEOUT:g})")
    g.add_argument("--proxy-read-timeout", dest="proxy_read_timeout", default=None,
                   metavar="S", help="longest silence of an upstream while its response "
                                     "is awaited or read; then 504 "
                                     f"(default: {DEFAULT_READ_TIMEOUT:g})")
    g.add_argument("--proxy-send-timeout", dest="proxy_send_timeout", default=None,
                   metavar="S", help="longest stall while sending a request to an "
                                     f"upstream (default: {DEFAULT_SEND_TIMEOUT:g})")
    g.add_argument("--proxy-max-fails", dest="proxy_max_fails", default=None, metavar="N",
                   help="failures within --proxy-fail-timeout that take an upstream "
                        f"out for that long; 0: never (default: {DEFAULT_MAX_FAILS})")
    g.add_argument("--proxy-fail-timeout", dest="proxy_fail_timeout", default=None,
                   metavar="S", help="seconds a failing upstream stays out "
                                     f"(default: {DEFAULT_FAIL_TIMEOUT:g})")
    g.add_argument("--proxy-keepalive", dest="proxy_keepalive", default=None, metavar="N",
                   help="idle connections kept open to each upstream, per worker; 0: "
                        f"a new connection per request (default: {DEFAULT_KEEPALIVE})")
    g.add_argument("--proxy-files-first", dest="proxy_files_first", action="store_true",
                   default=None,
                   help="serve a path that names a file under the document root from "
                        "disk, and proxy only the others (nginx's try_files $uri @app): "
                        "an app at / with its static files beside it")


def settings_from(config):
    items = config.get("proxy_pass")
    items = list(items) if isinstance(items, (list, tuple)) else [items] if items else []
    if not items:
        raise UsageError("proxy: no upstream; give --proxy /app=http://127.0.0.1:9000")
    mappings = tuple(_mapping(str(item)) for item in items)
    seen = set()
    for m in mappings:
        if m.prefix in seen:
            raise UsageError(f"--proxy: {m.prefix} is mapped twice; list its upstreams "
                             f"in one item, separated by commas")
        seen.add(m.prefix)
    return Settings(
        mappings=mappings,
        balance=str(config.get("proxy_balance") or "round-robin"),
        connect_timeout=parse_seconds("--proxy-connect-timeout",
                                      config.get("proxy_connect_timeout"),
                                      DEFAULT_CONNECT_TIMEOUT),
        read_timeout=parse_seconds("--proxy-read-timeout", config.get("proxy_read_timeout"),
                                   DEFAULT_READ_TIMEOUT),
        send_timeout=parse_seconds("--proxy-send-timeout", config.get("proxy_send_timeout"),
                                   DEFAULT_SEND_TIMEOUT),
        max_fails=parse_int("--proxy-max-fails", config.get("proxy_max_fails"),
                            DEFAULT_MAX_FAILS, 0),
        fail_timeout=parse_seconds("--proxy-fail-timeout", config.get("proxy_fail_timeout"),
                                   DEFAULT_FAIL_TIMEOUT),
        keepalive=parse_int("--proxy-keepalive", config.get("proxy_keepalive"),
                            DEFAULT_KEEPALIVE, 0),
        files_first=bool(config.get("proxy_files_first")),
    )


def _mapping(item):
    where, eq, rest = item.partition("=")
    where = where.strip()
    usage = (f"--proxy: expected /PREFIX=UPSTREAM[,UPSTREAM...] with each UPSTREAM "
             f"http://HOST:PORT[/PATH] or unix:PATH, got {item!r}")
    if not eq or not rest.strip() or not where.startswith("/") or "//" in where \
            or "/." in where or "?" in where or "%" in where:
        raise UsageError(usage)
    prefix = where if where.endswith("/") else where + "/"
    upstreams, paths = [], set()
    for text in rest.split(","):
        upstream, path = parse_upstream(text.strip(), usage)
        upstreams.append(upstream)
        paths.add(path)
    if len(paths) > 1:
        raise UsageError(f"--proxy {item!r}: the upstreams of one prefix must share "
                         f"one path")
    path = paths.pop()
    rewrite = None if path is None else (path if path.endswith("/") else path + "/")
    return Mapping(prefix, tuple(upstreams), rewrite, item)


def parse_upstream(text, usage):
    """``(Upstream, path or None)`` for ``http://HOST:PORT[/PATH]`` or
    ``unix:PATH``; a UsageError with ``usage`` otherwise."""
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/"):
            raise UsageError(f"{usage}: unix: needs an absolute socket path")
        return Upstream(None, None, path, text), None
    if not text.startswith("http://"):
        hint = " (https upstreams are not supported)" if text.startswith("https://") else ""
        raise UsageError(usage + hint)
    authority, slash, path = text[7:].partition("/")
    host, colon, port = authority.rpartition(":")
    if not colon or (host.startswith("[") != host.endswith("]")):
        host, port = authority, "80"
    if host.startswith("["):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "@" in host:
        raise UsageError(usage)
    if any(c in path for c in "?#%") or "//" in path or "/." in ("/" + path):
        raise UsageError(f"{usage}: the upstream path must be a plain path such as /app/")
    return Upstream(host, int(port), None, text), ("/" + path if slash else None)

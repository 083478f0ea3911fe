"""The servers under test: how each is configured, started and stopped.

Theory of operation: every server is started the same way, on a fresh free
loopback port, under `taskset -c 0`, in a session of its own (so the whole
tree can be signalled), with the document root as its working directory and
its stderr kept in a file. A server is "up" once a real HTTP request for a
probe path returns 200; if it exits or does not answer within the timeout it
is recorded as failed to start, with the last line of its stderr, and the run
goes on. Configurations are generated into the run's temporary directory;
each keeps access logs off, keep-alive long, and one process serving.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from deps import program
from proctree import kill_tree

FLASHPLUG_ARCHS = ("amped", "sped", "mt", "mp")
SERVER_CPU, CLIENT_CPU = "0", "1"
# Multi-core (m): two workers each, and wrk with two threads, all on both
# cores: on a 2-core machine the load generator cannot have a core of its own.
BOTH_CPUS = "0,1"


@dataclass(frozen=True)
class Spec:
    name: str            # key in results and tables
    kind: str            # nginx | lighttpd | http.server | aiohttp | flashplug
    options: tuple = ()  # kind-specific: ("aio",), ("cgi",), ("arch", "amped")

    @property
    def workers(self) -> int:
        return int(self.options[self.options.index("workers") + 1]) if "workers" in self.options else 1

    @property
    def cpus(self) -> str:
        """The CPUs it runs on: its own, or both for more than one worker."""
        return BOTH_CPUS if self.workers > 1 else SERVER_CPU

    @property
    def label(self) -> str:
        return {"nginx-aio": "nginx (aio threads)"}.get(self.name, self.name)


NGINX = Spec("nginx", "nginx")
# (m): nginx with ``worker_processes 2`` against ``flashplug --workers 2``.
NGINX_2 = Spec("nginx", "nginx", ("workers", "2"))
FLASHPLUG_2 = Spec("flashplug-amped", "flashplug", ("arch", "amped", "workers", "2"))
# HTTPS (h): the same two servers with one certificate (``tls_pair``).
NGINX_TLS = Spec("nginx", "nginx", ("tls",))
NGINX_AIO = Spec("nginx-aio", "nginx", ("aio",))
LIGHTTPD = Spec("lighttpd", "lighttpd")
LIGHTTPD_CGI = Spec("lighttpd-cgi", "lighttpd", ("cgi",))
HTTP_SERVER = Spec("http.server", "http.server")
AIOHTTP = Spec("aiohttp", "aiohttp")


def flashplug(arch: str, cgi: bool = False) -> Spec:
    if cgi:
        return Spec("flashplug-cgi", "flashplug", ("arch", arch, "cgi"))
    return Spec(f"flashplug-{arch}", "flashplug", ("arch", arch))


def flashplug_tls() -> Spec:
    return Spec("flashplug-amped", "flashplug", ("arch", "amped", "tls"))


def flashplug_baseline(exe: str, tls: bool = False) -> Spec:
    """flashplug amped from another install (`--baseline`): the "before" of a
    before/after comparison, measured in the same run as today's tree
    (over HTTPS with ``tls``, for (h))."""
    return Spec("flashplug-before", "flashplug", ("arch", "amped", "exe", exe, *(("tls",) if tls else ())))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_pair(tmp: Path) -> tuple[Path, Path]:
    """One ECDSA P-256 certificate for localhost (made by openssl, the first
    time) that every HTTPS server of the run serves."""
    cert, key = tmp / "tls-cert.pem", tmp / "tls-key.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-days", "2", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        os.chmod(key, 0o600)
    return cert, key


def _nginx_tls(tmp: Path) -> tuple[str, str]:
    cert, key = tls_pair(tmp)
    return " ssl", (f"ssl_certificate {cert}; ssl_certificate_key {key};\n"
                    f"        ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets on;")


def _nginx_conf(tmp: Path, root: Path, port: int, aio: bool, tls: bool = False, workers: int = 1) -> list[str]:
    conf = tmp / f"nginx-{port}.conf"
    ssl, ssl_lines = _nginx_tls(tmp) if tls else ("", "")
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(f"""{user}daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 20000;
pid {tmp}/nginx-{port}.pid;
error_log stderr warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    {"aio threads;" if aio else ""}
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    open_file_cache max=20000 inactive=60s;
    open_file_cache_valid 60s;
    types {{ application/octet-stream bin; text/plain txt; text/html html; }}
    default_type application/octet-stream;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    server {{
        listen 127.0.0.1:{port}{ssl} backlog=4096;
        {ssl_lines}
        root {root};
    }}
}}
""")
    return [program("nginx"), "-e", "stderr", "-p", str(tmp), "-c", str(conf)]


def _lighttpd_conf(tmp: Path, root: Path, port: int, cgi: bool) -> list[str]:
    conf = tmp / f"lighttpd-{port}.conf"
    cgi_part = """server.modules += ("mod_cgi")
$HTTP["url"] =~ "^/cgi-bin/" { cgi.assign = ("" => "") }
""" if cgi else ""
    conf.write_text(f"""server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "/dev/stderr"
server.max-fds = 40000
server.max-connections = 16000
server.listen-backlog = 4096
server.max-keep-alive-requests = 1000000
server.max-keep-alive-idle = 300
server.network-backend = "sendfile"
mimetype.assign = (".bin" => "application/octet-stream", ".txt" => "text/plain", ".html" => "text/html")
{cgi_part}""")
    return [program("lighttpd"), "-D", "-f", str(conf)]


# Exactly what `python -m http.server --bind 127.0.0.1 --directory D PORT`
# runs (ThreadingHTTPServer + SimpleHTTPRequestHandler), minus the access log
# that it would otherwise write to stderr for every request.
_HTTP_SERVER = """import functools, http.server, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
handler = functools.partial(Quiet, directory=sys.argv[1])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), handler).serve_forever()
"""


def flashplug_command() -> list[str]:
    exe = Path(sys.executable).parent / "flashplug"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "flashplug"]


def command(spec: Spec, tmp: Path, root: Path, port: int) -> list[str]:
    if spec.kind == "nginx":
        return _nginx_conf(tmp, root, port, "aio" in spec.options, "tls" in spec.options, spec.workers)
    if spec.kind == "lighttpd":
        return _lighttpd_conf(tmp, root, port, "cgi" in spec.options)
    if spec.kind == "http.server":
        return [sys.executable, "-c", _HTTP_SERVER, str(root), str(port)]
    if spec.kind == "aiohttp":
        return [sys.executable, str(Path(__file__).with_name("aiohttp_static.py")), str(root), str(port)]
    if spec.kind == "flashplug":
        arch = spec.options[spec.options.index("arch") + 1]
        # A long keep-alive timeout, as nginx and lighttpd get above, so (d)'s
        # idle connections stay open for the whole measurement.
        exe = [spec.options[spec.options.index("exe") + 1]] if "exe" in spec.options else flashplug_command()
        cmd = exe + ["serve", str(root), "--port", str(port), "--access-log", "off",
                                     "--arch", arch, "--workers", str(spec.workers), "--keepalive-timeout", "300"]
        # Named, not left to the default set: the static rows measure the
        # kernel alone, as they always have ("" rather than "none", which a
        # --baseline from before the default set would take for a name).
        if "tls" in spec.options:
            cmd += ["--tls-cert", str(tls_pair(tmp)[0]), "--tls-key", str(tls_pair(tmp)[1])]
        # status: its counters say how often the known-heads shortcut
        # answered (workloads.shortcut_share); it adds one prefix route,
        # which a remembered head never consults.  --arch mt and mp serve
        # static files only and refuse any plugin.
        plugins = "cgi" if "cgi" in spec.options else "status" if arch in ("amped", "sped") else ""
        if "trivial" in spec.options:
            # bench/plugins/trivial.py: a route answering 1 KiB from memory.
            return cmd + ["--plugins-dir", str(Path(__file__).with_name("plugins")),
                          "--plugins", "trivial"]
        return cmd + ["--plugins", plugins]
    raise ValueError(spec.kind)


def fetch(port: int, path: str, timeout: float = 2.0, tls: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One GET on a fresh connection (over TLS, unverified, with ``tls``);
    (status, fields by lower-case name, body). Raises OSError."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with (ssl._create_unverified_context().wrap_socket(raw, server_hostname="localhost") if tls else raw) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise OSError(f"bad response: {head[:80]!r}") from None
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return status, fields, body


def status_counters(run: "Running") -> dict | None:
    """flashplug's status counters (``--plugins status``, JSON), or None
    when the server has none (another server, or a build without them)."""
    try:
        status, _, body = fetch(run.port, "/server-status?format=json", tls=run.scheme == "https")
        return json.loads(body) if status == 200 else None
    except (OSError, ValueError):
        return None


def http_get(port: int, path: str, timeout: float = 2.0, tls: bool = False) -> tuple[int, bytes]:
    """One request on a fresh connection; (status, body). Raises OSError."""
    status, _, body = fetch(port, path, timeout, tls)
    return status, body


@dataclass
class Running:
    spec: Spec
    port: int
    proc: subprocess.Popen
    stderr_path: Path
    leftovers: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def scheme(self) -> str:
        return "https" if "tls" in self.spec.options else "http"

    def stop(self) -> None:
        self.leftovers = kill_tree(self.proc)


class StartFailed(Exception):
    pass


def last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else "(no stderr output)"


def start(spec: Spec, tmp: Path, root: Path, probe: str = "/1k.bin", expect: bytes = b"",
          timeout: float = 15.0) -> Running:
    """Start spec and wait until GET probe answers 200 with a body starting with
    expect; raise StartFailed otherwise."""
    port = free_port()
    argv = command(spec, tmp, root, port)
    err = tmp / f"{spec.name}-{port}.stderr"
    with open(err, "wb") as errf:
        proc = subprocess.Popen(["taskset", "-c", spec.cpus, *argv], cwd=root, stdin=subprocess.DEVNULL,
                                stdout=errf, stderr=errf, start_new_session=True)
    run = Running(spec, port, proc, err)
    deadline = time.monotonic() + timeout
    why = "timed out waiting for the first response"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartFailed(f"exited with status {proc.returncode}: {last_line(err)}")
        try:
            status, body = http_get(port, probe, tls="tls" in spec.options)
        except OSError:
            time.sleep(0.1)
            continue
        if status == 200 and body.startswith(expect):
            return run
        why = f"GET {probe} answered {status} {body[:40]!r}"
        break
    run.stop()
    raise StartFailed(f"{why}: {last_line(err)}")

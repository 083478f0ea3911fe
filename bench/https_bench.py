"""HTTPS beside nginx: the three points of issue 14, item 6.

    python bench/https_bench.py [--duration 5] [--rounds 3] [--baseline OTHER/.venv/bin/flashplug]

One nginx worker and one flashplug worker (``--plugins none``), the same
ECDSA P-256 certificate (made here with the openssl command, thrown away
after), each server under ``taskset -c 0`` and wrk under ``taskset -c 1``:

* ``1k``: a 1 KiB file over keep-alive connections (64 of them);
* ``new-conn``: the same file on a new TCP connection and a full TLS
  handshake per request: ``openssl s_time -new`` (8 of them at once, each
  one connection at a time, HTTP/1.0), since wrk resumes;
* ``resumed``: the same file, ``Connection: close`` in wrk (16
  connections): a new TCP connection per request, but wrk keeps its TLS
  session across reconnects (``SSL_clear``), so every handshake after the
  first resumes it (a PSK and a fresh X25519 exchange, no certificate);
* ``1m``: a 1 MiB file over keep-alive connections (8 of them).

``--floor`` adds two floors to the first three points, what a Python
server can reach with the TLS tools Python has, answering each request
head with a prebuilt 1 KiB response and doing no HTTP work:
``bench/floor_https.py`` (``floor``: uvloop's own TLS transport) and
``bench/floor_https_bio.py`` (``floor-bio``: flashplug's design, an
``ssl.SSLObject`` over memory BIOs on ``add_reader``).  ``--only 1k,...``
measures some points only.

Both clients negotiate TLS 1.3, X25519 and TLS_AES_256_GCM_SHA384 with
both servers, and both servers send two session tickets per handshake.  Prints a Markdown table of requests/s,
the server's CPU time per request (its whole process tree, user plus
system: steadier than requests/s on a machine shared with other work) and
flashplug's ratios to nginx.  Needs nginx, wrk, openssl and taskset.
``python bench/run.py --only https`` runs the same points as its (h)
group, for docs/benchmarks.md.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proctree import cpu_seconds  # noqa: E402 - bench/ is not a package

POINTS = (  # name, path, connections, extra wrk arguments (None: openssl s_time -new)
    ("1k", "/1k.bin", 64, []),
    ("new-conn", "/1k.bin", 8, None),
    ("resumed", "/1k.bin", 16, ["-H", "Connection: close"]),
    ("1m", "/1m.bin", 8, []),
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(tmp):
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-days", "2",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    os.chmod(key, 0o600)
    return cert, key


def nginx_command(tmp, root, port, cert, key, http2=False):
    conf = tmp / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(f"""{user}daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    open_file_cache max=1000;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/b; proxy_temp_path {tmp}/p; fastcgi_temp_path {tmp}/f;
    uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    server {{
        listen 127.0.0.1:{port} ssl{" http2" if http2 else ""} backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {root};
    }}
}}
""")
    return ["nginx", "-e", "stderr", "-p", str(tmp), "-c", str(conf)]


def flashplug_command(root, port, cert, key):
    return [sys.executable, "-m", "flashplug", "serve", str(root), "--port", str(port),
            "--plugins", "none", "--access-log", "off", "--keepalive-timeout", "300",
            "--tls-cert", str(cert), "--tls-key", str(key)]


def wait_ready(port, proc):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def s_time(port, path, clients, duration, pid):
    """Full handshakes: ``clients`` openssl s_time -new at once.  (new
    connections/s, server CPU microseconds per connection, "")."""
    cpu = cpu_seconds(pid)
    runs = [subprocess.Popen(["taskset", "-c", "1", "openssl", "s_time", "-connect",
                              f"127.0.0.1:{port}", "-new", "-www", path, "-time", str(duration)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for _ in range(clients)]
    done = 0
    for run in runs:
        m = re.search(r"(\d+) connections in [\d.]+s", run.communicate(timeout=duration + 60)[0])
        done += int(m.group(1)) if m else 0
    cpu = cpu_seconds(pid) - cpu
    return done / duration, 1e6 * cpu / done if done else 0.0, ""


def wrk(port, path, connections, extra, duration, pid):
    """(requests/s, server CPU microseconds per request, errors or "");
    ``extra`` None: full handshakes by openssl s_time instead."""
    if extra is None:
        return s_time(port, path, connections, duration, pid)
    cpu = cpu_seconds(pid)
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}",
                          f"-d{duration}s", *extra, f"https://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, timeout=duration + 60).stdout
    cpu = cpu_seconds(pid) - cpu
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    per_request = 1e6 * cpu / int(n.group(1)) if n and int(n.group(1)) else 0.0
    return float(m.group(1)) if m else 0.0, per_request, errors.group(0) if errors else ""


def start(cmd, port):
    proc = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_ready(port, proc)
    return proc


def measure(servers, duration, rounds, points=POINTS):
    """Every point on every server, the servers taking turns for ``rounds``
    rounds (a busy machine's load shifts between runs: each server sees
    the same shifts); each keeps the median of its requests/s and, apart,
    of its CPU time per request."""
    runs = {name: {point: [] for point, *_ in points} for name in servers}
    for point, path, conns, extra in points:
        for _ in range(rounds):
            for name, (proc, port) in servers.items():
                if name.startswith("floor") and point == "1m":
                    continue   # its one answer is the 1 KiB file
                wrk(port, path, conns, extra, min(2, duration), proc.pid)   # warm-up
                result = wrk(port, path, conns, extra, duration, proc.pid)
                runs[name][point].append(result)
                print(f"{name} {point}: {result[0]:,.0f} req/s, {result[1]:.1f} us CPU/request "
                      f"{result[2]}", file=sys.stderr)
    def median(values):
        return sorted(values)[len(values) // 2] if values else 0.0
    return {name: {point: (median([r[0] for r in rs]), median([r[1] for r in rs]),
                           " ".join(r[2] for r in rs if r[2]))
                   for point, rs in points.items()}
            for name, points in runs.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=5, help="seconds per point (default 5)")
    ap.add_argument("--rounds", type=int, default=1, help="turns per point, median kept (default 1)")
    ap.add_argument("--floor", action="store_true",
                    help="also measure bench/floor_https.py and bench/floor_https_bio.py (a "
                         "prebuilt answer, no HTTP work): what a Python server can reach")
    ap.add_argument("--only", default=",".join(p[0] for p in POINTS),
                    help="the points to measure (default: all)")
    ap.add_argument("--baseline", metavar="EXE",
                    help="also measure this flashplug executable (another checkout's venv) as "
                         "flashplug-before, in the same interleaved run")
    args = ap.parse_args()
    for tool in ("nginx", "wrk", "openssl", "taskset"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"{tool} is not installed")
    os.environ["PATH"] += ":/usr/sbin"
    servers = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        root = tmp / "root"
        root.mkdir()
        (root / "1k.bin").write_bytes(os.urandom(1024))
        (root / "1m.bin").write_bytes(os.urandom(1024 * 1024))
        cert, key = make_cert(tmp)
        ports = {name: free_port() for name in ("nginx", "flashplug-before", "flashplug", "floor",
                                                "floor-bio")}
        commands = {"nginx": nginx_command(tmp, root, ports["nginx"], cert, key)}
        if args.floor:   # the 1 KiB answer; its 1m point sends 1 KiB too, so it is left out
            for name, script in (("floor", "floor_https.py"), ("floor-bio", "floor_https_bio.py")):
                commands[name] = [sys.executable, str(Path(__file__).with_name(script)),
                                  str(ports[name]), str(cert), str(key), str(root / "1k.bin")]
        if args.baseline:   # its own executable, the same arguments
            commands["flashplug-before"] = [args.baseline] + flashplug_command(
                root, ports["flashplug-before"], cert, key)[3:]
        commands["flashplug"] = flashplug_command(root, ports["flashplug"], cert, key)
        try:
            for name, cmd in commands.items():
                servers[name] = (start(cmd, ports[name]), ports[name])
            only = args.only.split(",")
            results = measure(servers, args.duration, args.rounds,
                              [p for p in POINTS if p[0] in only])
        finally:
            for proc, _ in servers.values():
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    ours = [name for name in servers if name != "nginx"]
    print("| point | server | req/s | req/s ratio to nginx | CPU us/req | nginx CPU / its CPU |")
    print("|---|---|---|---|---|---|")
    for point, *_ in POINTS:
        if point not in results["nginx"]:
            continue
        a, ca, _ = results["nginx"][point]
        print(f"| {point} | nginx | {a:,.0f} | | {ca:.1f} | |")
        for name in ours:
            if name.startswith("floor") and point == "1m" or point not in results[name]:
                continue
            b, cb, _ = results[name][point]
            print(f"| {point} | {name} | {b:,.0f} | {b / a if a else 0:.2f}x | {cb:.1f} "
                  f"| {ca / cb if cb else 0:.2f}x |")


if __name__ == "__main__":
    main()

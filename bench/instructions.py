"""Instructions a flashplug worker executes per request, counted by callgrind.

A count, unlike a rate or a CPU time, does not move with the load on a
shared machine (two runs agree to about 0.5 %), so a change of a few per
cent can be weighed.  For each executable and workload: the server runs
under ``valgrind --tool=callgrind`` (``--arch amped --workers 1``: the
worker is the process), 300 requests warm it up, its counters are zeroed
(``callgrind_control -z``), ``h2load --h1 -n N -c C`` sends the measured
requests, the counters are dumped and their total divided by N.

Workloads: ``trivial`` (``bench/plugins/trivial.py``, 1 KiB from memory:
the kernel's path for a plugin handler), ``php`` (hello over php-fpm,
4 children), ``proxy`` (1 KiB from an nginx upstream), ``a-1k`` (a cached
1 KiB file), ``tls-1k`` (that file over HTTPS, keep-alive, TLS 1.3,
an ECDSA certificate from ``trustme``), ``tls-new`` (a new connection
with a full TLS 1.3 handshake per request, 50 at a time), and two of
workload (r-zipf), whose heads come from ``bench/heads_client.py`` (the
1,000 clients of ``bench/traffic.py`` over ``bench/docroot.py``'s 10,000
files, 64 connections, ``--cache-valid 3600`` so that no sweep or stale
entry depends on how slowly callgrind runs): ``zipf`` (r-zipf's mix, every
file loaded in the warm-up: the cost of a hit) and ``miss`` (each request
a file never asked for: the cost of a first load through a helper).
Their warm-up runs with callgrind's instrumentation off::

    python bench/instructions.py --exe before=/path/to/old/.venv/bin/flashplug \\
        --exe after=.venv/bin/flashplug --only php,proxy

Needs valgrind, h2load, and for its workloads php-fpm and nginx.  Slow:
a request under callgrind costs about 50 times its usual CPU time.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from fcgi_backends import start_php_fpm, stop  # noqa: E402

import docroot  # noqa: E402
import heads_client  # noqa: E402

WORKLOADS = ("trivial", "php", "proxy", "a-1k", "tls-1k", "tls-new", "zipf", "miss")
ZIPF_WORKLOADS = ("zipf", "miss")
ZIPF_CONNECTIONS = 64
# A folder to keep each zipf/miss dump in (--keep), for callgrind_annotate.
KEEP = None
WARMUP = 300
# tls-new opens this many connections at once, one request each.
NEW_BATCH = 50


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"nothing listens on port {port} after {seconds}s")


def dumped_per_request(server, out, n, keep_as=None):
    """Dump the callgrind ``server``'s counters (its dumps named ``out``
    and after) and return its instructions per request over ``n``
    requests; the dump is copied to ``keep_as`` if given."""
    subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True,
                   check=True)
    time.sleep(1)
    dump = max(glob.glob(f"{out}*"), key=os.path.getmtime)
    if keep_as:
        shutil.copy(dump, keep_as)
    with open(dump) as f:
        total = next(int(line.split()[1]) for line in f if line.startswith("summary:"))
    return total / n


def nginx_upstream(tmp, root):
    """nginx serving ``root`` on a free port: ``(process, port)``."""
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(f"""daemon off; worker_processes 1; pid {tmp}/nginx.pid; error_log stderr;
events {{ worker_connections 256; }}
http {{ access_log off; client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/pt;
  fastcgi_temp_path {tmp}/nf; uwsgi_temp_path {tmp}/nu; scgi_temp_path {tmp}/ns;
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
""")
    proc = subprocess.Popen(["nginx", "-e", "stderr", "-p", str(tmp), "-c", str(conf)],
                            stderr=subprocess.DEVNULL)
    wait_port(port, 10)
    return proc, port


def tls_options(tmp):
    """``--tls-cert``/``--tls-key`` options for an ECDSA P-256 certificate
    made by ``trustme`` in ``tmp``."""
    import trustme
    leaf = trustme.CA(key_type=trustme.KeyType.ECDSA).issue_cert(
        "localhost", key_type=trustme.KeyType.ECDSA)
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    return ["--tls-cert", str(cert), "--tls-key", str(key)]


def zipf_docroot(base):
    """The 10,000-file set of workload (b) and its Zipf sample, written once
    per run into ``base`` (no disk set: nothing here reads it)."""
    if not (base / "zipf-paths.txt").exists():
        docroot.generate(base, n_disk=0)
    return base


def count_heads(exe, workload, tmp, zipf_base, n):
    """Instructions per request of ``exe`` on a workload of
    ``heads_client`` (``zipf`` or ``miss``)."""
    port = free_port()
    out = tmp / f"callgrind.{workload}.out"
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         exe, "serve", str(zipf_base / "root"), "--port", str(port), "--access-log", "off",
         "--arch", "amped", "--workers", "1", "--keepalive-timeout", "300",
         "--cache-valid", "3600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 120)
        warm, measured = heads_client.zipf_plan(workload, port, zipf_base / "zipf-paths.txt", n)
        heads_client.send(port, warm, ZIPF_CONNECTIONS)
        subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], capture_output=True,
                       check=True)
        subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True,
                       check=True)
        codes = heads_client.send(port, measured, ZIPF_CONNECTIONS)
        if codes != {"200": n}:
            raise SystemExit(f"{workload}: answered {dict(codes)}, expected {n} x 200")
        keep_as = KEEP and Path(KEEP) / f"callgrind.{workload}.{Path(os.path.abspath(exe)).parts[-4]}"
        return dumped_per_request(server, out, n, keep_as)
    finally:
        server.terminate()
        server.wait(30)


def count(exe, workload, tmp, n, connections):
    """Instructions per request of ``exe`` on ``workload``."""
    root = tmp / "root"
    extra, path, stops = [], "/1k.bin", []
    if workload == "trivial":
        extra = ["--plugins-dir", str(HERE / "plugins"), "--plugins", "trivial"]
        path = "/mem"
    elif workload == "php":
        fpm, sock = start_php_fpm(tmp, children=4)
        stops.append(lambda: stop(fpm))
        extra = ["--fastcgi", f".php=unix:{sock}", "--fastcgi-max-conns", "4"]
        path = "/hello.php"
    elif workload == "proxy":
        nginx, up = nginx_upstream(tmp, root)
        stops.append(lambda: (nginx.terminate(), nginx.wait(10)))
        extra = ["--proxy", f"/=http://127.0.0.1:{up}"]
    elif workload.startswith("tls-"):
        extra = tls_options(tmp)
    scheme = "https" if workload.startswith("tls-") else "http"
    # tls-new: batches of NEW_BATCH connections, one request each.
    batch = n
    if workload == "tls-new":
        batch = connections = NEW_BATCH
    port = free_port()
    out = tmp / f"callgrind.{workload}.out"
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", exe, "serve", str(root),
         "--port", str(port), "--access-log", "off", "--arch", "amped", "--workers", "1",
         "--keepalive-timeout", "300", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 120)
        url = f"{scheme}://127.0.0.1:{port}{path}"
        subprocess.run(["h2load", "--h1", "-n", str(WARMUP), "-c", str(connections), url],
                       capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True,
                       check=True)
        ok = 0
        for done in range(0, n, batch):
            size = min(batch, n - done)
            run = subprocess.run(["h2load", "--h1", "-n", str(size), "-c",
                                  str(min(connections, size)), url],
                                 capture_output=True, text=True, check=True)
            ok += int(re.search(r"(\d+) succeeded", run.stdout).group(1))
        if ok != n:
            raise SystemExit(f"{workload}: {n - ok} of {n} requests failed")
        return dumped_per_request(server, out, n)
    finally:
        server.terminate()
        server.wait(30)
        for stop_backend in stops:
            stop_backend()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exe", action="append", metavar="NAME=PATH",
                   help="a flashplug executable (repeat; default: this checkout's)")
    p.add_argument("--only", default=",".join(WORKLOADS))
    p.add_argument("-n", type=int, default=2000, help="measured requests")
    p.add_argument("-c", type=int, default=4, help="connections")
    p.add_argument("--keep", metavar="DIR", help="keep the zipf and miss workloads' dumps "
                   "in DIR (callgrind.WORKLOAD.CHECKOUT)")
    args = p.parse_args()
    global KEEP
    KEEP = args.keep
    exes = [e.split("=", 1) for e in args.exe or
            [f"HEAD={Path(sys.executable).parent / 'flashplug'}"]]
    print(f"{'workload':10} " + " ".join(f"{name:>12}" for name, _ in exes))
    with contextlib.ExitStack() as stack:
        zipf_base = None
        if set(args.only.split(",")) & set(ZIPF_WORKLOADS):
            zipf_base = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="flashplug-instr-zipf-")))
            zipf_docroot(zipf_base)
        run_all(args, exes, zipf_base)


def run_all(args, exes, zipf_base):
    for workload in args.only.split(","):
        counts = []
        for _, exe in exes:
            if workload in ZIPF_WORKLOADS:
                with tempfile.TemporaryDirectory(prefix="flashplug-instr-") as d:
                    counts.append(count_heads(exe, workload, Path(d), zipf_base, args.n))
                continue
            with tempfile.TemporaryDirectory(prefix="flashplug-instr-") as d:
                tmp = Path(d)
                tmp.chmod(0o755)      # nginx's worker (nobody) reads the root
                root = tmp / "root"
                root.mkdir()
                (root / "1k.bin").write_bytes(b"x" * 1024)
                (root / "hello.php").write_text('<?php echo "Hello from PHP\\n";')
                counts.append(count(exe, workload, tmp, args.n, args.c))
        print(f"{workload:10} " + " ".join(f"{c:>12,.0f}" for c in counts), flush=True)


if __name__ == "__main__":
    main()

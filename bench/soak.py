"""Soak: minutes of mixed load against one real server, every body checked.

Theory of operation: a document root is generated with files of every size
class (empty to 4 MiB), a listing folder, and CGI scripts (an echo of a
POST body, a hello).  Two servers are started on it (``flashplug serve``,
one worker each unless told otherwise):

* the front, over HTTPS (a certificate from ``trustme``, verified by the
  clients), with the cgi and autoindex plugins, a FastCGI WSGI app that
  flashplug spawns and supervises (``flup``, ``/app``), and the proxy
  plugin passing ``/up/`` to
* the upstream, a plain-HTTP flashplug on the same root.

``--clients`` threads send a random mix to the front for ``--duration``
seconds: whole files, single and multiple ranges, revalidation with
If-None-Match and If-Modified-Since (304 expected), CGI POST echoes of
random bodies, listings, FastCGI POST echoes, and whole files, ranges and
POSTs through the proxy.  Each response's status and the sha256 of its body
are checked against what the files say.  Every ``--sample`` seconds each
server's RSS, open descriptors and zombie children (the front's figures
count its FastCGI processes' children too) are read from /proc.

Figures printed (JSON, one line) and what issue #13 asks of them: wrong
bodies 0, errors 0, RSS drift after warm-up under 10%, descriptors flat,
zombies 0 once the load is over.

    python bench/soak.py --duration 600            # the published run
    python bench/soak.py --duration 5 --clients 4  # what CI runs (bench/test_harness.py)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

SIZES = [0, 1, 100, 1000, 4096, 10_000, 65_536, 100_000, 300_000, 1_048_576, 4 * 1_048_576]
ECHO = """#!/bin/sh
printf 'Content-Type: application/octet-stream\\n\\n'
exec cat
"""
HELLO = """#!/bin/sh
printf 'Content-Type: text/plain\\n\\nhello from sh\\n'
"""
# The FastCGI backend: flup's WSGIServer on descriptor 0, as a web server
# that spawns it arranges (FCGI_LISTENSOCK_FILENO).  POST echoes the body;
# GET answers N deterministic bytes for ?n=N.
FCGI_APP = """import hashlib
from flup.server.fcgi import WSGIServer


def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read()
    else:
        n = int(environ.get("QUERY_STRING", "n=0").partition("=")[2] or 0)
        body = (hashlib.sha256(b"%d" % n).hexdigest().encode() * (n // 64 + 1))[:n]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


WSGIServer(app, multithreaded=True).run()
"""


def make_root(base: Path) -> dict[str, bytes]:
    root = base / "root"
    (root / "cgi-bin").mkdir(parents=True)
    (root / "list").mkdir()
    files = {}
    rnd = random.Random(7)
    for i, size in enumerate(SIZES):
        data = rnd.randbytes(size)
        (root / f"f{i}.bin").write_bytes(data)
        files[f"/f{i}.bin"] = data
    for i in range(50):
        (root / "list" / f"entry-{i:03d}.txt").write_text("x")
    for name, text in (("echo.sh", ECHO), ("hello.sh", HELLO)):
        (root / "cgi-bin" / name).write_text(text)
        (root / "cgi-bin" / name).chmod(0o755)
    return files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_figures(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    zombies = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == pid:
                zombies += 1
    return {"rss_kib": rss, "fds": fds, "zombies": zombies}


class Checker:
    """One client thread's mix; counts what went right and wrong."""

    def __init__(self, url: str, files: dict[str, bytes], seed: int, ca_file: str):
        self.url = url
        self.files = files
        self.rnd = random.Random(seed)
        self.session = requests.Session()
        self.session.verify = ca_file
        # Else REQUESTS_CA_BUNDLE (or a proxy) from the environment wins over
        # the session's settings.
        self.session.trust_env = False
        self.etags: dict[str, str] = {}
        self.counts = {"requests": 0, "bytes": 0, "wrong": 0, "errors": 0}
        self.problems: list[str] = []

    def one(self) -> None:
        kind = self.rnd.choices(["file", "range", "ranges", "reval", "echo", "hello", "list",
                                 "fcgi_get", "fcgi_post", "up_file", "up_range", "up_post"],
                                [30, 10, 5, 10, 8, 4, 8, 6, 6, 6, 4, 3])[0]
        try:
            getattr(self, "_" + kind)()
        except requests.RequestException as e:
            self.counts["errors"] += 1
            self.problems.append(f"{kind}: {e!r}"[:200])
        self.counts["requests"] += 1

    def _check(self, what: str, ok: bool, r: requests.Response) -> None:
        self.counts["bytes"] += len(r.content)
        if not ok:
            self.counts["wrong"] += 1
            self.problems.append(f"{what}: {r.status_code} {len(r.content)} bytes")

    def _file(self) -> None:
        path, data = self.rnd.choice(list(self.files.items()))
        r = self.session.get(self.url + path, timeout=30)
        if r.status_code == 200:
            self.etags[path] = r.headers.get("ETag", "")
        ok = r.status_code == 200 and hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()
        self._check(path, ok, r)

    def _range(self) -> None:
        path, data = self.rnd.choice([(p, d) for p, d in self.files.items() if d])
        a = self.rnd.randrange(len(data))
        b = self.rnd.randrange(a, len(data))
        r = self.session.get(self.url + path, headers={"Range": f"bytes={a}-{b}"}, timeout=30)
        self._check(f"{path} {a}-{b}", r.status_code == 206 and r.content == data[a:b + 1], r)

    def _ranges(self) -> None:
        path, data = self.rnd.choice([(p, d) for p, d in self.files.items() if len(d) > 1000])
        # Apart from 0-9, so the server has no reason to coalesce the two.
        a, b = sorted(self.rnd.sample(range(100, len(data)), 2))
        r = self.session.get(self.url + path, headers={"Range": f"bytes=0-9,{a}-{b}"}, timeout=30)
        ok = (r.status_code == 206 and b"multipart/byteranges" in r.headers.get("Content-Type", "").encode()
              and data[:10] in r.content and data[a:b + 1] in r.content)
        self._check(f"{path} multipart", ok, r)

    def _reval(self) -> None:
        path = self.rnd.choice(list(self.files))
        etag = self.etags.get(path)
        if not etag:
            return self._file()
        field = ("If-None-Match", etag) if self.rnd.random() < 0.5 else \
            ("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")
        r = self.session.get(self.url + path, headers=dict([field]), timeout=30)
        self._check(f"{path} {field[0]}", r.status_code == 304 and r.content == b"", r)

    def _echo(self) -> None:
        body = self.rnd.randbytes(self.rnd.choice([0, 10, 5000, 200_000]))
        r = self.session.post(self.url + "/cgi-bin/echo.sh", data=body, timeout=30)
        self._check("echo", r.status_code == 200 and r.content == body, r)

    def _hello(self) -> None:
        r = self.session.get(self.url + "/cgi-bin/hello.sh", timeout=30)
        self._check("hello", r.status_code == 200 and r.content == b"hello from sh\n", r)

    def _list(self) -> None:
        r = self.session.get(self.url + "/list/", timeout=30)
        self._check("listing", r.status_code == 200 and r.content.count(b"entry-") >= 50, r)

    def _fcgi_get(self) -> None:
        n = self.rnd.choice([0, 10, 5000, 100_000, 1_000_000])
        want = (hashlib.sha256(b"%d" % n).hexdigest().encode() * (n // 64 + 1))[:n]
        r = self.session.get(f"{self.url}/app/get?n={n}", timeout=30)
        self._check(f"fastcgi get {n}", r.status_code == 200 and r.content == want, r)

    def _fcgi_post(self) -> None:
        body = self.rnd.randbytes(self.rnd.choice([0, 10, 5000, 200_000]))
        r = self.session.post(self.url + "/app/echo", data=body, timeout=30)
        self._check("fastcgi echo", r.status_code == 200 and r.content == body, r)

    def _up_file(self) -> None:
        path, data = self.rnd.choice(list(self.files.items()))
        r = self.session.get(self.url + "/up" + path, timeout=30)
        self._check("proxied " + path, r.status_code == 200 and r.content == data, r)

    def _up_range(self) -> None:
        path, data = self.rnd.choice([(p, d) for p, d in self.files.items() if d])
        a = self.rnd.randrange(len(data))
        r = self.session.get(self.url + "/up" + path, headers={"Range": f"bytes={a}-"}, timeout=30)
        self._check(f"proxied {path} {a}-", r.status_code == 206 and r.content == data[a:], r)

    def _up_post(self) -> None:
        # The upstream has no CGI, so a POST to a file is answered 405 by it:
        # what is checked is that the body streamed through and the answer came
        # back whole, with the connection pool still usable afterwards.
        body = self.rnd.randbytes(self.rnd.choice([0, 10, 5000, 200_000]))
        r = self.session.post(self.url + "/up/f3.bin", data=body, timeout=30)
        self._check("proxied post", r.status_code == 405, r)


def wait_listening(port: int, proc: subprocess.Popen) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def stop_server(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err.decode(errors="replace")


def soak(duration: float, clients: int, sample: float, warmup: float, exe: list[str],
         extra: list[str], log=print) -> dict:
    import trustme
    with tempfile.TemporaryDirectory(prefix="flashplug-soak-") as tmp:
        files = make_root(Path(tmp))
        root = str(Path(tmp) / "root")
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert_file, key_file, ca_file = (str(Path(tmp) / n) for n in ("cert.pem", "key.pem", "ca.pem"))
        Path(cert_file).write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(key_file)
        os.chmod(key_file, 0o600)
        ca.cert_pem.write_to_path(ca_file)
        app = Path(tmp) / "fcgi_app.py"
        app.write_text(FCGI_APP)
        up_port, port = free_port(), free_port()
        common = ["--access-log", "off", *extra]
        upstream = subprocess.Popen([*exe, "serve", root, "--port", str(up_port), *common],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        cmd = [*exe, "serve", root, "--port", str(port), "--plugins", "cgi,autoindex",
               "--tls-cert", cert_file, "--tls-key", key_file,
               "--fastcgi", f"/app=spawn:{sys.executable} {app}",
               "--proxy", f"/up=http://127.0.0.1:{up_port}/", *common]
        if os.geteuid() == 0:
            # the scripts and the app live in a folder only root may enter
            cmd += ["--cgi-user", "root", "--fastcgi-user", "root"]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        err = ""
        try:
            wait_listening(up_port, upstream)
            wait_listening(port, server)
            url = f"https://127.0.0.1:{port}"
            stop = time.monotonic() + duration
            checkers = [Checker(url, files, seed, ca_file) for seed in range(clients)]

            def run(c: Checker) -> None:
                while time.monotonic() < stop:
                    c.one()
            threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in checkers]
            started = time.monotonic()
            for t in threads:
                t.start()
            samples = []
            while time.monotonic() < stop:
                time.sleep(min(sample, max(0.0, stop - time.monotonic())))
                fig = proc_figures(server.pid)
                fig["t"] = round(time.monotonic() - started, 1)
                fig["upstream"] = proc_figures(upstream.pid)
                samples.append(fig)
                log(json.dumps(fig))
            for t in threads:
                t.join(60)
            time.sleep(1)                       # load over: what is left is left for good
            final = proc_figures(server.pid)
            final_up = proc_figures(upstream.pid)
        finally:
            err = stop_server(server) + stop_server(upstream)
    totals = {k: sum(c.counts[k] for c in checkers) for k in checkers[0].counts}
    after = [s for s in samples if s["t"] >= warmup] or samples
    base = after[0]
    return {
        **totals,
        "seconds": duration,
        "clients": clients,
        "rss_kib_after_warmup": base["rss_kib"],
        "rss_kib_end": samples[-1]["rss_kib"],
        "rss_drift_pct": round(100 * (samples[-1]["rss_kib"] - base["rss_kib"]) / base["rss_kib"], 1),
        "upstream_rss_drift_pct": round(100 * (samples[-1]["upstream"]["rss_kib"] - base["upstream"]["rss_kib"])
                                        / base["upstream"]["rss_kib"], 1),
        "fds_after_warmup": base["fds"],
        "fds_end": samples[-1]["fds"],
        "fds_max": max(s["fds"] for s in after),
        "upstream_fds_after_warmup": base["upstream"]["fds"],
        "upstream_fds_after_load": final_up["fds"],
        # A script is a zombie between its exit and its reap (procs keeps its
        # pid for a safe killpg), so samples under load may see a few.
        "zombies_seen_max": max(s["zombies"] for s in samples),
        "zombies_end": final["zombies"],
        "fds_after_load": final["fds"],
        "problems": [p for c in checkers for p in c.problems][:10],
        "tracebacks": err.count("Traceback"),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--sample", type=float, default=10)
    p.add_argument("--warmup", type=float, default=60, help="seconds before the RSS baseline")
    p.add_argument("--exe", default=None, help="flashplug command (default: this Python's)")
    p.add_argument("extra", nargs="*", help="more serve options (after --)")
    args = p.parse_args(argv)
    exe = args.exe.split() if args.exe else [sys.executable, "-m", "flashplug"]
    result = soak(args.duration, args.clients, args.sample, args.warmup, exe, args.extra,
                  log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(result))
    return 0 if result["wrong"] == 0 and result["errors"] == 0 and result["zombies_end"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

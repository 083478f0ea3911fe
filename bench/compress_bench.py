"""Compressed static files, side by side with nginx (issue 15, item 2).

Theory of operation: one HTML page of about 100 KiB (varied markup, so it
compresses like a real page, about 5:1) is served with ``Accept-Encoding``
set by wrk's Lua script, by:

* flashplug from sidecars (``page.html.gz`` and ``.br`` beside the page,
  the default ``--precompressed``) against nginx ``gzip_static on``;
* flashplug ``--compress`` (compressed once by a helper, then kept)
  against nginx ``gzip on`` (compresses every response, here at level 6,
  the level flashplug uses, so the bytes on the wire are alike);
* both without compression, as the reference.

nginx-light has ``gzip_static`` and ``gzip`` but no brotli module, so br
has no nginx row.  Each point starts its server on CPU 0 (taskset), warms
it up, then runs wrk on CPU 1; every response's size is checked first, so
a server that did not compress is caught.  Points are measured in
``--rounds`` interleaved rounds and the median is shown with the spread
(a shared machine's figures swing by a factor of two between runs).  It prints a Markdown table for
docs/compression.md (bench/report.py owns docs/benchmarks.md and rewrites
it whole on each run, so the figures live beside the feature, like
docs/fastcgi.md's).

    python bench/compress_bench.py --duration 3
"""
from __future__ import annotations

import argparse
import gzip
import random
import shutil
import socket
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import wrk  # noqa: E402
from fastcgi_bench import flashplug, halt, start  # noqa: E402
from servers import CLIENT_CPU, SERVER_CPU, free_port  # noqa: E402

PAGE_SIZE = 100 * 1024


def make_page(size=PAGE_SIZE, seed=15):
    """An HTML page of ``size`` bytes: rows of a table with varied words and
    numbers, about as compressible as a real site's pages."""
    rng = random.Random(seed)
    words = ("flash server plugin event loop helper cache static file request "
             "response header body compress brotli gzip zstd site page link "
             "table row column value").split()
    rows = ["<!doctype html><html><head><title>Compression bench</title></head><body><table>"]
    n = 0
    while sum(map(len, rows)) < size:
        n += 1
        text = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))
        rows.append(f'<tr><td class="n">{n}</td><td><a href="/item/{rng.randint(1, 99999)}">'
                    f"{text}</a></td><td>{rng.randint(0, 10**6)}</td></tr>\n")
    page = "".join(rows)[:size - len("</table></body></html>\n")]
    return (page + "</table></body></html>\n").encode()


def nginx_conf(tmp, root, port, mode):
    user = "user root;\n" if __import__("os").geteuid() == 0 else ""
    gz = {"gzip_static": "gzip_static on;",
          "gzip": "gzip on; gzip_comp_level 6; gzip_min_length 1024;",
          "identity": ""}[mode]
    conf = tmp / f"nginx-{port}.conf"
    conf.write_text(textwrap.dedent(f"""\
        {user}daemon off;
        worker_processes 1;
        pid {tmp}/nginx-{port}.pid;
        error_log stderr warn;
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            sendfile on; tcp_nopush on;
            keepalive_requests 1000000;
            open_file_cache max=1000; open_file_cache_valid 60s;
            types {{ text/html html; }}
            client_body_temp_path {tmp}/nb; proxy_temp_path {tmp}/np;
            fastcgi_temp_path {tmp}/nf; uwsgi_temp_path {tmp}/nu; scgi_temp_path {tmp}/ns;
            server {{ listen 127.0.0.1:{port}; root {root}; {gz} }}
        }}
        """))
    return ["nginx", "-e", "stderr", "-p", str(tmp), "-c", str(conf)]


def body_size(port, coding):
    """(Content-Encoding, body bytes) of one GET /page.html asking for ``coding``."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        # HTTP/1.1: nginx compresses nothing for 1.0 (gzip_http_version).
        s.sendall(f"GET /page.html HTTP/1.1\r\nHost: b\r\nConnection: close\r\n"
                  f"Accept-Encoding: {coding}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    sent = None
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-encoding":
            sent = value.strip()
    return sent, len(body)


def lua_for(tmp, coding):
    lua = tmp / f"wrk-{coding}.lua"
    lua.write_text(f'wrk.headers["Accept-Encoding"] = "{coding}"\n' + wrk._DONE)
    return lua


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="compress-bench-"))
    tmp.chmod(0o755)
    root = tmp / "www"
    root.mkdir()
    page = make_page()
    (root / "page.html").write_bytes(page)
    (root / "page.html.gz").write_bytes(gzip.compress(page, 9))
    try:
        import brotli
        (root / "page.html.br").write_bytes(brotli.compress(page, quality=11))
    except ImportError:
        print("brotli is not installed: br rows skipped", file=sys.stderr)
    (root / "plain").mkdir()   # a copy without sidecars, for on-the-fly and identity
    shutil.copy(root / "page.html", root / "plain" / "page.html")
    plain = root / "plain"

    points = [
        ("identity", "flashplug", lambda port: flashplug(plain, port), "identity"),
        ("identity", "nginx", lambda port: nginx_conf(tmp, plain, port, "identity"), "identity"),
        ("gzip, sidecar", "flashplug (.gz beside the page)",
         lambda port: flashplug(root, port), "gzip"),
        ("gzip, sidecar", "nginx gzip_static on",
         lambda port: nginx_conf(tmp, root, port, "gzip_static"), "gzip"),
        ("gzip, on the fly", "flashplug --compress (kept after the first)",
         lambda port: flashplug(plain, port, "--compress"), "gzip"),
        ("gzip, on the fly", "nginx gzip on (level 6, every response)",
         lambda port: nginx_conf(tmp, plain, port, "gzip"), "gzip"),
    ]
    if (root / "page.html.br").exists():
        points += [
            ("br, sidecar", "flashplug (.br beside the page)",
             lambda port: flashplug(root, port), "br"),
            ("br, on the fly", "flashplug --compress (kept after the first)",
             lambda port: flashplug(plain, port, "--compress"), "br"),
        ]
    if not shutil.which("nginx"):
        print("nginx is not installed: its rows skipped", file=sys.stderr)
        points = [p for p in points if not p[1].startswith("nginx")]
    rates = {}
    sizes = {}
    errors = {}
    try:
        for _ in range(args.rounds):
            for point in points:
                sizes[point], rate, failed = measure(tmp, point, args)
                rates.setdefault(point, []).append(rate)
                errors[point] = errors.get(point, 0) + failed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{len(page):,}-byte HTML page, {args.connections} connections, "
          f"{args.duration:g} s per point, median of {args.rounds} interleaved rounds, "
          f"server on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU}\n")
    print("| coding | server | body bytes | req/s (median) | rounds | errors |")
    print("|---|---|---:|---:|---|---:|")
    for point in points:
        got = sorted(rates[point])
        spread = " to ".join(f"{r:,.0f}" for r in (got[0], got[-1]))
        print(f"| {point[0]} | {point[1]} | {sizes[point]:,} | {statistics.median(got):,.0f} "
              f"| {spread} | {errors[point]} |")


def measure(tmp, point, args):
    """(body bytes, req/s, errors) of one point: its server started, checked,
    warmed up, measured and stopped."""
    _, server, cmd, coding = point
    for attempt in range(3):
        port = free_port()
        try:
            proc = start(cmd(port), port, "/page.html", b"", tmp / f"{port}.log")
            break
        except RuntimeError as e:
            # free_port's port can be taken by someone else before we bind it.
            if "in use" not in str(e) or attempt == 2:
                raise
    try:
        sent, size = body_size(port, coding)
        wanted = None if coding == "identity" else coding
        if sent != wanted:
            raise RuntimeError(f"{server}: asked for {coding}, got {sent}")
        lua = lua_for(tmp, coding)
        wrk.run(port, "/page.html", lua, args.warmup, args.connections)
        result = wrk.run(port, "/page.html", lua, args.duration, args.connections)
    finally:
        halt(proc)
    return size, result["rps"], sum(result["errors"].values())


if __name__ == "__main__":
    main()

"""Reverse-proxy speed, side by side (issue 16, item 6).

Theory of operation: one upstream, nginx serving a 1 KiB file (fast, so
the front server is what is measured), unpinned.  Each front server runs
on CPU 0 (taskset) and proxies every request to it over kept-alive
upstream connections: flashplug ``--proxy /=http://...`` against nginx
``proxy_pass`` with ``keepalive 32`` (``proxy_http_version 1.1``,
``Connection ""``), one worker each.  wrk runs on CPU 1 for
``--duration`` seconds with ``--connections`` keep-alive connections,
after a warm-up, and each front prints one table row of requests per
second, the median of ``--rounds`` interleaved rounds.  A reference row,
``floor_proxy.py``, is the least a uvloop + httptools proxy does per
request with none of the checks, timeouts and flow control of a real one:
where a proxy written in Python tops out.  The machine is
shared; repeat a run before reading much into a few percent.
``--baseline EXE`` adds the flashplug of another checkout (its venv's
``flashplug``) as "flashplug before", in the same rounds.

    python bench/proxy_bench.py --duration 5
    python bench/proxy_bench.py --baseline ../main/.venv/bin/flashplug
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import wrk  # noqa: E402
from fastcgi_bench import cpu_text, flashplug, halt, measure, medians, start  # noqa: E402
from servers import CLIENT_CPU, SERVER_CPU, free_port  # noqa: E402


def nginx(tmp, name, port, upstream_port, body):
    """argv for an nginx with one worker on ``port``; ``body`` goes in its
    server block, where ``back`` names the upstream (kept-alive)."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / f"{name}.conf"
    conf.write_text(textwrap.dedent(f"""\
        {user}daemon off;
        worker_processes 1;
        pid {tmp}/{name}.pid;
        error_log stderr warn;
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            client_body_temp_path {tmp}/{name}-b; proxy_temp_path {tmp}/{name}-p;
            fastcgi_temp_path {tmp}/{name}-f; uwsgi_temp_path {tmp}/{name}-u;
            scgi_temp_path {tmp}/{name}-s;
            keepalive_requests 1000000;
            upstream back {{ server 127.0.0.1:{upstream_port}; keepalive 32; }}
            server {{
                listen 127.0.0.1:{port};
        {textwrap.indent(body, "        ")}
            }}
        }}
        """))
    return ["nginx", "-e", "stderr", "-p", str(tmp), "-c", str(conf)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baseline", metavar="EXE", help="another checkout's flashplug, "
                   "measured as 'flashplug before' in the same rounds")
    args = p.parse_args(argv)
    if not shutil.which("nginx"):
        sys.exit("nginx is not installed (apt-get install nginx-light)")

    tmp = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    root = tmp / "www"
    root.mkdir()
    (root / "1k.bin").write_bytes(bytes(range(256)) * 4)
    lua = wrk.script(tmp, "proxy")
    rows = []
    up_port = free_port()
    procs = []
    try:
        # start() pins to the server CPU; the inner taskset unpins the upstream.
        every_cpu = f"0-{os.cpu_count() - 1}"
        procs.append(start(["taskset", "-c", every_cpu,
                            *nginx(tmp, "upstream", up_port, up_port, f"root {root};")],
                           up_port, "/1k.bin", b"\x00\x01", tmp / "upstream.log"))
        exes = [("", None)] + ([(" before", args.baseline)] if args.baseline else [])
        fronts = [
            *((f"flashplug{label} --proxy", lambda port, exe=exe: flashplug(
                root, port, "--plugins", "none", "--proxy", f"/=http://127.0.0.1:{up_port}",
                exe=exe)) for label, exe in exes),
            ("bare Python proxy (no checks)", lambda port: [
                sys.executable, str(HERE / "floor_proxy.py"), "--port", str(port),
                "--upstream", f"127.0.0.1:{up_port}"]),
            ("nginx proxy_pass (keepalive 32)", lambda port: nginx(
                tmp, "front", port, up_port, textwrap.dedent("""\
                    location / {
                        proxy_pass http://back;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                    }"""))),
        ]
        ports, pids = [], []
        for name, cmd in fronts:
            port = free_port()
            procs.append(start(cmd(port), port, "/1k.bin", b"\x00\x01", tmp / "front.log"))
            ports.append(port)
            pids.append(procs[-1].pid)
        # Interleaved rounds, median kept: on a shared machine the load
        # changes from one point to the next.
        runs = [[] for _ in fronts]
        for _ in range(args.rounds):
            for i, port in enumerate(ports):
                runs[i].append(measure(port, "/1k.bin", args, lua, pids[i]))
        for (name, _), got in zip(fronts, runs):
            rows.append((name, *medians(got)))
    finally:
        for proc in procs:
            halt(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n1 KiB from an nginx upstream; {args.connections} connections, "
          f"{args.duration:g} s per point, median of {args.rounds} interleaved rounds, "
          f"front on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU}, upstream unpinned\n")
    print("| front server | req/s | CPU µs/request (user + system) | errors |")
    print("|---|---:|---:|---:|")
    for name, rate, errors, cpu in rows:
        print(f"| {name} | {rate:,.0f} | {cpu_text(cpu)} | {errors} |")
    nginx_rate = rows[-1][1]
    for name, rate, _, _ in rows[:-1]:
        if nginx_rate:
            print(f"{name.split(' --')[0]} / nginx: {rate / nginx_rate:.2f}x")


if __name__ == "__main__":
    main()

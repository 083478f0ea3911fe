"""FastCGI speed, side by side (issue 16, item 6).

Theory of operation: each point starts one front server on CPU 0 (taskset)
with its backend, warms it up, then runs wrk on CPU 1 for ``--duration``
seconds with ``--connections`` keep-alive connections, and stops it again,
so only one front server is alive at a time.  Each front keeps the median
of ``--rounds`` interleaved rounds (the machine is shared: its load moves
from one point to the next).  Two comparisons:

* **Python hello world**: a WSGI app over FastCGI (flup, spawned by
  flashplug: ``--fastcgi /py=spawn:...``) against the same text from a
  classic CGI script (``cgi-bin/hello.py``, one process per request).
  Both backends are children of flashplug, so both share CPU 0 with it.
* **PHP hello**: the same php-fpm pool (static, ``--php-children``
  children, on a Unix socket, unpinned) behind flashplug ``--fastcgi``,
  nginx ``fastcgi_pass`` (upstream keep-alive) and lighttpd
  ``mod_fastcgi``.  The pool has a child for every client connection
  (``--php-children`` defaults to ``--connections``), and flashplug may
  keep a connection to each (``--fastcgi-max-conns``): a php-fpm child
  serves one kept-alive connection until it is closed, so a front that
  kept more connections than there are children would have requests
  waiting on connections no child reads (nginx opens one per request in
  flight).  Beside them runs ``floor_fastcgi.py``, the least a Python
  (uvloop + httptools) front can do with no checks at all: where the
  language tops out.

``--baseline EXE`` adds the flashplug of another checkout (its venv's
``flashplug``) as "flashplug before", measured in the same rounds: the
before and after of a change in one run.

    python bench/fastcgi_bench.py --duration 5
    python bench/fastcgi_bench.py --baseline ../main/.venv/bin/flashplug --only php
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))

import wrk  # noqa: E402
from fcgi_backends import php_fpm_binary, start_php_fpm, stop  # noqa: E402
from servers import CLIENT_CPU, SERVER_CPU, free_port, http_get  # noqa: E402


HELLO_WSGI = '''\
from flup.server.fcgi import WSGIServer


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello from " + environ.get("SCRIPT_NAME", "?").encode() + b"\\n"]


if __name__ == "__main__":
    WSGIServer(app, multithreaded=False).run()
'''


#: The reference row: a bare Python front with no checks (floor_fastcgi.py).
FLOOR = "Python floor (uvloop + httptools, no checks)"


def wait_http(port, path, expect, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            status, body = http_get(port, path)
            if status == 200 and expect in body:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no 200 with {expect!r} from {path}")


def start(cmd, port, path, expect, log):
    with open(log, "ab") as out:
        proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, *cmd], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(port, path, expect, proc)
    except RuntimeError as e:
        halt(proc)
        raise RuntimeError(f"{e}; the server said:\n{Path(log).read_text()[-2000:]}") from None
    return proc


def halt(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def cpu_seconds(pid, exclude=()):
    """``(user, system)`` CPU seconds of process ``pid`` and its
    descendants, leaving out any descendant whose command line holds a
    string of ``exclude`` (a backend the front spawned: its CPU is not the
    front's).  Processes that ended are not counted (a CGI child's time is
    not)."""
    parents, stats = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        stats[int(entry)] = ((int(fields[11]), int(fields[12])), cmdline)
    tree, grew = {pid}, True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    counted = [stats[p][0] for p in tree
               if p in stats and (p == pid or not any(x in stats[p][1] for x in exclude))]
    hz = os.sysconf("SC_CLK_TCK")
    return sum(u for u, _ in counted) / hz, sum(t for _, t in counted) / hz


def measure(port, path, args, lua, pid=None, exclude=()):
    """``(req/s, errors, CPU µs per request)``: the last is the front
    server's own CPU time (``pid``'s process tree, less ``exclude``d
    backends) over the measured run, divided by the requests wrk counted,
    as ``(user + system, user, system)``; None without ``pid``.  On a
    shared machine it moves much less than req/s: it does not count time
    the server spent waiting for a CPU."""
    wrk.run(port, path, lua, args.warmup, args.connections)
    before = cpu_seconds(pid, exclude) if pid else None
    result = wrk.run(port, path, lua, args.duration, args.connections)
    cpu = None
    if pid and result["requests"]:
        after = cpu_seconds(pid, exclude)
        user, system = ((a - b) * 1e6 / result["requests"] for a, b in zip(after, before))
        cpu = (user + system, user, system)
    return result["rps"], sum(result["errors"].values()), cpu


def flashplug(root, port, *args, exe=None):
    """argv for a flashplug on ``port`` (this checkout's, or ``exe``)."""
    command = [exe] if exe else [sys.executable, "-m", "flashplug"]
    return [*command, "serve", str(root), "--port", str(port), "--access-log", "off", *args]


def interleaved(fronts, path, expect, args, lua, tmp, exclude=()):
    """``[(name, median req/s, errors, median CPU µs/request)]`` for
    ``fronts`` (``(name, argv for a port)``), each started, measured and
    stopped in turn, ``--rounds`` times over."""
    runs = {name: [] for name, _ in fronts}
    for _ in range(args.rounds):
        for name, cmd in fronts:
            port = free_port()
            proc = start(cmd(port), port, path, expect, tmp / f"{name.split()[0]}.log")
            try:
                runs[name].append(measure(port, path, args, lua, proc.pid, exclude))
            finally:
                halt(proc)
    return [(name, *medians(got)) for name, got in runs.items()]


def medians(got):
    """``(median req/s, errors, median CPU µs/request)`` of ``measure`` results."""
    rates = sorted(rate for rate, _, _ in got)
    cpus = sorted(cpu for _, _, cpu in got if cpu is not None)
    return (rates[len(rates) // 2], sum(e for _, e, _ in got),
            cpus[len(cpus) // 2] if cpus else None)


def cpu_text(cpu):
    """``"117 (103 + 14)"``: all, user and system µs per request."""
    return "-" if cpu is None else "%.0f (%.0f + %.0f)" % cpu


def nginx_conf(tmp, root, port, sock):
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""\
        {user}daemon off;
        worker_processes 1;
        pid {tmp}/nginx.pid;
        error_log stderr warn;
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            client_body_temp_path {tmp}/nb; proxy_temp_path {tmp}/np;
            fastcgi_temp_path {tmp}/nf; uwsgi_temp_path {tmp}/nu; scgi_temp_path {tmp}/ns;
            keepalive_requests 1000000;
            upstream php {{ server unix:{sock}; keepalive 8; }}
            server {{
                listen 127.0.0.1:{port};
                root {root};
                location ~ \\.php$ {{
                    include /etc/nginx/fastcgi_params;
                    fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
                    fastcgi_keep_conn on;
                    fastcgi_pass php;
                }}
            }}
        }}
        """))
    return ["nginx", "-e", "stderr", "-p", str(tmp), "-c", str(conf)]


def lighttpd_conf(tmp, root, port, sock):
    conf = tmp / "lighttpd.conf"
    conf.write_text(textwrap.dedent(f"""\
        server.document-root = "{root}"
        server.bind = "127.0.0.1"
        server.port = {port}
        server.errorlog = "/dev/stderr"
        server.max-keep-alive-requests = 1000000
        server.modules += ("mod_fastcgi")
        fastcgi.server = (".php" => (("socket" => "{sock}", "check-local" => "enable")))
        """))
    return ["lighttpd", "-D", "-f", str(conf)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--php-children", type=int, default=None,
                   help="php-fpm children (default: --connections)")
    p.add_argument("--only", choices=("python", "php"), default=None)
    p.add_argument("--baseline", metavar="EXE", help="another checkout's flashplug, "
                   "measured as 'flashplug before' in the same rounds")
    args = p.parse_args(argv)
    children = args.php_children or args.connections

    tmp = Path(tempfile.mkdtemp(prefix="fastcgi-bench-"))
    tmp.chmod(0o755)    # run as root, CGI scripts run as nobody
    root = tmp / "www"
    (root / "cgi-bin").mkdir(parents=True)
    shutil.copy(REPO / "cgi-bin" / "hello.py", root / "cgi-bin" / "hello.py")
    (root / "hello.php").write_text('<?php echo "Hello from PHP\\n";')
    app = tmp / "hello_wsgi.py"
    app.write_text(HELLO_WSGI)
    lua = wrk.script(tmp, "fastcgi")
    exes = [("", None)] + ([(" before", args.baseline)] if args.baseline else [])
    rows = []
    try:
        if args.only != "php":
            fronts = [("flashplug, classic CGI (hello.py)", lambda port: flashplug(
                root, port, "--plugins", "cgi"))]
            fronts += [(f"flashplug{label}, FastCGI (flup, 1 process)",
                        lambda port, exe=exe: flashplug(
                            root, port, "--fastcgi", f"/py=spawn:{sys.executable} {app}",
                            "--fastcgi-procs", "1", exe=exe))
                       for label, exe in exes]
            cgi, *flup = fronts
            rows += [("Python hello", *row)
                     for row in interleaved([cgi], "/cgi-bin/hello.py", b"Hello", args, lua, tmp)
                     + interleaved(flup, "/py", b"Hello", args, lua, tmp,
                                   exclude=(str(app),))]
        if args.only == "python":
            pass
        elif php_fpm_binary() is None:
            print("php-fpm is not installed: PHP rows skipped", file=sys.stderr)
        else:
            fpm, sock = start_php_fpm(tmp, children=children)
            try:
                fronts = [(f"flashplug{label} --fastcgi", lambda port, exe=exe: flashplug(
                              root, port, "--fastcgi", f".php=unix:{sock}",
                              "--fastcgi-max-conns", str(children), exe=exe))
                          for label, exe in exes]
                if shutil.which("nginx"):
                    fronts.append(("nginx fastcgi_pass", lambda port: nginx_conf(
                        tmp, root, port, sock)))
                if shutil.which("lighttpd"):
                    fronts.append(("lighttpd mod_fastcgi", lambda port: lighttpd_conf(
                        tmp, root, port, sock)))
                fronts.append((FLOOR, lambda port: [
                    sys.executable, str(HERE / "floor_fastcgi.py"), str(port), str(root),
                    f"unix:{sock}"]))
                rows += [("PHP hello (php-fpm)", *row) for row in interleaved(
                    fronts, "/hello.php", b"Hello from PHP", args, lua, tmp)]
            finally:
                stop(fpm)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{args.connections} connections, {args.duration:g} s per point, median of "
          f"{args.rounds} interleaved rounds, server on CPU {SERVER_CPU}, wrk on CPU "
          f"{CLIENT_CPU}; php-fpm: {children} children, unpinned\n")
    print("| workload | server | req/s | CPU µs/request (user + system) | errors |")
    print("|---|---|---:|---:|---:|")
    for workload, server, rate, errors, cpu in rows:
        print(f"| {workload} | {server} | {rate:,.0f} | {cpu_text(cpu)} | {errors} |")
    rates = {server: rate for _, server, rate, _, _ in rows}
    for label, _ in exes:
        ours = rates.get(f"flashplug{label} --fastcgi")
        for other in ("nginx fastcgi_pass", "lighttpd mod_fastcgi", FLOOR):
            if ours and rates.get(other):
                print(f"flashplug{label} / {other}: {ours / rates[other]:.2f}x")
        flup = rates.get(f"flashplug{label}, FastCGI (flup, 1 process)")
        cgi = rates.get("flashplug, classic CGI (hello.py)")
        if flup and cgi:
            print(f"flashplug{label} flup / classic CGI: {flup / cgi:.0f}x")


if __name__ == "__main__":
    main()

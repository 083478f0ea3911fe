"""docs/deployment.md works as written (issue 10, item 13).

The systemd unit is taken from the page and checked by systemd-analyze;
privileges are dropped for real (CI runs as root, so these tests can): the
workers of `--user nobody` run as nobody, and CGI scripts of a root server
run as nobody unless told otherwise.
"""
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(os.path.dirname(sys.executable), "flashplug")
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def _page():
    with open(os.path.join(REPO, "docs", "deployment.md"), encoding="utf-8") as f:
        return f.read()


def unit_file():
    """The ```ini block of the systemd section."""
    section = _page().split("## systemd", 1)[1]
    return re.search(r"```ini\n(.*?)```", section, re.S).group(1)


def exec_start(unit):
    return shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))


@pytest.fixture
def open_dir():
    """A folder every user may enter (tmp_path is root's alone)."""
    path = tempfile.mkdtemp(prefix="flashplug-deploy-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def worker_uids(master):
    with open(f"/proc/{master}/task/{master}/children") as f:
        kids = [int(p) for p in f.read().split()]
    uids = set()
    for pid in kids + [master]:
        with open(f"/proc/{pid}/status") as f:
            uids.add(int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1)))
    return kids, uids


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_unit_file_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    unit = unit_file()
    # The page installs into /opt/flashplug; this clone's environment
    # stands in for it.
    assert "/opt/flashplug/.venv/bin/flashplug serve" in unit
    rendered = tmp_path / "flashplug.service"
    rendered.write_text(unit.replace("/opt/flashplug/.venv/bin/flashplug", SCRIPT))
    proc = subprocess.run([analyze, "verify", str(rendered)], capture_output=True,
                          text=True, timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if "flashplug.service" in line]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr
    assert "ExecReload" not in unit   # SIGHUP reloads nothing yet: no false promise


def test_exec_start_parses_as_written():
    """Every flag of the documented command line is one flashplug knows."""
    from flashplug.cli import _add_serve_options, _Parser
    parser = _Parser(prog="flashplug serve")
    _add_serve_options(parser)
    args = exec_start(unit_file())
    assert args[:2] == ["/opt/flashplug/.venv/bin/flashplug", "serve"]
    ns = parser.parse_args(args[2:])
    assert (ns.port, ns.user, ns.access_log) == (80, "www-data", "/var/log/flashplug/access.log")
    assert ns.plugins == "none"       # a public site names its plugins


@root_only
def test_documented_command_runs_as_www_data(open_dir, tmp_path, server_factory):
    """The unit's command line, with the site, port, address and log folder
    of this test in place of the page's."""
    args = exec_start(unit_file())[2:]
    logs = os.path.join(open_dir, "log")
    os.mkdir(logs)
    os.chown(logs, pwd.getpwnam("www-data").pw_uid, pwd.getpwnam("www-data").pw_gid)
    site = os.path.join(open_dir, "www")
    os.mkdir(site)
    with open(os.path.join(site, "index.html"), "w") as f:
        f.write("home\n")
    os.chmod(os.path.join(site, "index.html"), 0o644)
    # server_factory gives the docroot and a free port; loopback only.
    port = args.index("--port")
    args = args[:port] + args[port + 2:]
    args.remove("/srv/www")
    replaced = {"0.0.0.0": "127.0.0.1", "auto": "2"}
    rendered = [replaced.get(a, a).replace("/var/log/flashplug", logs) for a in args]
    server = server_factory(site, *rendered)
    assert requests.get(server.url + "/").text == "home\n"
    kids, uids = wait_for(lambda: (lambda k, u: (k, u) if len(k) == 2 else None)(
        *worker_uids(server.proc.pid)))
    assert uids == {pwd.getpwnam("www-data").pw_uid}
    assert wait_for(lambda: "GET / " in open(os.path.join(logs, "access.log")).read())


@root_only
def test_user_nobody_serves_files_readable_by_others(open_dir, server_factory):
    with open(os.path.join(open_dir, "pub.txt"), "w") as f:
        f.write("public\n")
    os.chmod(os.path.join(open_dir, "pub.txt"), 0o644)
    with open(os.path.join(open_dir, "secret.txt"), "w") as f:
        f.write("root's\n")
    os.chmod(os.path.join(open_dir, "secret.txt"), 0o600)
    server = server_factory(open_dir, "--user", "nobody", "--workers", "2", "--plugins", "none")
    assert requests.get(server.url + "/pub.txt").text == "public\n"
    assert requests.get(server.url + "/secret.txt").status_code == 403
    kids, uids = wait_for(lambda: (lambda k, u: (k, u) if len(k) == 2 else None)(
        *worker_uids(server.proc.pid)))
    assert uids == {pwd.getpwnam("nobody").pw_uid}


@root_only
def test_uvloop_is_imported_before_privileges_are_dropped(open_dir, server_factory):
    """A worker that imported uvloop only after the drop could fail to (the
    interpreter under /root, unreadable to --user) and quietly run on
    asyncio's slower loop."""
    pytest.importorskip("uvloop")
    server = server_factory(open_dir, "--user", "nobody", "--plugins", "none")
    assert requests.get(server.url + "/").status_code == 404
    assert "event loop" not in server.log()


@root_only
def test_a_module_the_user_cannot_read_is_one_line_naming_the_user(open_dir, tmp_path):
    """flashplug_configure runs as --user, and plugins.md advises importing
    heavy modules there: one only root can read (an interpreter under
    /root) fails, and the line says as whom the server was running."""
    private = tmp_path / "private"               # tmp_path is root's alone
    private.mkdir()
    (private / "rootonly_mod.py").write_text("X = 1\n")
    plugins = os.path.join(open_dir, "plugins")
    os.mkdir(plugins)
    os.chmod(plugins, 0o755)
    with open(os.path.join(plugins, "lazy.py"), "w") as f:
        f.write("from flashplug import hookimpl\n\n\n@hookimpl\n"
                "def flashplug_configure(config):\n    import rootonly_mod\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(private), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "flashplug", "serve", open_dir, "--port", "0",
                           "--user", "nobody", "--plugins-dir", plugins, "--plugins", "lazy"],
                          capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "plugin 'lazy': ModuleNotFoundError: No module named 'rootonly_mod'" in proc.stderr
    assert proc.stderr.rstrip().endswith(
        "(running as nobody, from --user: can nobody read that module and its folders?)")


def test_unknown_user_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(tmp_path),
                           "--port", "0", "--user", "no-such-user-x"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr == ("flashplug: error: --user no-such-user-x: no such user on this "
                           "machine (see /etc/passwd, or `id no-such-user-x`)\n")


@root_only
@pytest.mark.parametrize("extra, user", [((), "nobody"), (("--cgi-user", "www-data"), "www-data"),
                                         (("--user", "www-data"), "www-data")])
def test_cgi_scripts_of_a_root_server_are_not_root(open_dir, server_factory, extra, user):
    cgi = os.path.join(open_dir, "cgi-bin")
    os.mkdir(cgi)
    os.chmod(cgi, 0o755)
    script = os.path.join(cgi, "id.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nid -u\nid -g\n")
    os.chmod(script, 0o755)
    server = server_factory(open_dir, "--plugins", "cgi", *extra, cgi_user=None)
    entry = pwd.getpwnam(user)
    assert requests.get(server.url + "/cgi-bin/id.sh").text.split() == \
        [str(entry.pw_uid), str(entry.pw_gid)]


@root_only
def test_log_files_are_checked_as_the_user(open_dir):
    """A log folder root can write but --user cannot: one line, before any
    worker starts."""
    logs = os.path.join(open_dir, "log")
    os.mkdir(logs, 0o755)                      # root's, not writable by nobody
    proc = subprocess.run([sys.executable, "-m", "flashplug", "serve", open_dir, "--port", "0",
                           "--workers", "2", "--user", "nobody",
                           "--access-log", os.path.join(logs, "access.log")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr == (f"flashplug: error: --access-log {logs}/access.log: cannot open "
                           f"for appending as user nobody: Permission denied\n")

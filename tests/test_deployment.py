"""docs/deployment.md works as written (issue 10, item 13; issue 15, item 5).

The config file, the systemd units and the logrotate snippet are taken
from the page: the units are checked by systemd-analyze and run as systemd
would run them (tests/fake_systemd.py), the snippet by logrotate;
privileges are dropped for real (CI runs as root, so these tests can): the
workers of `--user nobody` run as nobody, and CGI scripts of a root server
run as nobody unless told otherwise.
"""
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest
import requests

from tests.fake_systemd import Notifications, listening_socket, start
from tests.waiting import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(os.path.dirname(sys.executable), "flashplug")
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def _page():
    with open(os.path.join(REPO, "docs", "deployment.md"), encoding="utf-8") as f:
        return f.read()


def _blocks(lang):
    """The ```LANG blocks of the systemd section, in order."""
    section = _page().split("## systemd", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def unit_file():
    """The .service unit."""
    return next(b for b in _blocks("ini") if "[Service]" in b)


def socket_unit():
    return next(b for b in _blocks("ini") if "[Socket]" in b)


def config_file():
    return _blocks("toml")[0]


def notify_reload_lines():
    """The lines the page says to use instead on systemd 253 or later."""
    return next(b for b in _blocks("ini") if "notify-reload" in b and "[Service]" not in b)


def logrotate_snippet():
    section = _page().split("## Log rotation", 1)[1]
    return re.search(r"```\n(.*?)```", section, re.S).group(1)


def exec_lines(unit, key):
    return [shlex.split(line) for line in re.findall(rf"^{key}=(.*)$", unit, re.M)]


def exec_start(unit):
    return exec_lines(unit, "ExecStart")[0]


INSTALLED = "/opt/flashplug/.venv/bin/flashplug"
CONFIG = "/etc/flashplug/flashplug.toml"


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


def _analyze_version(analyze):
    out = subprocess.run([analyze, "--version"], capture_output=True, text=True).stdout
    return int(re.search(r"systemd (\d+)", out).group(1))


def _verify(analyze, folder, *names):
    proc = subprocess.run([analyze, "verify", *[str(folder / n) for n in names]],
                          capture_output=True, text=True, timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if "flashplug" in line]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr


def test_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    unit = unit_file()
    # The page installs into /opt/flashplug; this clone's environment
    # stands in for it.
    assert f"{INSTALLED} serve --config {CONFIG}" in unit
    (tmp_path / "flashplug.service").write_text(unit.replace(INSTALLED, SCRIPT))
    (tmp_path / "flashplug.socket").write_text(socket_unit())
    _verify(analyze, tmp_path, "flashplug.service", "flashplug.socket")
    assert re.search(r"^Type=notify$", unit, re.M)
    assert exec_lines(unit, "ExecReload") == [[INSTALLED, "check", "--config", CONFIG],
                                              ["/bin/kill", "-HUP", "$MAINPID"]]
    # The variant for systemd 253 and later, where systemd knows notify-reload.
    variant = re.sub(r"^(Type|ExecReload)=.*\n", "", unit, flags=re.M).replace(
        "[Service]\n", "[Service]\n" + notify_reload_lines())
    assert "Type=notify-reload" in variant and "kill" not in variant
    if _analyze_version(analyze) >= 253:
        (tmp_path / "flashplug.service").write_text(variant.replace(INSTALLED, SCRIPT))
        _verify(analyze, tmp_path, "flashplug.service")


def rendered_config(folder, site, logs, port=80, user=True):
    """The page's config file with this test's site, logs and address."""
    text = config_file().replace('"/srv/www"', f'"{site}"').replace(
        "/var/log/flashplug", str(logs)).replace('"0.0.0.0"', '"127.0.0.1"').replace(
        "port = 80", f"port = {port}").replace('workers = "auto"', "workers = 2")
    if not user:
        text = text.replace('user = "www-data"\n', "")
    path = os.path.join(str(folder), "flashplug.toml")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def test_config_file_loads_as_written(tmp_path):
    """Every key of the documented config file is one flashplug knows."""
    from flashplug.cli import build_serve
    (tmp_path / "www").mkdir()
    text = config_file().replace('"/srv/www"', f'"{tmp_path / "www"}"')
    (tmp_path / "flashplug.toml").write_text(text)
    config = build_serve(["--config", str(tmp_path / "flashplug.toml")])
    assert (config.bind, config.port, config.user) == ("0.0.0.0", 80, "www-data")
    assert config.access_log == "/var/log/flashplug/access.log"
    assert config.master is True and config.workers == (os.cpu_count() or 1)
    assert config.plugins == []          # a public site names its plugins
    assert exec_start(unit_file()) == [INSTALLED, "serve", "--config", CONFIG]


def _site(open_dir):
    logs = os.path.join(open_dir, "log")
    os.mkdir(logs)
    os.chown(logs, pwd.getpwnam("www-data").pw_uid, pwd.getpwnam("www-data").pw_gid)
    site = os.path.join(open_dir, "www")
    os.mkdir(site)
    for name, text in (("index.html", "home\n"), ("other.html", "other\n")):
        with open(os.path.join(site, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(site, name), 0o644)
    return site, logs


@root_only
def test_documented_config_runs_as_www_data(open_dir, server_factory):
    """The page's config file, with the site, port, address and log folder
    of this test in place of the page's."""
    site, logs = _site(open_dir)
    server = server_factory(site, "--config", rendered_config(open_dir, site, logs))
    assert requests.get(server.url + "/").text == "home\n"
    kids, uids = wait_for(lambda: (lambda k, u: (k, u) if len(k) == 2 else None)(
        *worker_uids(server.proc.pid)))
    assert uids == {pwd.getpwnam("www-data").pw_uid}
    assert wait_for(lambda: "GET / " in open(os.path.join(logs, "access.log")).read())


def test_units_run_as_systemd_would(open_dir, tmp_path):
    """The .socket's ListenStream= made by a fake systemd and passed at
    descriptor 3, the .service's ExecStart=, then its ExecReload= lines
    after an edit of the config file, then KillSignal=."""
    site, logs = _site(open_dir)
    if os.geteuid() != 0:
        os.chmod(logs, 0o777)
    config = rendered_config(open_dir, site, logs, port=1, user=os.geteuid() == 0)
    unit, sock_unit = unit_file(), socket_unit()
    listen = re.search(r"^ListenStream=(.*):(\d+)$", sock_unit, re.M)
    assert listen.groups() == ("0.0.0.0", "80")
    backlog = int(re.search(r"^Backlog=(\d+)$", sock_unit, re.M).group(1))
    sock = listening_socket("127.0.0.1", backlog)    # loopback here, not 0.0.0.0

    def command(args):
        return [SCRIPT if a == INSTALLED else config if a == CONFIG else a for a in args]
    # Abstract, as tmp_path is root's alone and the master runs as www-data
    # (systemd's own /run/systemd/notify is open to every user).
    notify = Notifications(tmp_path, abstract=True)
    out = open(tmp_path / "server.log", "wb")
    proc = start(command(exec_start(unit)), [sock], notify=notify, stdout=out)
    try:
        assert notify.wait_for("READY=1")[0] == proc.pid
        page = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        assert requests.get(page).text == "home\n"
        with open(config, "a") as f:
            f.write('index = "other.html"\n')
        for args in exec_lines(unit, "ExecReload"):
            args = [str(proc.pid) if a == "$MAINPID" else a for a in command(args)]
            done = subprocess.run(args, capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stdout + done.stderr
        assert notify.wait_for("RELOADING=1")[0] == proc.pid
        assert notify.wait_for("READY=1")[0] == proc.pid
        assert requests.get(page).text == "other\n"
        kill = re.search(r"^KillSignal=(\w+)$", unit, re.M).group(1)
        proc.send_signal(getattr(signal, kill))
        assert notify.wait_for("STOPPING=1")[0] == proc.pid
        stop = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M).group(1))
        assert proc.wait(stop) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        out.close()
        notify.close()


@root_only
def test_logrotate_snippet_rotates_without_losing_the_server(open_dir, server_factory,
                                                             tmp_path):
    logrotate = shutil.which("logrotate") or shutil.which("logrotate", path="/usr/sbin")
    if logrotate is None:
        pytest.skip("logrotate is not installed (apt-get install logrotate)")
    site, logs = _site(open_dir)
    server = server_factory(site, "--config", rendered_config(open_dir, site, logs))
    access = os.path.join(logs, "access.log")
    assert requests.get(server.url + "/?before").status_code == 200
    wait_for(lambda: "?before" in open(access).read())
    snippet = logrotate_snippet().replace("/var/log/flashplug", logs).replace(
        "systemctl kill --signal=USR1 --kill-who=main flashplug.service",
        f"kill -USR1 {server.proc.pid}")
    conf = tmp_path / "flashplug.logrotate"
    conf.write_text(snippet)
    done = subprocess.run([logrotate, "--force", "--state", str(tmp_path / "state"),
                           str(conf)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "?before" in open(access + ".1").read()
    assert os.stat(access).st_uid == pwd.getpwnam("www-data").pw_uid
    assert requests.get(server.url + "/?after").status_code == 200
    wait_for(lambda: "?after" in open(access).read())
    assert "?after" not in open(access + ".1").read()


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

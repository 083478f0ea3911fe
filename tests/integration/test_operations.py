"""Running the server for others (issue 10, items 3 and 4).

Everything that can be checked is checked before workers are forked; a
worker that cannot start ends the master with its cause instead of being
restarted forever; SIGUSR1 reopens the logs (logrotate) and SIGHUP never
stops the server.
"""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests

from test_kernel_cli import assert_one_line_error

ARCHS = ("amped", "sped", "mt", "mp")


def serve(*args, cwd=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "flashplug", "serve", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("aaa\n")
    return root


@pytest.fixture
def failing_plugin(tmp_path):
    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "boom.py").write_text(textwrap.dedent("""
        from flashplug import hookimpl

        @hookimpl
        def flashplug_startup(app):
            raise RuntimeError("cannot reach the database")
    """))
    return folder


# -- item 3: checked before forking; a worker that cannot start -----------------------

@pytest.mark.parametrize("workers", ["1", "2"])
def test_access_log_in_a_missing_folder_is_one_error(root, workers):
    result = serve(root, "--port", "0", "--workers", workers,
                   "--access-log", "/nonexistent/x.log", timeout=10)
    assert result.returncode == 2
    assert_one_line_error(result, "--access-log /nonexistent/x.log", "mkdir -p /nonexistent")


def test_error_log_in_a_missing_folder_is_one_error(root):
    result = serve(root, "--port", "0", "--workers", "2",
                   "--error-log", "/nonexistent/e.log", timeout=10)
    assert_one_line_error(result, "--error-log /nonexistent/e.log", "does not exist")


def test_unwritable_access_log_is_one_error(root, tmp_path):
    # Root may write anywhere, so make the path a folder: not openable either way.
    (tmp_path / "logs" / "x.log").mkdir(parents=True)
    result = serve(root, "--port", "0", "--workers", "2",
                   "--access-log", tmp_path / "logs" / "x.log", timeout=10)
    assert_one_line_error(result, "cannot open for appending")


@pytest.mark.parametrize("flag", ["--access-log", "--error-log"])
def test_log_fifo_without_a_reader_is_one_error(root, tmp_path, flag):
    # Opening a FIFO for writing waits for a reader: the server sat silent
    # at start-up, before it listened, forever.
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    result = serve(root, "--port", "0", "--workers", "2", flag, fifo, timeout=10)
    assert result.returncode == 2
    assert_one_line_error(result, f"{flag} {fifo}: a FIFO that no process reads; "
                                  f"start its reader first")


def test_log_fifo_with_a_reader_gets_the_lines(root, tmp_path, server_factory):
    # The start-up check must not close the FIFO's only write end: its
    # reader would see end-of-file and leave, and the worker's own open
    # would then wait for a reader forever.
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    with open(tmp_path / "got.log", "wb") as out:
        reader = subprocess.Popen(["cat", str(fifo)], stdout=out)
    try:
        srv = server_factory(root, "--workers", "2", "--access-log", fifo)
        assert requests.get(srv.url + "/nothing-here", timeout=5).status_code == 404
        assert srv.stop() == 0
        reader.wait(10)
    finally:
        reader.kill()
    assert '"GET /nothing-here HTTP/1.1" 404 ' in (tmp_path / "got.log").read_text()


def test_failing_startup_hook_with_workers_ends_the_master(root, failing_plugin):
    result = serve(root, "--port", "0", "--workers", "2", "--plugins-dir", failing_plugin,
                   "--plugins", "boom", timeout=20)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("flashplug: error: workers keep dying at start-up")
    assert "plugin 'boom': RuntimeError: cannot reach the database" in last
    assert "Traceback" not in result.stderr
    # Each death is reported with its cause, and the master gave up after a few.
    assert 5 <= result.stderr.count("failed: plugin 'boom'") <= 8


def test_failing_startup_hook_with_one_worker_is_one_line(root, failing_plugin):
    result = serve(root, "--port", "0", "--plugins-dir", failing_plugin,
                   "--plugins", "boom", timeout=20)
    assert result.returncode == 1
    assert result.stderr == ("flashplug: error: plugin 'boom': RuntimeError: cannot reach "
                             f"the database at {failing_plugin / 'boom.py'}:6\n")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_failing_configure_hook_is_one_line(root, tmp_path, workers):
    # flashplug_configure runs in the master, after the privilege drop: a
    # plugin's mistake there (or a lazy import the user cannot read) is one
    # line naming the plugin, before any worker is forked.
    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "badconf.py").write_text(textwrap.dedent("""
        from flashplug import hookimpl

        @hookimpl
        def flashplug_configure(config):
            raise PermissionError("cannot read the templates")
    """))
    result = serve(root, "--port", "0", "--workers", workers, "--plugins-dir", folder,
                   "--plugins", "badconf", timeout=20)
    assert result.returncode == 1
    assert result.stderr == ("flashplug: error: plugin 'badconf': PermissionError: cannot read "
                             f"the templates at {folder / 'badconf.py'}:6\n")


def test_failing_startup_hook_traceback_at_debug_level(root, failing_plugin):
    result = serve(root, "--port", "0", "--plugins-dir", failing_plugin,
                   "--plugins", "boom", "--log-level", "debug", timeout=20)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "cannot reach the database" in result.stderr


def test_relative_log_paths_in_a_config_file_follow_the_file(root, tmp_path, server_factory):
    etc = tmp_path / "etc"
    (etc / "logs").mkdir(parents=True)
    cfg = etc / "site.toml"
    cfg.write_text('access_log = "logs/access.log"\nerror_log = "logs/error.log"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = server_factory(root, "--config", cfg)
    assert requests.get(server.url + "/a.txt").text == "aaa\n"
    assert wait_for(lambda: (etc / "logs" / "access.log").exists()
                    and "GET /a.txt" in (etc / "logs" / "access.log").read_text())
    assert (etc / "logs" / "error.log").exists()


# -- item 4: SIGUSR1 reopens the logs, SIGHUP never stops the server -----------------------

@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_usr1_reopens_and_hup_keeps_serving(root, tmp_path, server_factory, arch, workers):
    logs = tmp_path / "logs"
    logs.mkdir()
    access, errors = logs / "access.log", logs / "error.log"
    server = server_factory(root, "--arch", arch, "--workers", workers, "--procs", "2",
                            "--access-log", access, "--error-log", errors)
    assert requests.get(server.url + "/a.txt?before").status_code == 200
    assert wait_for(lambda: "?before" in access.read_text())

    os.rename(access, logs / "access.log.1")
    os.rename(errors, logs / "error.log.1")
    server.proc.send_signal(signal.SIGUSR1)
    # The renamed file gets no new lines once every process reopened: wait
    # for the new files to appear, and give the signal time to reach all.
    assert wait_for(access.exists)
    assert wait_for(errors.exists)
    time.sleep(0.5)
    server.proc.send_signal(signal.SIGHUP)
    for _ in range(4):  # reach every worker
        assert requests.get(server.url + "/a.txt?after").status_code == 200
    assert server.proc.poll() is None
    assert wait_for(lambda: "?after" in access.read_text())
    assert "?after" not in (logs / "access.log.1").read_text()
    assert "SIGUSR1: reopening the log files" in (logs / "error.log.1").read_text()
    # One process (--workers 1, mt) reloads only certificates, and says so;
    # a master reloads the whole configuration.
    single = arch == "mt" or (workers == "1" and arch != "mp")
    said = ("SIGHUP: configuration not reloaded: without a master process" if single
            else "configuration reloaded: ")
    assert wait_for(lambda: said in errors.read_text())
    assert server.stop() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_usr1_under_load_loses_no_line(root, tmp_path, server_factory, workers):
    """logrotate's way (rename, then SIGUSR1) three times while four clients
    keep requesting: the lines in all the files are exactly the requests."""
    logs = tmp_path / "logs"
    logs.mkdir()
    access = logs / "access.log"
    server = server_factory(root, "--workers", workers, "--access-log", access)
    done = threading.Event()
    answered, failures = [0] * 4, []

    def client(i):
        with requests.Session() as session:
            while not done.is_set():
                try:
                    r = session.get(f"{server.url}/a.txt?c{i}", timeout=10)
                    assert r.status_code == 200
                    answered[i] += 1
                except Exception as e:  # noqa: BLE001 - collected, asserted below
                    failures.append(repr(e))
    clients = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for c in clients:
        c.start()
    try:
        for n in range(1, 4):
            time.sleep(0.7)
            os.rename(access, logs / f"access.log.{n}")
            server.proc.send_signal(signal.SIGUSR1)
            assert wait_for(access.exists)
        time.sleep(0.7)
    finally:
        done.set()
        for c in clients:
            c.join()
    assert server.stop() == 0          # flushes what is buffered
    assert not failures, failures[:3]
    files = [access] + [logs / f"access.log.{n}" for n in range(1, 4)]
    lines = [f.read_text().count("\n") for f in files]
    assert sum(lines) == sum(answered), (lines, answered)
    assert all(lines), lines            # each file got its share

"""Shared fixtures: start a real `flashplug serve` process on a free port.

Integration tests talk to a real server process over loopback, as a client
would.  `server_factory(docroot, *args)` starts one and waits until it
accepts connections; it is stopped (SIGTERM) when the test ends.
"""
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # an older venv: only test_properties.py needs it (the test extra)
    settings = None
if settings is not None:
    # Property tests (tests/unit/test_properties.py): a quick profile for
    # every run, a long one for a soak of the parsers:
    #   FLASHPLUG_HYPOTHESIS=long python -m pytest tests/unit/test_properties.py
    settings.register_profile("ci", max_examples=150, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("long", max_examples=20000, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("FLASHPLUG_HYPOTHESIS", "ci"))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningServer:
    def __init__(self, proc, port, docroot, log_path):
        self.proc = proc
        self.port = port
        self.docroot = docroot
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    def log(self):
        """Everything the server printed so far (stdout and stderr)."""
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def connect(self, timeout=5):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return s

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def may_run_cgi(args):
    """Can the cgi plugin be on?  Named in an argument, or a config file
    may enable it.  Elsewhere ``--cgi-user`` would draw the warning for an
    option of a plugin that is off."""
    return any("cgi" in str(a) or str(a).endswith(".toml") for a in args)


def start_server(docroot, *args, tmp_path, env=None, wait=True, cgi_user="root",
                 preexec_fn=None, port=None):
    port = port or free_port()
    log_path = os.path.join(str(tmp_path), f"server-{port}.log")
    cmd = [sys.executable, "-m", "flashplug", "serve", str(docroot),
           "--port", str(port), *map(str, args)]
    if os.geteuid() == 0 and cgi_user and may_run_cgi(args) and not any(
            str(a).partition("=")[0] == "--cgi-user" for a in args):
        # CI runs as root, where scripts run as nobody by default; the
        # scripts tests write live under tmp_path, which only root may
        # enter.  A test of that default passes cgi_user=None.
        cmd += ["--cgi-user", cgi_user]
    if os.geteuid() == 0 and cgi_user and any("=spawn:" in str(a) for a in args) and not any(
            str(a).partition("=")[0] == "--fastcgi-user" for a in args):
        cmd += ["--fastcgi-user", cgi_user]     # likewise for spawn: backends
    logf = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                            cwd=str(tmp_path), env=env or os.environ.copy(),
                            preexec_fn=preexec_fn)
    logf.close()
    server = RunningServer(proc, port, docroot, log_path)
    if wait:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited {proc.returncode}:\n{server.log()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    server.stop()
                    raise RuntimeError(f"server did not start:\n{server.log()}")
                time.sleep(0.05)
    return server


@pytest.fixture
def server_factory(tmp_path):
    started = []

    def factory(docroot, *args, **kw):
        s = start_server(docroot, *args, tmp_path=tmp_path, **kw)
        started.append(s)
        return s

    yield factory
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def srv(root):
    """One server for a module's tests, over the module's own ``root``
    fixture, access log off (a module that wants other flags has its own
    ``srv``)."""
    server = start_server(root, "--access-log", "off", tmp_path=root.parent)
    yield server
    server.stop()


@pytest.fixture
def plugdir(tmp_path):
    """A --plugins-dir: ``plugdir(name, source)`` writes ``name.py`` (the
    source dedented) and gives the folder; ``plugdir.path`` is the folder."""
    folder = tmp_path / "plugs"
    folder.mkdir()

    def add(name, source):
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        return folder

    add.path = folder
    return add

"""Session 11's left-over behaviour faults, each proved on a real
`flashplug serve` (or `flashplug check`) process."""
import os
import socket
import subprocess
import sys
import time

import pytest
import requests


def flashplug(*args, cwd=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "flashplug", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


def raw(port, request, timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    return data


def status_of(data):
    return int(data.split(b" ", 2)[1])


# -- 8: an unknown plugin in the file's enable list names FILE:LINE --------

@pytest.mark.parametrize("text, where", [
    ('docroot = "www"\n[plugins]\nenable = ["cgi", "bogus"]\n', "site.toml:3: [plugins] enable"),
    ('docroot = "www"\n\nplugins = ["bogus"]\n', "site.toml:3: plugins"),
])
def test_an_unknown_plugin_in_the_file_names_its_line(tmp_path, text, where):
    (tmp_path / "www").mkdir()
    (tmp_path / "site.toml").write_text(text)
    for command in ("check", "serve"):
        result = flashplug(command, "--config", "site.toml", "--port", "0", cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.startswith(f"flashplug: error: {where}: unknown plugin 'bogus'; "
                                        f"installed plugins: "), result.stderr
        assert "autoindex, cgi" in result.stderr and result.stderr.count("\n") == 1


# -- 7: flashplug check's OK line counts the sites -------------------------

@pytest.mark.parametrize("sites, default, count", [
    (0, False, "1 site"), (2, False, "3 sites"), (2, True, "2 sites")])
def test_check_counts_the_sites(tmp_path, sites, default, count):
    (tmp_path / "www").mkdir()
    text = 'docroot = "www"\n'
    for n in range(sites):
        text += f'[[site]]\nnames = ["s{n}.example"]\nroot = "www"\n'
        if default and n == 0:
            text += "default = true\n"
    (tmp_path / "site.toml").write_text(text)
    result = flashplug("check", "--config", "site.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"site.toml: OK: {count}, serving {tmp_path / 'www'} on "), \
        result.stdout


# -- 2: a folder named x.php/ is a folder ---------------------------------

@pytest.fixture
def php_fpm(tmp_path):
    from tests.fcgi_backends import php_fpm_binary, start_php_fpm, stop
    if php_fpm_binary() is None:
        pytest.skip("php-fpm is not installed (apt-get install php-fpm)")
    proc, sock = start_php_fpm(tmp_path)
    yield sock
    stop(proc)


def folders_named_like_scripts(root, ext):
    (root / f"x{ext}").mkdir(parents=True)
    (root / f"x{ext}" / "index.html").write_text("the folder's index\n")
    (root / f"x{ext}" / "notes.txt").write_text("notes\n")
    (root / f"list{ext}").mkdir()
    (root / f"list{ext}" / "a.txt").write_text("a\n")
    os.mkfifo(root / f"fifo{ext}")


def check_folders(port, ext):
    get = lambda target: raw(port, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                             % target.encode())
    answer = get(f"/x{ext}/")
    assert status_of(answer) == 200 and answer.endswith(b"the folder's index\n"), answer[:300]
    answer = get(f"/x{ext}")
    assert status_of(answer) == 301 and f"\r\nLocation: /x{ext}/\r\n".encode() in answer
    answer = get(f"/x{ext}/notes.txt")
    assert status_of(answer) == 200 and answer.endswith(b"notes\n")
    answer = get(f"/list{ext}/?format=json")
    assert status_of(answer) == 200 and b'"name": "a.txt"' in answer
    assert status_of(get(f"/fifo{ext}")) == 403        # still: not a regular file
    assert status_of(get(f"/fifo{ext}/")) == 403
    assert status_of(get(f"/missing{ext}/")) == 404


def test_a_folder_named_x_php_is_served_as_a_folder(server_factory, tmp_path, php_fpm):
    root = tmp_path / "www"
    folders_named_like_scripts(root, ".php")
    (root / "real.php").write_text("<?php echo 'ran ', 6 * 7;")
    (root / "x.php" / "inner.php").write_text("<?php echo 'inner ran';")
    s = server_factory(root, "--plugins", "fastcgi,autoindex", "--fastcgi",
                       f".php=unix:{php_fpm}", "--access-log", "off")
    check_folders(s.port, ".php")
    # (A script's answer may come chunked or with a length: requests reads either.)
    answer = requests.get(f"http://127.0.0.1:{s.port}/real.php", timeout=10)
    assert answer.status_code == 200 and answer.text == "ran 42"
    answer = requests.get(f"http://127.0.0.1:{s.port}/x.php/inner.php", timeout=10)
    assert answer.status_code == 200 and answer.text == "inner ran"


def test_a_folder_named_x_cgi_is_served_as_a_folder(server_factory, tmp_path):
    root = tmp_path / "www"
    folders_named_like_scripts(root, ".cgi")
    script = root / "real.cgi"
    script.write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nran'\n")
    script.chmod(0o755)
    s = server_factory(root, "--plugins", "cgi,autoindex", "--cgi-ext", ".cgi",
                       "--access-log", "off")
    check_folders(s.port, ".cgi")
    answer = requests.get(f"http://127.0.0.1:{s.port}/real.cgi", timeout=10)
    assert answer.status_code == 200 and answer.text == "ran"


# -- 5: the proxy passes at most 10 103s, and bounds interim bytes --------

class ManyHintsUpstream:
    """Answers ``hints`` 103s (or 100s when ``status`` says so), then a 200."""

    def __init__(self, hints, status=103):
        from tests.proxy_upstreams import ThreadedUpstream, read_head

        outer = self

        class Upstream(ThreadedUpstream):
            def _serve(self, conn):
                conn.settimeout(5)
                try:
                    if read_head(conn) is None:
                        return
                    for n in range(outer.hints):
                        conn.sendall(b"HTTP/1.1 %d Interim\r\nLink: </%d.css>; rel=preload\r\n\r\n"
                                     % (outer.status, n))
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                    time.sleep(0.2)
                except OSError:
                    pass
                finally:
                    conn.close()
        self.hints, self.status = hints, status
        self.upstream = Upstream()
        self.address = self.upstream.address


def test_the_proxy_passes_at_most_ten_103s(server_factory, tmp_path):
    upstream = ManyHintsUpstream(30)
    s = server_factory(tmp_path, "--plugins", "proxy", "--proxy", f"/={upstream.address}",
                       "--log-level", "info")
    answer = raw(s.port, b"GET /page HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 103 ") == 10
    assert b"</9.css>" in answer and b"</10.css>" not in answer
    assert answer.endswith(b"hello") and b"HTTP/1.1 200 OK\r\n" in answer
    from tests.waiting import wait_for
    wait_for(lambda: "20 103 (Early Hints) responses past the first 10 dropped" in s.log(),
             what="the log line about the dropped 103s")


def test_endless_interim_responses_are_a_502(server_factory, tmp_path):
    upstream = ManyHintsUpstream(3000, status=100)    # ~130 KiB of 1xx heads
    s = server_factory(tmp_path, "--plugins", "proxy", "--proxy", f"/={upstream.address}")
    answer = raw(s.port, b"GET /page HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert status_of(answer) == 502, answer[:200]
    assert "bytes of interim (1xx) responses" in s.log()


# -- 6: a document root the spawn: backends' user cannot read is warned of --

@pytest.mark.skipif(os.geteuid() != 0, reason="spawn: backends change user only under root")
@pytest.mark.parametrize("mode, warned", [(0o700, "cannot search"), (0o711, "cannot read"),
                                          (0o755, None)])
def test_a_root_nobody_cannot_read_is_warned_of(tmp_path, mode, warned):
    import shutil
    import tempfile
    if shutil.which("php-cgi") is None:
        pytest.skip("php-cgi is not installed")
    outer = tempfile.mkdtemp(prefix="s11-reach-", dir="/tmp")   # /tmp: o+x all the way
    try:
        os.chmod(outer, 0o755)
        root = os.path.join(outer, "www")
        os.mkdir(root)
        os.chmod(root, mode)
        args = ("--plugins", "fastcgi", "--fastcgi", f".php=spawn:{shutil.which('php-cgi')}",
                "--fastcgi-user", "nobody")
        result = flashplug("check", root, *args)
        assert result.returncode == 0, result.stderr
        if warned is None:
            assert "fastcgi" not in result.stderr
        else:
            assert result.stderr.count("\n") == 1
            assert f"backends run as nobody, who {warned} {root}" in result.stderr
            assert "--fastcgi-user" in result.stderr and "chmod o+" in result.stderr
    finally:
        shutil.rmtree(outer)


# -- 1: a 100,000-entry listing does not stall the loop -------------------

def test_a_huge_listing_leaves_the_loop_responsive(server_factory, tmp_path):
    import threading
    root = tmp_path / "www"
    (root / "huge").mkdir(parents=True)
    for i in range(100_000):
        os.close(os.open(root / "huge" / f"file-{i:06d}.txt", os.O_CREAT | os.O_WRONLY))
    (root / "small.txt").write_text("small\n")
    s = server_factory(root, "--access-log", "off")
    small = b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    assert raw(s.port, small).endswith(b"small\n")            # cached from now on
    listing = {}

    def fetch():
        started = time.monotonic()
        listing["answer"] = raw(s.port, b"GET /huge/?format=json HTTP/1.1\r\nHost: t\r\n"
                                        b"Connection: close\r\n\r\n", timeout=60)
        listing["seconds"] = time.monotonic() - started
    thread = threading.Thread(target=fetch)
    thread.start()
    worst = 0.0
    while thread.is_alive():
        started = time.monotonic()
        assert raw(s.port, small).endswith(b"small\n")
        worst = max(worst, time.monotonic() - started)
        time.sleep(0.002)
    answer = listing["answer"]
    assert status_of(answer) == 200 and answer.count(b'"type": "file"') == 100_000
    # Before: the helper thread's rendering held the interpreter lock for
    # 300+ ms at a time (one sort, full garbage collections).
    assert worst < 0.12, f"a cached file took {worst * 1000:.0f} ms while the listing " \
                         f"was built ({listing['seconds']:.2f} s)"


# -- 4: %2F reaches a proxy's upstream, and 404s elsewhere ----------------

def test_encoded_slashes_go_to_the_upstream_only(server_factory, tmp_path):
    from tests.proxy_upstreams import RecordingUpstream
    upstream = RecordingUpstream()
    try:
        (tmp_path / "www" / "files").mkdir(parents=True)
        s = server_factory(tmp_path / "www", "--plugins", "proxy",
                           "--proxy", f"/api={upstream.address}",
                           "--proxy", f"/v2=http://{upstream.address[7:]}/inner/",
                           "--access-log", "off")

        def get(target):
            return status_of(raw(s.port, b"GET " + target +
                                 b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))

        def sent():
            return upstream.requests[-1].target
        assert get(b"/api/v4/projects/group%2Fproject?x=1") == 200
        assert sent() == b"/api/v4/projects/group%2Fproject?x=1"
        assert get(b"/api/v4/projects/g%2fp/../other%20one") == 200
        assert sent() == b"/api/v4/projects/other%20one"    # normalised, re-encoded
        assert get(b"/v2/a%2Fb") == 200
        assert sent() == b"/inner/a%2Fb"                    # the rewrite form too
        before = len(upstream.requests)
        assert get(b"/api/x%2F..%2F..%2Fadmin") == 400      # no climbing with %2F
        assert get(b"/api/%2F../../admin") == 400
        assert get(b"/api/a/../../x%2Fy") == 404            # out of the prefix: not proxied
        assert get(b"/files/a%2Fb") == 404                  # static: Apache's default
        assert get(b"/other%2Fapi/x") == 404                # no prefix: static
        assert len(upstream.requests) == before
    finally:
        upstream.stop()


# -- 3: a client that closes while a CGI script is silent ends the script --

def _silent_script(root, tmp_path):
    (root / "cgi-bin").mkdir(parents=True)
    script = root / "cgi-bin" / "slow.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/pid.$$\nsleep 3\n"
                      "printf 'Content-Type: text/plain\\r\\n\\r\\nlate\\n'\n")
    script.chmod(0o755)


def _script_pid(tmp_path):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [p for p in tmp_path.iterdir() if p.name.startswith("pid.")]
        if found and found[0].read_text().strip():
            pid = int(found[0].read_text())
            found[0].unlink()
            return pid
        time.sleep(0.02)
    raise AssertionError("the script did not start")


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_client_that_closes_ends_a_silent_script_at_once(server_factory, tmp_path):
    root = tmp_path / "www"
    _silent_script(root, tmp_path)
    s = server_factory(root, "--plugins", "cgi")
    c = socket.create_connection(("127.0.0.1", s.port))
    c.sendall(b"GET /cgi-bin/slow.sh HTTP/1.1\r\nHost: t\r\n\r\n")
    pid = _script_pid(tmp_path)
    c.close()
    closed = time.monotonic()
    while not _gone(pid) and time.monotonic() - closed < 3:
        time.sleep(0.01)
    # Before: about 1.2 s (the server's periodic sweep noticed it).
    assert time.monotonic() - closed < 0.5
    from tests.waiting import wait_for
    wait_for(lambda: "GET /cgi-bin/slow.sh: the client closed the connection before the "
                     "response began" in s.log(), what="the log line")


def test_a_half_closed_client_still_gets_the_answer(server_factory, tmp_path):
    root = tmp_path / "www"
    _silent_script(root, tmp_path)
    s = server_factory(root, "--plugins", "cgi")
    with socket.create_connection(("127.0.0.1", s.port), timeout=20) as c:
        c.sendall(b"GET /cgi-bin/slow.sh HTTP/1.1\r\nHost: t\r\n\r\n")
        c.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert data.endswith(b"late\n")

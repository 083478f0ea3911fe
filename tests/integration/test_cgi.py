"""The cgi plugin against a real `flashplug serve --plugins cgi` process.

Each test builds a document root in tmp_path with a copy of the sample
scripts from cgi-bin/ plus small scripts made for the case at hand.
"""
import concurrent.futures
import hashlib
import os
import shutil
import signal
import textwrap
import time

import pytest
import requests

from procfs import parent_of, zombies_of

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLES = os.path.join(REPO, "cgi-bin")
MB = 1 << 20


def script(directory, name, body, mode=0o755):
    path = os.path.join(str(directory), name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(body).lstrip())
    os.chmod(path, mode)
    return path


@pytest.fixture
def docroot(tmp_path):
    root = tmp_path / "www"
    shutil.copytree(SAMPLES, root / "cgi-bin")
    (root / "index.html").write_text("<h1>static</h1>\n")
    (root / "target.txt").write_text("the local redirect target\n")
    return root


@pytest.fixture
def serve(server_factory, docroot):
    def start(*args, **kw):
        return server_factory(docroot, "--plugins", "cgi", "--access-log", "off", *args, **kw)
    return start


def raw(server, request, timeout=10):
    """Send raw bytes, read until the server closes."""
    with server.connect(timeout) as s:
        s.sendall(request)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def env_of(text):
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):   # gone between open and read: ESRCH
        return False


def wait_dead(pids, within=5):
    deadline = time.monotonic() + within
    while any(pid_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_file(path, within=10):
    deadline = time.monotonic() + within
    while not (os.path.exists(path) and open(path).read().strip()):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.05)
    return open(path).read().split()


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024


# -- which paths are CGI --------------------------------------------------------------

def test_hello_sh(serve):
    s = serve()
    r = requests.get(s.url + "/cgi-bin/hello.sh")
    assert r.status_code == 200
    assert r.text == "Hello from /cgi-bin/hello.sh\n"
    assert r.headers["Content-Type"] == "text/plain"


def test_unfinished_body_is_chunked_for_http11(serve):
    s = serve()
    r = requests.get(s.url + "/cgi-bin/slow.py?n=3")
    assert r.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in r.headers
    assert r.text.count("line") == 3


def test_unfinished_body_is_delimited_by_close_for_http10(serve):
    s = serve()
    reply = raw(s, b"GET /cgi-bin/slow.py?n=3 HTTP/1.0\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"chunked" not in head.lower() and b"connection: close" in head.lower()
    assert body.count(b"line") == 3


def test_finished_small_body_gets_content_length(serve, docroot):
    # When the script is done by the time its headers are parsed, the
    # response goes out in one write with a length.  Whether it is done is
    # a race; on one core (the server pinned, its children inherit) the
    # short script nearly always finishes first, so a few tries settle it.
    script(docroot / "cgi-bin", "quick.sh", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\ndone'\n")
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})
    try:
        s = serve()
    finally:
        os.sched_setaffinity(0, saved)
    with requests.Session() as session:
        lengths = [session.get(s.url + "/cgi-bin/quick.sh").headers.get("Content-Length")
                   for _ in range(30)]
    assert "4" in lengths


def test_nested_script_and_path_info(serve, docroot):
    (docroot / "cgi-bin" / "sub").mkdir()
    script(docroot / "cgi-bin" / "sub", "x.sh", """
        #!/bin/sh
        printf 'Content-Type: text/plain\\n\\n%s|%s|%s\\n' "$SCRIPT_NAME" "$PATH_INFO" "$PATH_TRANSLATED"
        """)
    s = serve()
    r = requests.get(s.url + "/cgi-bin/sub/x.sh/a/b%20c")
    assert r.text == f"/cgi-bin/sub/x.sh|/a/b c|{docroot}/a/b c\n"


def test_non_executable_and_other_files_are_403_without_source(serve, docroot):
    script(docroot / "cgi-bin", "src.sh", "#!/bin/sh\necho SECRET_SOURCE\n", mode=0o644)
    os.mkfifo(docroot / "cgi-bin" / "fifo")
    s = serve()
    for path in ["/cgi-bin/src.sh", "/cgi-bin/src.sh/", "/cgi-bin/src.sh/x",
                 "/cgi-bin/fifo", "/cgi-bin/", "/cgi-bin"]:
        r = requests.get(s.url + path, allow_redirects=False)
        assert r.status_code == 403, path
        assert "SECRET_SOURCE" not in r.text
    for path in ["/cgi-bin/src.sh%20", "/cgi-bin/src.sh.", "/cgi-bin/src.sh%2F",
                 "/cgi-bin/missing", "/cgi-bin/hello.sh~"]:
        r = requests.get(s.url + path)
        assert r.status_code == 404, path
        assert "SECRET_SOURCE" not in r.text


def test_no_listing_of_cgi_dir_even_with_autoindex(server_factory, docroot):
    s = server_factory(docroot, "--plugins", "cgi,autoindex", "--access-log", "off")
    assert requests.get(s.url + "/").status_code == 200          # autoindex works
    r = requests.get(s.url + "/cgi-bin/")
    assert r.status_code == 403 and "hello.sh" not in r.text


def test_traversal_out_of_the_cgi_dir(serve, docroot, tmp_path):
    outside = script(tmp_path, "outside.sh", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nESCAPED'\n")
    os.symlink(outside, docroot / "cgi-bin" / "link.sh")
    s = serve()
    for path in ["/cgi-bin/../index.html", "/cgi-bin/%2e%2e/index.html"]:
        r = requests.get(s.url + path)     # normalised to a static file: not run
        assert r.status_code == 200 and r.text == "<h1>static</h1>\n"
    for target in [b"/cgi-bin/../../outside.sh", b"/cgi-bin/%2e%2e/%2e%2e/outside.sh"]:
        reply = raw(s, b"GET " + target + b" HTTP/1.0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400") and b"ESCAPED" not in reply
    r = requests.get(s.url + "/cgi-bin/link.sh")   # symlink out: refused by default
    assert r.status_code == 403 and "ESCAPED" not in r.text


def test_cgi_dir_option_and_shadow_url(server_factory, docroot):
    (docroot / "scripts").mkdir()
    script(docroot / "scripts", "a.sh", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nA:%s' \"$SCRIPT_NAME\"\n")
    s = server_factory(docroot, "--plugins", "cgi", "--cgi-dir", f"/run/={docroot}/scripts",
                       "--cgi-dir", "/cgi-bin/")
    assert requests.get(s.url + "/run/a.sh").text == "A:/run/a.sh"
    assert requests.get(s.url + "/cgi-bin/hello.sh").status_code == 200
    r = requests.get(s.url + "/scripts/a.sh")   # its source through the static handler
    assert r.status_code == 403 and "printf" not in r.text


def test_extension_mode(server_factory, docroot):
    script(docroot, "app.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n%s %s' \"$SCRIPT_NAME\" \"$PATH_INFO\"\n")
    script(docroot, "plain.cgi", "#!/bin/sh\necho SECRET_SOURCE\n", mode=0o644)
    s = server_factory(docroot, "--plugins", "cgi", "--cgi-ext", ".cgi,.py")
    assert requests.get(s.url + "/app.cgi/x").text == "/app.cgi /x"
    r = requests.get(s.url + "/plain.cgi")
    assert r.status_code == 403 and "SECRET_SOURCE" not in r.text
    assert requests.get(s.url + "/cgi-bin/env.py").status_code == 200
    assert requests.get(s.url + "/index.html").text == "<h1>static</h1>\n"


def test_repo_cgi_bin_served_from_the_repo_root(server_factory):
    s = server_factory(REPO, "--plugins", "cgi,autoindex", "--access-log", "off")
    r = requests.get(s.url + "/cgi-bin/hello.sh")
    assert r.status_code == 200 and r.text == "Hello from /cgi-bin/hello.sh\n"


# -- environment ------------------------------------------------------------------

def test_environment_rules(serve, docroot):
    env = os.environ.copy()
    env["FLASHPLUG_SECRET"] = "hunter2"
    s = serve(env=env)
    r = requests.get(s.url + "/cgi-bin/env.py/p/q?a=1&b=%20x", headers={
        "Proxy": "http://evil.example:3128", "Authorization": "Basic Zm9vOmJhcg==",
        "X-Multi": "one", "Cookie": "c=1"})
    e = env_of(r.text)
    for name, value in {
            "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "GET", "QUERY_STRING": "a=1&b=%20x",
            "SCRIPT_NAME": "/cgi-bin/env.py", "PATH_INFO": "/p/q",
            "PATH_TRANSLATED": f"{docroot}/p/q", "REMOTE_ADDR": "127.0.0.1",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(s.port),
            "SERVER_ADDR": "127.0.0.1", "REQUEST_URI": "/cgi-bin/env.py/p/q?a=1&b=%20x",
            "SCRIPT_FILENAME": f"{docroot}/cgi-bin/env.py", "DOCUMENT_ROOT": str(docroot),
            "HTTP_X_MULTI": "one", "HTTP_COOKIE": "c=1",
            "cwd": f"{docroot}/cgi-bin"}.items():
        assert e.get(name) == value, name
    assert e["SERVER_SOFTWARE"].startswith("flashplug/")
    assert int(e["REMOTE_PORT"]) > 0
    assert "HTTP_PROXY" not in e                     # httpoxy
    assert "HTTP_AUTHORIZATION" not in e
    assert "FLASHPLUG_SECRET" not in e and "hunter2" not in r.text
    assert "CONTENT_LENGTH" not in e and "argv" not in e


def test_empty_query_and_repeated_headers(serve):
    s = serve()
    reply = raw(s, b"GET /cgi-bin/env.py HTTP/1.0\r\nX-Rep: a\r\nX-Rep: b\r\n"
                   b"Proxy: x\r\n\r\n")
    e = env_of(reply.partition(b"\r\n\r\n")[2].decode())
    assert e["QUERY_STRING"] == "" and e["HTTP_X_REP"] == "a, b"
    assert e["SERVER_PROTOCOL"] == "HTTP/1.0" and "HTTP_PROXY" not in e


def test_pass_authorization_and_pass_env(serve):
    env = os.environ.copy()
    env["KEEP_ME"] = "kept"
    s = serve("--cgi-pass-authorization", "--cgi-pass-env", "KEEP_ME",
              "--cgi-pass-env", "MODE=test", env=env)
    e = env_of(requests.get(s.url + "/cgi-bin/env.py",
                            headers={"Authorization": "Bearer t"}).text)
    assert e["HTTP_AUTHORIZATION"] == "Bearer t"
    assert e["KEEP_ME"] == "kept" and e["MODE"] == "test"


def test_search_string_argv(serve):
    s = serve()
    e = env_of(requests.get(s.url + "/cgi-bin/env.py?one+two%20three").text)
    assert e["argv"] == "['one', 'two three']"
    assert "argv" not in env_of(requests.get(s.url + "/cgi-bin/env.py?a=b").text)
    assert "argv" not in env_of(requests.post(s.url + "/cgi-bin/env.py?one+two").text)


def test_child_sees_only_stdio(serve, docroot):
    # fstat probes open no descriptor of their own (listing /proc/self/fd
    # would), and Python has closed the script file before it runs it.
    script(docroot / "cgi-bin", "fds.py", """
        #!/usr/bin/env python3
        import os
        open_fds = []
        for fd in range(4096):
            try:
                os.fstat(fd)
                open_fds.append(fd)
            except OSError:
                pass
        print("Content-Type: text/plain\\n")
        print(*open_fds)
        """)
    s = serve()
    assert requests.get(s.url + "/cgi-bin/fds.py").text.split() == ["0", "1", "2"]


# -- request bodies ------------------------------------------------------------------

UPLOAD = """
    #!/usr/bin/env python3
    import hashlib, os, sys
    h, n = hashlib.sha256(), 0
    while True:
        data = sys.stdin.buffer.read(65536)
        if not data:
            break
        h.update(data)
        n += len(data)
    print("Content-Type: text/plain\\n")
    print(os.environ.get("CONTENT_LENGTH"), n, h.hexdigest())
    """


def test_post_form(serve):
    s = serve()
    r = requests.post(s.url + "/cgi-bin/form.py", data={"name": "Ann", "text": "<b>hi</b>"})
    assert r.status_code == 200
    assert "<b>name</b> = Ann" in r.text and "&lt;b&gt;hi&lt;/b&gt;" in r.text
    r = requests.get(s.url + "/cgi-bin/form.py?name=Bob")
    assert "<b>name</b> = Bob" in r.text


def test_post_plain_and_chunked(serve, docroot):
    script(docroot / "cgi-bin", "upload.py", UPLOAD)
    s = serve()
    body = b"hello world " * 1000
    digest = hashlib.sha256(body).hexdigest()
    r = requests.post(s.url + "/cgi-bin/upload.py", data=body)
    assert r.text.split() == [str(len(body)), str(len(body)), digest]
    r = requests.post(s.url + "/cgi-bin/upload.py", data=iter([body[:5000], body[5000:]]))
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.text.split() == [str(len(body)), str(len(body)), digest]


def test_body_over_the_limit_is_413(serve, docroot):
    script(docroot / "cgi-bin", "upload.py", UPLOAD)
    s = serve("--cgi-max-body", "1k")
    assert requests.post(s.url + "/cgi-bin/upload.py", data=b"x" * 2000).status_code == 413
    r = requests.post(s.url + "/cgi-bin/upload.py", data=iter([b"x" * 600, b"x" * 600]))
    assert r.status_code == 413
    assert requests.post(s.url + "/cgi-bin/upload.py", data=b"x" * 1000).status_code == 200


def test_ten_megabytes_each_way_with_flat_memory(serve, docroot):
    script(docroot / "cgi-bin", "upload.py", UPLOAD)
    script(docroot / "cgi-bin", "download.py", """
        #!/usr/bin/env python3
        import sys
        out = sys.stdout.buffer
        out.write(b"Content-Type: application/octet-stream\\n\\n")
        block = bytes(range(256)) * 256
        for _ in range(160):
            out.write(block)
        """)
    s = serve()
    pid = s.proc.pid
    requests.get(s.url + "/cgi-bin/hello.sh")
    before = proc_status(pid, "VmRSS")
    payload = os.urandom(10 * MB)
    digest = hashlib.sha256(payload).hexdigest()
    r = requests.post(s.url + "/cgi-bin/upload.py", data=payload)
    assert r.text.split() == [str(10 * MB), str(10 * MB), digest]
    pieces = (payload[i:i + 100_000] for i in range(0, len(payload), 100_000))
    r = requests.post(s.url + "/cgi-bin/upload.py", data=pieces)
    assert r.text.split() == [str(10 * MB), str(10 * MB), digest]
    r = requests.get(s.url + "/cgi-bin/download.py", stream=True)
    h, n = hashlib.sha256(), 0
    for chunk in r.iter_content(65536):
        h.update(chunk)
        n += len(chunk)
        if n < MB:
            time.sleep(0.01)   # a slow reader at first: the script must wait
    assert n == 10 * MB
    assert h.hexdigest() == hashlib.sha256((bytes(range(256)) * 256) * 160).hexdigest()
    grown = proc_status(pid, "VmHWM") - before
    assert grown < 8 * MB, f"server memory grew by {grown / MB:.1f} MB"


# -- responses ----------------------------------------------------------------------

def test_status_header(serve, docroot):
    script(docroot / "cgi-bin", "teapot.sh", "#!/bin/sh\nprintf 'Status: 418 Short and Stout\\r\\nContent-Type: text/plain\\r\\n\\r\\ntea'\n")
    s = serve()
    reply = raw(s, b"GET /cgi-bin/teapot.sh HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 418 Short and Stout\r\n") and reply.endswith(b"tea")


@pytest.mark.parametrize("name,body,cause", [
    ("crash.sh", "#!/bin/sh\necho dying >&2\nexit 3\n", "exit status 3"),
    ("garbage.sh", "#!/bin/sh\necho '<html>no headers</html>'\n", "malformed header"),
    ("notype.sh", "#!/bin/sh\nprintf 'X-A: 1\\n\\nbody'\n", "without Content-Type"),
    ("badstatus.sh", "#!/bin/sh\nprintf 'Status: OK\\nContent-Type: text/plain\\n\\n'\n", "malformed Status"),
    # The kernel's check for plugin headers (RFC 9110 §5.5): no response splitting.
    ("barecr.sh", "#!/bin/sh\nprintf 'Content-Type: text/plain\\nX-A: a\\rSet-Cookie: s=1\\n\\nhi'\n",
     "control character (CR"),
    ("nul.sh", "#!/bin/sh\nprintf 'Content-Type: text/plain\\nX-A: a\\000b\\n\\nhi'\n",
     "control character (NUL"),
    ("halfway.sh", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n'\n", "inside its header block"),
    ("noshebang.sh", "echo hi\n", "cannot run"),
    ("kill.sh", "#!/bin/sh\nkill -SEGV $$\n", "killed by signal 11"),
])
def test_failures_are_502_with_cause_in_log(serve, docroot, name, body, cause):
    script(docroot / "cgi-bin", name, body)
    s = serve()
    r = requests.get(s.url + "/cgi-bin/" + name)
    assert r.status_code == 502
    time.sleep(0.2)
    log = s.log()
    assert f"/cgi-bin/{name}" in log and cause in log, log


def test_stderr_goes_to_the_log_line_by_line(serve, docroot):
    script(docroot / "cgi-bin", "warn.sh", "#!/bin/sh\necho 'first problem' >&2\n"
           "echo 'second problem' >&2\nprintf 'Content-Type: text/plain\\n\\nok'\n")
    s = serve()
    assert requests.get(s.url + "/cgi-bin/warn.sh").text == "ok"
    time.sleep(0.2)
    lines = [line for line in s.log().splitlines() if "problem" in line]
    assert len(lines) == 2
    assert "/cgi-bin/warn.sh: first problem" in lines[0]
    assert "/cgi-bin/warn.sh: second problem" in lines[1]


@pytest.mark.parametrize("status,length,framed", [
    ("204 No Content", "5", False),   # the script from issue #13
    ("204 No Content", "0", False),
    ("304 Not Modified", "5", False),
    ("205 Reset Content", "5", True),
])
def test_no_content_status_gets_no_body_and_no_script_framing(serve, docroot, status,
                                                              length, framed):
    """RFC 9110 §8.6, §15.3.6; RFC 9112 §6.3: the script's Content-Length
    and body are dropped, whatever it says; the connection stays in step
    (the next pipelined answer is not preceded by a stray "hello")."""
    script(docroot / "cgi-bin", "nobody.sh", "#!/bin/sh\nprintf 'Status: %s\\r\\n"
           "Content-Length: %s\\r\\nContent-Type: text/plain\\r\\n\\r\\nhello'\n"
           % (status, length))
    s = serve()
    reply = raw(s, b"GET /cgi-bin/nobody.sh HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first, _, rest = reply.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 " + status.encode() + b"\r\n")
    head = first.lower()
    assert b"transfer-encoding" not in head
    if framed:
        assert b"\r\ncontent-length: 0" in head
    else:
        assert b"content-length" not in head
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"<h1>static</h1>\n")


def test_empty_document_needs_no_content_type(serve, docroot):
    script(docroot / "cgi-bin", "nocontent.sh", "#!/bin/sh\nprintf 'Status: 204 No Content\\n\\n'\n")
    s = serve()
    assert requests.get(s.url + "/cgi-bin/nocontent.sh").status_code == 204


def test_local_redirect(serve):
    s = serve()
    r = requests.get(s.url + "/cgi-bin/redirect.py?to=/target.txt", allow_redirects=False)
    assert r.status_code == 200 and r.text == "the local redirect target\n"
    r = requests.get(s.url + "/cgi-bin/redirect.py?to=/cgi-bin/env.py%3Fx%3D1", allow_redirects=False)
    e = env_of(r.text)
    assert e["SCRIPT_NAME"] == "/cgi-bin/env.py" and e["QUERY_STRING"] == "x=1"
    assert e["REQUEST_METHOD"] == "GET"


def test_local_redirect_after_post_becomes_get(serve):
    s = serve()
    r = requests.post(s.url + "/cgi-bin/redirect.py?to=/cgi-bin/env.py", data=b"x=1")
    e = env_of(r.text)
    assert e["REQUEST_METHOD"] == "GET" and "CONTENT_LENGTH" not in e


def test_local_redirect_loop_is_cut(serve, docroot):
    script(docroot / "cgi-bin", "loop.sh", "#!/bin/sh\nprintf 'Location: /cgi-bin/loop.sh\\n\\n'\n")
    s = serve()
    assert requests.get(s.url + "/cgi-bin/loop.sh").status_code == 500
    time.sleep(0.1)
    assert "local redirects" in s.log()


def test_client_redirect(serve, docroot):
    script(docroot / "cgi-bin", "away.sh", "#!/bin/sh\nprintf 'Location: https://example.org/x\\n\\n'\n")
    s = serve()
    r = requests.get(s.url + "/cgi-bin/away.sh", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "https://example.org/x"
    r = requests.get(s.url + "/cgi-bin/redirect.py?to=https://example.org/y", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "https://example.org/y"
    assert "Moved to" in r.text and r.headers["Content-Type"] == "text/html"


def test_nph_passes_through_unmodified(serve):
    s = serve()
    reply = raw(s, b"GET /cgi-bin/nph-hello.sh HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                     b"Hello from an NPH script\n")


def test_head_discards_the_body(serve):
    s = serve()
    with s.connect() as c:
        c.sendall(b"HEAD /cgi-bin/hello.sh HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /cgi-bin/hello.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    first, _, second = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200") and b"Content-Type: text/plain" in first
    assert second.startswith(b"HTTP/1.1 200")   # no body bytes between the two
    assert data.count(b"Hello from") == 1


def test_output_is_streamed_as_produced(serve):
    s = serve()
    r = requests.get(s.url + "/cgi-bin/slow.py?n=6", stream=True)
    arrivals = []
    for line in r.iter_lines(chunk_size=1):
        if line:
            arrivals.append(time.monotonic())
    assert len(arrivals) == 6
    assert arrivals[-1] - arrivals[0] > 0.35   # not buffered up to the end


# -- processes ------------------------------------------------------------------------

def test_timeout_is_504_and_kills_the_group(serve, docroot, tmp_path):
    pids = tmp_path / "pids"
    script(docroot / "cgi-bin", "hang.sh", f"#!/bin/sh\nsleep 60 &\necho $$ $! > {pids}\nwait\n")
    s = serve("--cgi-timeout", "0.5")
    t = time.monotonic()
    r = requests.get(s.url + "/cgi-bin/hang.sh")
    assert r.status_code == 504 and time.monotonic() - t < 5
    assert wait_dead([int(p) for p in wait_file(pids)])
    time.sleep(0.1)
    assert "no response header within 0.5s" in s.log()


def test_disconnect_kills_the_group(serve, docroot, tmp_path):
    pids = tmp_path / "pids"
    script(docroot / "cgi-bin", "forever.sh", f"""
        #!/bin/sh
        sleep 60 &
        echo $$ $! > {pids}
        printf 'Content-Type: text/plain\\n\\n'
        while :; do echo tick; sleep 0.05; done
        """)
    s = serve()
    c = s.connect()
    c.sendall(b"GET /cgi-bin/forever.sh HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"tick" in c.recv(65536) + c.recv(65536)
    procs = [int(p) for p in wait_file(pids)]
    assert all(pid_alive(p) for p in procs)
    c.close()
    assert wait_dead(procs)
    assert zombies_of(s.proc.pid) == []


def test_disconnect_before_headers_kills_the_group(serve, docroot, tmp_path):
    pids = tmp_path / "pids"
    script(docroot / "cgi-bin", "mute.sh", f"#!/bin/sh\nsleep 60 &\necho $$ $! > {pids}\nwait\n")
    s = serve()
    c = s.connect()
    c.sendall(b"GET /cgi-bin/mute.sh HTTP/1.1\r\nHost: x\r\n\r\n")
    procs = [int(p) for p in wait_file(pids)]
    c.close()
    assert wait_dead(procs)


def test_limit_queue_and_503(serve, docroot, tmp_path):
    script(docroot / "cgi-bin", "hold.sh", "#!/bin/sh\nsleep 1\nprintf 'Content-Type: text/plain\\n\\nheld'\n")
    s = serve("--cgi-max-procs", "1", "--cgi-queue", "1")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        first = pool.submit(requests.get, s.url + "/cgi-bin/hold.sh")
        time.sleep(0.3)
        queued = pool.submit(requests.get, s.url + "/cgi-bin/hello.sh")
        time.sleep(0.3)
        refused = requests.get(s.url + "/cgi-bin/hello.sh")
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert first.result().text == "held"
        assert queued.result().status_code == 200


def test_thousands_of_requests_leave_no_zombies_or_descriptors(serve):
    s = serve()
    pid = s.proc.pid

    def fds():
        return len(os.listdir(f"/proc/{pid}/fd"))

    def batch(n):
        with requests.Session() as session:
            for _ in range(n):
                assert session.get(s.url + "/cgi-bin/hello.sh").status_code == 200

    batch(5)
    time.sleep(0.2)
    before = fds()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(batch, [125] * 16))   # 2,000 requests, 16 at a time
    time.sleep(0.5)
    assert zombies_of(pid) == []
    assert fds() <= before


def test_a_killed_workers_scripts_die_with_it(serve, docroot, tmp_path):
    """Issue #13 fault 5: SIGKILL the worker running a script; the script
    and the child it forked must not live on, re-parented to init."""
    pids = tmp_path / "pids"
    script(docroot / "cgi-bin", "linger.sh", f"#!/bin/sh\nsleep 60 &\necho $$ $! > {pids}\nsleep 60\n")
    s = serve("--workers", "2")
    c = s.connect()
    c.sendall(b"GET /cgi-bin/linger.sh HTTP/1.1\r\nHost: x\r\n\r\n")
    procs = [int(p) for p in wait_file(pids)]
    worker = parent_of(procs[0])
    assert parent_of(worker) == s.proc.pid  # the script's parent is a worker
    os.kill(worker, signal.SIGKILL)
    try:
        assert wait_dead(procs), [p for p in procs if pid_alive(p)]
    finally:
        try:  # without the fix, do not leave the group running
            os.killpg(procs[0], signal.SIGKILL)
        except ProcessLookupError:
            pass
        c.close()
    # The master replaced the worker, and the server still runs scripts.
    assert requests.get(s.url + "/cgi-bin/hello.sh").status_code == 200


def test_shutdown_kills_running_scripts(serve, docroot, tmp_path):
    pids = tmp_path / "pids"
    script(docroot / "cgi-bin", "mute.sh", f"#!/bin/sh\nsleep 60 &\necho $$ $! > {pids}\nwait\n")
    s = serve("--grace", "0.5")
    c = s.connect()
    c.sendall(b"GET /cgi-bin/mute.sh HTTP/1.1\r\nHost: x\r\n\r\n")
    procs = [int(p) for p in wait_file(pids)]
    s.stop(signal.SIGTERM)
    c.close()
    assert wait_dead(procs)


# -- options ---------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["--cgi-timeout", "x"], "--cgi-timeout: expected a positive number of seconds, got 'x'"),
    (["--cgi-max-procs", "0"], "--cgi-max-procs: expected a positive integer, got '0'"),
    (["--cgi-queue", "-1"], "--cgi-queue: expected a non-negative integer, got '-1'"),
    (["--cgi-max-body", "lots"], "--cgi-max-body: expected a positive size"),
    (["--cgi-ext", "cgi"], "--cgi-ext: expected extensions like .cgi,.py, got 'cgi'"),
    (["--cgi-dir", "/x/=/no/such/dir"], "is not a directory"),
    (["--cgi-dir", "x"], "--cgi-dir: expected URLPREFIX[=PATH]"),
])
def test_bad_options(server_factory, docroot, args, message):
    with pytest.raises(RuntimeError) as info:
        server_factory(docroot, "--plugins", "cgi", *args)
    assert message in str(info.value)


def test_bad_cgi_ext_is_refused_with_cgi_off(server_factory, docroot):
    # The kernel refuses --cgi-ext files while cgi is off: "cgi" unchecked
    # would have refused every file ending in those letters ("magic").
    with pytest.raises(RuntimeError) as info:
        server_factory(docroot, "--plugins", "none", "--cgi-ext", ".py,cgi")
    assert "--cgi-ext: expected extensions like .cgi,.py, got 'cgi'" in str(info.value)


def test_config_file_section(server_factory, docroot, tmp_path):
    conf = tmp_path / "flashplug.toml"
    conf.write_text('[plugins.cgi]\ntimeout = 0.5\nmax-procs = 2\next = [".cgi"]\n')
    script(docroot / "cgi-bin", "hang.sh", "#!/bin/sh\nsleep 5\n")
    script(docroot, "top.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\ntop'\n")
    s = server_factory(docroot, "--plugins", "cgi", "--config", conf)
    assert requests.get(s.url + "/top.cgi").text == "top"
    assert requests.get(s.url + "/cgi-bin/hang.sh").status_code == 504

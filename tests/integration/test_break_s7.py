"""Faults found in the seventh session by using flashplug as a new user and
as an attacker would: CGI (RFC 3875), HTTP/2 (RFC 9113, h2spec's cases),
HTTPS set-up mistakes.  Each test failed before its fix, against a real
``flashplug serve``."""
import os
import subprocess
import sys

import pytest

h2 = pytest.importorskip("h2")
import h2.errors  # noqa: E402
from hyperframe.frame import HeadersFrame  # noqa: E402

from tests.h2_client import H2Client  # noqa: E402
from tests.tls_certs import ca, site, write_pair  # noqa: E402,F401

PROTOCOL_ERROR = h2.errors.ErrorCodes.PROTOCOL_ERROR
COMPRESSION_ERROR = h2.errors.ErrorCodes.COMPRESSION_ERROR


# NPH scripts (printf formats), for HTTP/2 clients.
NPH = {
    "nph-lf.sh": r"HTTP/1.0 201 Made\nContent-Type: text/plain\nX-A: b\n\nlf only\n",
    "nph-two.sh": r"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                  r"HTTP/1.1 200 OK\r\nX-Smuggled: 1\r\n\r\n",
    "nph-bad.sh": r"garbage\n",
    "nph-chunked.sh": r"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      r"5\r\nhello\r\n0\r\n\r\n",
}

# A plugin whose raw response (as an NPH script's) ends inside its head.
RAW_PLUGIN = """
from flashplug import Response, Route, hookimpl

async def stream():
    yield b"HTTP/1.1 200 OK\\r\\nX-A: b\\r\\n"

async def handler(request):
    return Response(200, stream=stream(), raw=True)

@hookimpl
def flashplug_routes(config):
    return [Route(prefix="/raw/", handler=handler)]
"""


@pytest.fixture(scope="module")
def h2c(tmp_path_factory):
    from conftest import start_server
    root = tmp_path_factory.mktemp("break_s7") / "root"
    (root / "cgi-bin").mkdir(parents=True)
    (root / "index.html").write_bytes(b"<h1>home</h1>\n")
    scripts = {
        "echo.sh": '#!/bin/sh\nprintf "Content-Type: text/plain\\n\\n"\n'
                   'echo "CONTENT_LENGTH=${CONTENT_LENGTH-unset}"\ncat\n',
        "deaf.sh": '#!/bin/sh\nprintf "Content-Type: text/plain\\n\\nnot read\\n"\n',
        **{name: "#!/bin/sh\nprintf '%s'\n" % out for name, out in NPH.items()},
    }
    for name, text in scripts.items():
        script = root / "cgi-bin" / name
        script.write_text(text)
        script.chmod(0o755)
    plugins = root.parent / "plugins"
    plugins.mkdir()
    (plugins / "rawhead.py").write_text(RAW_PLUGIN)
    server = start_server(root, "--h2c", "--plugins", "cgi,rawhead", "--plugins-dir", plugins,
                          tmp_path=root.parent)
    yield server
    server.stop()


def post(client, length, body, end=True):
    """A POST to the echo script announcing ``content-length: length``."""
    sid = client.h2.get_next_available_stream_id()
    client.h2.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"),
                                 (b":path", b"/cgi-bin/echo.sh"),
                                 (b":authority", b"localhost"),
                                 (b"content-length", str(length).encode())],
                           end_stream=not body and end)
    if body:
        client.h2.send_data(sid, body, end_stream=end)
    client.flush()
    return sid


def assert_still_serves(client):
    status, _, body = client.get("/index.html")
    assert (status, body) == (200, b"<h1>home</h1>\n")


# -- RFC 9113 §8.1.1: a content-length the DATA frames do not match is a malformed
#    request, a stream error; h2 made it a connection error, which ended every other
#    request on the connection (nginx resets the stream only) --------------------------

@pytest.mark.parametrize("length, body", [(1, b"xyz"), (5, b"xyz")])
def test_content_length_mismatch_resets_only_its_stream(h2c, length, body):
    client = H2Client(h2c.port)
    assert client.response(post(client, length, body))[0] == ("reset", PROTOCOL_ERROR)
    assert_still_serves(client)
    status, _, got = client.response(post(client, 3, b"xyz"))
    assert (status, got) == (200, b"CONTENT_LENGTH=3\nxyz")
    client.close()
    assert "Traceback" not in h2c.log()


def test_content_length_with_no_data_is_malformed(h2c):
    # END_STREAM on the HEADERS frame: the script would have been told
    # CONTENT_LENGTH=3 and given nothing on its standard input.
    client = H2Client(h2c.port)
    assert client.response(post(client, 3, b""))[0] == ("reset", PROTOCOL_ERROR)
    assert_still_serves(client)
    client.close()


# -- A script that answers without reading a large POST, over HTTP/2: the
#    rest of the body was refused with RST_STREAM(NO_ERROR) at once, which curl
#    and httpx report as a failed request although the response was whole ---------

def upload(client, path, size, headers=()):
    """POST ``size`` bytes as flow control allows; every event on the way."""
    import h2.events
    sid = client.request(path, method="POST", end=False,
                         headers=[("content-length", str(size)), *headers])
    sent, events = 0, []
    while sent < size and not client.closed:
        window = min(client.h2.local_flow_control_window(sid), 16384, size - sent)
        if window > 0:
            client.h2.send_data(sid, b"x" * window, end_stream=sent + window == size)
            client.flush()
            sent += window
            continue
        events += client.pump()
        if any(isinstance(e, h2.events.StreamReset) for e in events):
            break
    while not any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))
                  and e.stream_id == sid for e in events) and not client.closed:
        events += client.pump()
    return sid, sent, events


def test_an_unread_request_body_is_drained_not_reset(h2c):
    import h2.events
    client = H2Client(h2c.port)
    sid, sent, events = upload(client, "/cgi-bin/deaf.sh", 1_000_000)
    assert sent == 1_000_000
    assert not [e for e in events if isinstance(e, h2.events.StreamReset)]
    body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert body == b"not read\n"
    client.events = []
    assert_still_serves(client)
    client.close()


def test_a_body_never_sent_for_100_continue_is_still_reset(h2c):
    # The static handler answers 405 at once; the client, waiting for
    # "100 Continue", is told not to send (RST_STREAM NO_ERROR).
    client = H2Client(h2c.port)
    sid = client.request("/index.html", method="POST", end=False,
                         headers=[("content-length", "5"), ("expect", "100-continue")])
    status, _, _ = client.response(sid)
    assert status == 405
    while not any(getattr(e, "stream_id", None) == sid and
                  getattr(e, "error_code", None) == 0 for e in client.events):
        client.pump()
        assert not client.closed
    assert_still_serves(client)
    client.close()


# -- NPH scripts over HTTP/2: their HTTP/1.x head was translated by looking for
#    CRLF CRLF (an LF-only head, or none, hung the stream until the client gave up),
#    and the body was relayed as is (past its Content-Length, or still chunked) -------

def test_nph_heads_are_parsed_for_http2(h2c):
    client = H2Client(h2c.port)
    status, headers, body = client.get("/cgi-bin/nph-lf.sh")
    assert (status, headers[b"x-a"], body) == (201, b"b", b"lf only\n")
    status, headers, body = client.get("/cgi-bin/nph-two.sh")
    assert (status, headers[b"content-length"], body) == (200, b"2", b"ok")
    for bad in ("/cgi-bin/nph-bad.sh", "/cgi-bin/nph-chunked.sh"):
        assert client.get(bad)[0] == 502, bad
    assert_still_serves(client)
    client.close()
    assert "a chunked NPH body cannot be relayed over HTTP/2" in h2c.log()


def test_a_raw_response_that_ends_inside_its_head_resets_its_stream(h2c):
    client = H2Client(h2c.port)
    assert client.get("/raw/")[0] == ("reset", h2.errors.ErrorCodes.INTERNAL_ERROR)
    assert_still_serves(client)
    client.close()


# -- RFC 9113 §8.1: trailers must not hold pseudo-header fields (h2spec 8.1.2.1) -----

def test_pseudo_header_in_trailers_resets_the_stream(h2c):
    client = H2Client(h2c.port)
    sid = post(client, 1, b"x", end=False)
    client.h2.send_headers(sid, [(b":path", b"/")], end_stream=True)
    client.flush()
    assert client.response(sid)[0] == ("reset", PROTOCOL_ERROR)
    assert_still_serves(client)
    client.close()


# -- RFC 9113 §4.3: a field block that does not decode is COMPRESSION_ERROR
#    (h2spec 4.3, hpack 2.3.3, 4.2, 6.3); h2 said PROTOCOL_ERROR -----------------------

@pytest.mark.parametrize("block", [
    b"\xbf\x7f",                  # an index past the dynamic table
    b"\xff\xff\xff\xff\xff",      # an integer that never ends
    b"\x3f\xe1\xff\x03",          # a table size update over SETTINGS_HEADER_TABLE_SIZE
    b"\x82\x20",                  # a table size update after a field
])
def test_undecodable_field_block_is_a_compression_error(h2c, block):
    client = H2Client(h2c.port)
    frame = HeadersFrame(1, block, flags=["END_HEADERS", "END_STREAM"])
    client.send_raw(frame.serialize())
    found = client.goaway()
    client.close()
    assert found is not None and found[0] == COMPRESSION_ERROR, found
    assert "Traceback" not in h2c.log()


# -- HTTPS set-up mistakes: one line that names the file and the fix ----------------

def _serve_error(root, cert, key):
    proc = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(root), "--port",
                           "0", "--tls-cert", str(cert), "--tls-key", str(key)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("flashplug: error: ") and proc.stderr.count("\n") == 1, \
        proc.stderr
    return proc.stderr


def test_a_key_of_another_algorithm_is_named_as_the_wrong_key(site, tmp_path):
    # trustme's certificate is ECDSA; an RSA key made OpenSSL say only
    # "NO_CERTIFICATE_ASSIGNED", not that the key was not the certificate's.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    root, cert, _, _ = site
    rsa_key = tmp_path / "rsa.key"
    rsa_key.write_bytes(rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    os.chmod(rsa_key, 0o600)
    error = _serve_error(root, cert, rsa_key)
    assert f"--tls-key {rsa_key} is not the key of --tls-cert {cert}" in error
    assert "openssl x509" in error


def test_swapped_and_wrong_files_are_named(site, tmp_path):
    root, cert, key, _ = site
    assert "are swapped" in _serve_error(root, key, cert)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert f"--tls-cert {junk} holds no PEM certificate" in _serve_error(root, junk, key)
    error = _serve_error(root, cert, cert)
    assert f"--tls-key {cert} holds no PEM private key" in error
    assert "permissions" not in error        # the warning does not come before the error
    assert "is a folder" in _serve_error(root, cert.parent, key)


# -- CLI: a plugin's option while that plugin is off did nothing, silently --------------

def test_option_of_a_plugin_that_is_off_is_a_warning_with_the_fix(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    s = server_factory(root, "--plugins", "autoindex,autoindex", "--cgi-timeout", "5")
    out = s.log()
    assert ("flashplug: warning: --cgi-timeout is an option of the cgi plugin, which is off, "
            "so it does nothing; enable it: --plugins autoindex,cgi") in out
    assert "(plugins: autoindex)" in out          # named twice, enabled once
    s.stop()
    # --cgi-ext does something while cgi is off (its files are refused),
    # and says so in its own warning.
    s = server_factory(root, "--cgi-ext", ".py", cgi_user=None)
    assert "is an option of the cgi plugin" not in s.log()
    assert "--cgi-ext .py is given but the cgi plugin is off" in s.log()
    s.stop()
    # The kernel's --proxy-protocol is not the proxy plugin's option.
    s = server_factory(root, "--plugins", "cgi", "--proxy-protocol")
    assert "warning" not in s.log()


# -- --cgi-ext: an editor's copy of a script is its source (lighttpd's default
#    url.access-deny = ("~", ".inc")); it was served as a document -------------------

def test_backup_copies_of_extension_scripts_are_refused(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    script = b'#!/bin/sh\nprintf "Content-Type: text/plain\\n\\nran\\n"\n'
    for name in ("app.py", "app.py~", "#app.py#", "app.py.bak", "app.py.orig", "notes.txt~"):
        (root / name).write_bytes(script)
        (root / name).chmod(0o755)
    s = server_factory(root, "--plugins", "cgi", "--cgi-ext", ".py")
    for path, want in (("/app.py", b"200"), ("/app.py~", b"403"), ("/%23app.py%23", b"403"),
                       ("/app.py.bak", b"403"), ("/app.py.orig", b"403"),
                       ("/app.py%7E", b"403"), ("/notes.txt~", b"200")):
        response = _closing_get(s, path)
        assert response.split(b" ")[1] == want, (path, response)
        assert (b"#!/bin/sh" in response) == (path == "/notes.txt~"), (path, response)


def _closing_get(server, path):
    """The whole response to a GET of ``path`` that closes the connection."""
    with server.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return b"".join(iter(lambda: sock.recv(65536), b""))


def test_backup_copies_of_fastcgi_scripts_are_refused(server_factory, tmp_path):
    # --fastcgi .php: the route runs index.php, but index.php~ reached the
    # static handler and went out as the PHP source (nginx does the same).
    root = tmp_path / "root"
    root.mkdir()
    source = b"<?php echo 'secret'; ?>\n"
    for name in ("index.php~", "index.php.bak", "#index.php#", "INDEX.PHP.SWP", "notes.txt~"):
        (root / name).write_bytes(source)
    s = server_factory(root, "--fastcgi", ".php=127.0.0.1:9", "--plugins", "none")
    for path, want in (("/index.php~", b"403"), ("/index.php.bak", b"403"),
                       ("/%23index.php%23", b"403"), ("/INDEX.PHP.SWP", b"403"),
                       ("/notes.txt~", b"200")):
        response = _closing_get(s, path)
        assert response.split(b" ")[1] == want, (path, response)
        assert (b"<?php" in response) == (path == "/notes.txt~"), (path, response)

# -- docs/plugins.md "A plugin from nothing": the response shown is the one you get
#    (it said Content-Length: 11 for the 12 bytes of "Hello, you!\n") -----------------

def test_the_hello_plugin_of_the_guide_answers_as_shown(server_factory, tmp_path):
    import re
    import requests
    guide = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "plugins.md"),
                 encoding="utf-8").read()
    module = re.search(r"### 3\. The module\n\n```python\n(.*?)```", guide, re.S).group(1)
    shown = re.search(r"### 4\. Try it\n.*?```\n(HTTP/1\.1.*?)```", guide, re.S).group(1)
    head, _, body = shown.partition("\n\n")
    (tmp_path / "myplugins").mkdir()
    (tmp_path / "myplugins" / "hello.py").write_text(module)
    root = tmp_path / "root"
    root.mkdir()
    s = server_factory(root, "--plugins-dir", tmp_path / "myplugins", "--plugins", "hello")
    r = requests.get(f"http://127.0.0.1:{s.port}/hello/you")
    assert head.splitlines()[0] == f"HTTP/1.1 {r.status_code} {r.reason}"
    for line in head.splitlines()[1:]:
        name, _, value = line.partition(": ")
        assert value == "..." or r.headers[name] == value, line
    assert r.content.decode() == body


# -- http.server's own flags: `--protocol HTTP/1.1` was answered "did you mean
#    --proxy-protocol?", a different and harmful setting for a direct server ---------

@pytest.mark.parametrize("flag, advice", [
    ("--protocol", "always speaks HTTP/1.1"),
    ("--tls-password-file", "openssl pkey"),
])
def test_http_server_flags_get_advice_not_a_close_match(tmp_path, flag, advice):
    proc = subprocess.run([sys.executable, "-m", "flashplug", "serve", str(tmp_path), flag,
                           "x"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"flashplug: error: {flag} is python -m http.server's; ")
    assert advice in proc.stderr and "did you mean" not in proc.stderr
    assert proc.stderr.count("\n") == 1

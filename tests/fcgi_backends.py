"""FastCGI backends for tests: the real ones (php-fpm, php-cgi, flup) and a
scripted one that misbehaves on purpose.

The real programs come from Debian (``php-fpm``, ``php-cgi``) and PyPI
(``flup``); CI installs them (``.ci/run``).  The scripted backend speaks
FastCGI with the plugin's own codec, in a thread, and records every record
type it receives, so a test can see an ``FCGI_ABORT_REQUEST`` arrive.
"""
import glob
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time

from flashplug_plugins.fastcgi import protocol as fcgi


def php_fpm_binary():
    found = sorted(glob.glob("/usr/sbin/php-fpm*"))
    return found[-1] if found else None


def wait_for_socket(path_or_port, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"backend exited with status {proc.returncode}")
        try:
            if isinstance(path_or_port, int):
                socket.create_connection(("127.0.0.1", path_or_port), 0.5).close()
            else:
                s = socket.socket(socket.AF_UNIX)
                s.connect(path_or_port)
                s.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"backend did not listen on {path_or_port}")
            time.sleep(0.05)


def start_php_fpm(tmp_path, children=4, max_requests=0):
    """php-fpm in the foreground with a pool of its own on a Unix socket in
    ``tmp_path``; returns ``(process, socket_path)``.  ``max_requests`` is
    the pool's ``pm.max_requests`` (a child exits after that many)."""
    sock = os.path.join(str(tmp_path), "php-fpm.sock")
    conf = os.path.join(str(tmp_path), "php-fpm.conf")
    with open(conf, "w") as f:
        f.write(textwrap.dedent(f"""\
            [global]
            error_log = {tmp_path}/php-fpm.log
            daemonize = no
            [app]
            listen = {sock}
            pm = static
            pm.max_children = {children}
            pm.max_requests = {max_requests}
            catch_workers_output = yes
            php_admin_value[post_max_size] = 200M
            php_admin_value[upload_max_filesize] = 200M
            php_admin_value[output_buffering] = 0
            """))
    cmd = [php_fpm_binary(), "-F", "-y", conf, "-c", "/dev/null"]
    if os.geteuid() == 0:
        cmd.insert(1, "-R")   # php-fpm refuses to run as root without it
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_socket(sock, proc)
    return proc, sock


def start_php_cgi(port):
    """``php-cgi -b 127.0.0.1:PORT`` with two children of its own."""
    env = dict(os.environ, PHP_FCGI_CHILDREN="2", PHP_FCGI_MAX_REQUESTS="0")
    proc = subprocess.Popen([shutil.which("php-cgi"), "-b", f"127.0.0.1:{port}",
                             "-d", "output_buffering=0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_socket(port, proc)
    return proc


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


FLUP_APP = '''\
"""A WSGI app served over FastCGI by flup (a test backend)."""
import sys
import time
from flup.server.fcgi import WSGIServer


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/sleep":
        time.sleep(0.3)
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"x" * 65536 for _ in range(64))
    body = environ["wsgi.input"].read()
    text = "script_name=%s path_info=%s query=%s method=%s body=%d proxy=%s\\n" % (
        environ.get("SCRIPT_NAME"), path, environ.get("QUERY_STRING"),
        environ.get("REQUEST_METHOD"), len(body), environ.get("HTTP_PROXY", "-"))
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Set-Cookie", "flup=1; Path=/")])
    return [text.encode()]


if __name__ == "__main__":
    # With a path: listen there; without: on descriptor 0, as a web server
    # that spawns us (FCGI_LISTENSOCK_FILENO) arranges.
    bind = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-" else None
    multiplexed = sys.argv[2:] == ["multiplexed"]
    WSGIServer(app, bindAddress=bind, multithreaded=True, multiplexed=multiplexed).run()
'''


def write_flup_app(directory):
    path = os.path.join(str(directory), "flup_app.py")
    with open(path, "w") as f:
        f.write(FLUP_APP)
    return path


def start_flup(tmp_path, app_path, multiplexed=False):
    sock = os.path.join(str(tmp_path), "flup.sock")
    proc = subprocess.Popen([sys.executable, app_path, sock,
                             *(["multiplexed"] if multiplexed else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_socket(sock, proc)
    return proc, sock


class ScriptedBackend:
    """A FastCGI application on a Unix socket that behaves as told.

    ``mode``:
      * ``"garbage"``: answers every connection with an HTTP response;
      * ``"stream"``: sends a header block, then 16 KiB every 10 ms until
        the request is aborted or the connection closes;
      * ``"hello"``: answers each request after 0.2 s with a short body,
        on the same connection (keep-alive), one after the other even when
        several are multiplexed on it;
      * ``"cut"``: once the request is in, sends a header block and half
        of a STDOUT record, then closes the connection;
      * ``"deaf"``: reads the request's first 64 KiB, then nothing more
        (nor answers) until the connection closes: a backend that takes
        no request body.

    ``values`` is its GET_VALUES answer.  ``seen`` lists the type of every
    record received, in order; ``most_at_once`` the most requests that were
    in progress at the same time.
    """

    def __init__(self, path, mode, values=(("FCGI_MPXS_CONNS", "0"),)):
        self.path = path
        self.mode = mode
        self.values = list(values)
        self.seen = []
        self.busy = 0
        self.most_at_once = 0
        self.connections = 0
        self.request_ids = set()
        self._lock = threading.Lock()
        self.aborted = threading.Event()
        self.closed = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(path)
        self._listener.listen(16)
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self._stop = True
        self.closed.set()
        self._listener.close()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        reader = fcgi.RecordReader()
        started = threading.Event()
        state = {"id": None, "abort": False}

        def read():
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.closed.set()
                    state["abort"] = True
                    started.set()
                    return
                for rec in reader.feed(data):
                    self.seen.append(rec.type)
                    if rec.type == fcgi.BEGIN_REQUEST:
                        state["id"] = rec.request_id
                    elif rec.type == fcgi.GET_VALUES:
                        conn.sendall(fcgi.encode_record(fcgi.GET_VALUES_RESULT, 0,
                                                        fcgi.encode_pairs(self.values)))
                    elif rec.type == fcgi.STDIN and not rec.content:
                        started.set()
                    elif rec.type == fcgi.ABORT_REQUEST:
                        state["abort"] = True
                        self.aborted.set()

        if self.mode == "hello":
            self._hello(conn, reader)
            return
        if self.mode == "deaf":
            for rec in reader.feed(conn.recv(65536)):
                if rec.type == fcgi.GET_VALUES:
                    conn.sendall(fcgi.encode_record(fcgi.GET_VALUES_RESULT, 0,
                                                    fcgi.encode_pairs(self.values)))
                    conn.close()
                    return
            self.closed.wait(60)   # set by close(), when the test is over
            conn.close()
            return
        threading.Thread(target=read, daemon=True).start()
        try:
            started.wait(10)
            rid = state["id"]
            if rid is None:
                return
            if self.mode == "garbage":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
                return
            if self.mode == "cut":
                conn.sendall(fcgi.encode_stream(fcgi.STDOUT, rid,
                                                b"Content-Type: text/plain\r\n\r\nstart")
                             + fcgi.encode_stream(fcgi.STDOUT, rid, b"z" * 1000)[:500])
                conn.shutdown(socket.SHUT_RDWR)   # the reading thread holds it open
                return
            conn.sendall(fcgi.encode_stream(fcgi.STDOUT, rid,
                                            b"Content-Type: text/plain\r\n\r\n"))
            while not state["abort"]:
                conn.sendall(fcgi.encode_stream(fcgi.STDOUT, rid, b"y" * 16384))
                time.sleep(0.01)
            conn.sendall(fcgi.encode_end_request(rid))
        except OSError:
            pass
        finally:
            time.sleep(0.2)
            conn.close()

    def _hello(self, conn, reader):
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                for rec in reader.feed(data):
                    self.seen.append(rec.type)
                    if rec.type == fcgi.GET_VALUES:
                        conn.sendall(fcgi.encode_record(fcgi.GET_VALUES_RESULT, 0,
                                                        fcgi.encode_pairs(self.values)))
                        return
                    if rec.type == fcgi.BEGIN_REQUEST:
                        self.request_ids.add(rec.request_id)
                    if rec.type == fcgi.STDIN and not rec.content:
                        with self._lock:
                            self.busy += 1
                            self.most_at_once = max(self.most_at_once, self.busy)
                        time.sleep(0.2)
                        with self._lock:
                            self.busy -= 1
                        conn.sendall(fcgi.encode_stream(
                            fcgi.STDOUT, rec.request_id,
                            b"Content-Type: text/plain\r\n\r\nhello\n")
                            + fcgi.encode_record(fcgi.STDOUT, rec.request_id)
                            + fcgi.encode_end_request(rec.request_id))
        except OSError:
            pass
        finally:
            conn.close()

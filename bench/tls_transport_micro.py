"""The TLS transport alone: one keep-alive connection, N exchanges of a
short request and a 1 KiB response, the server side timed (thread CPU
time) or counted (run it under callgrind twice with two N, subtract).

Modes: ``bio`` (flashplug's TLSTransport: SSLObject over memory BIOs),
``sock`` (an ssl.SSLSocket on the non-blocking socket: OpenSSL reads and
writes the socket itself), ``sockra`` (that, with OpenSSL's read-ahead
turned on through ctypes, which Python's ``ssl`` does not offer: one
``read`` per record instead of two, but records read ahead are invisible
to ``poll`` and to ``pending()``, so a run can stall with a request in
OpenSSL's buffer: run it under ``timeout``).  docs/https.md, "Session
10", has the figures.  The client is a child process (blocking Python
ssl), not measured::

    python bench/tls_transport_micro.py bio 20000
    valgrind --tool=callgrind python bench/tls_transport_micro.py sock 200
"""
import os
import select
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from flashplug.tls import Certificates  # noqa: E402
from flashplug.transport import TLSTransport  # noqa: E402

REQUEST = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: micro\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: flashplug\r\nContent-Length: 1024\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + b"x" * 1024)

CLIENT = r"""
import socket, ssl, sys
port, n, size, ca = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
req = %r
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = bytearray(size)
view = memoryview(buf)
for _ in range(n):
    s.sendall(req)
    got = 0
    while got < size:
        k = s.recv_into(view[got:])
        if not k:
            raise SystemExit("closed")
        got += k
s.close()
""" % REQUEST


def main():
    mode, n = sys.argv[1], int(sys.argv[2])
    # The certificate is made once and kept: a run's setup then costs the
    # same instructions each time (callgrind runs are subtracted).
    tmp = os.path.join(tempfile.gettempdir(), "flashplug-tls-micro")
    cert, key, cafile = (os.path.join(tmp, f) for f in ("c.pem", "k.pem", "ca.pem"))
    if not os.path.exists(cafile):
        import trustme
        os.makedirs(tmp, exist_ok=True)
        ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
        leaf = ca.issue_cert("localhost", key_type=trustme.KeyType.ECDSA)
        leaf.private_key_pem.write_to_path(key)
        with open(cert, "wb") as f:
            for pem in leaf.cert_chain_pems:
                f.write(pem.bytes())
        ca.cert_pem.write_to_path(cafile)
    certificates = Certificates([(cert, key, ())])

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(n),
                               str(len(RESPONSE)), cafile])
    sock, _ = lsock.accept()
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN)
    buf = bytearray(64 * 1024)
    done = 0
    if mode == "bio":
        t = TLSTransport(sock, certificates)
        start = None
        while done < n:
            poll.poll()
            try:
                k = t.recv_into(buf)
            except BlockingIOError:
                continue
            if start is None:
                start = time.thread_time()
            if not k:
                break
            t.send(RESPONSE)
            done += 1
    else:
        if mode == "sockra":
            import ctypes
            libssl = ctypes.CDLL("libssl.so.3")
            libssl.SSL_CTX_get_options.restype = ctypes.c_uint64
            libssl.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
            libssl.SSL_CTX_ctrl.restype = ctypes.c_long
            libssl.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
            # CPython's SSLContext object holds its SSL_CTX pointer right
            # after the object header (16 bytes); the assert checks it.
            ptr = ctypes.c_void_p.from_address(id(certificates.default) + 16).value
            assert libssl.SSL_CTX_get_options(ptr) == certificates.default.options
            libssl.SSL_CTX_ctrl(ptr, 41, 1, None)   # SSL_CTRL_SET_READ_AHEAD
        ss = certificates.default.wrap_socket(sock, server_side=True,
                                              do_handshake_on_connect=False)
        while True:
            try:
                ss.do_handshake()
                break
            except ssl.SSLWantReadError:
                poll.poll()
        start = None
        recv_into, send = ss.recv_into, ss.send
        while done < n:
            poll.poll()
            try:
                k = recv_into(buf)
            except ssl.SSLWantReadError:
                continue
            if start is None:
                start = time.thread_time()
            if not k:
                break
            send(RESPONSE)
            done += 1
    spent = time.thread_time() - start
    client.wait()
    print(f"{mode}: {done} exchanges, {spent / max(done - 1, 1) * 1e6:.2f} µs CPU each "
          f"(server thread, poll included)")


if __name__ == "__main__":
    main()

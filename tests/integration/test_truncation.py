"""A file that shrinks while it is being sent must never pass for a whole
body: the server closes the connection short of Content-Length."""
import os
import socket
import time


def test_file_truncated_mid_send_closes_short(server_factory, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    big = root / "big.bin"
    size = 64 << 20
    with open(big, "wb") as f:
        f.truncate(size)  # sparse: quick to make, sent like any other file
    server = server_factory(root, "--access-log", "off")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    s.connect(("127.0.0.1", server.port))
    s.settimeout(10)
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"Content-Length: %d" % size in head
    received = len(body)
    while received < 1 << 20:          # the send is under way...
        received += len(s.recv(65536))
    os.truncate(big, 2 << 20)          # ...when the file shrinks
    time.sleep(0.2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        received += len(chunk)
    else:
        raise AssertionError("the connection neither finished nor closed")
    s.close()
    assert received < size, "a truncated file must not be padded to its old length"
    assert "shrank" in server.log()

"""The floor: the least a Python (uvloop + httptools) FastCGI front can do.

A reference row for ``fastcgi_bench.py`` ("what the language allows"), not
a server: per request it parses the HTTP request with httptools, sends
BEGIN_REQUEST, the PARAMS nginx's ``fastcgi_params`` gives (the fixed ones
encoded once) and the request's headers, and an empty STDIN on a kept-alive
connection to the backend, cuts the reply's records, splits the CGI header
block and writes an HTTP/1.1 response with a Content-Length.  Nothing is
checked (no timeouts, no header validation, no limits, no request bodies,
no multiplexing): what it costs is the least that Python, the event loop
and the HTTP parser cost for the job, so flashplug's row is read against
it as well as against nginx's.

    python bench/floor_fastcgi.py PORT DOCROOT unix:/path/to/php-fpm.sock
"""
import asyncio
import socket
import struct
import sys

import httptools
import uvloop

HEADER = struct.Struct(">BBHHBx")
BEGIN = HEADER.pack(1, 1, 1, 8, 0) + struct.pack(">HB5x", 1, 1)  # RESPONDER, KEEP_CONN
END_PARAMS_STDIN = HEADER.pack(1, 4, 1, 0, 0) + HEADER.pack(1, 5, 1, 0, 0)
PADS = [b"\0" * n for n in range(8)]


def pairs(items):
    """Name-value pairs (FastCGI §3.4), short lengths only (enough here)."""
    out = bytearray()
    for name, value in items:
        if len(value) > 127:
            out += struct.pack(">BI", len(name), len(value) | 0x80000000) + name + value
        else:
            out += bytes((len(name), len(value))) + name + value
    return bytes(out)


class Backend(asyncio.Protocol):
    """One kept-alive connection to the backend, one request at a time."""

    def __init__(self, front):
        self.front = front
        self.client = None
        self.buf = b""
        self.out = []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        pos, n = 0, len(buf)
        while n - pos >= 8:
            _, rtype, _, clen, plen = HEADER.unpack_from(buf, pos)
            end = pos + 8 + clen
            if end + plen > n:
                break
            if rtype == 6:
                self.out.append(buf[pos + 8:end])
            elif rtype == 3:
                self.reply()
            pos = end + plen
        self.buf = buf[pos:]

    def reply(self):
        stdout = b"".join(self.out)
        self.out = []
        head, _, body = stdout.partition(b"\r\n\r\n")
        status = b"200 OK"
        lines = [b"HTTP/1.1 "]
        for line in head.split(b"\r\n"):
            if line[:7].lower() == b"status:":
                status = line[7:].strip()
            else:
                lines.append(line + b"\r\n")
        lines[0] += status + b"\r\n"
        lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
        client, self.client = self.client, None
        self.front.idle.append(self)
        client.transport.write(b"".join(lines) + body)
        if not client.keep_alive:
            client.transport.close()


class Client(asyncio.Protocol):
    def __init__(self, front):
        self.front = front
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport):
        self.transport = transport
        self.peer = transport.get_extra_info("peername")

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_message_begin(self):
        self.headers = []

    def on_url(self, url):
        self.url = url

    def on_header(self, name, value):
        self.headers.append((b"HTTP_" + name.upper().replace(b"-", b"_"), value))

    def on_message_complete(self):
        front = self.front
        self.keep_alive = self.parser.should_keep_alive()
        path, _, query = self.url.partition(b"?")
        params = front.fixed + pairs([
            (b"SCRIPT_FILENAME", front.root + path), (b"SCRIPT_NAME", path),
            (b"DOCUMENT_URI", path), (b"REQUEST_URI", self.url), (b"QUERY_STRING", query),
            (b"REQUEST_METHOD", self.parser.get_method()),
            (b"REMOTE_ADDR", self.peer[0].encode()),
            (b"REMOTE_PORT", b"%d" % self.peer[1]), *self.headers])
        n = len(params)
        pad = -n & 7
        record = BEGIN + HEADER.pack(1, 4, 1, n, pad) + params + PADS[pad] + END_PARAMS_STDIN
        if front.idle:
            backend = front.idle.pop()
            backend.client = self
            backend.transport.write(record)
        else:
            asyncio.ensure_future(front.connect(self, record))


class Front:
    def __init__(self, port, root, backend):
        self.port = port
        self.root = root.rstrip("/").encode()
        self.backend = backend
        self.idle = []
        self.fixed = pairs([
            (b"GATEWAY_INTERFACE", b"CGI/1.1"), (b"SERVER_SOFTWARE", b"floor"),
            (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"REQUEST_SCHEME", b"http"),
            (b"DOCUMENT_ROOT", self.root), (b"SERVER_ADDR", b"127.0.0.1"),
            (b"SERVER_PORT", b"%d" % port), (b"SERVER_NAME", b"localhost"),
            (b"CONTENT_TYPE", b""), (b"CONTENT_LENGTH", b""), (b"REDIRECT_STATUS", b"200")])

    async def connect(self, client, record):
        loop = asyncio.get_running_loop()
        if self.backend.startswith("unix:"):
            _, backend = await loop.create_unix_connection(lambda: Backend(self),
                                                           self.backend[5:])
        else:
            host, _, port = self.backend.rpartition(":")
            _, backend = await loop.create_connection(lambda: Backend(self), host, int(port))
        backend.client = client
        backend.transport.write(record)

    async def serve(self):
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Client(self), "127.0.0.1", self.port,
                                          backlog=1024, reuse_address=True)
        for sock in server.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await server.serve_forever()


def main():
    port, root, backend = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    uvloop.install()
    asyncio.run(Front(port, root, backend).serve())


if __name__ == "__main__":
    main()

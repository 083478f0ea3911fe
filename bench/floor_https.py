"""The floor of issue 14's HTTPS points: the least a Python server can do.

    python bench/floor_https.py PORT CERT KEY FILE

uvloop's own TLS transport (Cython, over OpenSSL memory BIOs, the same
OpenSSL as nginx) and one answer built at start from FILE: no parse beyond
finding the end of each head, no checks, no log, no cache.  It answers
every head with FILE (HTTP/1.1, keep-alive, or closing after an HTTP/1.0
request or ``Connection: close``).  ``bench/https_bench.py --floor`` runs
it beside nginx and flashplug, so the report shows where a Python server
tops out; it is not a server to use.
"""
import asyncio
import ssl
import sys

import uvloop


def answers(path):
    with open(path, "rb") as f:
        body = f.read()
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n" % len(body))
    return head + b"\r\n" + body, head + b"Connection: close\r\n\r\n" + body


class Floor(asyncio.Protocol):
    keep = close = b""

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        buf = self.buf + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head, buf = buf[:end], buf[end + 4:]
            if head.split(b"\r\n", 1)[0].endswith(b"HTTP/1.0") or \
                    b"\nconnection: close" in head.lower():
                self.transport.write(self.close)
                self.transport.close()
                return
            self.transport.write(self.keep)
        self.buf = buf


async def serve(port, cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    server = await asyncio.get_running_loop().create_server(
        Floor, "127.0.0.1", port, ssl=ctx, backlog=4096)
    await server.serve_forever()


def main():
    port, cert, key, path = sys.argv[1:5]
    Floor.keep, Floor.close = answers(path)
    uvloop.install()
    asyncio.run(serve(int(port), cert, key))


if __name__ == "__main__":
    main()

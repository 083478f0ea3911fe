"""The floor of a reverse proxy in Python: what the language allows.

Theory of operation: the least a uvloop + httptools proxy can do per
request, with nothing a real one needs.  Each client connection's
``data_received`` feeds a request parser; at the end of a request a new
request head is written on a kept-alive upstream connection (one popped
from a list, or a new one), whose own parser calls back at the end of the
response, which is written to the client with a Content-Length.  All of
it in protocol callbacks: no task, no future, no timer.

Left out on purpose, so do not use it for anything but a measurement: no
request bodies, no validation of anything either side sends, no
timeouts, no error answers, no hop-by-hop fields beyond ``Connection``
and ``Keep-Alive``, no forwarding fields but ``X-Forwarded-For``, no
streaming and no flow control.  ``bench/proxy_bench.py`` runs it as its
reference row, next to flashplug's proxy and nginx's ``proxy_pass``.

    python bench/floor_proxy.py --port 8080 --upstream 127.0.0.1:9000
"""
from __future__ import annotations

import argparse
import asyncio
import socket

import httptools
import uvloop

# Response fields we write ourselves (or drop, as nginx does Date and Server).
_DROPPED = frozenset((b"connection", b"keep-alive", b"content-length", b"transfer-encoding",
                      b"date", b"server"))


class Upstream(asyncio.Protocol):
    """A kept-alive connection to the upstream, carrying one request at a time."""

    def __init__(self, pool):
        self.pool = pool
        self.client = None
        self.parser = httptools.HttpResponseParser(self)
        self.fields = []
        self.body = []

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP,
                                                      socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.parser.feed_data(data)

    def connection_lost(self, exc):
        if self in self.pool:
            self.pool.remove(self)

    def on_message_begin(self):
        self.fields = []
        self.body = []

    def on_header(self, name, value):
        self.fields.append((name, value))

    def on_body(self, data):
        self.body.append(data)

    def on_message_complete(self):
        body = b"".join(self.body)
        lines = [b"HTTP/1.1 %d OK\r\n" % self.parser.get_status_code()]
        lines += [name + b": " + value + b"\r\n" for name, value in self.fields
                  if name.lower() not in _DROPPED]
        lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
        client, self.client = self.client, None
        self.pool.append(self)
        client.answer(b"".join(lines) + body)


class Client(asyncio.Protocol):
    """A client connection: its requests go upstream one after the other."""

    def __init__(self, pool, upstream):
        self.pool = pool
        self.upstream = upstream
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_message_begin(self):
        self.fields = []

    def on_url(self, url):
        self.url = url

    def on_header(self, name, value):
        self.fields.append((name, value))

    def on_message_complete(self):
        lines = [self.parser.get_method() + b" " + self.url + b" HTTP/1.1\r\n"]
        lines += [name + b": " + value + b"\r\n" for name, value in self.fields
                  if name.lower() not in (b"connection", b"keep-alive")]
        lines.append(b"X-Forwarded-For: 127.0.0.1\r\n\r\n")
        self.keep_alive = self.parser.should_keep_alive()
        if self.pool:
            up = self.pool.pop()
            up.client = self
            up.transport.write(b"".join(lines))
        else:
            asyncio.ensure_future(self._connect(b"".join(lines)))

    async def _connect(self, head):
        loop = asyncio.get_running_loop()
        _, up = await loop.create_connection(lambda: Upstream(self.pool), *self.upstream)
        up.client = self
        up.transport.write(head)

    def answer(self, response):
        if self.transport.is_closing():
            return      # the client went away while its request was upstream
        self.transport.write(response)
        if not self.keep_alive:
            self.transport.close()


async def serve(port, upstream):
    pool = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(pool, upstream), "127.0.0.1", port,
                                      backlog=1024)
    await server.serve_forever()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, metavar="HOST:PORT")
    args = p.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    uvloop.install()
    asyncio.run(serve(args.port, (host, int(port))))


if __name__ == "__main__":
    main()

"""A WebSocket (any ``Upgrade``) through the proxy, after the upstream's 101.

Theory of operation: the handler answers the client's handshake with the
upstream's ``101`` and an ``upgrade`` function; the kernel sends the 101
and calls it with the client's :class:`flashplug.tunnel.Tunnel`.  From then
on bytes are copied both ways without being looked at, each direction
waiting on the other side (``drain``): a slow reader slows the writer down.

The tunnel lasts as long as the upstream talks: its end, or
``--proxy-read-timeout`` of silence from it (nginx's rule for WebSockets
too), closes both connections.  A client that half-closes gets its
half-close passed on, and the upstream's last words still reach it.  A
client that goes away cancels the tunnel, which closes the upstream
connection.
"""
import asyncio
import logging

from flashplug import Response

log = logging.getLogger("flashplug.proxy")


def tunnel_response(reader, exchange, settings):
    """The 101 Response for the client, which pipes the two connections."""
    conn = exchange.conn
    conn.raw = True     # what follows the 101's head (reader.rest) is the tunnel's
    loop = asyncio.get_running_loop()
    # Should the 101 never go out (the client left first), the upstream
    # connection is closed all the same.
    orphan = loop.call_later(settings.read_timeout, exchange.end, False)

    async def pipe(client):
        orphan.cancel()
        up = loop.create_task(_client_to_upstream(client, conn, settings.send_timeout))
        try:
            if reader.rest:
                client.write(reader.rest)
            while True:
                data = await conn.read(settings.read_timeout)
                if not data:
                    break
                client.write(data)
                await client.drain()
        except asyncio.TimeoutError:
            log.info("%s: tunnel silent for %gs; closed", exchange.peer.name,
                     settings.read_timeout)
        finally:
            up.cancel()
            exchange.end(reusable=False)

    return Response(101, reader.headers + [("Upgrade", reader.upgrade)], upgrade=pipe)


async def _client_to_upstream(client, conn, timeout):
    try:
        while True:
            data = await client.read()
            if not data:
                if not conn.closed and conn.transport.can_write_eof():
                    conn.transport.write_eof()
                return
            conn.write(data)
            await conn.drain(timeout)
    except (ConnectionError, asyncio.TimeoutError):
        conn.close()     # the client is gone, or the upstream takes nothing

"""The kernel's Upgrade API: a plugin answers 101 and takes the connection
over (flashplug.tunnel), through a real server and raw sockets."""
import textwrap

import requests

PLUGIN = '''
    from flashplug import HTTPError, Response, Route, hookimpl

    async def echo(request):
        if (request.headers.get("upgrade") or "").lower() != "echo":
            raise HTTPError(400, "Bad Request")

        async def pipe(tunnel):
            while data := await tunnel.read():
                tunnel.write(data.upper())
                await tunnel.drain()
            tunnel.write(b"bye")
        return Response(101, [("Upgrade", "echo")], upgrade=pipe)

    async def wrong(request):
        async def pipe(tunnel):
            pass
        return Response(101, [], upgrade=pipe)

    @hookimpl
    def flashplug_routes():
        return [Route(path="/echo", handler=echo), Route(path="/wrong", handler=wrong)]
'''


def start(server_factory, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "echoer.py").write_text(textwrap.dedent(PLUGIN))
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("a\n")
    return server_factory(root, "--plugins-dir", plugins, "--plugins", "echoer")


def read_until(sock, marker):
    data = b""
    while marker not in data:
        more = sock.recv(65536)
        assert more, data
        data += more
    return data


def test_a_plugin_takes_the_connection_over_after_101(server_factory, tmp_path):
    s = start(server_factory, tmp_path)
    with s.connect() as c:
        # The first tunnel bytes ride in the same packet as the handshake.
        c.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n"
                  b"Upgrade: echo\r\n\r\nearly")
        data = read_until(c, b"EARLY")
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
        assert b"Upgrade: echo" in lines and b"Connection: upgrade" in lines
        assert not any(line.lower().startswith(b"content-length") for line in lines)
        c.sendall(b"GET / HTTP/1.1\r\n\r\n")      # no HTTP any more: echoed
        assert read_until(c, b"HTTP/1.1\r\n\r\n").endswith(b"GET / HTTP/1.1\r\n\r\n")
        c.shutdown(1)                               # half-close: the plugin reads b""
        assert read_until(c, b"bye").endswith(b"bye")
        assert c.recv(100) == b""                   # and the connection closes
    assert requests.get(s.url + "/a.txt").text == "a\n"


def test_a_101_to_a_plain_request_is_a_500(server_factory, tmp_path):
    s = start(server_factory, tmp_path)
    assert requests.get(s.url + "/wrong").status_code == 500
    assert "answered 101 to a request that asked for no Upgrade" in s.log()

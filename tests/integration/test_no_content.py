"""Statuses that carry no content get none, whatever a plugin says (issue #13
fault 1, kernel side).  The CGI side is in test_cgi.py; the table of which
statuses is flashplug.http.framing."""
import textwrap

import pytest

from test_kernel_http import wire

PLUGIN = """
    from flashplug import Response, Route, hookimpl

    def answer(status):
        async def handler(request):
            return Response(status, [("Content-Type", "text/plain"),
                                     ("Content-Length", "5")], b"hello")
        return handler

    @hookimpl
    def flashplug_routes(config):
        return [Route(prefix="/s%d/" % s, handler=answer(s)) for s in (204, 205, 304)]
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from conftest import start_server
    tmp = tmp_path_factory.mktemp("nocontent")
    (tmp / "plugs").mkdir()
    (tmp / "plugs" / "nobody.py").write_text(textwrap.dedent(PLUGIN))
    (tmp / "root").mkdir()
    (tmp / "root" / "index.html").write_bytes(b"index\n")
    server = start_server(tmp / "root", "--plugins-dir", tmp / "plugs", "--plugins", "nobody",
                          "--access-log", "off", tmp_path=tmp)
    yield server
    server.stop()


@pytest.mark.parametrize("status", [204, 205, 304])
def test_plugin_framing_is_dropped_on_no_content_statuses(srv, status):
    w = wire(srv)
    try:
        w.send(b"GET /s%d/ HTTP/1.1\r\nHost: t\r\n\r\nGET /index.html HTTP/1.1\r\nHost: t\r\n\r\n"
               % status)
        got, headers, body = w.response()
        assert got == status
        expected_length = ["0"] if status == 205 else None  # 205 is framed, empty
        assert headers.get("content-length") == expected_length
        assert "transfer-encoding" not in headers
        assert w.response()[2] == b"index\n"  # still in step
    finally:
        w.close()

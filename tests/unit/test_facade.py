"""The server object plugins get (flashplug.facade.Server)."""
import asyncio
from types import SimpleNamespace

from flashplug.facade import Server


def conn(active=None, out=(), pending=(), state="idle"):
    return SimpleNamespace(active=active, out=list(out), pending=list(pending), state=state)


class FakeCache:
    max_entries, bytes, max_bytes, open_files, max_open = 100, 4096, 1 << 20, 1, 4096

    def __len__(self):
        return 3


def fake_app(connections=()):
    async def respond(request):
        return ("answered", request)
    return SimpleNamespace(config="cfg", loop="loop", helpers="helpers", stats="stats",
                           connections=list(connections), respond=respond,
                           static=SimpleNamespace(cache=FakeCache()))


def facade(app):
    return Server(app, SimpleNamespace(config=app.config))


def test_connection_counts_match_nginx():
    assert facade(fake_app()).connection_counts() == (0, 0, 0, 0)
    server = facade(fake_app([conn(active="r"), conn(state="head"), conn(),
                              conn(out=[b"x"]), conn(pending=["r"]), conn(state="body"),
                              conn(state="lingering")]))
    assert server.connection_counts() == (7, 2, 3, 2)


def test_cache_info():
    assert facade(fake_app()).cache_info() == {
        "entries": 3, "max_entries": 100, "bytes": 4096, "max_bytes": 1 << 20,
        "open_files": 1, "max_open_files": 4096}


def test_plain_parts_and_dispatch():
    server = facade(fake_app())
    assert (server.config, server.loop, server.helpers, server.stats) == \
        ("cfg", "loop", "helpers", "stats")
    assert asyncio.run(server.dispatch("req")) == ("answered", "req")


def test_plugin_status_merges_what_plugins_report():
    """flashplug_status results are merged; None and ill-shaped values are
    left out; each hook implementation is called with the facade."""
    seen = []

    class Hook:
        def flashplug_status(self, app):
            seen.append(app)
            return [{"fastcgi_restarts": 2, "odd": 1.5, "rows": [{"a": 1}], "bad": [1]},
                    None, {"other_state": "ok"}]

    app = fake_app()
    app.config = SimpleNamespace(plugin_manager=SimpleNamespace(hook=Hook()))
    server = facade(app)
    assert server.plugin_status() == {"fastcgi_restarts": 2, "rows": [{"a": 1}],
                                      "other_state": "ok"}
    assert seen == [server]

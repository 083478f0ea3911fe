"""The bundled plugins use only the documented plugin API.

Every name a module under plugins/ imports from flashplug must be listed in
docs/plugins.md's "The stable API" table, and every attribute it reads from
the server object (``app`` in the start-up/shutdown hooks, ``server``,
``request.server``) must be one of the documented names of
``flashplug.facade.Server``.  Reading kernel internals through ``getattr``
is not allowed either.
"""
import ast
import os
import re

import pytest

from flashplug.facade import Server

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = os.path.join(REPO, "plugins")
SERVER_NAMES = {"app", "server"}


def _stable_api():
    with open(os.path.join(REPO, "docs", "plugins.md")) as f:
        page = f.read()
    section = page.split("## The stable API", 1)[1].split("\n## ", 1)[0]
    api = {}
    for row in re.findall(r"^\| `([a-z_.]+)` \| (.+) \|$", section, re.M):
        module, names = row
        api[module] = set(re.findall(r"`([A-Za-z_]+)`", names))
    server_table = section.split("### The server object", 1)[1]
    server_names = set(re.findall(r"^\| `([a-z_]+)` \|", server_table, re.M))
    return api, server_names


def _plugin_sources():
    for folder, _, files in os.walk(PLUGINS):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path) as f:
                    yield os.path.relpath(path, REPO), ast.parse(f.read(), path)


def _is_server(node):
    """``app``, ``server``, ``self.server`` or ``request.server``."""
    if isinstance(node, ast.Name):
        return node.id in SERVER_NAMES
    return isinstance(node, ast.Attribute) and node.attr == "server"


def violations(tree, api, server_names):
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flashplug"):
            for alias in node.names:
                if alias.name not in api.get(node.module, ()):
                    found.append(f"imports {node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("flashplug") and alias.name != "flashplug":
                    found.append(f"imports {alias.name}")
        elif isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "flashplug" \
                    and node.attr not in api["flashplug"]:
                found.append(f"reads flashplug.{node.attr}")
            elif _is_server(node.value) and node.attr not in server_names:
                found.append(f"reads the server's {node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "hasattr") and node.args \
                and _is_server(node.args[0]):
            found.append("reads the server through getattr")
    return found


def test_the_server_table_matches_the_facade():
    _, server_names = _stable_api()
    public = {n for n in dir(Server) if not n.startswith("_")}
    assert server_names == public


@pytest.mark.parametrize("path, tree", list(_plugin_sources()), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_bundled_plugin_uses_only_the_stable_api(path, tree):
    api, server_names = _stable_api()
    assert violations(tree, api, server_names) == [], path


def test_the_check_can_fail():
    api, server_names = _stable_api()
    bad = ast.parse("from flashplug.http.h1 import H1Protocol\n"
                    "import flashplug\nflashplug.server\n"
                    "def f(request, app):\n"
                    "    app.connections\n    request.server.static\n"
                    "    getattr(app, 'static', None)\n")
    assert violations(bad, api, server_names) == [
        "imports flashplug.http.h1.H1Protocol", "reads flashplug.server",
        "reads the server's connections", "reads the server's static",
        "reads the server through getattr"]

"""The docs keep up with the code: hooks, their reference, every setting.

Like datasette's test_docs.py: the hook specs are walked, and each must be
documented in its docstring, present in docs/plugins.md, and named by at
least one test; every option of `flashplug serve` must appear in
docs/configuration.md.
"""
import argparse
import asyncio
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
import textwrap
from urllib.parse import parse_qs

import pytest

import flashplug

from flashplug import cli, hookspecs
from flashplug.config import tomllib
from flashplug.plugins import new_manager, spec_names

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs")
HOOKS = spec_names()


def _read(*parts):
    with open(os.path.join(REPO, *parts), encoding="utf-8") as f:
        return f.read()


def _generator():
    spec = importlib.util.spec_from_file_location(
        "gen_hook_reference", os.path.join(DOCS, "gen_hook_reference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_hooks():
    # Guards the parametrized tests below against silently testing nothing.
    assert len(HOOKS) >= 10
    assert all(name.startswith("flashplug_") for name in HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_hook_docstring_is_complete(name):
    """Summary, every parameter, the return value, firstresult/historic."""
    pm = new_manager()
    spec = getattr(pm.hook, name).spec
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc, f"{name} has no docstring"
    summary = doc.split("\n\n")[0]
    assert summary.endswith("."), f"{name}: the first paragraph is a one-line summary"
    assert "Called" in doc, f"{name}: say when it is called"
    for arg in spec.argnames:
        assert f":param {arg}:" in doc, f"{name}: parameter {arg!r} is not documented"
    documented = re.findall(r":param (\w+):", doc)
    assert set(documented) <= set(spec.argnames), f"{name}: documents missing params"
    assert ":return:" in doc, f"{name}: say what the return value means"
    if spec.opts["firstresult"]:
        assert "first non-None result" in doc, f"{name} is firstresult: say so"
    if spec.opts["historic"]:
        assert "Historic" in doc, f"{name} is historic: say so"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_in_the_reference(name):
    page = _read("docs", "plugins.md")
    assert f"### `{name}(" in page


def test_hook_reference_is_up_to_date():
    gen = _generator()
    page = _read("docs", "plugins.md")
    assert gen.updated(page) == page, (
        "docs/plugins.md is out of date with flashplug/hookspecs.py: "
        "run python docs/gen_hook_reference.py")


def test_hook_reference_check_can_fail():
    gen = _generator()
    page = _read("docs", "plugins.md")
    stale = page.replace("Stops at the first non-None result", "Stops at the last result", 1)
    assert gen.updated(stale) != stale
    with pytest.raises(SystemExit):
        gen.updated("a page without markers")


def _test_sources():
    here = os.path.join(REPO, "tests")
    for folder, _, files in os.walk(here):
        for fname in files:
            path = os.path.join(folder, fname)
            if fname.endswith(".py") and path != os.path.abspath(__file__):
                yield path


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_exercised_by_a_test(name):
    """Each hook is named by some test (its implementation or its check).

    tests/integration/test_plugin_api.py::test_every_hook_is_called goes
    further and proves each one is actually called during a run.
    """
    pattern = re.compile(rf"\b{name}\b")
    users = [p for p in _test_sources() if pattern.search(open(p, encoding="utf-8").read())]
    assert users, f"no test mentions {name}"


def _serve_actions():
    parser = argparse.ArgumentParser()
    cli._add_serve_options(parser)
    return [a for a in parser._actions if a.dest != "help"]


def _shown(value):
    """A default as the docs write it: 10.0 -> "10", True -> "true"."""
    if value is True:
        return "true"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.mark.parametrize("action", _serve_actions(), ids=lambda a: a.dest)
def test_kernel_setting_is_documented(action):
    """Each serve option has a table row: flag, TOML key, default, meaning."""
    page = _read("docs", "configuration.md")
    flag = action.option_strings[0] if action.option_strings else action.dest.upper()
    starts = re.compile(rf"^\| `{re.escape(flag)}[ `]")
    rows = [line for line in page.splitlines() if starts.match(line)]
    assert len(rows) == 1, f"{flag} needs exactly one row in docs/configuration.md"
    cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", rows[0].strip("|"))]
    assert len(cells) >= 4, f"{flag}: the row needs flag, key, default and meaning"
    key = "—" if action.dest == "config" else f"`{action.dest}`"
    assert cells[1] == key, f"{flag}: the TOML key column should be {key}"
    if action.default not in (None, False, [], argparse.SUPPRESS):
        assert _shown(action.default) in cells[2], \
            f"{flag}: default {action.default!r} is not in its row"


def test_example_plugin_hooks_match_its_docs():
    """The example's README and module docstring name hooks that exist."""
    source = _read("docs", "examples", "flashplug-hello", "flashplug_hello.py")
    for name in set(re.findall(r"flashplug_\w+", source)) - {"flashplug_hello"}:
        assert name in HOOKS, f"flashplug_hello.py mentions {name}, which is no hook"


def test_architecture_page_shows_the_connection_state_table():
    from flashplug.http.h1 import state_tables
    assert state_tables() in _read("docs", "architecture.md"), (
        "docs/architecture.md: paste flashplug.http.h1.state_tables() under 'Connection states'")


def test_the_code_sets_only_states_of_the_table():
    import ast
    from flashplug.http.h1 import STATES, TRANSITIONS
    assert {s for pair in TRANSITIONS for s in pair[:1]} | set(TRANSITIONS.values()) <= set(STATES)
    set_states = set()
    for name in ("http/h1.py", "cycle.py", "connection.py", "blocking.py", "framing.py"):
        tree = ast.parse(_read("flashplug", *name.split("/")))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Attribute) and t.attr == "state" for t in node.targets) \
                    and isinstance(node.value, ast.Constant):
                set_states.add(node.value.value)
    assert set_states and set_states <= set(STATES)


def test_architecture_page_shows_the_arch_table():
    from flashplug.arches import ARCHITECTURES
    page = _read("docs", "architecture.md")
    for name, model in ARCHITECTURES.items():
        assert f"| `{name}`" in page and f"| {model} |" in page


# -- the test template for plugin authors (docs/plugins.md, "Testing a plugin") --

def _template():
    page = _read("docs", "plugins.md")
    blocks = re.findall(r"```python\n(# tests/test_hello\.py.*?)```", page, re.S)
    assert len(blocks) == 1, "docs/plugins.md: the test template block is gone"
    return blocks[0]


def test_template_never_serves_on_the_default_port():
    """A server without --port tries 8000; when that is busy it exits 2,
    which a test of "a bad option exits 2" takes for a pass."""
    calls = [call for call in _template().split("subprocess.")[1:] if '"serve"' in call]
    assert len(calls) == 2     # the fixture's server and the bad-option run
    for call in calls:
        assert '"--port"' in call, f"a serve without --port in the template:\n{call}"


def _installed_example(folder):
    """The example plugin, findable through its entry point, without pip:
    its module and a dist-info folder, on a path of our own (PYTHONPATH)."""
    example = os.path.join(DOCS, "examples", "flashplug-hello")
    with open(os.path.join(example, "pyproject.toml"), "rb") as f:
        pyproject = tomllib.load(f)
    project = pyproject["project"]
    for module in pyproject["tool"]["setuptools"]["py-modules"]:
        shutil.copy(os.path.join(example, module + ".py"), folder)
    info = folder / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\n"
                                   f"Version: {project['version']}\n")
    points = project["entry-points"]["flashplug"]
    (info / "entry_points.txt").write_text(
        "[flashplug]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))


def test_template_passes_against_the_example_plugin(tmp_path):
    """The template, run with pytest as its reader would, passes."""
    site = tmp_path / "site-packages"
    site.mkdir()
    _installed_example(site)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_hello.py").write_text(_template())
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_hello.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout


def _run_template(tmp_path, extra="", module=None):
    site = tmp_path / "site-packages"
    site.mkdir()
    _installed_example(site)
    if module is not None:
        (site / "flashplug_hello.py").write_text(module)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_hello.py").write_text(_template() + extra)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_hello.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_template_server_survives_many_requests(tmp_path):
    """The server's access log goes to its stdout: a fixture that makes it a
    pipe nobody reads stalls the server once the pipe is full (64 KiB)."""
    many = ("\n\ndef test_many_requests(server):\n"
            "    with requests.Session() as s:\n"
            "        for _ in range(1500):\n"
            "            assert s.get(server + '/index.html', timeout=5).text == 'hi'\n")
    proc = _run_template(tmp_path, many)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout


def test_template_bad_option_test_can_fail(tmp_path):
    """Against the page's first module, which has no --hello-greeting, the
    template's bad-option test fails: "unknown option" is one line and exit
    status 2 as well, and must not pass for the plugin's own refusal."""
    module = _python_block('"""flashplug-hello: greets, and says so in a header."""')
    proc = _run_template(tmp_path, module=module)
    assert "1 failed, 2 passed" in proc.stdout, proc.stdout + proc.stderr
    assert "test_bad_option_is_one_line_exit_2" in proc.stdout


# -- the Request and settings examples of docs/plugins.md run as written ------------

def _python_block(containing):
    page = _read("docs", "plugins.md")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", page, re.S) if containing in b]
    assert len(blocks) == 1, f"docs/plugins.md: one python block with {containing!r}"
    return textwrap.dedent(blocks[0])


class _FakeConfig:
    def get(self, name):
        return {"hello_greeting": " Howdy "}[name]


def test_query_example():
    from flashplug import Request
    from flashplug.http.message import Headers
    namespace = {"Response": flashplug.Response}
    exec(_python_block("async def search"), namespace)
    request = Request("GET", "/find?q=a+b", "/find", "/find", "q=a+b", "1.1", Headers())
    response = asyncio.run(namespace["search"](request))
    assert response.body == b"you asked for 'a b'\n"
    assert parse_qs("x=1&name=J%C3%B6rg") == {"x": ["1"], "name": ["Jörg"]}   # the table's


def test_settings_example():
    namespace = {"Response": flashplug.Response, "hookimpl": flashplug.hookimpl}
    exec(_python_block("_settings = {}"), namespace)
    namespace["flashplug_configure"](_FakeConfig())
    response = asyncio.run(namespace["greet"](None))
    assert response.body == b"Howdy, world!\n"

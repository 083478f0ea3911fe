"""The default plugin set (issue 10 item 6).

A first ``flashplug serve`` lists the folder at ``/``, as ``python -m
http.server`` does: with no ``--plugins`` and no plugins in the config
file, ``autoindex`` is on.  A ``--plugins`` list (or the file's) replaces
the default; ``none`` or an empty value turns every plugin off.  The start-up
line names what is on.
"""
import json
import subprocess
import sys

import pytest
import requests


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_text("hi\n")
    return root


def first_line(srv):
    return srv.log().splitlines()[0]


def test_first_run_lists_the_folder(root, server_factory):
    srv = server_factory(root)
    r = requests.get(srv.url + "/")
    assert r.status_code == 200 and "hello.txt" in r.text
    assert first_line(srv).endswith("(plugins: autoindex)")


@pytest.mark.parametrize("value", ["none", "", " none "])
def test_plugins_none_turns_them_off(root, server_factory, value):
    srv = server_factory(root, "--plugins", value)
    assert requests.get(srv.url + "/").status_code == 404
    assert requests.get(srv.url + "/hello.txt").text == "hi\n"
    assert first_line(srv).endswith("(plugins: none)")


def test_a_list_replaces_the_default(root, server_factory):
    srv = server_factory(root, "--plugins", "cgi")
    assert requests.get(srv.url + "/").status_code == 404
    assert first_line(srv).endswith("(plugins: cgi)")
    srv = server_factory(root, "--plugins", "cgi,autoindex")
    assert requests.get(srv.url + "/").status_code == 200
    assert first_line(srv).endswith("(plugins: cgi, autoindex)")


def test_config_file_choice_replaces_the_default(root, tmp_path, server_factory):
    conf = tmp_path / "site.toml"
    conf.write_text('[plugins]\nenable = []\n')
    srv = server_factory(root, "--config", conf)
    assert requests.get(srv.url + "/").status_code == 404
    conf.write_text('plugins = "cgi"\n')
    srv = server_factory(root, "--config", conf)
    assert first_line(srv).endswith("(plugins: cgi)")
    srv = server_factory(root, "--config", conf, "--plugins", "autoindex")
    assert requests.get(srv.url + "/").status_code == 200


@pytest.mark.parametrize("arch", ["mt", "mp"])
def test_blocking_archs_have_no_default_plugins(root, server_factory, arch):
    # They serve static files only: the default must not stop them starting.
    srv = server_factory(root, "--arch", arch)
    assert requests.get(srv.url + "/").status_code == 404
    assert first_line(srv).endswith("(plugins: none)")


def test_plugins_command_shows_the_default():
    out = subprocess.run([sys.executable, "-m", "flashplug", "plugins", "--json"],
                         capture_output=True, text=True, timeout=60)
    rows = {row["name"]: row["enabled"] for row in json.loads(out.stdout)}
    assert rows["autoindex"] is True and rows["cgi"] is False


def test_cgi_alias_adds_to_the_default_set(root, server_factory):
    # http.server --cgi lists folders and runs scripts: so does `serve --cgi`.
    srv = server_factory(root, "--cgi")
    assert requests.get(srv.url + "/").status_code == 200
    assert first_line(srv).endswith("(plugins: autoindex, cgi)")

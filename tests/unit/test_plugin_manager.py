"""The plugin manager and the config file, without a server.

`flashplug.cli.build_serve` is what `flashplug serve` runs before it binds a
port: discovery, selection, option parsing, the config file and the hook
checks.  Plugins here are single files in a --plugins-dir.
"""
import textwrap

import pytest

from flashplug import plugins as plugin_mod
from flashplug.cli import build_serve
from flashplug.errors import UsageError

HEADER_PLUGIN = """
    from flashplug import hookimpl

    @hookimpl
    def flashplug_addoption(parser):
        group = parser.add_argument_group("hdr")
        group.add_argument("--hdr-name", default="X-Test")
        group.add_argument("--hdr-count", type=int, default=1)
        group.add_argument("--hdr-loud", action="store_true")

    @hookimpl
    def flashplug_response_headers(response):
        response.headers.append(("X-Test", "1"))
"""


@pytest.fixture
def docroot(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    return root


def serve(docroot, *args):
    return build_serve([str(docroot), *map(str, args)])


# -- selection -------------------------------------------------------------------

def test_parse_selection():
    assert plugin_mod.parse_selection("") == []
    assert plugin_mod.parse_selection("none") == []
    assert plugin_mod.parse_selection(None) == ["autoindex"]          # nothing named
    assert plugin_mod.parse_selection(None, "sped") == ["autoindex"]
    assert plugin_mod.parse_selection(None, "mt") == []                # static files only
    assert plugin_mod.parse_selection(" cgi, autoindex ,,") == ["cgi", "autoindex"]


def test_default_set_is_autoindex(docroot, plugdir):
    plugdir("hdr", HEADER_PLUGIN)
    config = serve(docroot, "--plugins-dir", plugdir.path)
    assert config.plugins == ["autoindex"]
    assert [name for name, _ in config.plugin_manager.list_name_plugin()] == ["autoindex"]


def test_kernel_alone_with_plugins_none(docroot, plugdir):
    plugdir("hdr", HEADER_PLUGIN)
    config = serve(docroot, "--plugins-dir", plugdir.path, "--plugins", "none")
    pm = config.plugin_manager
    assert config.plugins == []
    assert pm.get_plugins() == set()
    assert plugin_mod.hooks_in_use(pm) == frozenset()


def test_enabled_plugin_is_registered(docroot, plugdir):
    plugdir("hdr", HEADER_PLUGIN)
    config = serve(docroot, "--plugins-dir", plugdir.path, "--plugins", "hdr")
    pm = config.plugin_manager
    assert [name for name, _ in pm.list_name_plugin()] == ["hdr"]
    assert plugin_mod.hooks_in_use(pm) == {"flashplug_addoption", "flashplug_response_headers"}


def test_unknown_plugin_lists_installed(docroot, plugdir):
    plugdir("hdr", HEADER_PLUGIN)
    with pytest.raises(UsageError) as e:
        serve(docroot, "--plugins-dir", plugdir.path, "--plugins", "hdr,nope")
    message = str(e.value)
    assert "'nope'" in message and "\n" not in message
    installed = message.split("installed plugins:")[1]
    assert "hdr" in installed and "autoindex" in installed


def test_check_selection_names_every_unknown():
    with pytest.raises(UsageError, match="'a', 'b'.*installed plugins: x"):
        plugin_mod.check_selection(["a", "x", "b"], {"x": None})


def test_unknown_hook_fails_naming_plugin_and_hook(docroot, plugdir):
    plugdir("typo", """
        from flashplug import hookimpl

        @hookimpl
        def flashplug_response_header(request, response):   # no trailing s
            pass
    """)
    with pytest.raises(UsageError) as e:
        serve(docroot, "--plugins-dir", plugdir.path, "--plugins", "typo")
    assert "flashplug_response_header'" in str(e.value)
    assert "typo" in str(e.value)
    assert "flashplug_response_headers" in str(e.value)   # the known hooks are listed


def test_unknown_hook_message_uses_the_plugin_name(docroot, plugdir):
    plugdir("typo", """
        from flashplug import hookimpl

        @hookimpl
        def flashplug_no_such_hook():
            pass
    """)
    with pytest.raises(UsageError) as e:
        serve(docroot, "--plugins-dir", plugdir.path, "--plugins", "typo")
    assert str(e.value).startswith("plugin 'typo'")
    assert "<module" not in str(e.value)


def test_unknown_hook_in_a_disabled_plugin_is_ignored(docroot, plugdir):
    plugdir("typo", """
        from flashplug import hookimpl

        @hookimpl
        def flashplug_no_such_hook():
            pass
    """)
    config = serve(docroot, "--plugins-dir", plugdir.path)
    assert config.plugins == ["autoindex"]     # the default set, without it


def test_unmarked_function_is_not_a_hook(docroot, plugdir):
    plugdir("plain", """
        def flashplug_response_headers(response):   # no @hookimpl
            response.headers.append(("X-Nope", "1"))
    """)
    config = serve(docroot, "--plugins-dir", plugdir.path, "--plugins", "plain")
    assert plugin_mod.hooks_in_use(config.plugin_manager) == frozenset()


def test_bad_hook_arguments_are_a_usage_error(docroot, plugdir):
    plugdir("badargs", """
        from flashplug import hookimpl

        @hookimpl
        def flashplug_routes(bogus):
            return []
    """)
    with pytest.raises(UsageError, match="badargs"):
        serve(docroot, "--plugins-dir", plugdir.path, "--plugins", "badargs")


def test_plugin_that_fails_to_import(docroot, plugdir):
    plugdir("broken", "import no_such_module_anywhere\n")
    with pytest.raises(UsageError, match=r"plugin 'broken' .*failed to import: "
                                         r"ModuleNotFoundError"):
        serve(docroot, "--plugins-dir", plugdir.path, "--plugins", "broken")


def test_broken_plugin_not_enabled_is_skipped_with_a_warning(docroot, plugdir, capsys):
    plugdir("broken", "import no_such_module_anywhere\n")
    config = serve(docroot, "--plugins-dir", plugdir.path)
    assert config.plugins == ["autoindex"]     # the default set, without it
    assert "plugin 'broken'" in capsys.readouterr().err


def test_broken_default_plugin_says_why(docroot, plugdir):
    # Nothing named: the default set is wanted, so its import error is the
    # message, not "unknown plugin 'autoindex'".
    plugdir("autoindex", "import no_such_module_anywhere\n")
    with pytest.raises(UsageError, match="'autoindex'.*failed to import.*no_such_module"):
        serve(docroot, "--plugins-dir", plugdir.path)
    assert serve(docroot, "--plugins-dir", plugdir.path, "--plugins", "none").plugins == []


def test_plugins_dir_must_exist(docroot, tmp_path):
    with pytest.raises(UsageError, match="not a directory"):
        serve(docroot, "--plugins-dir", tmp_path / "missing")


# -- discovery -------------------------------------------------------------------

def test_discover_sources(plugdir):
    plugdir("hdr", HEADER_PLUGIN)
    plugdir("_private", HEADER_PLUGIN)
    (plugdir.path / "notes.txt").write_text("not a plugin")
    found = plugin_mod.discover([str(plugdir.path)])
    assert found["hdr"].source == "plugins dir"
    assert found["hdr"].location == str(plugdir.path / "hdr.py")
    assert "_private" not in found and "notes" not in found
    assert found["autoindex"].source == "bundled"
    assert found["autoindex"].location == "flashplug_plugins.autoindex"


def test_plugin_info_hooks(plugdir):
    plugdir("hdr", HEADER_PLUGIN)
    info = plugin_mod.discover([str(plugdir.path)])["hdr"]
    plugin_mod.load(info)
    assert info.hooks(plugin_mod.new_manager()) == [
        "flashplug_addoption", "flashplug_response_headers"]


def test_plugin_for_module(docroot, plugdir):
    plugdir("hdr", HEADER_PLUGIN)
    pm = serve(docroot, "--plugins-dir", plugdir.path, "--plugins", "hdr").plugin_manager
    modname = pm.get_plugin("hdr").__name__
    assert plugin_mod.plugin_for_module(pm, modname) == "hdr"
    assert plugin_mod.plugin_for_module(pm, modname + ".sub") == "hdr"
    assert plugin_mod.plugin_for_module(pm, "flashplug.server") is None


# -- the config file ---------------------------------------------------------------

def write_config(tmp_path, text):
    path = tmp_path / "flashplug.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_config_kernel_keys(tmp_path, docroot):
    cfg = write_config(tmp_path, """
        docroot = "root"
        port = 8123
        access-log = "off"
        cache_size = "2m"
        follow_symlinks = true
        keepalive_timeout = 7
    """)
    config = build_serve(["--config", str(cfg)])
    assert config.docroot == str(docroot)   # relative to the file's folder
    assert config.port == 8123
    assert config.access_log == "off"
    assert config.cache_size == 2 << 20
    assert config.follow_symlinks is True
    assert config.keepalive_timeout == 7.0
    assert config.config_file == str(cfg)


def test_command_line_overrides_the_file(tmp_path, docroot):
    cfg = write_config(tmp_path, """
        port = 8123
        log_level = "debug"
    """)
    config = build_serve([str(docroot), "--config", str(cfg), "--port", "9000"])
    assert config.port == 9000
    assert config.log_level == "debug"


def test_config_plugin_table(tmp_path, docroot, plugdir):
    plugdir("hdr", HEADER_PLUGIN)
    cfg = write_config(tmp_path, f"""
        plugins_dir = ["{plugdir.path}"]
        [plugins.hdr]
        name = "X-From-File"
        count = 3
        loud = true
    """)
    config = build_serve([str(docroot), "--config", str(cfg), "--plugins", "hdr",
                          "--hdr-count", "5"])
    assert config.get("hdr_name") == "X-From-File"
    assert config.get("hdr_count") == 5          # the command line wins
    assert config.get("hdr_loud") is True
    assert config.plugins == ["hdr"]


@pytest.mark.parametrize("text, expected", [
    ('port = "http"', r"flashplug.toml:1: port = 'http': not a port number: 'http' \(--port\)"),
    ('port = 70000', r"flashplug.toml:1: port = 70000: port 70000 is outside 0-65535"),
    ('arch = "fast"', r"flashplug.toml:1: arch = 'fast': allowed values are amped, sped, mt, mp"),
    ('follow_symlinks = "yes"', r"flashplug.toml:1: follow_symlinks = 'yes': expected true or false"),
    ('http2 = "no"', r"flashplug.toml:1: http2 = 'no': expected true or false \(--http2\)"),
    ('prot = 80', r"flashplug.toml:1: prot: unknown setting; did you mean port\? allowed: docroot, .*port.*"),
    ('port = [1, 2]', r"flashplug.toml:1: port: expected a single value"),
    ('config = "other.toml"', r"flashplug.toml:1: config: unknown setting"),
    ('[plugins.nope]\nx = 1', r"flashplug.toml:1: \[plugins.nope\]: no such plugin; installed: .*hdr"),
    ('[plugins.hdr]\ncolour = 1', r"flashplug.toml:2: \[plugins.hdr\] colour: unknown setting; "
                                  r"allowed: count, loud, name"),
    ('[plugins.hdr]\ncount = "many"', r"flashplug.toml:2: \[plugins.hdr\] count = 'many': .*'many' \(--hdr-count\)"),
    ('port = ', r"flashplug.toml:1: not valid TOML"),
])
def test_config_errors_name_file_key_and_allowed(tmp_path, docroot, plugdir, text, expected):
    plugdir("hdr", HEADER_PLUGIN)
    cfg = write_config(tmp_path, text + "\n")
    with pytest.raises(UsageError, match=expected) as e:
        build_serve([str(docroot), "--config", str(cfg), "--plugins-dir", str(plugdir.path)])
    assert "\n" not in str(e.value)


def test_http2_and_h2c_from_the_file(tmp_path, docroot):
    cfg = write_config(tmp_path, "http2 = false\nh2c = true\n")
    config = build_serve([str(docroot), "--config", str(cfg)])
    assert (config.http2, config.h2c) == (False, True)
    assert build_serve([str(docroot), "--config", str(cfg), "--http2"]).http2 is True
    assert build_serve([str(docroot)]).http2 is True


def test_missing_config_file(tmp_path, docroot):
    with pytest.raises(UsageError, match="--config .*missing.toml: no such file"):
        build_serve([str(docroot), "--config", str(tmp_path / "missing.toml")])


def test_config_file_enables_and_configures_a_plugin(tmp_path, docroot, plugdir):
    plugdir("hdr", HEADER_PLUGIN)
    cfg = write_config(tmp_path, """
        [plugins]
        enable = ["hdr"]
        [plugins.hdr]
        count = 2
    """)
    config = build_serve([str(docroot), "--config", str(cfg),
                          "--plugins-dir", str(plugdir.path)])
    assert config.plugins == ["hdr"]
    assert config.get("hdr_count") == 2


def test_config_plugins_dir_as_string(tmp_path, docroot, plugdir):
    plugdir("hdr", HEADER_PLUGIN)
    cfg = write_config(tmp_path, f'plugins_dir = "{plugdir.path}"\nplugins = "hdr"\n')
    config = build_serve([str(docroot), "--config", str(cfg)])
    assert config.plugins == ["hdr"]


def test_per_config_makes_one_thing_for_each_config():
    from types import SimpleNamespace

    from flashplug.plugins import per_config
    made, calls = {}, []

    def make(config):
        calls.append(config)
        return [config.name]       # an empty list is kept too: only None is "not made"
    top, site = SimpleNamespace(name="top"), SimpleNamespace(name="site")
    assert per_config(made, top, make) == ["top"]
    assert per_config(made, top, make) is per_config(made, top, make)
    assert per_config(made, site, make) == ["site"]
    assert calls == [top, site]
    made.clear()                  # a new configuration: made afresh
    assert per_config(made, top, make) == ["top"] and calls == [top, site, top]

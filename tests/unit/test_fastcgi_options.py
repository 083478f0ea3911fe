"""The fastcgi plugin's options: mappings, addresses, limits (pure)."""
import pytest

from flashplug import UsageError
from flashplug_plugins.fastcgi.options import settings_from
from flashplug_plugins.fastcgi.pool import Address


class FakeConfig(dict):
    def get(self, name, default=None):
        return super().get(name, default)


def settings(*backends, **options):
    return settings_from(FakeConfig(fastcgi_backend=list(backends), max_body_size=1 << 20,
                                    **{"fastcgi_" + k: v for k, v in options.items()}))


def test_extension_prefix_and_spawn_mappings():
    s = settings(".php=unix:/run/php/php8.2-fpm.sock", "/app=127.0.0.1:9000",
                 "/py=spawn:/usr/bin/env python3 -u app.py", "/v6=[::1]:9001")
    php, app, py, v6 = s.mappings
    assert (php.ext, php.prefix, php.address.path) == (".php", None, "/run/php/php8.2-fpm.sock")
    assert (app.prefix, app.address.host, app.address.port) == ("/app/", "127.0.0.1", 9000)
    assert py.command == ("/usr/bin/env", "python3", "-u", "app.py") and py.address is None
    assert (v6.address.host, v6.address.port) == ("::1", 9001)
    assert (s.max_conns, s.queue, s.timeout, s.procs, s.max_requests, s.max_body) == (
        5, 128, 60.0, 2, 0, 1 << 20)


def test_options_from_the_config_file_types():
    s = settings(".php=unix:/x", timeout=2.5, max_conns=3, max_body="2m", index="index.php",
                 fallback="/index.php", procs="4", max_requests=500)
    assert (s.timeout, s.max_conns, s.max_body, s.index, s.fallback, s.procs,
            s.max_requests) == (2.5, 3, 2 << 20, "index.php", "/index.php", 4, 500)


@pytest.mark.parametrize("backends, options, message", [
    ((), {}, "no backend"),
    (("php=unix:/x",), {}, "expected .EXT=BACKEND or /PREFIX=BACKEND"),
    ((".php=",), {}, "expected .EXT=BACKEND"),
    ((".php=unix:",), {}, "unix: needs a socket path"),
    ((".php=host:99999",), {}, "expected unix:PATH or HOST:PORT"),
    ((".php=spawn:",), {}, "spawn: needs a command"),
    ((".php=spawn:'unclosed",), {}, "No closing quotation"),
    ((".php=spawn:/nonexistent/php-cgi",), {}, "is not an executable"),
    ((".php=unix:/a", ".php=unix:/b"), {}, ".php is mapped twice"),
    (("/a/../b=unix:/a",), {}, "expected .EXT=BACKEND"),
    (("/app=unix:/a",), {"index": "index.php"}, "no --fastcgi extension backend"),
    ((".php=unix:/a",), {"index": "../x.php"}, "expected a file name"),
    ((".php=unix:/a",), {"fallback": "index.php"}, "expected a script's URL path"),
    ((".py=unix:/a",), {"fallback": "/index.php"}, "no --fastcgi extension backend"),
    ((".php=unix:/a",), {"timeout": "0"}, "--fastcgi-timeout"),
    ((".php=unix:/a",), {"max_conns": "0"}, "--fastcgi-max-conns"),
    ((".php=unix:/a",), {"max_body": "1x"}, "--fastcgi-max-body"),
])
def test_bad_settings_are_one_line_usage_errors(backends, options, message):
    with pytest.raises(UsageError, match=message.replace(".", r"\.").replace("(", r"\(")):
        settings(*backends, **options)


def test_address_text_round_trips():
    assert str(Address("unix:/run/a.sock")) == "unix:/run/a.sock"
    assert Address("localhost:9000").host == "localhost"

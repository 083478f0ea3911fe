"""Route and the mount table: whole-segment prefixes, exact paths, extensions."""
import pytest

from flashplug import Route
from flashplug.routes import RouteError, server_allow
from flashplug.app import Router


async def hello(request):
    pass


async def deeper(request):
    pass


async def status(request):
    pass


async def everything(request):
    pass


async def cgi(request):
    pass


class Req:
    def __init__(self, path):
        self.path = path


def router(*routes, hook=None):
    return Router(list(routes), hook)


@pytest.mark.parametrize("prefix", ["/hello", "/hello/"])
@pytest.mark.parametrize("path,claimed", [
    ("/hello", True), ("/hello/", True), ("/hello/x", True), ("/hello/x/y", True),
    ("/helloworld", False), ("/hello.txt", False), ("/hell", False), ("/", False),
    ("/x/hello", False),
])
def test_prefix_matches_whole_segments(prefix, path, claimed):
    r = router(Route(prefix=prefix, handler=hello))
    assert (r.match(Req(path)) is hello) is claimed


def test_longest_prefix_wins():
    r = router(Route(prefix="/a", handler=hello), Route(prefix="/a/b/", handler=deeper),
               Route(prefix="/", handler=everything))
    assert r.match(Req("/a/b")) is deeper
    assert r.match(Req("/a/b/c")) is deeper
    assert r.match(Req("/a/bc")) is hello
    assert r.match(Req("/ab")) is everything
    assert r.match(Req("/")) is everything


def test_exact_path_claims_one_path_only():
    r = router(Route(path="/status", handler=status))
    assert r.match(Req("/status")) is status
    for other in ("/status/", "/status/x", "/statusx", "/status.html", "/"):
        assert r.match(Req(other)) is None, other


def test_exact_path_comes_before_prefixes():
    r = router(Route(prefix="/", handler=everything), Route(path="/status", handler=status))
    assert r.match(Req("/status")) is status
    assert r.match(Req("/status/")) is everything


def test_extension_and_hook_come_after():
    r = router(Route(prefix="/hello/", handler=hello), Route(ext=".cgi", handler=cgi),
               hook=lambda request: status if request.path == "/s" else None)
    assert r.match(Req("/hello/a.cgi")) is hello
    assert r.match(Req("/x/a.cgi/more")) is cgi
    assert r.match(Req("/x/.cgi")) is None          # the bare extension is no name
    assert r.match(Req("/s")) is status
    assert r.match(Req("/t")) is None


def test_no_route_no_work():
    assert router().empty
    assert router().match(Req("/anything")) is None


@pytest.mark.parametrize("kwargs,match", [
    ({}, "exactly one of prefix=, path= or ext="),
    ({"prefix": "/a", "path": "/a"}, "exactly one"),
    ({"prefix": "a/"}, "prefix must be a str that starts with '/'"),
    ({"path": "status"}, "path must be a str that starts with '/'"),
    ({"path": b"/status"}, "path must be a str"),
    ({"ext": "cgi"}, "ext must be a str that starts with '.'"),
])
def test_bad_routes(kwargs, match):
    with pytest.raises(RouteError, match=match):
        Route(handler=hello, **kwargs)


def test_plain_def_handler_is_refused():
    def plain(request):
        pass

    with pytest.raises(RouteError, match="plain is not an async function; define it "
                                         "with 'async def'"):
        Route(prefix="/p", handler=plain)


def test_options_asterisk_allow_is_static_methods_plus_each_routes():
    """RFC 9110 §9.3.7: what the server as a whole takes."""
    assert server_allow([], None) == "GET, HEAD, OPTIONS"
    assert server_allow([Route(prefix="/s", handler=status, methods=("GET", "HEAD"))],
                        None) == "GET, HEAD, OPTIONS"
    assert server_allow([Route(ext=".cgi", handler=cgi)], None) == "GET, HEAD, POST, OPTIONS"
    assert server_allow([], lambda request: None) == "GET, HEAD, POST, OPTIONS"
    assert server_allow([Route(path="/d", handler=hello, methods=("DELETE", "PROPFIND", "PUT",
                                                                   "OPTIONS"))],
                        None) == "GET, HEAD, PUT, DELETE, PROPFIND, OPTIONS"



@pytest.mark.parametrize("methods", ["GET", ("GET", 1), ("GET HEAD",)])
def test_route_methods_must_be_method_names(methods):
    with pytest.raises(RouteError, match="Route methods"):
        Route(prefix="/x", handler=hello, methods=methods)

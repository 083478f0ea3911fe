"""flashplug-hello: an example third-party flashplug plugin.

Theory of operation: flashplug finds this module through the ``flashplug``
entry-point group declared in ``pyproject.toml`` (``hello =
"flashplug_hello"``), imports it, and calls the ``@hookimpl`` functions
below by name.  It shows one use of most hooks:

* ``flashplug_addoption`` / ``flashplug_configure``: a ``--hello-greeting``
  option (``greeting`` under ``[plugins.hello]``), refused when empty;
* ``flashplug_routes``: everything under ``/hello/``, one route of which
  streams its body;
* ``flashplug_route_request``: a predicate route for paths ending in
  ``.hello``;
* ``flashplug_response_headers``: an ``X-Hello`` header on every response;
* ``flashplug_error_page``: a friendlier 404 page;
* ``flashplug_request_done``: responses counted by status, shown at
  ``/hello/stats``;
* ``flashplug_status``: the same count on the status page
  (``--plugins status``), as ``hello_responses``;
* ``flashplug_startup`` / ``flashplug_shutdown``: a line in the error log.

State lives in one module-level object, set up by ``flashplug_configure``:
each worker process gets its own copy after the fork, which is what
per-worker counters want.
"""
import asyncio
import collections
import json
import logging
from urllib.parse import parse_qs

from flashplug import Response, Route, UsageError, hookimpl

__version__ = "1.0.0"

# Under "flashplug." so that records reach the server's error log with its
# --log-level applied.
log = logging.getLogger("flashplug.hello")

# Streams longer than this are refused: the stream route is a demo, not a way
# to make the server send unbounded output.
MAX_STREAM_GREETINGS = 1000


class Hello:
    def __init__(self, greeting, chunk_delay):
        self.greeting = greeting
        self.chunk_delay = chunk_delay
        self.statuses = collections.Counter()

    def text(self, name):
        return f"{self.greeting}, {name}!\n"


_hello = Hello("Hello", 0.0)


# -- start-up ---------------------------------------------------------------------

@hookimpl
def flashplug_addoption(parser):
    group = parser.add_argument_group("hello", "the example plugin (--plugins hello)")
    group.add_argument("--hello-greeting", default="Hello", metavar="TEXT",
                       help="the word to greet with (default: Hello)")
    group.add_argument("--hello-chunk-delay", type=float, default=0.0, metavar="S",
                       help="pause between streamed greetings (default: 0)")


@hookimpl
def flashplug_configure(config):
    global _hello
    greeting = config.get("hello_greeting")
    if not greeting or not greeting.strip():
        raise UsageError("--hello-greeting (greeting in [plugins.hello]) is empty; "
                         "give a word such as 'Hello'")
    if any(ch in greeting for ch in "\r\n"):
        # It goes into a response header, where a line break would end it.
        raise UsageError(f"--hello-greeting {greeting!r}: must be one line")
    delay = config.get("hello_chunk_delay")
    if not 0 <= delay <= 10:
        raise UsageError(f"--hello-chunk-delay {delay}: allowed is 0 to 10 seconds")
    _hello = Hello(greeting.strip(), delay)


@hookimpl
def flashplug_routes(config):
    return [Route(prefix="/hello/", handler=hello_handler)]


@hookimpl
def flashplug_startup(app):
    log.info("hello: ready to greet with %r", _hello.greeting)


@hookimpl
async def flashplug_shutdown(app):
    # An async implementation: the kernel awaits the coroutine it returns.
    log.info("hello: answered %d requests", sum(_hello.statuses.values()))


# -- handlers ---------------------------------------------------------------------

async def hello_handler(request):
    """``/hello/``, ``/hello/NAME``, ``/hello/stream``, ``/hello/stats``."""
    if request.method not in ("GET", "HEAD"):
        return Response(405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")],
                        b"only GET and HEAD\n")
    rest = request.path[len("/hello/"):] if request.path.startswith("/hello/") else ""
    if rest == "stats":
        body = json.dumps({str(k): v for k, v in sorted(_hello.statuses.items())})
        return Response(200, [("Content-Type", "application/json")], body.encode())
    if rest == "stream":
        return stream_greetings(request)
    return greeting_response(rest or "world")


def greeting_response(name):
    return Response(200, [("Content-Type", "text/plain; charset=utf-8")],
                    _hello.text(name).encode("utf-8"))


def stream_greetings(request):
    try:
        count = int(parse_qs(request.query).get("n", ["3"])[0])
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_STREAM_GREETINGS:
        return Response(400, [("Content-Type", "text/plain")],
                        f"n must be 0 to {MAX_STREAM_GREETINGS}\n".encode())

    async def chunks():
        # No Content-Length: the kernel sends this chunked to HTTP/1.1
        # clients, one chunk per yield.
        for i in range(1, count + 1):
            yield _hello.text(f"number {i}").encode("utf-8")
            await asyncio.sleep(_hello.chunk_delay)

    return Response(200, [("Content-Type", "text/plain; charset=utf-8")], stream=chunks())


async def dot_hello_handler(request):
    name = request.path.rsplit("/", 1)[-1][:-len(".hello")]
    return greeting_response(name or "nobody")


# -- per request ------------------------------------------------------------------

@hookimpl
def flashplug_route_request(request):
    # Called for every request no route matched: a string test, nothing more.
    if request.path.endswith(".hello"):
        return dot_hello_handler
    return None


@hookimpl
def flashplug_response_headers(request, response):
    response.headers.append(("X-Hello", _hello.greeting))


@hookimpl
def flashplug_error_page(request, status, message):
    if status != 404:
        return None  # let the kernel (or another plugin) render the rest
    # The page echoes nothing from the request: an error page is a classic
    # place for reflected content to turn into an injection.
    body = f"{_hello.greeting}! There is nothing here, but /hello/ is always here.\n"
    return Response(404, [("Content-Type", "text/plain; charset=utf-8")],
                    body.encode("utf-8", "replace"))


@hookimpl
def flashplug_request_done(request, status, bytes_sent, duration):
    _hello.statuses[status] += 1


@hookimpl
def flashplug_status():
    # Read only what the plugin already holds: this runs on the event loop.
    return {"hello_responses": sum(_hello.statuses.values())}

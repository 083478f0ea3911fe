"""A plugin handler at its cheapest: ``GET /mem`` answers 1 KiB from memory.

For ``bench/cpu_per_request.py``'s ``p-1k`` workload: the kernel's dynamic
path (parse, Request, route, the handler's checks, framing, log) with next
to nothing of a plugin's own in it.  Loaded as
``--plugins-dir bench/plugins --plugins trivial``.
"""
from flashplug import Response, Route, hookimpl

BODY = b"x" * 1024
HEADERS = (("Content-Type", "application/octet-stream"), ("Cache-Control", "no-store"))


async def memory(request):
    return Response(200, list(HEADERS), BODY)


@hookimpl
def flashplug_routes():
    return [Route(path="/mem", handler=memory)]

"""A static-file ASGI app for hypercorn, the floor of issue 17's HTTP/2
comparison (bench/h2_bench.py --hypercorn PYTHON): files under $DOCROOT,
kept in memory after their first read, with Content-Type and
Content-Length; anything else is 404."""
import mimetypes
import os

ROOT = os.path.realpath(os.environ.get("DOCROOT", "."))
_files = {}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = os.path.realpath(os.path.join(ROOT, scope["path"].lstrip("/")))
    body = _files.get(path)
    if body is None and path.startswith(ROOT + os.sep) and os.path.isfile(path):
        with open(path, "rb") as f:
            body = _files[path] = f.read()
    if body is None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    ctype = (mimetypes.guess_type(path)[0] or "application/octet-stream").encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

"""An aiohttp static file server: the comparison point for Python servers.

Theory of operation: the plainest aiohttp deployment of a directory,
`web.static` on "/", access log off, default event loop, one process.
Usage: python aiohttp_static.py DOCROOT PORT
"""

import resource
import sys

from aiohttp import web


def main() -> None:
    root, port = sys.argv[1], int(sys.argv[2])
    # Workload (d) holds 10,000 idle connections open against it.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    app = web.Application()
    app.add_routes([web.static("/", root)])
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()

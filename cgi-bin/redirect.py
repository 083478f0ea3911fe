#!/usr/bin/env python3
"""Redirects.  ?to=/path is a local redirect (the server answers for /path
itself); ?to=http://... is a client redirect (302 and a small document)."""
import html
import os
from urllib.parse import parse_qs

to = parse_qs(os.environ.get("QUERY_STRING", "")).get("to", ["/cgi-bin/hello.sh"])[0]
if to.startswith("/") and not to.startswith("//"):
    print(f"Location: {to}\n")
else:
    print(f"Location: {to}")
    print("Content-Type: text/html\n")
    print(f'<p>Moved to <a href="{html.escape(to)}">{html.escape(to)}</a></p>')

#!/usr/bin/env python3
"""A form handler for GET and POST, without the removed `cgi` module.

GET shows the form (and echoes any query fields); POST reads exactly
CONTENT_LENGTH bytes of application/x-www-form-urlencoded input from stdin
and echoes the fields back, HTML-escaped.
"""
import html
import os
import sys
from urllib.parse import parse_qsl

method = os.environ.get("REQUEST_METHOD", "GET")
if method == "POST":
    length = int(os.environ.get("CONTENT_LENGTH") or 0)
    ctype = os.environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    data = sys.stdin.buffer.read(length)
    if ctype != "application/x-www-form-urlencoded":
        sys.stdout.write("Status: 415 Unsupported Media Type\n"
                         "Content-Type: text/plain\n\n"
                         "send application/x-www-form-urlencoded\n")
        sys.exit(0)
    fields = parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True)
else:
    fields = parse_qsl(os.environ.get("QUERY_STRING", ""), keep_blank_values=True)

rows = "".join(f"<li><b>{html.escape(k)}</b> = {html.escape(v)}</li>\n"
               for k, v in fields)
sys.stdout.write(f"""Content-Type: text/html; charset=utf-8

<!doctype html>
<html><head><title>Form</title></head><body>
<h1>{html.escape(method)}</h1>
<ul>
{rows}</ul>
<form method="post" action="{html.escape(os.environ.get('SCRIPT_NAME', ''))}">
<input name="name" value=""> <textarea name="text"></textarea>
<button>Send</button>
</form>
</body></html>
""")

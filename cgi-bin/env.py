#!/usr/bin/env python3
"""Dump the CGI environment as text/plain, one NAME=value a line, sorted."""
import os
import sys

out = sys.stdout.buffer
out.write(b"Content-Type: text/plain; charset=utf-8\n\n")
for name in sorted(os.environb):
    out.write(name + b"=" + os.environb[name] + b"\n")
args = sys.argv[1:]
if args:
    out.write(b"argv=" + repr(args).encode() + b"\n")
out.write(b"cwd=" + os.getcwdb() + b"\n")

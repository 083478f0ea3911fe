#!/usr/bin/env python3
"""Stream a line every 100 ms (?n=COUNT lines, default 10), flushing each,
so a client can watch the output arrive."""
import os
import sys
import time
from urllib.parse import parse_qs

n = int(parse_qs(os.environ.get("QUERY_STRING", "")).get("n", ["10"])[0])
sys.stdout.write("Content-Type: text/plain\n\n")
sys.stdout.flush()
for i in range(n):
    sys.stdout.write(f"line {i} at {time.monotonic():.3f}\n")
    sys.stdout.flush()
    time.sleep(0.1)

#!/usr/bin/env python3
# The Python counterpart of hello.sh (the benchmark runs both).
import os
print("Content-Type: text/plain\n\nHello from " + os.environ.get("SCRIPT_NAME", "?"))

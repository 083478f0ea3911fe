#!/bin/sh
# The smallest CGI script: a header block, a blank line, a body.
printf 'Content-Type: text/plain\n\nHello from %s\n' "$SCRIPT_NAME"

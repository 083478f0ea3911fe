#!/bin/sh
# A non-parsed-header script: it writes the whole HTTP response itself,
# status line included, and the server passes it on untouched.
printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n'
printf 'Hello from an NPH script\n'

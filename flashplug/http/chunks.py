"""The chunk sizes of a chunked request body, read beside llhttp.

Theory of operation: llhttp checks a chunked body's syntax (RFC 9112 §7.1)
but httptools does not tell us a chunk's size, only its data as it comes.
So a chunk that declares more than ``--max-body-size`` would be found out
only once that much data had arrived (or the client stalled): nginx and
Apache refuse it as soon as its chunk-size line is read.  ``ChunkSizes``
follows the framing of the bytes llhttp is given, just far enough to read
each chunk-size: the hex digits at the start of a chunk line, then (with
llhttp checking the extensions) up to its LF, then past the data and its
CRLF by arithmetic alone.  After the last chunk (size 0) it reads nothing
more: the trailer section and the bytes of the next request are llhttp's.

Leading zeros are legal (``1*HEXDIG``): ``0000000000000000000001`` is a
size of 1, as llhttp reads it.  A size llhttp cannot hold (2**64 or more)
is its "chunk size overflow", a 400 here too; a size that takes the sizes
declared so far past the limit is a 413.  Bytes that break the syntax are
left to llhttp's error (this only reads; it never makes a size of them).
"""
import re

from .h1_checks import ProtocolError

_HEX = re.compile(rb"[0-9A-Fa-f]*")
_TO_LF = re.compile(rb"[^\n]*(\n)?")
# llhttp keeps a chunk size in a uint64_t.
SIZE_LIMIT = 1 << 64
# Where the scan is in the framing.
_SIZE, _LINE, _DATA, _DONE = range(4)


class ChunkSizes:
    """Reads the chunk sizes of one chunked body; ``feed`` it each piece of
    the body, in order, before llhttp gets that piece.

    Args:
        limit (int): the most body bytes the request may declare
            (``--max-body-size``).
    """

    __slots__ = ("limit", "declared", "size", "skip", "state")

    def __init__(self, limit):
        self.limit = limit
        self.declared = 0     # bytes of the chunks whose size was read
        self.size = 0         # the size being read (its digits so far)
        self.skip = 0         # bytes of data and CRLF still to pass
        self.state = _SIZE

    def feed(self, data):
        """Read the framing in ``data`` (bytes or memoryview).

        Raises:
            ProtocolError: 400 when a chunk size is 2**64 or more, 413
                ("Content Too Large", RFC 9110 §15.5.14) when the chunks
                declared so far come to more than ``limit`` bytes: the
                400 as soon as the digits say so, the 413 once they end.
        """
        at, end = 0, len(data)
        while at < end:
            state = self.state
            if state == _DATA:
                step = min(self.skip, end - at)
                self.skip -= step
                at += step
                if not self.skip:
                    self.state = _SIZE
            elif state == _SIZE:
                digits = _HEX.match(data, at).group()
                if digits:
                    self.size = (self.size << 4 * len(digits)) + int(digits, 16)
                    if self.size >= SIZE_LIMIT:     # more digits only add to it
                        raise ProtocolError(400, "Bad Request: chunk size overflow")
                    at += len(digits)
                if at < end:
                    # The digits ended: the size is known.
                    if self.declared + self.size > self.limit:
                        raise ProtocolError(413, "Content Too Large")
                    self.state = _LINE
            elif state == _LINE:
                line = _TO_LF.match(data, at)
                if line.group(1) is None:
                    return
                at = line.end()
                self.declared += self.size
                if self.size:
                    self.skip, self.size, self.state = self.size + 2, 0, _DATA
                else:
                    self.state = _DONE
            else:
                return

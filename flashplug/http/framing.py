"""Which responses may carry content and framing fields (RFC 9110, RFC 9112).

Theory of operation: a handler, a CGI script or a backend says what status
and headers it wants; whether the message may have a body, and so a
``Content-Length`` or ``Transfer-Encoding``, follows from the status alone
and is not theirs to decide:

==============  =========================================================
1xx, 204, 304   no content and no framing field: the message ends after
                its header block (RFC 9112 §6.3 rule 1; RFC 9110 §8.6 and
                §6.4.1 forbid Content-Length on 1xx and 204; on 304 it
                could only repeat the 200's length, so we send none)
205             no content (RFC 9110 §15.3.6), but framed: the server
                sends ``Content-Length: 0``
anything else   content as the handler gives it
==============  =========================================================

Apache and lighttpd strip such fields from a CGI response; Varnish refuses
the response.  We strip them: the client still gets the status it was meant
to get.  A HEAD response keeps the framing fields a GET would have had (RFC
9110 §9.3.2), only its body is left out; that is the writer's business, not
this table's.
"""

#: Header fields that frame a message body (lowercase).
FRAMING_FIELDS = frozenset({"content-length", "transfer-encoding"})
#: Fields the server writes itself in an HTTP/1.1 response (lowercase): a
#: handler's own are dropped.
SERVER_FIELDS = frozenset(("connection", "transfer-encoding", "date", "server", "keep-alive"))


def is_bodiless(status):
    """True when a response with ``status`` ends after its header block:
    1xx, 204 and 304 carry neither content nor a framing field."""
    return status < 200 or status == 204 or status == 304


def must_be_empty(status):
    """True when a response with ``status`` must have no content: the
    bodiless ones and 205 Reset Content (which is framed, with length 0)."""
    return status == 205 or is_bodiless(status)


def strip_framing_for_status(status, headers):
    """``headers`` (``(name, value)`` pairs, any case) without
    Content-Length and Transfer-Encoding when ``status`` allows no content;
    the same list object otherwise.

    For a bodiless status the fields go (the message has no body to
    frame); for 205 they go too, and the writer frames the empty content
    itself.
    """
    if not must_be_empty(status):
        return headers
    return [(name, value) for name, value in headers
            if name.lower() not in FRAMING_FIELDS]


#: Representation metadata a 304 leaves out (RFC 9110 §15.4.5: "SHOULD NOT
#: generate representation metadata other than" Content-Location, Date,
#: ETag, Vary, Cache-Control and Expires, but for what guides a cache's
#: update, such as Last-Modified): a cache that updates its stored response
#: with the 304's fields (RFC 9111 §4.3.4) would take a script's stray
#: Content-Type for the stored body's.  Apache drops some from a script's
#: 304 (Content-Type; lighttpd keeps them all).
NOT_MODIFIED_DROPPED = frozenset(("content-type", "content-encoding", "content-language"))


def strip_not_modified_metadata(headers):
    """``headers`` of a gateway's 304 without NOT_MODIFIED_DROPPED."""
    return [(name, value) for name, value in headers
            if name.lower() not in NOT_MODIFIED_DROPPED]

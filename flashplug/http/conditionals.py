"""Conditional requests (RFC 9110 §13): validators and precondition order.

Theory of operation: the static handler knows two validators of a file, a
strong entity-tag built from its stat result and its modification time in
whole seconds (a variant compressed on the fly has a weak tag instead, see
``flashplug.compress``).  ``evaluate`` checks the request's preconditions against
them in the order of RFC 9110 §13.2.2 and answers "go on", 304 or 412;
``if_range_allows`` is step 5 of that order, asked only when a Range header
is present.

Per RFC 9110 §13.2.1 the caller applies preconditions only when the
response without them would be 2xx (never to a 404, say).

Malformed fields: an invalid date is ignored, as §13.1.3/§13.1.4 require.
An entity-tag list that does not parse matches nothing: for If-Match that
fails safe (412, no write against a version we cannot name), for
If-None-Match it means a full response.
"""

import re

from .dates import parse_http_date

# One list member: optional whitespace, an optional entity-tag, optional
# whitespace, then a comma or the end.  Empty members are allowed by the
# list rule (RFC 9110 §5.6.1).  A quoted opaque-tag may contain commas but
# no DQUOTE and no control characters; "W/" is case-sensitive.
_LIST_MEMBER = re.compile(r'[ \t]*(?:(W/)?("[^"\x00-\x1f\x7f]*"))?[ \t]*(,|\Z)')
_ONE_ETAG = re.compile(r'(W/)?("[^"\x00-\x1f\x7f]*")')


def make_etag(mtime_ns, size, ino):
    """A strong entity-tag for a file, quotes included.

    Nanosecond mtime, size and inode: a file rewritten within the same
    second, or replaced by a rename that kept mtime and size, still gets a
    new tag.  Hex keeps it short; no hashing of content, it must be cheap.
    """
    return '"%x-%x-%x"' % (mtime_ns, size, ino)


def parse_etag_list(value):
    """The entity-tags of an If-Match / If-None-Match value.

    Returns a list of ``(weak, opaque_tag)`` pairs, ``opaque_tag`` with its
    quotes, or None when the value is malformed (including a "*" mixed into
    a list).  A lone "*" is the caller's business, see ``etag_list_matches``.
    """
    tags = []
    pos = 0
    while True:
        m = _LIST_MEMBER.match(value, pos)
        if m is None:
            return None
        weak, opaque, sep = m.groups()
        if opaque is not None:
            tags.append((weak is not None, opaque))
        if not sep:
            return tags
        pos = m.end()


def _split_etag(etag):
    if etag.startswith("W/"):
        return True, etag[2:]
    return False, etag


def etag_list_matches(value, etag, exists, strong):
    """Whether the header ``value`` matches our current ``etag``.

    ``exists`` says the resource has a current representation ("*" matches
    exactly then).  ``strong`` picks the strong comparison (If-Match) over
    the weak one (If-None-Match), RFC 9110 §8.8.3.2.
    """
    value = value.strip(" \t")
    if value == "*":
        return exists
    if etag is None:
        return False
    our_weak, our_opaque = _split_etag(etag)
    if strong and our_weak:
        return False
    # The usual browser revalidation sends back exactly our tag.
    if value == etag:
        return True
    tags = parse_etag_list(value)
    if not tags:
        return False
    for weak, opaque in tags:
        if opaque == our_opaque and not (strong and weak):
            return True
    return False


def evaluate(method, get_header, etag, last_modified):
    """Apply RFC 9110 §13.2.2 steps 1-4 to a request.

    ``get_header(lowercase_name)`` returns a field value or None.  ``etag``
    is our entity-tag (or None), ``last_modified`` our modification time in
    whole seconds (or None).  Returns None to go on with the request, 304
    (Not Modified) or 412 (Precondition Failed).
    """
    exists = etag is not None or last_modified is not None

    # Step 1 and 2: the preconditions that protect writes.
    value = get_header("if-match")
    if value is not None:
        if not etag_list_matches(value, etag, exists, strong=True):
            return 412
    else:
        value = get_header("if-unmodified-since")
        if value is not None and last_modified is not None:
            date = parse_http_date(value)
            if date is not None and last_modified > date:
                return 412

    # Step 3 and 4: the preconditions that save a transfer.
    safe = method == "GET" or method == "HEAD"
    value = get_header("if-none-match")
    if value is not None:
        if etag_list_matches(value, etag, exists, strong=False):
            return 304 if safe else 412
    elif safe and last_modified is not None:
        value = get_header("if-modified-since")
        if value is not None:
            date = parse_http_date(value)
            if date is not None and last_modified <= date:
                return 304
    return None


def if_range_allows(value, etag, last_modified):
    """RFC 9110 §13.1.5: may the Range header be honoured?

    An entity-tag must match ours by strong comparison (so a weak tag never
    matches); an HTTP-date must equal our modification time exactly.
    Anything else, including garbage, means "send the whole representation".
    When our own entity-tag is weak (bytes compressed on the fly), nothing
    matches: such a tag says the bytes may differ under one modification
    time, so that time is no strong validator either (§8.8.2.2).
    """
    if etag is not None and etag.startswith("W/"):
        return False
    value = value.strip(" \t")
    m = _ONE_ETAG.fullmatch(value)
    if m:
        weak, opaque = m.groups()
        return not weak and etag is not None and opaque == etag
    if last_modified is None:
        return False
    return parse_http_date(value) == last_modified

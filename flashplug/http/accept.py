"""Content negotiation on ``Accept`` (RFC 9110 §12.5.1), as pure functions.

A format's quality is that of the most specific media range matching it:
``type/subtype`` beats ``type/*``, which beats ``*/*``; a range that names
nothing we make counts for nothing.  Plugins with several output formats
(autoindex, status) pick theirs with these.

A q is read by the qvalue grammar of RFC 9110 §12.4.2 (0 to 1, at most
three decimals); anything else is unreadable and counts as 0, so neither
``q=nan``, ``q=inf``, ``q=1_0`` nor ``q=-1`` (all of which Python's
``float`` takes) can lift or sink a format past the scale.
"""
import re

_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


def qvalue(text):
    """The q a ``q=`` parameter's value gives (``str``): 0 to 1, or 0 when
    it is outside the qvalue grammar (RFC 9110 §12.4.2)."""
    return float(text) if _QVALUE.fullmatch(text) else 0.0


def media_ranges(accept):
    """``[(media range, q)]`` from an Accept value, ranges lower-cased.

    Each q is in [0, 1]: an unreadable one counts as 0.  An item without a
    "/" is not a media range and is left out.
    """
    ranges = []
    for item in accept.split(","):
        media, *params = [part.strip() for part in item.split(";")]
        media = media.lower()
        if "/" not in media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                q = qvalue(value.strip())
        ranges.append((media, q))
    return ranges


def quality(media, ranges):
    """The q the most specific range in ``ranges`` gives ``media``; 0 if none."""
    major = media.split("/")[0]
    best_q, best_specificity = 0.0, -1
    for rng, q in ranges:
        specificity = {media: 2, f"{major}/*": 1, "*/*": 0}.get(rng, -1)
        if specificity > best_specificity:
            best_q, best_specificity = q, specificity
    return best_q

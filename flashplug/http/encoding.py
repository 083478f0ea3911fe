"""Content-coding negotiation on ``Accept-Encoding`` (RFC 9110 §12.5.3), as
pure functions.

Theory of operation: ``codings`` reads the field into ``{coding: q}``;
``choose`` picks, among the codings a resource is offered in, the one the
client rates highest.  The rules, in the RFC's words where it has them:

* a coding listed with q > 0 is acceptable; one not listed is acceptable
  when ``*`` is listed with q > 0 (``*`` never stands for ``identity`` when
  identity is listed itself);
* ``identity`` (no coding) is acceptable unless the field says
  ``identity;q=0``, or ``*;q=0`` without naming identity; an empty field
  asks for identity only;
* an unlisted identity has no q of its own: it is taken only when no
  offered coding is acceptable (a client that lists ``gzip`` wants gzip,
  even though the RFC lets identity stand beside it).  Listed with a q, it
  wins only over codings with a lower q;
* ties between codings go to the order the caller offers them in (ours:
  br, then zstd, then gzip: the smallest result first);
* ``x-gzip`` is gzip (§8.4.1.3); names are case-insensitive; a q outside
  the qvalue grammar counts as 0 (``flashplug.http.accept``).

``choose`` returns None when neither an offered coding nor identity is
acceptable: the caller answers 406 (§15.5.7).
"""
from flashplug.http.accept import qvalue

IDENTITY = "identity"
_ALIASES = {"x-gzip": "gzip"}


def codings(value):
    """``{coding: q}`` from an Accept-Encoding value (lower-cased names).

    A coding listed twice keeps its first q; an empty item is skipped.
    """
    found = {}
    for item in value.split(","):
        name, *params = [part.strip() for part in item.split(";")]
        if not name:
            continue
        name = name.lower()
        name = _ALIASES.get(name, name)
        q = 1.0
        for param in params:
            key, _, raw = param.partition("=")
            if key.strip().lower() == "q":
                q = qvalue(raw.strip())
        found.setdefault(name, q)
    return found


def choose(value, offered):
    """The coding to send: one of ``offered`` (names, in order of our own
    preference), ``IDENTITY``, or None when nothing offered is acceptable.

    ``value`` is the Accept-Encoding field (``str``), or None when the
    request has none: then identity, as any client copes with it.
    """
    if value is None:
        return IDENTITY
    rated = codings(value)
    star = rated.get("*")
    best, best_q = None, 0.0
    for coding in offered:
        q = rated.get(coding, star if star is not None else 0.0)
        if q > best_q:
            best, best_q = coding, q
    identity_q = rated.get(IDENTITY)
    if identity_q is None:
        identity_ok = star is None or star > 0.0
        return best if best is not None else (IDENTITY if identity_ok else None)
    if best is not None and best_q >= identity_q:
        return best
    return IDENTITY if identity_q > 0.0 else None

"""Can the user a ``spawn:`` backend runs as read the document root?

Theory of operation: under root, spawned backends run as ``nobody`` (or
``--fastcgi-user``).  php-cgi that cannot enter the document root answers
every request "No input file specified." and logs nothing of ours, so start-up
checks the permission bits itself: search (x) on every folder from ``/``
down, and read and search (r+x) on the root itself, for the user's uid,
gid and supplementary groups.  ``os.access`` cannot answer for another
user (and root passes it anyway), hence the bits.  ACLs are not read: a
root an ACL opens may draw a needless warning, never a missed one.

``stat`` is a parameter so the unit tests can give a fake file system.
"""
import os
import stat as st

_READ, _SEARCH = 4, 1


def _allows(info, uid, gids, want):
    """Do ``info``'s permission bits grant ``want`` (r=4, x=1) to the user?"""
    if info.st_uid == uid:
        bits = (info.st_mode >> 6) & 7
    elif info.st_gid in gids:
        bits = (info.st_mode >> 3) & 7
    else:
        bits = info.st_mode & 7
    return bits & want == want


def unreachable(root, creds, stat=os.stat):
    """The first folder on the way to ``root`` (absolute) that ``creds``
    (uid, gid, groups) may not pass, with what it lacks, as
    ``(path, "search" | "read")``; None when the user can list and enter
    the root (or it cannot be looked at: start-up reports that elsewhere)."""
    uid, gid, groups = creds
    if uid == 0:
        return None
    gids = {gid, *groups}
    path = "/"
    parts = [p for p in os.path.normpath(root).split("/") if p]
    for i in range(len(parts) + 1):
        if i:
            path = os.path.join(path, parts[i - 1])
        try:
            info = stat(path)
        except OSError:
            return None
        if not st.S_ISDIR(info.st_mode):
            return None
        if not _allows(info, uid, gids, _SEARCH):
            return path, "search"
        if i == len(parts) and not _allows(info, uid, gids, _READ):
            return path, "read"
    return None

"""Reading a directory for a listing: the blocking half of autoindex.

Theory of operation: ``scan`` runs in a helper thread, never on the event
loop.  One ``os.scandir`` pass gives the names; one ``stat`` per entry (which
follows symlinks, so a link shows what it points at) gives type, size and
time.  ``Policy`` decides what is hidden: dotfiles unless the server shows
them, names matching the ignore globs, and symlinks whose target leaves the
document root unless the server follows symlinks.  Broken links and entries
that vanish while we look are left out: they could not be fetched anyway.

The result is a ``Listing``: plain, immutable data that the loop can cache
and render from any thread.  Its ``digest`` sums up everything a rendering
shows, so two scans that would draw the same page share one entity-tag even
if the directory's mtime says nothing (a file that grew in place does not
touch its directory's mtime, but does change the digest).

Names stay as ``os.scandir`` gives them for a ``str`` path: undecodable
bytes are surrogate-escaped, so ``os.fsencode(name)`` gives the exact bytes
back for building a link.
"""
import fnmatch
import hashlib
import os
import stat
from collections import namedtuple
from dataclasses import dataclass

#: One listed name.  ``kind`` is "file", "directory" or "other"; ``size`` is
#: None except for files; ``mtime_ns`` is the (target's) modification time.
Entry = namedtuple("Entry", "name kind size mtime_ns")

#: The text of a HEADER or README shown around the listing; ``is_html`` says
#: whether it goes in as markup (``.html``) or escaped inside ``<pre>``.
Notice = namedtuple("Notice", "name text is_html")

#: Searched in this order; the first readable one wins (Apache's order).
HEADER_NAMES = ("HEADER.html", "HEADER.txt")
README_NAMES = ("README.html", "README.txt")
_NOTICE_NAMES = frozenset(HEADER_NAMES + README_NAMES)

#: A notice larger than this is left out: it is meant as a short note, and a
#: listing must not turn into a way to inline a huge file into every page.
MAX_NOTICE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Policy:
    """What a listing hides.  ``docroot`` must be a realpath."""

    docroot: str
    show_dotfiles: bool = False
    follow_symlinks: bool = False
    ignore: tuple = ()
    unlisted: tuple = ()   # realpaths of folders never listed (CGI)

    def hides_name(self, name):
        if name.startswith(".") and not self.show_dotfiles:
            return True
        return any(fnmatch.fnmatchcase(name, pat) for pat in self.ignore)

    def inside_docroot(self, path):
        return _within(os.path.realpath(path), self.docroot)

    def may_list(self, path):
        real = os.path.realpath(path)
        return not any(_within(real, d) for d in self.unlisted)


def _within(real, root):
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class Listing:
    """A scanned directory."""

    mtime_ns: int          # the directory's own mtime, the cache key
    entries: tuple         # of Entry, in scandir order
    header: Notice = None
    readme: Notice = None
    digest: str = ""       # hex; changes whenever anything shown changes
    last_modified: int = 0  # whole seconds: newest of dir, entries, notices


def dir_mtime_ns(path):
    """The directory's mtime: the cheap check that decides a cache hit."""
    return os.stat(path).st_mtime_ns


def _kind(mode):
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _read_notice(path, name):
    # The scan saw a regular file, but it may have been swapped for a FIFO
    # since: open without blocking and check the type on the descriptor.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, MAX_NOTICE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_NOTICE_BYTES:
        return None
    # A stray non-UTF-8 byte should not cost the whole notice.
    return Notice(name, data.decode("utf-8", "replace"), name.endswith(".html"))


def scan(path, policy):
    """Read directory ``path`` into a :class:`Listing`.  Blocking.

    Raises OSError (FileNotFoundError, PermissionError, NotADirectoryError)
    when the directory itself cannot be read, and PermissionError for a
    folder the policy never lists.
    """
    if policy.unlisted and not policy.may_list(path):
        raise PermissionError(f"{path}: not listed")
    mtime_ns = os.stat(path).st_mtime_ns
    entries = []
    notices = {}   # name -> (path, mtime_ns) of usable HEADER/README files
    with os.scandir(path) as it:
        for de in it:
            name = de.name
            is_notice = name in _NOTICE_NAMES
            if policy.hides_name(name) and not is_notice:
                continue
            try:
                if (de.is_symlink() and not policy.follow_symlinks
                        and not policy.inside_docroot(de.path)):
                    continue
                st = de.stat()   # follows symlinks
            except OSError:      # broken link, vanished, unreadable
                continue
            if is_notice and stat.S_ISREG(st.st_mode):
                notices[name] = (de.path, st.st_mtime_ns)
                if policy.hides_name(name):
                    continue
            kind = _kind(st.st_mode)
            entries.append(Entry(name, kind,
                                 st.st_size if kind == "file" else None,
                                 st.st_mtime_ns))

    newest = max([mtime_ns] + [e.mtime_ns for e in entries])
    found = {}
    for slot, names in (("header", HEADER_NAMES), ("readme", README_NAMES)):
        for name in names:
            if name in notices:
                npath, nmtime = notices[name]
                notice = _read_notice(npath, name)
                if notice is not None:
                    found[slot] = notice
                    newest = max(newest, nmtime)
                    break

    entries = tuple(entries)
    header, readme = found.get("header"), found.get("readme")
    return Listing(mtime_ns, entries, header, readme,
                   _digest(mtime_ns, entries, header, readme),
                   newest // 1_000_000_000)


def _digest(mtime_ns, entries, *notices):
    """A short hash of everything a rendering of a listing can show."""
    h = hashlib.blake2b(digest_size=12)
    h.update(b"%d\n" % mtime_ns)
    parts = ["%s\0%s\0%s\0%d" % e for e in entries]
    h.update("\n".join(parts).encode("utf-8", "surrogateescape"))
    for notice in notices:
        if notice is not None:
            h.update(b"\0notice\0")
            h.update(("%s\0%s" % (notice.name, notice.text)).encode("utf-8", "surrogateescape"))
    return h.hexdigest()

"""Finding the script in a request path, and splitting off the path-info.

Theory of operation: ``/cgi-bin/app.py/a/b`` is walked one segment at a
time from the CGI directory: ``cgi-bin/app.py`` is a directory?  go on.  A
regular file?  That is the script, and ``/a/b`` is its path-info (RFC 3875
§4.1.5).  The walk is blocking file-system work, so the handler runs it in
a helper; ``stat`` is a parameter so tests can give a fake file system.

Refusals never show a source file: what is found in a CGI directory either
runs or gets 403.  403 for anything that exists but is not a runnable
script (a directory, a non-executable file, a FIFO), 404 for what does not
exist.  Hidden segments (``.git``) are 404 unless dotfiles are shown.
Symlinks are refused (403) unless the operator allows them, as the static
handler does.

In extension mode (``--cgi-ext``) the walk starts at the document root and
the script is the first regular file whose name has one of the extensions.
A path whose only segments with the extension are folders (``/x.php/``)
names no script: ``NotAScript`` hands it to the static handler.
"""
import errno
import os
import stat as st
from dataclasses import dataclass

from flashplug.http.paths import is_hidden
from flashplug.memo import Memo


class NotFound(Exception):
    pass


class NotAScript(Exception):
    """Extension mode: the path names no script, only a folder whose name
    has the extension (``/x.php/``, ``/x.php``, ``/x.php/notes.txt``).  Such
    a path is the static handler's: nginx's ``location ~ \\.php$`` does not
    match ``/x.php/`` either."""


class Forbidden(Exception):
    """Found but not runnable; ``cause`` says why, in words for the operator
    (no file-system path: it may be shown to a loopback client)."""

    def __init__(self, path, cause="is not a script", fspath=None):
        super().__init__(path, cause)
        self.path = path        # the URL path refused
        self.cause = cause
        self.fspath = fspath    # the file, for the log line's fix


#: The cause of a 403 for a script file without the exec bit: the classic
#: CGI set-up mistake, logged as a warning (the other causes at debug level).
NOT_EXECUTABLE = "is not executable"


@dataclass
class Script:
    filename: str      # absolute path on disk
    script_name: str   # the URL path of the script (SCRIPT_NAME)
    path_info: str     # the rest of the decoded URL path, "" when none
    dir: str           # the script's folder: its working directory

    @property
    def nph(self):
        """Non-parsed-header script: its output goes to the client as is."""
        return os.path.basename(self.filename).startswith("nph-")


def locate(path, prefix, root, exts=None, show_dotfiles=False,
           follow_symlinks=False, stat=None, access=os.access, executable=True):
    """Find the script for the decoded URL ``path`` under ``prefix``.

    :param prefix: the URL prefix mounted on ``root``, ending in ``/``.
    :param root: the directory on disk (absolute).
    :param exts: in extension mode, a tuple of extensions (``(".cgi",)``).
    :param stat: ``os.stat``-like callable; defaults to ``os.stat`` or
        ``os.lstat`` depending on ``follow_symlinks``; ``access`` likewise
        stands in for ``os.access``.
    :param executable: the script must have an execute bit (CGI); False for
        files another program runs (the fastcgi plugin's ``.php``).
    :raises NotFound, Forbidden:
    """
    if stat is None:
        stat = os.stat if follow_symlinks else os.lstat
    if not show_dotfiles and is_hidden(path):
        raise NotFound(path)
    rest = path[len(prefix):] if path.startswith(prefix) else ""
    segments = [s for s in rest.split("/") if s]
    fs = root
    for i, seg in enumerate(segments):
        fs = os.path.join(fs, seg)
        try:
            info = stat(fs)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(path) from None
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:
                raise NotFound(path) from None   # no file has such a name (as static: 404)
            raise Forbidden(path, f"cannot be read ({e.strerror})") from None
        mode = info.st_mode
        if st.S_ISDIR(mode):
            continue
        if st.S_ISLNK(mode):
            raise Forbidden(path, "is a symlink (allowed with --follow-symlinks)")
        if not st.S_ISREG(mode):
            raise Forbidden(path, "is not a regular file")  # FIFO, socket, device
        if exts is not None and not seg.endswith(exts):
            if not any(s.endswith(exts) for s in segments[i + 1:]):
                # Only folders on the way had the extension: a document
                # below them (``/x.php/notes.txt``), the static handler's.
                raise NotAScript(path)
            # Extension mode: a plain file on the way to a script-named
            # segment (``/a.txt/b.php``).  Only the static handler may serve
            # it, and it never sees this request.
            raise Forbidden(path, "is not a script")
        # Root passes access(X_OK) when any exec bit is set, so the mode
        # is checked too: a 0644 file is not a script for root either.
        if executable and (not (mode & 0o111) or not access(fs, os.X_OK)):
            raise Forbidden(prefix + "/".join(segments[:i + 1]), NOT_EXECUTABLE, fs)
        script_name = prefix + "/".join(segments[:i + 1])
        path_info = "/".join([""] + segments[i + 1:])
        if path.endswith("/"):
            path_info += "/"
        return Script(fs, script_name, path_info, os.path.dirname(fs))
    if exts is not None:
        raise NotAScript(path)   # folders all the way: served (or listed) as folders
    if not segments:
        try:
            stat(root)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(path) from None  # a default CGI directory the site lacks
    # The CGI directory itself or a folder in it: no listing, ever.
    raise Forbidden(path, "is a folder: CGI folders are never listed")


class Found:
    """Scripts found, each kept ``valid`` seconds (the kernel's
    --cache-valid; 0 keeps none): a hit skips the helper's round trip, and
    a script removed or made non-executable is looked up again within
    ``valid`` seconds, as the static file caches' entries are.  Past
    ``entries`` scripts the cache starts again empty."""

    def __init__(self, valid, entries=1024):
        self._valid = valid
        self._found = Memo(entries)

    def get(self, key, now):
        """The Script kept for ``key`` at time ``now``, or None."""
        hit = self._found.data.get(key)
        return hit[0] if hit is not None and hit[1] > now else None

    def put(self, key, script, now):
        if self._valid > 0:
            self._found.put(key, (script, now + self._valid))

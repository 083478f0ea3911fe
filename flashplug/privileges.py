"""Start-up in the master: give up root, then check the log files.

Theory of operation: ``flashplug serve`` may start as root to bind a port
below 1024.  Right after binding, ``drop_privileges`` switches the master
to ``--user``/``--group`` (supplementary groups, then group, then user, the
only order in which each step is still allowed), before any plugin's
``flashplug_configure`` or start-up code runs and before workers are
forked, so nothing that serves a request runs as root.  The log files are
checked after that, as the user that will write them.
"""
import errno
import grp
import os
import pwd
import stat

from flashplug.errors import UsageError
from flashplug.log import setup_error_log


def lookup_user(name):
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError, OverflowError):   # a NUL, a uid past the range
        raise UsageError(f"--user {name}: no such user on this machine "
                         f"(see /etc/passwd, or `id {name}`)") from None


def lookup_group(name):
    try:
        return grp.getgrgid(int(name)).gr_gid if name.isdigit() else grp.getgrnam(name).gr_gid
    except (KeyError, ValueError, OverflowError):   # a NUL, a gid past the range
        raise UsageError(f"--group {name}: no such group on this machine "
                         f"(see /etc/group)") from None


#: The --user this process switched to, once it has (for error messages:
#: what root could import, this user may not be able to read).
dropped_to = None


def drop_privileges(config):
    """Run the rest of this process (and its workers) as ``--user``, in its
    primary group or ``--group``, with the user's supplementary groups.

    Raises UsageError for an unknown user or group, or when the switch
    needs root and we are not.
    """
    user, group = config.get("user"), config.get("group")
    if not user:
        if group:
            raise UsageError("--group needs --user (the user to run as)")
        return
    entry = lookup_user(str(user))
    gid = lookup_group(str(group)) if group else entry.pw_gid
    if os.geteuid() != 0:
        if (entry.pw_uid, gid) == (os.geteuid(), os.getegid()):
            return  # already that user: nothing to drop
        raise UsageError(f"--user {user}: switching users needs root; start as root "
                         f"or leave out --user/--group")
    global dropped_to
    os.setgroups(os.getgrouplist(entry.pw_name, gid))
    os.setgid(gid)
    os.setuid(entry.pw_uid)
    dropped_to = entry.pw_name


def _open_error(flag, path, err):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return UsageError(f"{flag} {path}: the folder {folder} does not exist; "
                          f"create it first (mkdir -p {folder})")
    try:
        who = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        who = str(os.geteuid())
    return UsageError(f"{flag} {path}: cannot open for appending as user {who}: "
                      f"{err.strerror}")


#: Write ends of FIFO logs, held open for the life of the process: when
#: the last writer closes, the reader sees end-of-file, and most (cat,
#: multilog) then exit, before any worker has opened the log.
_held_fifos = []


def _refuse_unread_fifo(flag, path):
    """A FIFO as a log file: opening it for writing waits for a reader, so
    without one the server would hang at start, silently."""
    try:
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            return
        _held_fifos.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    except OSError as e:
        if e.errno == errno.ENXIO:     # no reader (open(2), FIFO with O_NONBLOCK)
            raise UsageError(f"{flag} {path}: a FIFO that no process reads; "
                             f"start its reader first") from None
        # Anything else is for the real open to report.


def check_log_folders(config):
    """``flashplug check``'s part of ``check_logs``: the log files' folders
    exist (whether the files may be appended to depends on the user the
    server starts as, so only a start can tell)."""
    for flag, path in (("--error-log", config.get("error_log")),
                       ("--access-log", config.get("access_log"))):
        if path in (None, "-", "off"):
            continue
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise _open_error(flag, path, None)
        if os.path.isdir(path):     # (a start says so too: no user can append to one)
            example = os.path.join(path, flag[2:].replace("-", ".", 1))
            raise UsageError(f"{flag} {path}: is a directory; give a file in it, "
                             f"such as {example}")


def check_logs(config):
    """Open the error log and make sure every worker can open the access
    log, so a wrong path is one error now, not a worker that dies at start."""
    error_log = config.get("error_log") or "-"
    if error_log != "-":
        _refuse_unread_fifo("--error-log", error_log)
    try:
        setup_error_log(config.log_level, error_log)
    except OSError as e:
        raise _open_error("--error-log", error_log, e) from None
    access_log = config.get("access_log")
    if access_log in (None, "-", "off"):
        return
    _refuse_unread_fifo("--access-log", access_log)
    try:
        with open(access_log, "a"):
            pass
    except OSError as e:
        raise _open_error("--access-log", access_log, e) from None

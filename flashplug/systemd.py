"""systemd's two small protocols: socket activation and ``sd_notify``.

Theory of operation: both are environment variables that systemd sets for
the service's main process, and both are a few lines, so no dependency.

* Socket activation (sd_listen_fds(3)): ``LISTEN_PID`` is our pid,
  ``LISTEN_FDS`` says how many listening sockets start at descriptor 3
  (``SD_LISTEN_FDS_START``), ``LISTEN_FDNAMES`` names them (the ``.socket``
  unit's ``FileDescriptorName=``).  The server serves on the inherited
  socket instead of binding ``--bind``/``--port``; one named ``redirect``
  is ``--redirect-http``'s.
* Readiness (sd_notify(3)): ``NOTIFY_SOCKET`` is a unix datagram socket (a
  path, or ``@name`` in the abstract namespace); we send ``READY=1`` once
  every worker accepts, ``RELOADING=1`` with ``MONOTONIC_USEC=`` when a
  SIGHUP reload begins (what ``Type=notify-reload``, systemd 253, waits
  for) and ``READY=1`` when it ends, ``STOPPING=1`` at a graceful stop, and
  ``STATUS=`` lines for ``systemctl status``.

``take_environment()`` reads and removes the variables at start, so neither
a worker nor a CGI script inherits them: only the main process talks to
systemd (the default ``NotifyAccess=main``).
"""
import logging
import os
import socket
import time

from flashplug.errors import UsageError

log = logging.getLogger("flashplug.systemd")

SD_LISTEN_FDS_START = 3
_ENV = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET")

_notify_address = None     # where notify() sends, or None: not under systemd
_inherited = []            # [(name, socket)] passed by socket activation
_ready = False             # READY=1 was sent: reloads may be announced


def take_environment():
    """Read systemd's variables once and remove them from the environment.

    Raises UsageError when ``LISTEN_FDS`` names descriptors that are not
    listening stream sockets (a ``.socket`` unit with ``Accept=yes`` or a
    datagram socket).
    """
    global _notify_address
    env = {name: os.environ.pop(name, None) for name in _ENV}
    path = env["NOTIFY_SOCKET"]
    if path and (path[0] in "/@"):
        _notify_address = "\0" + path[1:] if path[0] == "@" else path
    if env["LISTEN_PID"] != str(os.getpid()) or not (env["LISTEN_FDS"] or "").isdigit():
        return  # meant for another process (or none): sd_listen_fds(3) ignores it too
    count = int(env["LISTEN_FDS"])
    names = (env["LISTEN_FDNAMES"] or "").split(":")
    for i in range(count):
        fd = SD_LISTEN_FDS_START + i
        name = names[i] if i < len(names) and names[i] else "unknown"
        try:
            sock = socket.socket(fileno=fd)
        except OSError as e:
            raise UsageError(f"LISTEN_FDS: descriptor {fd} ({name}) is not a socket: "
                             f"{e.strerror}") from None
        if sock.type != socket.SOCK_STREAM or \
                not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise UsageError(f"LISTEN_FDS: descriptor {fd} ({name}) is not a listening "
                             f"stream socket; use ListenStream= and Accept=no in the "
                             f".socket unit")
        sock.set_inheritable(False)
        sock.setblocking(False)
        _inherited.append((name, sock))


def inherited_listeners():
    """``(main, redirect)``: the sockets systemd passed (None where none).

    The one named ``redirect`` is ``--redirect-http``'s; of the others,
    flashplug serves one.  Raises UsageError for more.
    """
    redirect = [s for name, s in _inherited if name == "redirect"]
    main = [(name, s) for name, s in _inherited if name != "redirect"]
    if len(main) > 1 or len(redirect) > 1:
        names = ", ".join(name for name, _ in _inherited)
        raise UsageError(f"LISTEN_FDS: {len(_inherited)} sockets passed ({names}); flashplug "
                         f"serves on one, plus one named 'redirect' for --redirect-http "
                         f"(FileDescriptorName=redirect)")
    return (main[0][1] if main else None), (redirect[0] if redirect else None)


def notify(*fields):
    """Send ``fields`` ("READY=1", "STATUS=...") to systemd, if it listens.

    A failure is logged and ignored: systemd's own timeout reports a
    service that never became ready.
    """
    if _notify_address is None:
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto("\n".join(fields).encode("utf-8", "replace"), _notify_address)
    except OSError as e:
        log.warning("cannot notify systemd at NOTIFY_SOCKET: %s", e.strerror)


def ready(status):
    """``READY=1``: serving (at start, and when a reload ends, well or not)."""
    global _ready
    _ready = True
    notify("READY=1", f"STATUS={status}")


def reloading():
    """``RELOADING=1`` with the time systemd 253 wants beside it (only once
    READY=1 was sent: a SIGHUP during start-up is part of the start)."""
    if not _ready:
        return
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the configuration")


def forget():
    """In a forked worker: only the main process talks to systemd."""
    global _notify_address
    _notify_address = None


def is_ready():
    return _ready

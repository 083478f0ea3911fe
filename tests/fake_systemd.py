"""A stand-in for systemd's side of socket activation and sd_notify.

``start(argv, sockets, ...)`` runs a command as systemd runs a service:
the listening sockets at descriptors 3, 4... with ``LISTEN_FDS``,
``LISTEN_PID`` (the service's own pid, set between fork and exec) and
``LISTEN_FDNAMES``, and ``NOTIFY_SOCKET`` naming a datagram socket that
``Notifications`` reads, with the sender's pid of each message (SO_PASSCRED,
as systemd checks ``NotifyAccess=main``).
"""
import fcntl
import os
import socket
import struct
import subprocess
import time
import uuid


def listening_socket(host="127.0.0.1", backlog=128):
    """A bound, listening TCP socket on a free loopback port (what a
    ``.socket`` unit's ``ListenStream=`` makes)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(backlog)
    return sock


class Notifications:
    """The NOTIFY_SOCKET: a unix datagram socket at a path or, with
    ``abstract``, in the abstract namespace (``@name``)."""

    def __init__(self, folder, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"flashplug-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = os.path.join(str(folder), "notify.sock")
            self.sock.bind(self.address)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.received = []          # [(sender pid, {field: value})]

    def wait_for(self, field, timeout=30):
        """The first message not yet returned whose fields include
        ``field`` ("READY=1"); earlier ones are skipped.  Returns (pid,
        fields)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, (pid, fields) in enumerate(self.received):
                name, _, value = field.partition("=")
                if fields.get(name) == value:
                    del self.received[:i + 1]
                    return pid, fields
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {field} from the service; got {self.received}")
            self.sock.settimeout(left)
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                continue
            pid = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[:12])[0]
            fields = dict(line.partition("=")[::2] for line in data.decode().splitlines())
            self.received.append((pid, fields))

    def close(self):
        self.sock.close()


def start(argv, sockets=(), names=None, notify=None, stdout=None, env=None):
    """Start ``argv`` with ``sockets`` passed as systemd passes them; returns
    the Popen.  ``names``: LISTEN_FDNAMES; ``notify``: a Notifications."""
    fds = [s.fileno() for s in sockets]
    variables = dict(env or {})
    if fds:
        variables["LISTEN_FDS"] = str(len(fds))
        if names:
            variables["LISTEN_FDNAMES"] = ":".join(names)
    if notify is not None:
        variables["NOTIFY_SOCKET"] = notify.address

    def as_systemd():
        # Out of the way first (a source may sit where another must go),
        # then into place from SD_LISTEN_FDS_START = 3.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i)
            os.close(fd)
        os.environ.update(variables)
        if fds:
            os.environ["LISTEN_PID"] = str(os.getpid())
    return subprocess.Popen(argv, stdout=stdout, stderr=subprocess.STDOUT,
                            preexec_fn=as_systemd, pass_fds=range(3, 3 + len(fds)))

"""Keep-alive connections carried across a restart in systemd's file descriptor store.

systemd keeps the listening sockets across a restart, but a connection the
editor keeps in its pool dies with the process, and the editor does not
retry. On a planned stop (SIGTERM) every connection that is *between
requests* (answered, nothing of a next request read into our buffers) is
sent to the service manager with ``FDSTORE=1`` and a unique
``FDNAME=flipedit-conn-...``; the kernel keeps the TCP connection open
because systemd now holds a reference. On the next start systemd passes the
stored descriptors after the listening sockets, named in
``$LISTEN_FDNAMES``; the new instance serves them like accepted connections
and at once removes them from the store (``FDSTOREREMOVE=1``), so the store
is empty while a daemon runs: a crash or kill -9 hands over nothing, a
connection closed later is really closed, and nothing can leak in the
manager.

Why only connections between requests: bytes already read from a socket
cannot be put back, so a connection with a partly received or pipelined
request is answered first (the drain finishes it) and handed over after.
Bytes the editor sends while the connection sits in the store wait in the
kernel's socket buffer and are read by the next instance.

Checked against systemd 252's source (src/core/service.c, manager.c): the
store is released only when the unit is inactive with no job queued, so it
survives ``systemctl restart`` (one restart job throughout) and automatic
restarts, and is closed by ``systemctl stop`` (so at SIGTERM the daemon hands over only when it
sees a restart job queued for its unit: ``queued_job``); stored fds follow the socket
unit's fds in ``LISTEN_FDS`` with their ``FDNAME``; a full store closes the
extra fds (which would drop the connection), and ``BARRIER=1`` (systemd 246)
lets us wait until the manager processed what we sent. systemd 252 does not
tell a service its ``FileDescriptorStoreMax=`` (254 sets ``$FDSTORE``, used as
a cap when present), so at start-up a probe (a
pipe's read end stored, then a barrier, then a write to the pipe: EPIPE
means systemd closed it) checks that the store is enabled before we trust it
with connections. Every message goes through ``notify.py``, the daemon's one sender.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

from flipedit_previewd.sd.notify import barrier, notify, notify_address

CONNECTION_PREFIX = "flipedit-conn-"
PROBE_NAME = "flipedit-probe"


def is_stored_connection(name: str) -> bool:
    return name.startswith(CONNECTION_PREFIX)


def probe_store(environ: Mapping[str, str] | None = None) -> bool:
    """Does the manager keep what we store? Store a pipe's read end, wait for the barrier, write to the pipe."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        sent = notify(f"FDSTORE=1\nFDNAME={PROBE_NAME}", [read_end], environ)
        os.close(read_end)
        read_end = -1
        if not sent:
            return False
        kept = False
        if barrier(environ=environ):
            try:
                os.write(write_end, b"?")
                kept = True
            except BrokenPipeError:  # no reader left: systemd closed it (FileDescriptorStoreMax=0, or full)
                kept = False
            except BlockingIOError:
                kept = True
        notify(f"FDSTOREREMOVE=1\nFDNAME={PROBE_NAME}", environ=environ)
        return kept
    finally:
        if read_end >= 0:
            os.close(read_end)
        os.close(write_end)


def connected_stream(fd: int) -> socket.socket | None:
    """A stored descriptor as a socket, if it still is a connected stream socket; otherwise closed, None."""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        if sock.type != socket.SOCK_STREAM or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise OSError("not a connection")
        sock.getpeername()
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock


class Handover:
    """The daemon's side of the store: adopt at start, hand over at a planned stop."""

    def __init__(self, enabled: bool, limit: int, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.wanted = enabled
        self.enabled = False  # until the probe says the manager keeps what we store
        self.limit = limit
        announced = self.environ.get("FDSTORE", "")  # systemd >= 254 tells us FileDescriptorStoreMax=
        if announced.isdigit():
            self.limit = min(limit, int(announced))
        self.adopted: dict[int, str] = {}  # fd -> FDNAME, filled by sockets.adopt_systemd_sockets
        self.resumed = 0
        self.stored = 0
        self.closed = 0
        self.probe_result = "off"
        self.refused = False
        self._seq = 0
        self.next_job = ""

    async def start(self, connect: Callable[[socket.socket], Any]) -> None:
        """Serve what the previous instance stored, take it out of the store, then probe the store."""
        for fd, name in sorted(self.adopted.items()):
            sock = connected_stream(fd)
            if sock is not None:
                try:
                    await connect(sock)
                    self.resumed += 1
                except OSError:
                    sock.close()
            notify(f"FDSTOREREMOVE=1\nFDNAME={name}", environ=self.environ)
        self.adopted.clear()
        if not self.wanted:
            return
        if notify_address(self.environ) is None:
            self.probe_result = "no NOTIFY_SOCKET"
            return
        self.enabled = probe_store(self.environ)
        self.refused = not self.enabled
        self.probe_result = "ok" if self.enabled else "refused (FileDescriptorStoreMax= unset or too small?)"

    def store(self, sock: socket.socket) -> bool:
        """Hand one connection (between requests) to the manager; the caller then closes its own copy."""
        if not self.enabled or self.stored >= self.limit:
            return False
        self._seq += 1
        if not notify(f"FDSTORE=1\nFDNAME={CONNECTION_PREFIX}{os.getpid()}-{self._seq}", [sock.fileno()], self.environ):
            return False
        self.stored += 1
        return True

    def expect_restart(self, job: str) -> None:
        """At SIGTERM: hand over only if a restart follows (see ``queued_job``); otherwise close gracefully.

        systemd 252 empties the store when the unit stops with no job queued (``systemctl stop``,
        a kill from outside), closing the stored connections under the editor: a connection the
        editor reuses then fails. Closed by us instead (answered, FIN, then a linger that still
        answers a request crossing it), the editor sees the close before reusing it.
        """
        self.next_job = job
        if job != "restart":
            self.enabled = False

    def finish(self) -> bool:
        """Before exiting: wait until the manager took every stored connection (it reads our messages in order)."""
        if not self.stored:
            return True
        return barrier(environ=self.environ)


def own_unit(cgroup_file: str = "/proc/self/cgroup") -> tuple[str, bool]:
    """This process's service unit and whether a user manager runs it (from its cgroup path)."""
    try:
        with open(cgroup_file) as f:
            lines = f.read().strip().splitlines()
    except OSError:
        return "", False
    # cgroup v2 ("0::/...") or, on a hybrid hierarchy, systemd's own ("N:name=systemd:/...")
    paths = [line.split(":", 2)[-1] for line in lines if line.startswith("0::") or ":name=systemd:" in line]
    parts = max(paths, key=len, default="").split("/")
    units = [p for p in parts if p.endswith(".service")]
    return (units[-1] if units else ""), any(p.startswith("user@") for p in parts[:-1])


def queued_job(unit: str, user: bool, timeout: float = 2.0) -> str:
    """The type of the job the manager has queued for ``unit`` ('restart', 'stop', ...); '' if none or unknown.

    Asked with ``systemctl list-jobs`` (the manager's private socket, no D-Bus library needed); at
    SIGTERM a ``systemctl restart`` shows as a 'restart' job until the stop half is done.
    """
    if not unit:
        return ""
    argv = ["systemctl", *(["--user"] if user else []), "list-jobs", "--no-legend", "--no-pager", "--full", "--plain"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == unit:
            return fields[2]
    return ""

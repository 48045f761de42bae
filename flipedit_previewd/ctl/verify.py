"""Is the process /health names the daemon we are talking to? Asked before ``previewctl profile`` attaches to it.

/health is an answer from whatever listens at the address: another user's server on the TCP fallback port
can name any PID, and ``sudo previewctl profile`` would point root's ptrace at it. So the PID is believed
only if it holds the very socket previewctl reached: a listening socket's inode (``/proc/net/unix``,
``/proc/net/tcp``, ``tcp6``) among the PID's descriptors (``/proc/<pid>/fd``). On a unix socket the
peer's credentials (SO_PEERCRED) settle it at once when the daemon made the socket itself; under
socket activation they name systemd, which made it, and the descriptor check decides. And it must be
of the caller's own user, unless the caller is root (the system unit runs as its own user).
"""

from __future__ import annotations

import os
import socket
import struct
from urllib.parse import urlsplit

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


def peer_pid(path: str, timeout: float = 2.0) -> tuple[int, int]:
    """(pid, uid) of the process that made the listening unix socket at ``path`` (SO_PEERCRED)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        pid, uid, _gid = struct.unpack(
            "3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        )
    return pid, uid


def unix_inodes(path: str) -> set[int]:
    """Inodes of the listening unix sockets bound to ``path`` (/proc/net/unix: inode in column 7, path in 8)."""
    found = set()
    with open("/proc/net/unix") as table:
        next(table, None)
        for line in table:
            fields = line.split()
            if len(fields) >= 8 and fields[7] == path:
                found.add(int(fields[6]))
    return found


def tcp_inodes(port: int) -> set[int]:
    """Inodes of the TCP sockets listening on ``port``, any address, IPv4 and IPv6 (this network namespace)."""
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            table = open(name)
        except OSError:
            continue
        with table:
            next(table, None)
            for line in table:
                fields = line.split()
                if len(fields) >= 10 and fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found.add(int(fields[9]))
    return found


def holds(pid: int, inodes: set[int]) -> bool:
    """True when one of ``pid``'s descriptors is a socket with one of ``inodes`` (PermissionError: not ours to see)."""
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:[") and int(target[8:-1]) in inodes:
            return True
    return False


def process_uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Uid:"):
                return int(line.split()[2])  # the effective uid: whose rights the process has
    raise OSError(f"no Uid line for pid {pid}")


def daemon_problem(pid: int, address: str, euid: int | None = None) -> str:
    """Why ``pid`` is not verified to be the daemon answering at ``address`` (``unix:PATH`` or ``http://HOST:PORT``), "
    "or ""."""
    euid = os.geteuid() if euid is None else euid
    try:
        owner = process_uid(pid)
    except OSError:
        return f"pid {pid} is not a process visible here"
    if owner != euid and euid != 0:
        return f"pid {pid} belongs to uid {owner}, not to you (uid {euid})"
    if address.startswith("unix:"):
        path = address[5:]
        try:
            if peer_pid(path)[0] == pid:
                return ""
        except OSError as exc:
            return f"cannot ask {path} for its peer's credentials: {exc.strerror or exc}"
        inodes, where = unix_inodes(path), path
    else:
        parts = urlsplit(address)
        if parts.port is None:
            return f"no port in {address}"
        inodes, where = tcp_inodes(parts.port), f"TCP port {parts.port}"
    if not inodes:
        return f"no listening socket for {where} is visible here (another network namespace?)"
    try:
        if holds(pid, inodes):
            return ""
    except PermissionError:
        return f"cannot see pid {pid}'s descriptors to check that it holds {where}"
    except OSError:
        return f"pid {pid} is not a process visible here"
    return (
        f"pid {pid} does not hold the socket listening on {where}: the server there named a process that is not itself"
    )

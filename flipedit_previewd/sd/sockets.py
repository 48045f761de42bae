"""Listening sockets: adopted from systemd, or opened from ``--listen``.

Adopted sockets are used as systemd made them: we check they are stream
sockets that already listen, and never call ``listen()`` again (that could
shrink the backlog systemd chose and lose queued connections on restart).
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass

from flipedit_previewd.sd.fdstore import is_stored_connection
from systemd import daemon


class SocketError(Exception):
    """A socket we were given or asked to open cannot be used."""


@dataclass
class Listener:
    sock: socket.socket
    name: str
    address: str
    adopted: bool


def kernel_backlog() -> int:
    """The largest backlog the kernel allows.

    asyncio's ``create_server`` always calls ``listen()`` again on the socket it
    is given; passing the kernel's cap makes that a no-op for systemd's backlog
    (which the kernel caps the same way) instead of shrinking it to 100.
    """
    try:
        with open("/proc/sys/net/core/somaxconn") as handle:
            return max(int(handle.read().strip()), socket.SOMAXCONN)
    except (OSError, ValueError):
        return socket.SOMAXCONN


def describe(sock: socket.socket) -> str:
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{address if isinstance(address, str) else address.decode(errors='replace')}"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"


def adopt_systemd_sockets(stored: dict[int, str] | None = None) -> list[Listener]:
    """systemd's listening sockets; connections a previous instance stored (fdstore.py) go to ``stored``."""
    fds_with_names = daemon.listen_fds_with_names(unset_environment=True)
    listeners = []
    for fd, name in sorted(fds_with_names.items()):
        if is_stored_connection(name or ""):
            if stored is None:
                os.close(fd)
            else:
                stored[fd] = name
            continue
        mode = os.fstat(fd).st_mode
        if not stat.S_ISSOCK(mode):
            raise SocketError(f"fd {fd} ({name}) passed by systemd is not a socket")
        sock = socket.socket(fileno=fd)
        if sock.type != socket.SOCK_STREAM:
            raise SocketError(f"fd {fd} ({name}) is not a stream socket; use ListenStream=")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise SocketError(f"fd {fd} ({name}) is not listening; set Accept=no in the socket unit")
        sock.setblocking(False)
        listeners.append(Listener(sock, name or "unknown", describe(sock), True))
    return listeners


def open_listener(spec: str) -> Listener:
    """``HOST:PORT``, ``[V6]:PORT`` or ``unix:PATH``, listening with the kernel's largest backlog."""
    try:
        if spec.startswith("unix:"):
            path = spec[5:]
            if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
        else:
            host, _, port_text = spec.rpartition(":")
            host = host.strip("[]") or "127.0.0.1"
            port = int(port_text)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        sock.listen(kernel_backlog())
    except (OSError, ValueError) as exc:
        raise SocketError(f"cannot listen on {spec!r}: {exc}") from None
    sock.setblocking(False)
    return Listener(sock, "listen", describe(sock), False)

"""The one way the daemon talks to ``$NOTIFY_SOCKET``: sd_notify(3) messages, descriptors attached when needed.

Everything the daemon tells its service manager goes through ``notify``: ``READY=1``, ``STATUS=``,
``MAINPID=``, ``WATCHDOG=1``, ``RELOADING=1`` with ``MONOTONIC_USEC=``, ``STOPPING=1``, and the fd
store's ``FDSTORE=1``/``FDSTOREREMOVE=1``/``FDNAME=`` with the descriptors as ``SCM_RIGHTS``; ``barrier``
is sd_notify_barrier(3). One datagram per message, on a fresh socket, as libsystemd does.

Why our own dozen lines and not one of the packages the project already uses:

- ``sdnotify`` cannot attach descriptors (``FDSTORE=1`` and ``BARRIER=1`` need them), so with it the
  daemon had two senders; it also swallows every error, so a lost ``FDSTORE`` went unnoticed.
- python-systemd's ``daemon.notify(..., fds=)`` can attach them (libsystemd's
  sd_pid_notify_with_fds), but it holds the GIL across a blocking ``sendmsg`` with no timeout:
  were the manager's queue full, every thread of the daemon would stop with it, the watchdog thread
  too, whose whole point is to stay independent of the event loop.

Here ``sendmsg`` releases the GIL and gives up after ``SEND_TIMEOUT``; a message that cannot be
sent is reported as False (the fd store then closes that connection instead of handing it over).
python-systemd stays the daemon's journal writer and reader of ``$LISTEN_FDS`` (``sockets.py``).
"""

from __future__ import annotations

import array
import os
import select
import socket
import time
from collections.abc import Mapping

SEND_TIMEOUT = 2.0
BARRIER_TIMEOUT = 5.0


def notify_address(environ: Mapping[str, str] | None = None) -> str | None:
    """``$NOTIFY_SOCKET`` as an address for ``sendmsg`` (``@name`` is abstract); None without a manager."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address or not (address.startswith("/") or address.startswith("@")):
        return None
    return "\0" + address[1:] if address.startswith("@") else address


def notify(message: str, fds: list[int] | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """sd_pid_notify_with_fds(): one datagram to $NOTIFY_SOCKET, descriptors as SCM_RIGHTS. False if not sent.

    Once ``sendmsg`` returns, the kernel holds a reference to each descriptor
    in flight, so the caller may close its own copy at once.
    """
    address = notify_address(environ)
    if address is None:
        return False
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT)
            sock.sendmsg([message.encode()], ancillary, 0, address)
    except OSError:
        return False
    return True


def barrier(timeout: float = BARRIER_TIMEOUT, environ: Mapping[str, str] | None = None) -> bool:
    """sd_notify_barrier(): True once the manager has processed every message we sent before."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        sent = notify("BARRIER=1", [write_end], environ)
        os.close(write_end)
        write_end = -1
        if not sent:
            return False
        poller = select.poll()
        poller.register(read_end, select.POLLHUP)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if poller.poll(left * 1000):
                return True
        return False
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)

"""Finding the daemon: its unix socket first (peer checked), then the editor's port.

previewctl trusts nothing it reads. The unix socket is used only if it is a socket owned by us
(or root, for the system unit) and the peer at the other end (SO_PEERCRED) is us or root; TCP is
a fallback it announces, since any local user could be listening on 127.0.0.1:8081. The talking
itself is ``client.PreviewClient.fetch`` (the same client the editor's authors get): a wall-clock
deadline and a size cap on every exchange. A /health that is not the daemon's shape counts as
unreachable.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import time
from collections.abc import Callable
from typing import Any

import requests

from flipedit_previewd.client.api import DEFAULT_URL, PreviewClient
from flipedit_previewd.client.transport import MAX_BODY_BYTES, MAX_JSON_BYTES, TimedOut, Unreachable
from flipedit_previewd.common.token import runtime_dir

from .safeout import clean, clean_tree

__all__ = ["DaemonClient", "TimedOut", "Unreachable", "candidates", "check_unix_socket", "peer_uid"]

SOCKET_NAME = "flipedit-preview.sock"


def candidates(url: str | None, environ: dict[str, str], timeout: float = 3.0) -> list[PreviewClient]:
    """Where to look, in order: --url alone if given; else our runtime socket, the system socket, then TCP."""

    def client(address: str) -> PreviewClient:
        return PreviewClient(
            address, timeout=timeout, connect_timeout=timeout, resilient=False, environ=environ, pool_size=1
        )

    if url:
        return [client(url)]
    found = []
    for directory in (runtime_dir(environ), "/run/flipedit-preview"):
        if directory:
            path = os.path.join(directory, SOCKET_NAME)
            if os.path.exists(path):
                found.append(client(path))
    found.append(client(DEFAULT_URL))
    return found


def peer_uid(sock: socket.socket) -> int:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", raw)[1])


def check_unix_socket(path: str, timeout: float, trusted: tuple[int, ...] | None = None) -> str:
    """Why this socket is not our daemon's ("" if it may be): file type and owner, then the peer's uid."""
    trusted = trusted if trusted is not None else (os.getuid(), 0)
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot stat it: {exc.strerror}"
    if not stat.S_ISSOCK(st.st_mode):
        return "not a socket"
    if st.st_uid not in trusted:
        return f"owned by uid {st.st_uid}"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            uid = peer_uid(sock)
    except OSError as exc:
        return f"cannot connect: {exc.strerror or exc}"
    if uid not in trusted:
        return f"served by uid {uid}, not by you or root"
    return ""


class DaemonClient:
    """Tries each candidate address once, then sticks to the first that answered."""

    def __init__(
        self, url: str | None, environ: dict[str, str], timeout: float = 3.0, warn: Callable[[str], None] | None = None
    ) -> None:
        self.timeout = timeout if timeout > 0 else 3.0
        self.explicit = bool(url)
        self.targets = candidates(url, environ, self.timeout)
        self.target: PreviewClient | None = None
        self.warn = warn or (lambda text: None)
        self._warned = False

    def request(
        self,
        method: str,
        path: str,
        max_bytes: int = MAX_JSON_BYTES,
        timeout: float | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        errors = []
        timed_out = False
        for target in [self.target] if self.target else self.targets:
            if target.unix:
                problem = check_unix_socket(target.path, self.timeout)
                if problem:
                    errors.append(f"{target.shown}: {problem}")
                    continue
            elif not self.explicit and not self._warned and errors:
                self._warned = (
                    True  # the TCP fallback, when a unix socket was expected (there, but unusable): announced once
                )
                self.warn(
                    f"previewctl: {clean('; '.join(errors))}; falling back to {target.shown}, where any local user "
                    "could be listening (pass --url to choose)"
                )
            try:
                response = target.fetch(
                    method, path, max_bytes=max_bytes, deadline_s=timeout, body=body, headers=headers
                )
            except Unreachable as exc:
                errors.append(str(exc))
                timed_out = timed_out or isinstance(exc, TimedOut)
                continue
            self.target = target
            return response
        raise (TimedOut if timed_out else Unreachable)(clean("; ".join(errors)))

    def get(self, path: str, max_bytes: int = MAX_JSON_BYTES, timeout: float | None = None) -> requests.Response:
        return self.request("GET", path, max_bytes, timeout)

    def health(self) -> dict[str, Any]:
        response = self.get("/health")
        try:
            data = response.json()
        except ValueError:
            raise Unreachable(f"{self.shown}: /health did not answer JSON (HTTP {response.status_code})") from None
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise Unreachable(f"{self.shown}: /health did not answer like flipedit-previewd (no status)")
        return dict(clean_tree(data))

    def timed_get(self, path: str, timeout: float | None = None) -> tuple[requests.Response, float]:
        started = time.perf_counter()
        response = self.get(path, MAX_BODY_BYTES, timeout)
        return response, (time.perf_counter() - started) * 1000

    @property
    def shown(self) -> str:
        return clean((self.target or self.targets[0]).shown)

    def forget(self) -> None:
        """After a failure, look again at every candidate (the daemon may have restarted elsewhere)."""
        self.target = None

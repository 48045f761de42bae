"""Finding and talking to the daemon: its unix socket first (peer checked), then the editor's port.

previewctl trusts nothing it reads. The unix socket is used only if it is a socket owned by us
(or root, for the system unit) and the peer at the other end (SO_PEERCRED) is us or root; TCP is
a fallback it announces, since any local user could be listening on 127.0.0.1:8081. Every
exchange has a wall-clock deadline (a server dripping one byte a second cannot hold previewctl)
and a size cap (a 300 MB /health cannot grow it), and a /health that is not the daemon's shape
counts as unreachable.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
import requests_unixsocket

from ..access import read_token
from .safeout import clean, clean_tree

DEFAULT_TCP = "http://127.0.0.1:8081"
SOCKET_NAME = "flipedit-preview.sock"
MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


class Unreachable(Exception):
    """No daemon answered at the address we tried (or what answered was not acceptable)."""


class _Expired(BaseException):
    """The wall clock ran out: a BaseException, so no library's ``except Exception`` swallows it."""


@dataclass
class Target:
    base: str  # http://host:port or http+unix://<quoted path>
    shown: str  # what we tell the user
    path: str = ""  # the unix socket's path
    fallback: bool = False  # TCP tried only because no unix socket answered

    @property
    def is_unix(self) -> bool:
        return self.base.startswith("http+unix://")


def _unix(path: str) -> Target:
    return Target(f"http+unix://{quote(path, safe='')}", f"unix:{path}", path)


def candidates(url: str | None, environ: dict[str, str]) -> list[Target]:
    if url:
        if url.startswith("/") or url.startswith("unix:"):
            return [_unix(url.removeprefix("unix:"))]
        return [Target(url.rstrip("/"), url.rstrip("/"))]
    found = []
    for directory in (environ.get("XDG_RUNTIME_DIR", ""), "/run/flipedit-preview"):
        if directory:
            path = os.path.join(directory, SOCKET_NAME)
            if os.path.exists(path):
                found.append(_unix(path))
    found.append(Target(DEFAULT_TCP, DEFAULT_TCP, fallback=True))
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


@contextmanager
def wall_clock(seconds: float) -> Iterator[None]:
    """Bound a whole exchange, headers included: SIGALRM in the main thread (socket timeouts are per read)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _Expired()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.05))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class DaemonClient:
    """Tries each candidate address once, then sticks to the first that answered."""

    def __init__(self, url: str | None, environ: dict[str, str], timeout: float = 3.0,
                 warn: Callable[[str], None] | None = None) -> None:
        self.targets = candidates(url, environ)
        self.environ = environ
        self.timeout = timeout if timeout > 0 else 3.0
        self.session = requests_unixsocket.Session()
        self.target: Target | None = None
        self.warn = warn or (lambda text: None)
        self._warned = False

    def _exchange(self, method: str, target: Target, path: str, max_bytes: int, **kwargs: Any) -> requests.Response:
        deadline = time.monotonic() + self.timeout
        kwargs["timeout"] = min(float(kwargs.get("timeout") or self.timeout), self.timeout)
        try:
            with wall_clock(self.timeout + 0.2):
                response: requests.Response = self.session.request(method, target.base + path, stream=True, **kwargs)
                try:
                    declared = int(response.headers.get("Content-Length") or 0)
                except ValueError:
                    declared = 0
                if declared > max_bytes:
                    response.close()
                    raise Unreachable(f"{target.shown}: answer of {declared} bytes is over the {max_bytes} byte limit")
                body = bytearray()
                for chunk in response.iter_content(65536):
                    body += chunk
                    if len(body) > max_bytes:
                        response.close()
                        raise Unreachable(f"{target.shown}: answer over the {max_bytes} byte limit")
                    if time.monotonic() > deadline:
                        response.close()
                        raise _Expired()
                response._content = bytes(body)
                setattr(response, "_content_consumed", True)  # noqa: B010 - requests' own flag, not typed
                return response
        except _Expired:
            raise Unreachable(f"{target.shown}: no complete answer within {self.timeout:g} s") from None

    def request(self, method: str, path: str, max_bytes: int = MAX_JSON_BYTES, **kwargs: Any) -> requests.Response:
        errors = []
        for target in [self.target] if self.target else self.targets:
            if target.is_unix:
                problem = check_unix_socket(target.path, self.timeout)
                if problem:
                    errors.append(f"{target.shown}: {problem}")
                    continue
            elif target.fallback and not self._warned:
                self._warned = True
                why = "; ".join(errors) or "no unix socket found"
                self.warn(f"previewctl: {clean(why)}; falling back to {target.shown}, where any local user could be "
                          "listening (pass --url to choose)")
            try:
                response = self._exchange(method, target, path, max_bytes, **kwargs)
            except requests.RequestException as exc:
                errors.append(f"{target.shown}: {_why(exc, kwargs.get('timeout', self.timeout))}")
                continue
            except Unreachable as exc:
                errors.append(str(exc))
                continue
            self.target = target
            return response
        raise Unreachable(clean("; ".join(errors)))

    def get(self, path: str, max_bytes: int = MAX_JSON_BYTES, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, max_bytes, **kwargs)

    def change(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """PUT/DELETE: on the unix socket as ourselves, or over TCP with the daemon's token (never sent on GETs)."""
        token = read_token(self.environ)
        headers = dict(kwargs.pop("headers", None) or {})
        if token and not (self.target or self.targets[0]).is_unix:
            headers["Authorization"] = f"Bearer {token}"
        return self.request(method, path, headers=headers, **kwargs)

    def health(self) -> dict[str, Any]:
        response = self.get("/health")
        try:
            data = response.json()
        except ValueError:
            raise Unreachable(f"{self.shown}: /health did not answer JSON (HTTP {response.status_code})") from None
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise Unreachable(f"{self.shown}: /health did not answer like flipedit-previewd (no status)")
        return dict(clean_tree(data))

    def timed_get(self, path: str, **kwargs: Any) -> tuple[requests.Response, float]:
        started = time.perf_counter()
        response = self.get(path, MAX_BODY_BYTES, **kwargs)
        return response, (time.perf_counter() - started) * 1000

    @property
    def shown(self) -> str:
        return clean((self.target or self.targets[0]).shown)

    def forget(self) -> None:
        """After a failure, look again at every candidate (the daemon may have restarted elsewhere)."""
        self.target = None


def _why(exc: requests.RequestException, timeout: float) -> str:
    """What went wrong, for a person (not the exception's class name)."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        for needle, words in (("Connection refused", "connection refused"), ("No such file", "no such socket"),
                              ("Permission denied", "permission denied"), ("Name or service not known", "unknown host"),
                              ("reset by peer", "connection reset")):
            if needle in text:
                return words
        return "cannot connect"
    return "not an address previewctl can use"

"""Finding and talking to the daemon: its unix socket first, then the editor's port."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
import requests_unixsocket

DEFAULT_TCP = "http://127.0.0.1:8081"
SOCKET_NAME = "flipedit-preview.sock"


class Unreachable(Exception):
    """No daemon answered at the address we tried."""


@dataclass
class Target:
    base: str  # http://host:port or http+unix://<quoted path>
    shown: str  # what we tell the user

    @property
    def is_unix(self) -> bool:
        return self.base.startswith("http+unix://")


def candidates(url: str | None, environ: dict[str, str]) -> list[Target]:
    if url:
        if url.startswith("/") or url.startswith("unix:"):
            path = url.removeprefix("unix:")
            return [Target(f"http+unix://{quote(path, safe='')}", f"unix:{path}")]
        return [Target(url.rstrip("/"), url.rstrip("/"))]
    found = []
    for directory in (environ.get("XDG_RUNTIME_DIR", ""), "/run/flipedit-preview"):
        if directory:
            path = os.path.join(directory, SOCKET_NAME)
            if os.path.exists(path):
                found.append(Target(f"http+unix://{quote(path, safe='')}", f"unix:{path}"))
    found.append(Target(DEFAULT_TCP, DEFAULT_TCP))
    return found


class DaemonClient:
    """Tries each candidate address once, then sticks to the first that answered."""

    def __init__(self, url: str | None, environ: dict[str, str], timeout: float = 3.0) -> None:
        self.targets = candidates(url, environ)
        self.timeout = timeout
        self.session = requests_unixsocket.Session()
        self.target: Target | None = None

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        errors = []
        for target in [self.target] if self.target else self.targets:
            try:
                response: requests.Response = self.session.get(target.base + path, **kwargs)
            except requests.RequestException as exc:
                errors.append(f"{target.shown}: {_why(exc, kwargs['timeout'])}")
                continue
            self.target = target
            return response
        raise Unreachable("; ".join(errors))

    def health(self) -> dict[str, Any]:
        response = self.get("/health")
        try:
            return dict(response.json())
        except ValueError:
            raise Unreachable(f"{self.shown}: /health did not answer JSON (HTTP {response.status_code})") from None

    def timed_get(self, path: str, **kwargs: Any) -> tuple[requests.Response, float]:
        started = time.perf_counter()
        response = self.get(path, **kwargs)
        return response, (time.perf_counter() - started) * 1000

    @property
    def shown(self) -> str:
        return (self.target or self.targets[0]).shown

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

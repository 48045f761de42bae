"""The client's wire: addresses (TCP or a unix socket), a wall clock over a whole exchange, and
failures in words.

``PreviewClient.fetch`` (api.py) builds its bounded exchange from these; previewctl's socket
discovery (ctl/discovery.py) uses the same address parsing, so a unix-socket URL is built in one
place.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote

import requests

MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


class Unreachable(Exception):
    """No complete, acceptable answer from the address (``fetch``); the text is for a person."""


class TimedOut(Unreachable):
    """No complete answer within the deadline: the address answered the connection, or might, but too slowly."""


class Expired(BaseException):
    """The wall clock ran out: a BaseException, so no library's ``except Exception`` swallows it."""


def is_unix_address(url: str) -> bool:
    """A unix socket: its path (``/run/x.sock``), ``unix:/run/x.sock`` or ``http+unix://<quoted path>``."""
    return url.startswith(("/", "unix:", "http+unix://"))


def socket_path(url: str) -> str:
    """The socket's path in any of the spellings ``is_unix_address`` accepts."""
    if url.startswith("http+unix://"):
        return unquote(url.removeprefix("http+unix://").split("/", 1)[0])
    return url.removeprefix("unix:")


def unix_base(path: str) -> str:
    """The requests-unixsocket base URL of a socket path (the one place it is built)."""
    return f"http+unix://{quote(path, safe='')}"


@contextmanager
def wall_clock(seconds: float) -> Iterator[None]:
    """Bound a whole exchange, headers included: SIGALRM in the main thread (socket timeouts are per read).

    Elsewhere (a thread of the editor's) only the per-read timeouts and the per-chunk check apply."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise Expired()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.05))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def why_failed(exc: requests.RequestException, timeout: float) -> str:
    """What went wrong, for a person (not the exception's class name, not the server's text)."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        for needle, words in (
            ("Connection refused", "connection refused"),
            ("No such file", "no such socket"),
            ("Permission denied", "permission denied"),
            ("Name or service not known", "unknown host"),
            ("reset by peer", "connection reset"),
        ):
            if needle in text:
                return words
        return "cannot connect"
    return "not an address this client can use"

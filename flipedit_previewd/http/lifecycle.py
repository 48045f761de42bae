"""The daemon's one lifecycle state, and the narrow interface the HTTP side serves through.

One state, moved only by the server (``server.py``), read by the connections (close after this
answer?), the service (``/health`` says "stopping") and the routes (admit renders?). It replaces
three flags that had to agree (the server's "draining", the service's and admission's
"stopping"). Each state maps to what systemd is told:

    STARTING  -> (nothing yet; sockets adopted, workers spawning, warm-up render)
    SERVING   -> READY=1 (and again after a reload)
    RELOADING -> RELOADING=1 + MONOTONIC_USEC
    DRAINING  -> STOPPING=1: no new connections; requests on open ones are still served
    STOPPED   -> the drain ended: no render is admitted any more, the process exits

``ServiceAPI`` is all the server and its connections may ask of the service: they never reach
into its admission, project source or configuration.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from flipedit_previewd.common.errors import Overloaded
    from flipedit_previewd.config.schema import Config, ConfigError
    from flipedit_previewd.http.protocol import Request, Response


class Lifecycle(enum.Enum):
    STARTING = "starting"
    SERVING = "serving"
    RELOADING = "reloading"
    DRAINING = "draining"
    STOPPED = "stopped"

    @property
    def stopping(self) -> bool:
        return self in (Lifecycle.DRAINING, Lifecycle.STOPPED)


# Which state may follow which: a stop may come at any time (SIGTERM during start-up or a reload).
_NEXT: dict[Lifecycle, frozenset[Lifecycle]] = {
    Lifecycle.STARTING: frozenset({Lifecycle.SERVING, Lifecycle.DRAINING}),
    Lifecycle.SERVING: frozenset({Lifecycle.RELOADING, Lifecycle.DRAINING}),
    Lifecycle.RELOADING: frozenset({Lifecycle.SERVING, Lifecycle.DRAINING}),
    Lifecycle.DRAINING: frozenset({Lifecycle.STOPPED}),
    Lifecycle.STOPPED: frozenset(),
}


class LifecycleState:
    """The one holder of the state; ``enter`` refuses a step the table above does not allow."""

    def __init__(self) -> None:
        self.current = Lifecycle.STARTING
        self.since = time.monotonic()

    def enter(self, state: Lifecycle) -> None:
        if state not in _NEXT[self.current]:
            raise RuntimeError(f"lifecycle: {self.current.value} cannot become {state.value}")
        self.current = state
        self.since = time.monotonic()

    @property
    def stopping(self) -> bool:
        return self.current.stopping


class ServiceAPI(Protocol):
    """What the listening/HTTP side needs from the service, and nothing more."""

    async def start(self, open_connections: Callable[[], int]) -> None:
        """Workers up, warm-up frame rendered; ``open_connections`` is read by /health and /metrics."""

    async def handle(self, request: Request, client: str) -> Response:
        """The one error boundary: every request gets a response (never raises an HTTPError)."""

    def answer_now(self, request: Request, client: str) -> Response | None:
        """Synchronously, before a task is made for ``request``: its answer when it needs no work (a frame refused
        because the render queue is full: 503 with Retry-After), else None (``handle`` serves it). Never raises."""

    def refuse(self, limit: str, detail: str) -> Overloaded:
        """A 503 the HTTP side decided (too many connections, a request cut off by the stop), counted."""

    def refusal_written(self, seconds: float) -> None:
        """A 503 was written, ``seconds`` after its request's first bytes were read (or its connection accepted)."""

    def note_client_error(
        self, status: int, what: str, event: str = "", priority: str = "notice", **fields: object
    ) -> None:
        """An answer that is the client's fault (protocol error, access refusal): counted and summarised, never
        one journal entry per request (``rejections.ClientErrors``)."""

    def project(self) -> tuple[str, str]:
        """The project served and why, for the start and ready messages."""

    def backlog(self) -> int:
        """Renders queued or running (the stop's log line)."""

    def status_line(self) -> str: ...

    def tick(self) -> None:
        """Once per health tick, on the loop: deadlines, overload end, hung workers, the project list."""

    def can_progress(self) -> bool: ...

    def flush_summary(self) -> None: ...

    async def drain(self, timeout: float, settled: Callable[[], bool]) -> bool: ...

    def configure(self, config: Config) -> None: ...
    def reload(self) -> None: ...

    def config_rejected(self, error: ConfigError | None) -> None:
        """A reload's configuration could not be used (``error``; the old one stays in force) or, with None, a
        later one could: shown as ``degraded`` (/health ``config_error``, STATUS=) until then, because the next
        restart would fail on it."""

    def close(self) -> None: ...

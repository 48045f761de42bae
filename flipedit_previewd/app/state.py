"""What the application side knows about itself, shared by its parts (as uvicorn's ``ServerState``).

Two small objects the parts are handed instead of the service that composes them:

- ``RunningConfig``: the configuration in force and the last reload's error. A reload replaces
  the configuration (``reconfigure.apply``), so a part keeps this holder, never a ``Config``.
- ``RequestStats``: what the request path counts (each frame request's outcome, latencies) and
  whether an overload is going on; read by /health, the per-minute summary and the status word.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.common.metrics import Metrics
from flipedit_previewd.config.schema import Config, ConfigError
from flipedit_previewd.render.dispatch import QueueSnapshot

CHEAP_OUTCOMES = ("cached", "not_modified", "health")  # summarised once a minute, not journaled one by one


@dataclass
class RunningConfig:
    """The configuration in force (read it here each time: a reload replaces it) and, when the last reload's
    could not be used, why (the old one stays in force: ``ServiceAPI.config_rejected``)."""

    config: Config
    rejected: ConfigError | None = None


class RequestStats:
    """Each frame request's outcome (the per-minute summary, /metrics' requests_total), the latencies of the
    answered ones (/health) and the overload: begun by the first refusal, ended by the tick after a quiet spell."""

    def __init__(self, metrics: Metrics, log: EventLog, snapshot: Callable[[], QueueSnapshot]) -> None:
        self.metrics = metrics
        self.log = log
        self.snapshot = snapshot  # the dispatcher's queue counts, for the overload's journal entry
        self.summary: dict[str, int] = {}
        self.latencies: deque[float] = deque(maxlen=2000)
        self.overloaded_since: float | None = None

    def count(self, outcome: str) -> None:
        """A request's outcome: the per-minute summary and /metrics' requests_total (frames only)."""
        self.summary[outcome] = self.summary.get(outcome, 0) + 1
        if outcome != "health":  # /health is in the summary's cheap requests, not in the frame request counter
            self.metrics.requests.labels(outcome).inc()

    def take_cheap(self) -> dict[str, int]:
        """The cheap outcomes counted since the last call (the per-minute summary), and start counting anew."""
        counts = {k: v for k, v in self.summary.items() if k in CHEAP_OUTCOMES}
        for key in CHEAP_OUTCOMES:
            if key in self.summary:
                self.summary[key] = 0
        return counts

    def note_rejection(self) -> None:
        """A request was refused for overload: the first one of a run begins an overload (ended in the tick)."""
        if self.overloaded_since is None:
            self.overloaded_since = time.monotonic()
            queue = self.snapshot()
            self.log.emit(
                "overload_began",
                "overload began: requests are being answered 503",
                "warning",
                QUEUE_DEPTH=queue.queued,
                IN_FLIGHT=queue.in_flight,
            )

    def end_overload(self, refused_lately: int) -> None:
        """From the tick: an overload ends once nothing was refused for a while (``refused_lately`` is 0)."""
        if self.overloaded_since is not None and not refused_lately:
            duration = time.monotonic() - self.overloaded_since
            self.overloaded_since = None
            self.log.emit(
                "overload_ended", f"overload ended after {duration:.1f} s", "notice", DURATION_S=round(duration, 1)
            )

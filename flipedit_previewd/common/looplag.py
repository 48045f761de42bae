"""How late the event loop runs its timers: the one number that says whether it stalls.

A timer is armed every ``INTERVAL``; when it fires, the delay past its due time
is the loop's lag. The last minute of samples gives ``/health``, ``/metrics``
and ``STATUS=`` their figures, and a lag above the configured threshold is a
journal event (at most one per ``REPORT_EVERY`` seconds, with the worst seen).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from flipedit_previewd.common.percentiles import percentile

INTERVAL = 0.05
WINDOW = 1200  # samples: one minute at INTERVAL
REPORT_EVERY = 10.0


class LoopLag:
    def __init__(self, threshold: float, report: Callable[[float, float], None]) -> None:
        self.threshold = threshold
        self.report = report
        self.samples: deque[float] = deque(maxlen=WINDOW)
        self.last = 0.0
        self.worst_unreported = 0.0
        self.reported_at = 0.0
        self.over_threshold = 0
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = time.monotonic() + INTERVAL
        self._handle = loop.call_at(loop.time() + INTERVAL, self._fire, loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        lag = max(0.0, now - self._due)
        self.samples.append(lag)
        self.last = lag
        if lag > self.threshold:
            self.over_threshold += 1
            self.worst_unreported = max(self.worst_unreported, lag)
        if self.worst_unreported and now - self.reported_at >= REPORT_EVERY:
            self.reported_at = now
            worst, self.worst_unreported = self.worst_unreported, 0.0
            self.report(worst, self.threshold)
        self._due = now + INTERVAL
        self._handle = loop.call_at(loop.time() + INTERVAL, self._fire, loop)

    def percentile(self, pct: float) -> float:
        return percentile(self.samples, pct) or 0.0

    def snapshot(self) -> dict[str, float | int]:
        return {
            "last_ms": round(self.last * 1000, 2),
            "p50_ms": round(self.percentile(50) * 1000, 2),
            "p99_ms": round(self.percentile(99) * 1000, 2),
            "max_ms": round(max(self.samples, default=0.0) * 1000, 2),
            "samples": len(self.samples),
            "threshold_ms": round(self.threshold * 1000, 1),
            "over_threshold": self.over_threshold,
        }

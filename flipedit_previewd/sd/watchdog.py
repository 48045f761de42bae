"""The watchdog heartbeat: a thread of its own, because a wedged event loop cannot report itself.

Every tick it asks the loop (through the service interface) to run the tick and answer; only when
the loop answered and a worker can make progress does systemd get ``WATCHDOG=1``. A daemon that
stopped making progress is then restarted by systemd instead of saying "ok".
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from flipedit_previewd.common.journal import EventLog

SUMMARY_EVERY = 60.0  # seconds between the per-minute summaries of cheap requests
MAX_TICK = 2.0  # seconds between ticks when systemd asks for no watchdog


class Supervised(Protocol):
    """What the heartbeat asks of the daemon, on the event loop's thread."""

    def tick(self) -> None: ...
    def status_line(self) -> str: ...
    def can_progress(self) -> bool: ...
    def flush_summary(self) -> None: ...


class Watchdog:
    """The health thread: STATUS= every tick, WATCHDOG=1 only on real progress, a summary each minute."""

    def __init__(
        self, service: Supervised, notify: Callable[[str], None], log: EventLog, watchdog_usec: int | None = None
    ) -> None:
        self.service = service
        self.notify = notify
        self.log = log
        self.watchdog_usec = watchdog_usec_from_env() if watchdog_usec is None else watchdog_usec
        self.withheld = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def interval(self) -> float:
        """Half the watchdog period (systemd's advice), at most MAX_TICK."""
        if self.watchdog_usec:
            return min(MAX_TICK, self.watchdog_usec / 2_000_000)
        return MAX_TICK

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._thread = threading.Thread(target=self._run, args=(loop,), name="health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def heartbeat(self, answered: bool, progress: bool) -> str:
        """The WATCHDOG decision for one tick: "" when there is no watchdog, else "sent" or "withheld"
        (the first withheld tick of a run is logged with its reason)."""
        if not self.watchdog_usec:
            return ""
        if answered and progress:
            self.notify("WATCHDOG=1")
            self.withheld = False
            return "sent"
        if not self.withheld:
            self.withheld = True
            reason = "event loop did not answer its probe" if not answered else "no worker can make progress"
            self.log.emit("watchdog_withheld", f"watchdog heartbeat withheld: {reason}", "err", REASON=reason)
        return "withheld"

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        interval = self.interval()
        last_summary = time.monotonic()
        while not self._stop.wait(interval):
            answered = threading.Event()
            status: dict[str, Any] = {}

            def probe(status: dict[str, Any] = status, answered: threading.Event = answered) -> None:
                self.service.tick()
                status["line"] = self.service.status_line()
                status["progress"] = self.service.can_progress()
                answered.set()

            try:
                loop.call_soon_threadsafe(probe)
            except RuntimeError:
                return  # the loop is closed: the daemon is exiting
            ok = answered.wait(interval)
            if ok:
                self.notify(f"STATUS={status['line']}")
            self.heartbeat(ok, bool(status.get("progress")))
            if ok and time.monotonic() - last_summary >= SUMMARY_EVERY:
                last_summary = time.monotonic()
                loop.call_soon_threadsafe(self.service.flush_summary)


def watchdog_usec_from_env() -> int:
    """systemd's WatchdogSec= for this process (0: none, or meant for another PID)."""
    raw = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not raw or (pid and pid != str(os.getpid())):
        return 0
    try:
        return int(raw)
    except ValueError:
        return 0

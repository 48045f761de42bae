"""Admission control and request coalescing in front of the worker pool.

The old server queued behind a global lock and wedged. Here every render
request is either joined to an identical pending one, queued with a deadline,
or refused at once with a complete 503 whose ``Retry-After`` comes from the
measured service rate. The render reads the timeline when it *starts*, so a
drag (same URL, changing database) costs at most one render in flight plus one
pending per URL, and every waiter gets the newest frame.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import Overloaded

Key = tuple[Any, ...]


@dataclass
class Pending:
    key: Key
    deadline: float
    enqueued: float = field(default_factory=time.monotonic)
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    waiters: int = 0
    started: float = 0.0


class RateMeter:
    """Completions per second over a sliding window, for Retry-After and STATUS=."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self.events: deque[float] = deque()

    def mark(self, now: float | None = None) -> None:
        self.events.append(time.monotonic() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self.events and self.events[0] < now - self.window:
            self.events.popleft()
        if not self.events:
            return 0.0
        span = max(now - self.events[0], 1.0)
        return len(self.events) / span


def retry_after(backlog: int, rate: float, capacity: int) -> int:
    """Seconds until the current backlog should have drained, at least 1, at most 30."""
    if rate <= 0:
        rate = max(capacity, 1) * 0.5
    return max(1, min(30, math.ceil((backlog + 1) / rate)))


RenderFn = Callable[[Pending], Awaitable[Any]]


class Admission:
    def __init__(self, capacity: int, queue_size: int, queue_timeout: float) -> None:
        self.capacity = capacity
        self.queue_size = queue_size
        self.queue_timeout = queue_timeout
        self.queue: OrderedDict[Key, Pending] = OrderedDict()
        self.in_flight: dict[Key, Pending] = {}
        self.rate = RateMeter()
        self.rejections: deque[tuple[float, str]] = deque()
        self.counters: dict[str, int] = {"admitted": 0, "joined": 0, "rejected": 0, "expired": 0, "cancelled": 0}
        self.stopping = False
        self._wakeup = asyncio.Event()

    def backlog(self) -> int:
        return len(self.queue) + len(self.in_flight)

    def reject(self, limit: str, detail: str = "") -> Overloaded:
        now = time.monotonic()
        self.rejections.append((now, limit))
        self.counters["rejected"] += 1
        return Overloaded(limit, retry_after(self.backlog(), self.rate.rate(now), self.capacity), detail)

    def rejected_recently(self, seconds: float) -> int:
        now = time.monotonic()
        while self.rejections and self.rejections[0][0] < now - 60:
            self.rejections.popleft()
        return sum(1 for at, _ in self.rejections if at >= now - seconds)

    def submit(self, key: Key) -> Pending:
        """Join an identical queued request, or queue a new one, or raise ``Overloaded``."""
        if self.stopping:
            raise self.reject("stopping", "the daemon is stopping")
        pending = self.queue.get(key)
        if pending is not None:
            pending.waiters += 1
            self.counters["joined"] += 1
            return pending
        if len(self.queue) >= self.queue_size:
            raise self.reject("queue", f"render queue full ({self.queue_size} waiting)")
        pending = Pending(key, time.monotonic() + self.queue_timeout, waiters=1)
        self.queue[key] = pending
        self.counters["admitted"] += 1
        self._wakeup.set()
        return pending

    def leave(self, pending: Pending) -> None:
        """A waiter went away (client disconnected); drop the job if nobody waits and it has not started."""
        pending.waiters -= 1
        if pending.waiters <= 0 and not pending.started and self.queue.get(pending.key) is pending:
            del self.queue[pending.key]
            self.counters["cancelled"] += 1
            if not pending.future.done():
                pending.future.cancel()

    async def next_job(self) -> Pending:
        """The oldest queued job whose deadline has not passed; expired ones are answered 503."""
        while True:
            while not self.queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            _, pending = self.queue.popitem(last=False)
            if time.monotonic() > pending.deadline:
                self.counters["expired"] += 1
                if not pending.future.done():
                    pending.future.set_exception(self.reject("deadline", f"waited over {self.queue_timeout:.1f} s for a worker"))
                continue
            pending.started = time.monotonic()
            self.in_flight[pending.key] = pending
            return pending

    def finish(self, pending: Pending, result: Any = None, error: BaseException | None = None) -> None:
        self.in_flight.pop(pending.key, None)
        self.rate.mark()
        if pending.future.done():
            return
        if error is not None:
            pending.future.set_exception(error)
        else:
            pending.future.set_result(result)

    def expire_overdue(self) -> None:
        """Answer queued jobs whose deadline passed while every worker was busy."""
        now = time.monotonic()
        for key, pending in list(self.queue.items()):
            if now > pending.deadline:
                del self.queue[key]
                self.counters["expired"] += 1
                if not pending.future.done():
                    pending.future.set_exception(self.reject("deadline", f"waited over {self.queue_timeout:.1f} s for a worker"))

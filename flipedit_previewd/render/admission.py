"""Admission control and request coalescing in front of the worker pool.

The old server queued behind a global lock and wedged. Here every render
request is either joined to an identical pending one, queued with a deadline,
or refused at once with a complete 503 whose ``Retry-After`` comes from the
measured service rate. The render reads the timeline when it *starts*, so a
drag (same URL, changing database) costs at most one render in flight plus one
pending per URL, and every waiter gets the newest frame.

The queue is shared between the event loop (which submits and cancels) and
the dispatcher's threads (which take jobs and finish them, dispatch.py), so it
is guarded by a condition variable. Admission knows jobs, not workers: a taker
may say which frame its decoders are at (``near``), nothing more. Takers never
wait for the event loop: when the loop is busy answering a flood of 503s, the
workers keep rendering at full speed. Futures belong to the loop, so results
are handed over with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flipedit_previewd.common.errors import Overloaded

Key = tuple[Any, ...]
# The revision of a request that arrived after the database changed and before anyone read it: its render reads
# the timeline when it starts, so it shows at least that revision. Never held back behind a render in flight
# for the same key that has read its timeline (an older one, or one read before this request arrived).
UNREAD = "unread"
LOCALITY_FRAMES = 30  # without a reach from its worker, a taker prefers a queued frame this close after its position
Reach = tuple[int, int]  # timeline frames [from, to) a taker's decoders serve without a seek (worker/output.py)


def reach_of(near: Reach | int | None) -> Reach | None:
    """A taker's reach: as its worker reported it, or a frame position with LOCALITY_FRAMES after it."""
    if near is None or isinstance(near, tuple):
        return near
    return (near, near + LOCALITY_FRAMES)


@dataclass(eq=False)  # identity: one job is one object (in_flight membership)
class Pending:
    key: Key
    deadline: float
    future: asyncio.Future[Any]
    enqueued: float = field(default_factory=time.monotonic)
    waiters: int = 0
    started: float = 0.0
    speculative: bool = False  # render-ahead: nobody waits yet; a real request may take it over
    revision: str = ""  # the timeline revision it was planned for / its requests arrived with / it renders
    followers: list[Pending] = field(default_factory=list)  # jobs that read this one's revision: answered with it


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


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Admission:
    def __init__(self, capacity: int, queue_size: int, queue_timeout: float) -> None:
        self.capacity = capacity
        self.queue_size = queue_size
        self.queue_timeout = queue_timeout
        self.queue: OrderedDict[Key, Pending] = OrderedDict()
        self.in_flight: list[Pending] = []
        self.rate = RateMeter()
        self.rejections: deque[tuple[float, str]] = deque()
        self.counters: dict[str, int] = {
            "admitted": 0,
            "joined": 0,
            "rejected": 0,
            "expired": 0,
            "cancelled": 0,
            "ahead_queued": 0,
            "ahead_started": 0,
            "ahead_taken_over": 0,
            "ahead_dropped": 0,
        }
        # Render-ahead jobs: looked at only when no real job is eligible, at most ``ahead_limit`` running.
        self.ahead: OrderedDict[Key, Pending] = OrderedDict()
        self.ahead_limit = 0
        self.closed = False
        self.waiting: dict[
            int, Reach | None
        ] = {}  # takers waiting for a job -> their reach (a job near one goes to it)
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def backlog(self) -> int:
        with self._cond:
            return len(self.queue) + len(self.in_flight)

    def reject(self, limit: str, detail: str = "") -> Overloaded:
        now = time.monotonic()
        with self._cond:
            self.rejections.append((now, limit))
            self.counters["rejected"] += 1
            backlog, rate = len(self.queue) + len(self.in_flight), self.rate.rate(now)
        return Overloaded(limit, retry_after(backlog, rate, self.capacity), detail)

    def rejected_recently(self, seconds: float) -> int:
        now = time.monotonic()
        with self._cond:
            while self.rejections and self.rejections[0][0] < now - 60:
                self.rejections.popleft()
            return sum(1 for at, _ in self.rejections if at >= now - seconds)

    def _resolve(self, pending: Pending, result: Any = None, error: BaseException | None = None) -> None:
        """From any thread: settle the loop-owned future on the loop."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            _settle(pending.future, result, error)
        else:
            try:
                loop.call_soon_threadsafe(_settle, pending.future, result, error)
            except RuntimeError:
                pass  # loop closed during shutdown

    # --- the event loop's side ---------------------------------------------------------------

    def submit(self, key: Key, revision: str = "") -> Pending:
        """Join an identical queued request, or queue a new one, or raise ``Overloaded``.

        ``revision`` is the timeline revision current when the request arrived (or ``UNREAD``): a queued job
        for the same key is not held back behind an in-flight render of an older revision (see ``_eligible``).
        """
        if self.closed:
            raise self.reject("stopping", "the daemon is stopping")
        with self._cond:
            running = self._running(key, revision)
            if running is not None:
                running.waiters += 1
                self.counters["joined"] += 1
                return running
            pending = self.queue.get(key)
            if pending is not None:
                pending.waiters += 1
                pending.revision = revision or pending.revision
                self.counters["joined"] += 1
                return pending
            full = len(self.queue) >= self.queue_size
            if not full:
                loop = asyncio.get_running_loop()
                ahead = self.ahead.pop(key, None)
                if ahead is not None:
                    # The editor caught up with a frame queued ahead: it becomes a real job, no second one.
                    self.counters["ahead_taken_over"] += 1
                    ahead.speculative, ahead.waiters = False, 1
                    ahead.revision = revision or ahead.revision
                    ahead.enqueued, ahead.deadline = time.monotonic(), time.monotonic() + self.queue_timeout
                    self.queue[key] = ahead
                    self.counters["admitted"] += 1
                    self._cond.notify_all()  # every waiting taker looks: the one whose decoders are near takes it
                    loop.call_later(self.queue_timeout, self._expire, ahead)
                    return ahead
                pending = Pending(
                    key, time.monotonic() + self.queue_timeout, loop.create_future(), waiters=1, revision=revision
                )
                self.queue[key] = pending
                self.counters["admitted"] += 1
                self._cond.notify_all()  # every waiting taker looks: the one whose decoders are near takes it
                # Deadlines by timer: answered 503 at its deadline, whatever the workers are doing.
                loop.call_later(self.queue_timeout, self._expire, pending)
                return pending
        raise self.reject("queue", f"render queue full ({self.queue_size} waiting)")

    def _running(self, key: Key, revision: str) -> Pending | None:
        """A render in flight for ``key`` that a request of the known ``revision`` shares (under the lock): one of
        that very revision (it read it, or was asked for it and reads at least it), never a render-ahead job
        (nobody gets its result). Not for ``UNREAD``: a render in flight may have read before the change."""
        if not revision or revision == UNREAD:
            return None
        for pending in self.in_flight:
            if pending.key == key and not pending.speculative and pending.revision == revision:
                return pending
        return None

    def leave(self, pending: Pending) -> None:
        """A waiter went away (client disconnected); drop the job if nobody waits and it has not started."""
        with self._cond:
            pending.waiters -= 1
            if pending.waiters > 0 or pending.started or self.queue.get(pending.key) is not pending:
                return
            del self.queue[pending.key]
            self.counters["cancelled"] += 1
        pending.future.cancel()

    def speculate(self, key: Key, revision: str, ttl: float, max_queued: int) -> bool:
        """Queue a render-ahead job unless the frame is already queued, running or enough are queued."""
        if self.closed or self.ahead_limit <= 0:
            return False
        with self._cond:
            if key in self.queue or key in self.ahead or len(self.ahead) >= max_queued:
                return False
            if any(p.key == key for p in self.in_flight):
                return False
            pending = Pending(
                key,
                time.monotonic() + ttl,
                asyncio.get_running_loop().create_future(),
                speculative=True,
                revision=revision,
            )
            self.ahead[key] = pending
            self.counters["ahead_queued"] += 1
            self._cond.notify()
            return True

    def retain_ahead(self, keep: Callable[[Pending], bool]) -> int:
        """Drop queued render-ahead jobs that no longer pay (revision changed, playback stopped, overload)."""
        if not self.ahead:
            return 0  # the usual case, on every frame request (overload included): no lock needed
        with self._cond:
            dropped = [p for p in self.ahead.values() if not keep(p)]
            for pending in dropped:
                del self.ahead[pending.key]
            self.counters["ahead_dropped"] += len(dropped)
        return len(dropped)

    def ahead_running(self) -> int:
        """Render-ahead jobs running now (for /health; ``_eligible`` counts under the lock it holds)."""
        with self._cond:
            return self._ahead_running()

    def _ahead_running(self) -> int:
        return sum(1 for p in self.in_flight if p.speculative)

    def _expire(self, pending: Pending) -> None:
        """The deadline timer of one queued job: still waiting for a worker means 503 now."""
        with self._cond:
            if pending.started or self.queue.get(pending.key) is not pending:
                return
            del self.queue[pending.key]
            self.counters["expired"] += 1
        self._resolve(pending, error=self.reject("deadline", f"waited over {self.queue_timeout:.1f} s for a worker"))

    def expire_overdue(self) -> None:
        """Answer queued jobs whose deadline passed while every worker was busy."""
        now = time.monotonic()
        with self._cond:
            expired = [p for p in self.queue.values() if now > p.deadline]
            for pending in expired:
                del self.queue[pending.key]
                self.counters["expired"] += 1
        for pending in expired:
            self._resolve(
                pending, error=self.reject("deadline", f"waited over {self.queue_timeout:.1f} s for a worker")
            )

    # --- the takers' side (the dispatcher's threads) --------------------------------------------

    def _eligible(self, near: Reach | int | None = None, me: int | None = None) -> Pending | None:
        """The oldest queued job whose key is not being rendered: one render in flight per URL.

        Unless a younger one is a few frames after ``near`` (the taker's decoder position), while the oldest
        still has more than half its queue time left: that worker's decoders then go on forward instead
        of seeking back to a keyframe (under overload the admitted frames are scattered, and seeking
        was the largest cost in the profile, bench/results/RESULTS.md).

        ``near`` is the taker's reach (timeline frames its worker serves without a seek: the GOP its decoder is in,
        the frames it keeps behind it; a bare frame means LOCALITY_FRAMES after it). A job in the reach of another
        taker waiting now (``waiting``) and not in this one's is left to that one, while it has time: a scrub's next
        frame goes to the worker that just decoded its GOP.

        Unless the render in flight is of an older timeline revision than the one the queued job's
        requests arrived with (a drag), or the queued job's requests found the database changed and
        unread (``UNREAD``): then it starts at once on another worker instead of waiting for a frame
        its requests must not get anyway. (A request of the very revision in flight joins that render: ``submit``.)
        Real jobs first; a render-ahead job only when no real one can start and fewer than
        ``ahead_limit`` speculative renders run, so speculation only ever uses idle workers.
        """
        busy = {p.key for p in self.in_flight}
        rendering = {(p.key, p.revision) for p in self.in_flight}
        chosen: Pending | None = None
        reach = reach_of(near)
        others = [r for who, r in self.waiting.items() if who != me and r is not None]
        nearest: int | None = None
        for pending in self.queue.values():
            if (
                pending.key not in busy
                or pending.revision == UNREAD
                or (pending.revision and (pending.key, pending.revision) not in rendering)
            ):
                frame = pending.key[0]
                mine = reach is not None and isinstance(frame, int) and reach[0] <= frame < reach[1]
                late = pending.deadline - time.monotonic() < self.queue_timeout / 2
                if (
                    not mine
                    and not late
                    and isinstance(frame, int)
                    and any(low <= frame < high for low, high in others)
                ):
                    continue  # another waiting taker's decoders are in this frame's GOP: it is theirs
                if chosen is None:
                    chosen = pending
                    if reach is None or late:
                        break  # no decoder position to follow, or the oldest is getting late: it goes first
                if mine and reach is not None and (nearest is None or frame - reach[0] < nearest):
                    chosen, nearest = pending, frame - reach[0]
        if chosen is not None:
            return chosen
        if self.ahead and self._ahead_running() < self.ahead_limit:
            now = time.monotonic()
            for pending in list(self.ahead.values()):
                if now > pending.deadline:
                    del self.ahead[pending.key]
                    self.counters["ahead_dropped"] += 1
                elif pending.key not in busy:
                    return pending
        return None

    def take(
        self, stop: threading.Event, near: Reach | int | None = None, until: float | None = None
    ) -> Pending | None:
        """Block until there is a job whose deadline has not passed; None once ``stop`` is set or closed.

        ``near``: the frame the taker's decoders are at, if any (locality, see ``_eligible``). ``until``: a
        ``time.monotonic()`` after which it gives up and returns None without a job (the taker then has an idle
        worker to replace, dispatch.py).
        """
        while True:
            expired: Pending | None = None
            me = threading.get_ident()
            with self._cond:
                self.waiting[me] = reach_of(near)
                try:
                    while (pending := self._eligible(near, me)) is None:
                        if stop.is_set() or self.closed:
                            return None
                        wait = 0.5
                        if until is not None:
                            wait = min(wait, until - time.monotonic())
                            if wait <= 0:
                                return None
                        self._cond.wait(wait)
                finally:
                    del self.waiting[me]
                if pending.speculative:
                    del self.ahead[pending.key]
                    self.counters["ahead_started"] += 1
                    pending.started = time.monotonic()
                    self.in_flight.append(pending)
                    return pending
                del self.queue[pending.key]
                if time.monotonic() > pending.deadline:
                    self.counters["expired"] += 1
                    expired = pending
                else:
                    pending.started = time.monotonic()
                    self.in_flight.append(pending)
                    return pending
            self._resolve(
                expired, error=self.reject("deadline", f"waited over {self.queue_timeout:.1f} s for a worker")
            )

    def follow(self, pending: Pending) -> bool:
        """From its taker, once it has read its timeline (``pending.revision``): when a render of that very key
        and revision is in flight, this job is answered with that render's result instead of rendering it a
        second time (True; the taker is done with it). A request that found the database unread (``UNREAD``)
        starts at once beside any render in flight; this is where two such requests after one change meet."""
        with self._cond:
            for other in self.in_flight:
                if (
                    other is not pending
                    and other.key == pending.key
                    and other.revision == pending.revision
                    and not other.speculative
                    and not pending.speculative
                ):
                    self.in_flight.remove(pending)
                    other.followers.append(pending)
                    other.waiters += pending.waiters
                    self.counters["joined"] += 1
                    return True
        return False

    def finish(self, pending: Pending, result: Any = None, error: BaseException | None = None) -> None:
        """A taken job is done: settle its future on the loop (a render-ahead job's error is dropped), and those
        of the jobs that follow it (``follow``)."""
        with self._cond:
            if pending in self.in_flight:
                self.in_flight.remove(pending)
            if not pending.speculative:
                self.rate.mark()
            self._cond.notify_all()  # a job for the same URL may now start
            followers, pending.followers = pending.followers, []
        if pending.speculative:
            error = None  # nobody awaits a render-ahead job: an error is counted, never raised
        self._resolve(pending, result, error)
        for follower in followers:
            self._resolve(follower, result, error)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self.ahead.clear()
            self._cond.notify_all()

"""The render path, one way: admission -> a dispatcher thread -> a worker process -> the waiters.

The loop side asks ``await dispatcher.render(key, revision, etag)``; everything between the
request and its result happens here: coalescing and deadlines (admission.py), the frame
cache, the render budget (a render past it is cancelled, 504, and the same frame of the same
timeline refused at once for a while), cancellation (the last waiter leaving drops a queued
job; a real request takes over a render-ahead job; a render-ahead job of a stale revision is
skipped) and render-ahead jobs.

One thread per worker process takes jobs from admission, reads the timeline *when the render
starts* (so a drag costs at most one render in flight plus one pending per URL, and every
waiter gets the newest frame), renders through its process and finishes the job. These threads
never wait for the event loop and run no code of the loop side: what the loop must hear about
(timeline reads, media problems, worker events) is handed to it with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from flipedit_previewd.common.errors import GatewayTimeout, HTTPError, RenderFailed
from flipedit_previewd.common.framecache import FrameCache
from flipedit_previewd.common.metrics import Metrics
from flipedit_previewd.render.admission import LOCALITY_FRAMES, Admission, Pending, Reach
from flipedit_previewd.render.pool import BudgetExceeded, RenderOutcome, WorkerPool
from flipedit_previewd.render.renderahead import RenderAhead
from flipedit_previewd.timeline.model import Timeline
from flipedit_previewd.worker.output import OutputSpec


@dataclass(frozen=True)
class FrameResult:
    body: bytes
    content_type: str
    etag: str
    render_ms: float
    queue_ms: float
    cached: bool
    shared: bool = False  # the request joined one already queued for the same frame
    source: str = ""  # what the video frames came from: proxy, original, mixed ("" none): X-Preview-Source


@dataclass(frozen=True)
class QueueSnapshot:
    """Admission's state at one instant (``Dispatcher.snapshot``)."""

    queued: int  # real requests waiting for a worker
    in_flight: int  # renders running, render-ahead ones included
    ahead_queued: int
    ahead_running: int
    rate_per_s: float  # renders finished per second, lately
    rejected_last_minute: int
    counters: dict[str, int]  # admission's own counters since start (admitted, joined, rejected, ...), a copy


class HeavyFrameRefused(GatewayTimeout):
    """Refused at once, without a render: this frame of this timeline ran past the budget lately."""


def frame_etag(timeline: Timeline, frame: int, spec: OutputSpec) -> str:
    return f'"{timeline.revision}-{frame}-{spec.width}x{spec.height}-q{spec.quality}-{spec.format}"'


class HeavyFrames:
    """ETags of renders that ran past the budget -> until when they are refused (thread-safe enough:
    one writer per render, dict operations are atomic)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.until: dict[str, float] = {}

    def mark(self, etag: str) -> None:
        now = time.monotonic()
        if len(self.until) > 1000:
            self.until = {k: v for k, v in self.until.items() if v > now}
        self.until[etag] = now + self.ttl

    def left(self, etag: str) -> float:
        """Seconds this frame stays refused (0: render it)."""
        until = self.until.get(etag)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            self.until.pop(etag, None)
            return 0.0
        return left

    def __contains__(self, etag: str) -> bool:
        return etag in self.until


@dataclass
class LoopHooks:
    """What the loop side hears from the render path; each is called on the loop, never on a thread."""

    timeline_read: Callable[[], None] = lambda: None
    media_problem: Callable[[str, str], None] = lambda path, problem: None
    worker_event: Callable[..., None] = lambda event, message, worker, fields=None: None  # fields: journal fields


class Dispatcher:
    def __init__(
        self,
        admission: Admission,
        pool: WorkerPool,
        cache: FrameCache,
        ahead: RenderAhead,
        metrics: Metrics,
        timeline: Callable[[], Timeline],
        roots: Callable[[Timeline], Sequence[str]],
        hooks: LoopHooks | None = None,
        budget: float = 5.0,
        heavy_ttl: float = 60.0,
    ) -> None:
        self.admission = admission
        self.pool = pool
        self.cache = cache
        self.ahead = ahead
        self.metrics = metrics
        self.timeline = timeline  # reads the timeline now (thread-safe: projectdb.ProjectSource.current)
        self.roots = roots  # where media may be read from, for a timeline (cached, thread-safe)
        self.hooks = hooks or LoopHooks()
        # Told on the driver thread when a real render starts (True) and ends (False): quick and thread-safe.
        # The proxy maker is paused meanwhile (proxy/manager.py), so it never shares a core's caches with one.
        self.rendering: Callable[[bool], None] = lambda busy: None
        self.budget = budget
        self.heavy = HeavyFrames(heavy_ttl)
        self.position: list[
            Reach | None
        ] = []  # per worker: the frames its decoders serve without a seek (admission locality)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        pool.on_event = lambda event, message, worker, **fields: self._post(
            self.hooks.worker_event, event, message, worker, fields
        )

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Spawn the worker processes (unless already running) and one dispatcher thread each."""
        self._loop = loop
        self.admission.bind(loop)
        if not self.pool.workers:
            self.pool.start()
        self.position = [None] * self.pool.size
        for index in range(self.pool.size):
            thread = threading.Thread(target=self._drive, args=(index,), daemon=True, name=f"worker-{index}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """End the threads (after the job in hand) and the workers."""
        self._stop.set()
        self.admission.close()
        self.pool.stop()

    # --- the loop's side ---------------------------------------------------------------------

    async def render(self, key: tuple[int, OutputSpec], revision: str, etag: str) -> FrameResult:
        """The frame for ``key``, rendered (or found cached) by a worker; raises HTTPError subclasses.

        ``revision``/``etag``: of the timeline current when the request arrived (the render itself
        reads the timeline again when it starts).
        """
        left = self.heavy.left(etag)
        if left:
            raise HeavyFrameRefused(
                f"frame {key[0]} of this timeline ran past the render budget of {self.budget:.1f} s; "
                f"refused for {left:.0f} s more",
                limit="render_budget",
            )
        pending = self.admission.submit(key, revision)
        shared = pending.waiters > 1
        try:
            result: FrameResult = await asyncio.shield(pending.future)
        except asyncio.CancelledError:
            self.admission.leave(pending)
            raise
        return replace(result, shared=True) if shared else result

    def snapshot(self) -> QueueSnapshot:
        """What admission holds now, for /health, STATUS=, /metrics and /debug/timeline (they read this, not "
        "admission)."""
        a = self.admission
        return QueueSnapshot(
            len(a.queue),
            len(a.in_flight),
            len(a.ahead),
            a.ahead_running(),
            a.rate.rate(),
            a.rejected_recently(60),
            dict(a.counters),
        )

    # --- the dispatcher's threads ------------------------------------------------------------

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # loop closed during shutdown

    def _drive(self, index: int) -> None:
        while not self._stop.is_set():
            pending = self.admission.take(self._stop, self.position[index], self.pool.recycle_due(index))
            if pending is None:
                if self._stop.is_set() or self.admission.closed:
                    return
                # Idle since its last render: a fresh process in its place (WorkerPool.recycle), from this thread,
                # the only one that renders through worker ``index``; its decoders are gone with it.
                if self.pool.recycle(index):
                    self.position[index] = None
                continue
            if pending.speculative:
                self._run_ahead(index, pending)
                continue
            if isinstance(pending.key[0], int):
                self.position[index] = (pending.key[0], pending.key[0] + LOCALITY_FRAMES)  # until its worker says
            self._run(index, pending)

    def _read(self) -> Timeline:
        timeline = self.timeline()
        self._post(self.hooks.timeline_read)
        return timeline

    def _render(
        self, index: int, frame: int, spec: OutputSpec, timeline: Timeline, etag: str, speculative: bool = False
    ) -> RenderOutcome:
        """Through worker ``index``'s process; past the budget the frame is marked heavy (then refused at once)."""
        try:
            return self.pool.render(index, frame, spec, timeline, self.budget, tuple(self.roots(timeline)), speculative)
        except BudgetExceeded:
            self.heavy.mark(etag)
            raise

    def _run(self, index: int, pending: Pending) -> None:
        """A real job: read the timeline now, answer from the cache or render, finish."""
        frame, spec = pending.key
        queue_ms = (pending.started - pending.enqueued) * 1000
        self.metrics.queue_wait.observe(queue_ms / 1000)
        try:
            timeline = self._read()
            pending.revision = (
                timeline.revision
            )  # what this render shows (admission: newer requests need not wait for it)
            if self.admission.follow(pending):
                return  # the same picture is being rendered for another job: answered with it
            etag = frame_etag(timeline, frame, spec)
            cached = self.cache.get(etag)
            if cached is not None:
                self.admission.finish(
                    pending, FrameResult(cached[0], cached[1], etag, 0.0, queue_ms, True, source=cached[2])
                )
                return
            self.rendering(True)
            try:
                outcome = self._render(index, frame, spec, timeline, etag)
            finally:
                self.rendering(False)
        except HTTPError as exc:  # BudgetExceeded (504) included
            self.admission.finish(pending, error=exc)
            return
        except Exception as exc:  # noqa: BLE001 - a bug in one render must not stop the worker's thread
            self.admission.finish(pending, error=RenderFailed(f"{type(exc).__name__}: {exc}"))
            return
        result = outcome.result
        if result.reach is not None:
            self.position[index] = result.reach
        for path, problem in result.problems:
            self._post(self.hooks.media_problem, path, problem)
        self.metrics.render_time.observe(outcome.render_ms / 1000)
        self.cache.put(etag, (result.body, result.content_type, result.source), len(result.body))
        self.admission.finish(
            pending,
            FrameResult(
                result.body, result.content_type, etag, outcome.render_ms, queue_ms, False, source=result.source
            ),
        )

    def _run_ahead(self, index: int, pending: Pending) -> None:
        """A render-ahead job, only if its revision is still the current one and the frame is not cached."""
        frame, spec = pending.key
        try:
            timeline = self._read()
            etag = frame_etag(timeline, frame, spec)
            if timeline.revision != pending.revision:
                self.ahead.counters["stale"] += 1
            elif etag not in self.cache and etag not in self.heavy:
                outcome = self._render(index, frame, spec, timeline, etag, speculative=True)
                self.ahead.counters["rendered"] += 1
                self.cache.put(
                    etag,
                    (outcome.result.body, outcome.result.content_type, outcome.result.source),
                    len(outcome.result.body),
                    ahead=True,
                )
        except Exception:  # noqa: BLE001 - a guess that failed costs nothing; the real request will report it
            self.ahead.counters["failed"] += 1
        finally:
            self.admission.finish(pending)

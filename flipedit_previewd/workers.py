"""Render workers as child processes, driven from the event loop.

Processes, not threads: a frame's JPEG encode and alpha compositing hold the
GIL, so two threads on two cores render barely faster than one (see
``bench/render.py``), while two processes scale. Processes can also be killed
and replaced when a render hangs (a FIFO as media source, a wedged decoder),
which a thread cannot. Each worker reports what it is doing and since when, so
``/health`` and the watchdog can tell progress from a hang.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from .compositor import OutputSpec, RenderResult, compose
from .errors import GatewayTimeout, RenderFailed
from .timeline import Timeline


@dataclass(frozen=True)
class WorkerSettings:
    source_cache_bytes: int
    max_source_pixels: int
    test_render_hook: str = ""


@dataclass(frozen=True)
class RenderJob:
    job_id: int
    frame: int
    spec: OutputSpec
    timeline: Timeline


@dataclass
class RenderOutcome:
    result: RenderResult
    render_ms: float
    worker: int


def _worker_main(conn: Connection, settings: WorkerSettings, parent: int) -> None:
    """Child process loop: one job at a time, results back over the pipe."""
    from .media import MediaPool

    def orphan_guard() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=orphan_guard, daemon=True).start()
    media = MediaPool(settings.source_cache_bytes, settings.max_source_pixels)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            break
        if job is None:
            break
        started = time.perf_counter()
        try:
            if job.timeline.source != "warm-up":
                _test_hook(settings.test_render_hook)
            result = compose(job.timeline, job.frame, job.spec, media)
            conn.send(("ok", job.job_id, result, (time.perf_counter() - started) * 1000))
        except Exception as exc:  # noqa: BLE001 - any render bug must become a 500, not a dead worker
            conn.send(("error", job.job_id, f"{type(exc).__name__}: {exc}", (time.perf_counter() - started) * 1000))
    media.close()


def _test_hook(hook: str) -> None:
    if not hook:
        return
    if hook == "hang":
        while True:
            time.sleep(3600)
    if hook.startswith("sleep:"):
        time.sleep(float(hook.split(":", 1)[1]))


@dataclass
class Worker:
    index: int
    process: Any
    conn: Connection
    state: str = "starting"
    since: float = field(default_factory=time.monotonic)
    frame: int | None = None
    completed: int = 0
    hung_reported: bool = False
    future: asyncio.Future[Any] | None = None

    def snapshot(self, now: float, hang_threshold: float) -> dict[str, Any]:
        age = now - self.since
        state = self.state
        if state == "rendering" and age > hang_threshold:
            state = "hung"
        return {"index": self.index, "pid": self.process.pid, "state": state, "frame": self.frame,
                "since_s": round(age, 3), "completed": self.completed}


class WorkerPool:
    def __init__(self, size: int, settings: WorkerSettings, hang_threshold: float) -> None:
        self.size = size
        self.settings = settings
        self.hang_threshold = hang_threshold
        self.workers: list[Worker] = []
        self.completed = 0
        self.replaced = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Queue[Worker] | None = None
        self._next_job = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._idle = asyncio.Queue()
        for index in range(self.size):
            self.workers.append(self._spawn(index))

    def _spawn(self, index: int) -> Worker:
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child_conn, self.settings, os.getpid()),
                                    name=f"flipedit-previewd-worker-{index}", daemon=True)
        process.start()
        child_conn.close()
        worker = Worker(index, process, parent_conn, state="idle")
        threading.Thread(target=self._reader, args=(worker,), daemon=True, name=f"worker-reader-{index}").start()
        assert self._idle is not None
        self._idle.put_nowait(worker)
        return worker

    def _reader(self, worker: Worker) -> None:
        """Blocking pipe reads stay off the event loop; results are handed over thread-safely."""
        loop = self._loop
        assert loop is not None
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                message = ("dead", None, "worker process exited", 0.0)
            try:
                loop.call_soon_threadsafe(self._deliver, worker, message)
            except RuntimeError:
                return  # loop closed
            if message[0] == "dead":
                return

    def _deliver(self, worker: Worker, message: tuple[Any, ...]) -> None:
        future = worker.future
        if future is not None and not future.done():
            future.set_result(message)

    @property
    def idle_count(self) -> int:
        return self._idle.qsize() if self._idle else 0

    def busy_count(self) -> int:
        return sum(1 for w in self.workers if w.state == "rendering")

    def hung_workers(self, now: float | None = None) -> list[Worker]:
        now = time.monotonic() if now is None else now
        return [w for w in self.workers if w.state == "rendering" and now - w.since > self.hang_threshold]

    async def acquire(self) -> Worker:
        assert self._idle is not None
        return await self._idle.get()

    def release(self, worker: Worker) -> None:
        """Return an acquired worker that ended up not being needed (e.g. a cache hit at start)."""
        assert self._idle is not None
        self._idle.put_nowait(worker)

    async def render(self, worker: Worker, frame: int, spec: OutputSpec, timeline: Timeline) -> RenderOutcome:
        """Run one job on an acquired worker; the worker goes back to the idle queue afterwards."""
        assert self._loop is not None and self._idle is not None
        self._next_job += 1
        job = RenderJob(self._next_job, frame, spec, timeline)
        worker.future = self._loop.create_future()
        worker.state, worker.since, worker.frame, worker.hung_reported = "rendering", time.monotonic(), frame, False
        try:
            worker.conn.send(job)
            kind, _, payload, render_ms = await worker.future
        except (OSError, ValueError) as exc:
            kind, payload, render_ms = "dead", f"cannot reach worker: {exc}", 0.0
        finally:
            worker.future = None
        if kind == "dead":
            self._replace(worker)
            raise RenderFailed(f"worker {worker.index} died: {payload}")
        worker.state, worker.since, worker.frame = "idle", time.monotonic(), None
        worker.completed += 1
        self.completed += 1
        self._idle.put_nowait(worker)
        if kind == "error":
            raise RenderFailed(str(payload))
        return RenderOutcome(payload, render_ms, worker.index)

    def _replace(self, worker: Worker) -> None:
        self.replaced += 1
        self._terminate(worker)
        self.workers[self.workers.index(worker)] = self._spawn(worker.index)

    def replace_hung(self, worker: Worker) -> None:
        """Kill a hung worker; its waiter gets a 504 and a fresh process takes its place."""
        future = worker.future
        self._replace(worker)
        if future is not None and not future.done():
            future.set_exception(GatewayTimeout(f"render of frame {worker.frame} hung for over {self.hang_threshold:.0f} s"))

    def _terminate(self, worker: Worker) -> None:
        worker.state = "dead"
        try:
            worker.process.kill()
            worker.process.join(timeout=2)
        except (OSError, ValueError, AssertionError):
            pass
        worker.conn.close()

    def stop(self) -> None:
        for worker in self.workers:
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2
        for worker in self.workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=1)
        for worker in self.workers:
            worker.conn.close()

    def snapshot(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [w.snapshot(now, self.hang_threshold) for w in self.workers]

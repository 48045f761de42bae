"""Render workers as child processes, driven from the event loop.

Processes, not threads: a frame's JPEG encode and alpha compositing hold the
GIL, so two threads on two cores render barely faster than one (see
``bench/render.py``), while two processes scale. Processes can also be killed
and replaced when a render hangs (a FIFO as media source, a wedged decoder),
which a thread cannot. Each worker reports what it is doing and since when, so
``/health`` and the watchdog can tell progress from a hang.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from .errors import GatewayTimeout, RenderFailed
from .output import OutputSpec, RenderResult
from .timeline import Timeline

IDLE_RELEASE_S = 10.0  # a worker without a job for this long closes its media and trims its heap


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
    from .compositor import compose  # PyAV and Pillow: in the workers only (output.py)
    from .media import MediaPool

    def orphan_guard() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=orphan_guard, daemon=True).start()
    media = MediaPool(settings.source_cache_bytes, settings.max_source_pixels)
    used = False
    while True:
        try:
            if used and not conn.poll(IDLE_RELEASE_S):
                # Idle (the editor is closed or paused): give back decoders, cached sources and the
                # heap they left behind; the next frame reopens its files (bench/footprint.py).
                media.close()
                media, used = MediaPool(settings.source_cache_bytes, settings.max_source_pixels), False
                _trim_heap()
                continue
            job = conn.recv()
        except (EOFError, OSError):
            break
        if job is None:
            break
        started = time.perf_counter()
        used = True
        try:
            if job.timeline.source != "warm-up":
                _test_hook(settings.test_render_hook)
            result = compose(job.timeline, job.frame, job.spec, media)
            conn.send(("ok", job.job_id, result, (time.perf_counter() - started) * 1000))
        except Exception as exc:  # noqa: BLE001 - any render bug must become a 500, not a dead worker
            conn.send(("error", job.job_id, f"{type(exc).__name__}: {exc}", (time.perf_counter() - started) * 1000))
    media.close()


def _trim_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


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
    killed_for_hang: bool = False

    def snapshot(self, now: float, hang_threshold: float) -> dict[str, Any]:
        age = now - self.since
        state = self.state
        if state == "rendering" and age > hang_threshold:
            state = "hung"
        return {"index": self.index, "pid": self.process.pid, "state": state, "frame": self.frame,
                "since_s": round(age, 3), "completed": self.completed}


JobRunner = Callable[[Worker, Any], None]


class WorkerPool:
    """Worker processes, each driven by its own thread that takes jobs straight from admission.

    The event loop is not on the dispatch path: a driver thread takes the next job, renders it
    through its process (a blocking pipe round trip) and hands the result back; when the loop is
    swamped by a flood of requests, the workers still never wait for it.
    """

    def __init__(self, size: int, settings: WorkerSettings, hang_threshold: float) -> None:
        self.size = size
        self.settings = settings
        self.hang_threshold = hang_threshold
        self.workers: list[Worker] = []
        self.completed = 0
        self.replaced = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next_job = 0
        self._threads: list[threading.Thread] = []

    def start(self, take: Callable[[int, threading.Event], Any], run: JobRunner) -> None:
        """Spawn the processes and their driver threads; ``take`` blocks for the next job, ``run`` does it."""
        for index in range(self.size):
            worker = self._spawn(index)
            self.workers.append(worker)
            thread = threading.Thread(target=self._drive, args=(worker, take, run), daemon=True, name=f"worker-{index}")
            thread.start()
            self._threads.append(thread)

    def _spawn(self, index: int) -> Worker:
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child_conn, self.settings, os.getpid()),
                                    name=f"flipedit-previewd-worker-{index}", daemon=True)
        process.start()
        child_conn.close()
        return Worker(index, process, parent_conn, state="idle")

    def _drive(self, worker: Worker, take: Callable[[int, threading.Event], Any], run: JobRunner) -> None:
        while not self._stop.is_set():
            pending = take(worker.index, self._stop)
            if pending is None:
                return
            run(self.workers[worker.index], pending)

    def render(self, worker: Worker, frame: int, spec: OutputSpec, timeline: Timeline) -> RenderOutcome:
        """One job through ``worker``'s process, blocking (called from its driver thread, or at warm-up)."""
        worker = self.workers[worker.index]
        with self._lock:
            self._next_job += 1
            job = RenderJob(self._next_job, frame, spec, timeline)
        worker.state, worker.since, worker.frame, worker.hung_reported = "rendering", time.monotonic(), frame, False
        try:
            worker.conn.send(job)
            kind, _, payload, render_ms = worker.conn.recv()
        except (EOFError, OSError, ValueError) as exc:
            killed = worker.killed_for_hang
            self._respawn(worker)
            if killed:
                raise GatewayTimeout(f"render of frame {frame} hung for over {self.hang_threshold:.0f} s; worker replaced") from None
            raise RenderFailed(f"worker {worker.index} died: {exc or type(exc).__name__}") from None
        worker.state, worker.since, worker.frame = "idle", time.monotonic(), None
        worker.completed += 1
        with self._lock:
            self.completed += 1
        if kind == "error":
            raise RenderFailed(str(payload))
        return RenderOutcome(payload, render_ms, worker.index)

    def _respawn(self, worker: Worker) -> None:
        self._terminate(worker)
        if self._stop.is_set():
            return
        with self._lock:
            self.replaced += 1
        self.workers[worker.index] = self._spawn(worker.index)

    def busy_count(self) -> int:
        return sum(1 for w in self.workers if w.state == "rendering")

    def hung_workers(self, now: float | None = None) -> list[Worker]:
        now = time.monotonic() if now is None else now
        return [w for w in self.workers if w.state == "rendering" and now - w.since > self.hang_threshold]

    def replace_hung(self, worker: Worker) -> None:
        """Kill a hung worker's process; its driver thread answers 504 and starts a fresh one."""
        worker.killed_for_hang = True
        try:
            worker.process.kill()
        except (OSError, ValueError, AttributeError):
            pass

    def _terminate(self, worker: Worker) -> None:
        worker.state = "dead"
        try:
            worker.process.kill()
            worker.process.join(timeout=2)
        except (OSError, ValueError, AssertionError):
            pass
        worker.conn.close()

    def stop(self) -> None:
        self._stop.set()
        for worker in self.workers:
            if worker.state != "rendering":
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

"""Render workers as child processes, the daemon's side; the dispatcher (dispatch.py) drives them.

Processes, not threads: a frame's JPEG encode and alpha compositing hold the
GIL, so two threads on two cores render barely faster than one (see
``bench/render.py``), while two processes scale. Processes can also be killed
and replaced when a render hangs (a FIFO as media source, a wedged decoder),
which a thread cannot. Each worker reports what it is doing and since when, so
``/health`` and the watchdog can tell progress from a hang.

Here: how a worker process is started (``_Child``), its state as the daemon sees it (``Worker``), and
the pool that spawns, retries after a crash and replaces a hung worker. The worker's own loop is
``worker/main.py``; every message between the two is a dataclass of ``worker/wire.py``.

A worker parses untrusted media, so it is treated as a process that may be taken over: it confines
itself (``confine.py``: seccomp at start, Landlock at its first job, to that job's media roots) and
its replies are plain data the daemon checks field by field (``wire.py``), never pickle. A worker
whose Landlock rules do not cover a job's roots (another project opened) is replaced by a fresh one.
"""

from __future__ import annotations

import enum
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from flipedit_previewd.common.errors import GatewayTimeout, RenderFailed
from flipedit_previewd.timeline.model import Timeline
from flipedit_previewd.worker import wire
from flipedit_previewd.worker.output import OutputSpec, RenderResult
from flipedit_previewd.worker.wire import WorkerSettings

if TYPE_CHECKING:  # the configuration module is not needed before the workers are started (cold start)
    from flipedit_previewd.config.schema import Config


class BudgetExceeded(GatewayTimeout):
    """The render ran past ``render_budget``; its worker was replaced."""


class WorkerCrashed(RenderFailed):
    """The worker died during the job, and again on the retry."""


# A source that took down a worker this many times is drawn as a placeholder until the file changes.
CRASHES_TO_BREAK = 2

# A worker that has rendered and then had no job for this long is replaced by a fresh process (``recycle``).
RECYCLE_AFTER_S = 10.0


class BadReply(RenderFailed):
    """The worker's reply broke the wire format (wire.py): a worker taken over, or a bug; it was replaced."""


@dataclass
class RenderOutcome:
    result: RenderResult
    render_ms: float


# The daemon's import path travels in the environment (/proc/PID/environ is readable by its owner only;
# argv is readable by every local user) and is dropped from it at once.
_PATH_VARIABLE = "FLIPEDIT_WORKER_SYS_PATH"
_CHILD_CODE = (
    f"import json, os, sys; sys.path[:] = json.loads(os.environ.pop({_PATH_VARIABLE!r})); "
    "from flipedit_previewd.worker.main import child_main; child_main()"
)


class _Child:
    """A worker process started by ``subprocess``, with the little of multiprocessing.Process we use.

    Not multiprocessing's spawn: that starts a resource-tracker process (6.6 MB PSS idle, for
    semaphores the daemon never makes) and re-imports the daemon's ``__main__`` (the HTTP side)
    in every worker. Here a worker imports only ``worker.main`` and what it renders with (bench/footprint.py).
    """

    def __init__(self, index: int, settings: WorkerSettings) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours, theirs:
            # The daemon's own import path and interpreter flags (-I, -s, -E ...), as multiprocessing
            # passes them: the worker renders with the same package the daemon runs (a source tree, a
            # venv, the .deb) under the same isolation, and -P keeps the working directory off the path.
            flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    *flags,
                    "-P",
                    "-c",
                    _CHILD_CODE,
                    f"flipedit-previewd-worker-{index}",
                    str(theirs.fileno()),
                ],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env={**os.environ, _PATH_VARIABLE: json.dumps(sys.path)},
            )
            self.conn = Connection(ours.detach())
        self.conn.send(wire.Start(settings, os.getpid()))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        if self.popen.returncode is None:
            self.popen.kill()

    def join(self, timeout: float | None = None) -> None:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def is_alive(self) -> bool:
        return self.popen.poll() is None


class WorkerState(enum.Enum):
    """A worker as the daemon sees it; the value is what /health says."""

    IDLE = "idle"
    RENDERING = "rendering"  # a job sent, its reply not yet read
    DEAD = "dead"  # terminated; its index gets a fresh Worker
    HUNG = "hung"  # only in reports: rendering past the hang threshold (WorkerPool.hung_workers decides)


@dataclass
class Worker:
    index: int
    process: Any
    conn: Connection
    state: WorkerState = WorkerState.IDLE
    since: float = field(default_factory=time.monotonic)
    frame: int | None = None
    completed: int = 0
    hung_reported: bool = False
    killed_for_hang: bool = False
    job_id: int = 0
    revision: str = ""  # of the timeline this worker's process holds
    sandbox: dict[str, Any] | None = None  # what its process could apply (its hello), None until read
    locked: tuple[str, ...] | None = None  # the roots its first job gave it (Landlock's rules), None before

    def snapshot(self, now: float, hung: bool) -> dict[str, Any]:
        age = now - self.since
        state = WorkerState.HUNG if hung else self.state
        return {
            "index": self.index,
            "pid": self.process.pid,
            "state": state.value,
            "frame": self.frame,
            "since_s": round(age, 3),
            "completed": self.completed,
            "media_roots": list(self.locked or ()),
        }


class WorkerPool:
    """Worker processes, addressed by index; ``render`` is one blocking job through one of them.

    The pool knows nothing of admission or requests: the dispatcher's thread for worker ``i``
    calls ``render(i, ...)`` (a blocking pipe round trip), so when the loop is swamped by a flood
    of requests, the workers still never wait for it.
    """

    def __init__(
        self,
        size: int,
        settings: WorkerSettings,
        hang_threshold: float,
        recycle_after: float | None = RECYCLE_AFTER_S,
    ) -> None:
        self.size = size
        self.settings = settings
        self.hang_threshold = hang_threshold
        self.recycle_after = recycle_after  # None: a worker lives until it dies, hangs or is stopped
        self.workers: list[Worker] = []
        self.completed = 0
        self.replaced = 0
        self.recycled = 0  # idle workers replaced by fresh processes (``recycle``); not in ``replaced``
        self._sent: dict[int, Timeline] = {}  # per index, the timeline its process was sent last (``recycle``)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()  # a worker's (state, job_id) against replace_hung's check-then-kill
        self._next_job = 0
        self.crashes: dict[tuple[str, Any], int] = {}
        self.on_event: Callable[..., None] | None = None  # (event, message, worker, **journal fields)
        self.sandbox: dict[str, Any] | None = None  # the first worker's hello: what confinement this kernel allows

    @classmethod
    def for_config(cls, config: Config) -> WorkerPool:
        from flipedit_previewd.proxy.store import default_root

        proxy_root = (
            (os.path.expanduser(config.proxy_dir) if config.proxy_dir else str(default_root()))
            if config.proxies
            else ""
        )
        settings = WorkerSettings(
            config.source_cache_bytes, config.max_source_pixels, proxy_root, (config.proxy_width, config.proxy_height)
        )
        return cls(config.workers, settings, config.hang_threshold)

    def start(self) -> None:
        """Spawn the worker processes."""
        for index in range(self.size):
            self.workers.append(self._spawn(index))

    def _spawn(self, index: int) -> Worker:
        child = _Child(index, self.settings)
        return Worker(index, child, child.conn)

    def render(
        self,
        index: int,
        frame: int,
        spec: OutputSpec,
        timeline: Timeline,
        budget: float | None = None,
        roots: tuple[str, ...] = (),
        speculative: bool = False,
    ) -> RenderOutcome:
        """One job through worker ``index``'s process, blocking (from its dispatcher thread, or at warm-up).

        A worker found dead before the job is replaced first, and so is one confined to other
        media roots than the job's (Landlock rules cannot be widened). A worker that dies during the job
        is replaced and the job retried once on the fresh one; each death counts against the
        job's sources, and a source at ``CRASHES_TO_BREAK`` is then drawn as a placeholder. A
        render past ``budget`` is cancelled: its worker is killed and replaced, 504. A reply that
        breaks the wire format (``wire.py``) replaces the worker and fails the job (``BadReply``).
        """
        attempts = 0
        while True:
            if self._stop.is_set():
                raise RenderFailed("the daemon is stopping")
            worker = self.workers[index]
            # killed_for_hang here: killed for a job that answered just before the kill (replace_hung).
            if worker.state is WorkerState.DEAD or worker.killed_for_hang or not worker.process.is_alive():
                self._note("worker_died", f"worker {index} found dead while idle; replaced", worker)
                self._respawn(worker)
                worker = self.workers[index]
            if worker.locked is not None and not wire.covers(worker.locked, roots):
                self._note(
                    "worker_replaced",
                    f"worker {index} replaced for other media roots: its sandbox allows "
                    f"{', '.join(worker.locked) or 'none'}; the job needs {', '.join(roots)}",
                    worker,
                    REASON="media roots",
                )
                self._respawn(worker)
                worker = self.workers[index]
            sources = self._sources(timeline, frame)
            broken = self.broken(sources)
            with self._lock:
                self._next_job += 1
                job = wire.Job(self._next_job, frame, spec, timeline.revision, broken, roots, speculative)
            with self._state_lock:  # replace_hung decides on (state, job_id): never on half of a change
                worker.state, worker.since, worker.frame, worker.hung_reported = (
                    WorkerState.RENDERING,
                    time.monotonic(),
                    frame,
                    False,
                )
                worker.job_id = job.job_id
            try:
                if worker.sandbox is None:
                    self._hello(worker)
                if worker.revision != timeline.revision:
                    worker.revision = ""
                    for message in wire.timeline_messages(timeline):
                        worker.conn.send(message)
                    worker.revision = timeline.revision
                    self._sent[index] = timeline
                if worker.locked is None:
                    worker.locked = roots  # the worker confines itself to the roots of its first job
                worker.conn.send(job)
                if budget is not None and not worker.conn.poll(budget):
                    self._note(
                        "render_budget",
                        f"render of frame {frame} ran past its budget of {budget:.1f} s; worker {index} replaced",
                        worker,
                    )
                    self._respawn(worker)
                    raise BudgetExceeded(
                        f"render of frame {frame} exceeded the render budget of {budget:.1f} s; cancelled"
                    )
                # maxlength: a longer message is refused before it is allocated (OSError: the crash path)
                limit = wire.body_limit(spec.width, spec.height)
                reply = wire.decode_answer(
                    worker.conn.recv_bytes(wire.HEADER.size + wire.MAX_META + limit),
                    job.job_id,
                    spec.content_type,
                    limit,
                )
            except wire.WireError as exc:
                self._note(
                    "worker_bad_reply",
                    f"worker {index} sent a malformed reply to frame {frame} ({exc}); replaced",
                    worker,
                    REASON=str(exc),
                )
                self._respawn(worker)
                raise BadReply(f"worker {index} sent a malformed reply; it was replaced") from None
            except (EOFError, OSError, ValueError) as exc:
                killed = worker.killed_for_hang
                self._respawn(worker)
                if killed:
                    raise GatewayTimeout(
                        f"render of frame {frame} hung for over {self.hang_threshold:.0f} s; worker replaced"
                    ) from None
                attempts += 1
                newly_broken = self._count_crash(sources)
                self._note(
                    "worker_died",
                    f"worker {index} died rendering frame {frame} ({exc or type(exc).__name__}); "
                    f"{'retrying on a fresh worker' if attempts == 1 else 'giving up'}",
                    worker,
                )
                if attempts == 1 or newly_broken:
                    continue  # once on a fresh worker; or again with the crashing sources as placeholders
                raise WorkerCrashed(f"worker {index} died twice rendering frame {frame}") from None
            with self._state_lock:
                worker.state, worker.since, worker.frame = WorkerState.IDLE, time.monotonic(), None
            worker.completed += 1
            with self._lock:
                self.completed += 1
            for attempt in reply.attempts:
                what = "refused" if attempt.refused else "NOT refused"
                self._note(
                    "sandbox_violation",
                    f"worker {index} tried to {attempt.what}: {what} ({attempt.error or 'no error'})",
                    worker,
                    ATTEMPT=attempt.what,
                    REFUSED=int(attempt.refused),
                    ERRNO=attempt.error,
                )
            if isinstance(reply, wire.Failed):
                raise RenderFailed(reply.message)
            return RenderOutcome(
                RenderResult(
                    reply.body,
                    reply.content_type,
                    list(reply.problems),
                    reply.clips,
                    reach=reply.reach,
                    source=reply.source,
                ),
                reply.render_ms,
            )

    def _hello(self, worker: Worker) -> None:
        """The first message of a worker process: what confinement it applied (wire.py "hello")."""
        reply = wire.decode(worker.conn.recv_bytes(wire.HEADER.size + wire.MAX_META), body_limit=0)
        if not isinstance(reply, wire.Hello):
            raise wire.WireError("the first reply of a worker is not its hello")
        worker.sandbox = reply.as_dict()
        if self.sandbox is None:
            self.sandbox = reply.as_dict()

    @staticmethod
    def _sources(timeline: Timeline, frame: int) -> list[tuple[str, Any]]:
        return [(c.source_path, c.source_stat) for c in timeline.layers_at(frame)]

    def broken(self, sources: list[tuple[str, Any]]) -> frozenset[str]:
        with self._lock:
            return frozenset(path for path, st in sources if self.crashes.get((path, st), 0) >= CRASHES_TO_BREAK)

    def _count_crash(self, sources: list[tuple[str, Any]]) -> bool:
        """Count a death against each source of the job; True when one just reached the limit."""
        reached = False
        with self._lock:
            if len(self.crashes) > 10_000:
                self.crashes.clear()
            for key in sources:
                self.crashes[key] = self.crashes.get(key, 0) + 1
                reached = reached or self.crashes[key] == CRASHES_TO_BREAK
        return reached

    def _note(self, event: str, message: str, worker: Worker, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event(event, message, worker, **fields)

    def _respawn(self, worker: Worker) -> None:
        self._terminate(worker)
        if self._stop.is_set():
            return
        with self._lock:
            self.replaced += 1
        self.workers[worker.index] = self._spawn(worker.index)

    def recycle_due(self, index: int) -> float | None:
        """When worker ``index`` is to be recycled (a ``time.monotonic()``), or None: it never rendered or is busy."""
        if self.recycle_after is None or index >= len(self.workers):
            return None
        worker = self.workers[index]
        if worker.completed == 0 or worker.state is not WorkerState.IDLE:
            return None
        return worker.since + self.recycle_after

    def recycle(self, index: int) -> bool:
        """Replace worker ``index``, idle since its last render, by a fresh process; False when it is not due.

        Why: a process that has decoded keeps what closing its media cannot give back (the pages of FFmpeg's
        codecs it ran, its heap's high-water mark): about 8 MB of PSS more than a fresh worker's 21-26 MB,
        per worker, for as long as the editor is closed (bench/results/RESULTS.md, "Idle PSS (issue 24)").
        The fresh process starts while nothing waits for it, and is sent the timeline its predecessor held (a
        50,000-clip timeline takes a third of a second to send) and its media roots to confine itself to
        (``wire.Confine``: 20-60 ms), both off the next request's path; the next job reopens the media, as
        after the worker's own idle release (worker/main.py). Only from the thread that
        renders through this index (the dispatcher's), so no job of this index can start meanwhile;
        ``replace_hung`` touches only rendering workers, and ``stop`` reads the list under the same lock.
        """
        due = self.recycle_due(index)
        if due is None or time.monotonic() < due or self._stop.is_set():
            return False
        old = self.workers[index]
        try:
            fresh = self._spawn(index)
        except OSError:
            return False  # no process to be had now: the old one stays and serves (it has released its media)
        timeline = self._sent.get(index)
        if timeline is not None and timeline.revision == old.revision:
            try:
                for message in wire.timeline_messages(timeline):
                    fresh.conn.send(message)
                fresh.revision = timeline.revision
            except (OSError, ValueError):
                pass  # died already: the next job finds it dead and replaces it (``render``)
        if old.locked is not None:
            try:
                fresh.conn.send(wire.Confine(old.locked))  # Landlock now, not on the next job's path
                fresh.locked = old.locked
            except (OSError, ValueError):
                pass
        with self._state_lock:
            swapped = not self._stop.is_set() and self.workers[index] is old and old.state is WorkerState.IDLE
            if swapped:
                self.workers[index] = fresh
                self.recycled += 1
        self._terminate(old if swapped else fresh)
        return swapped

    def busy_count(self) -> int:
        return sum(1 for w in self.workers if w.state is WorkerState.RENDERING)

    def hung_workers(self, now: float | None = None) -> list[Worker]:
        now = time.monotonic() if now is None else now
        return [w for w in self.workers if w.state is WorkerState.RENDERING and now - w.since > self.hang_threshold]

    def replace_hung(self, worker: Worker, job_id: int) -> None:
        """Kill a hung worker's process; its driver thread answers 504 and starts a fresh one.

        Only while it still renders the job it was found hung on: a worker that finished in the
        meantime may already run an unrelated job, which must not get the 504.
        """
        # Under the state lock: the driver cannot mark this job done and start the next one between the
        # check and the kill (the next job would get this one's 504). A job whose answer arrived just
        # before is still returned; the process is then found dead before the next job and replaced.
        with self._state_lock:
            if (
                worker.state is not WorkerState.RENDERING
                or worker.job_id != job_id
                or self.workers[worker.index] is not worker
            ):
                return
            worker.killed_for_hang = True
            try:
                worker.process.kill()
            except (OSError, ValueError, AttributeError):
                pass

    def _terminate(self, worker: Worker) -> None:
        worker.state = WorkerState.DEAD
        try:
            worker.process.kill()
            worker.process.join(timeout=2)
        except (OSError, ValueError, AssertionError):
            pass
        worker.conn.close()

    def stop(self) -> None:
        self._stop.set()
        with self._state_lock:  # after a recycle's swap, or the recycle sees the stop (``recycle``)
            workers = list(self.workers)
        for worker in workers:
            if worker.state is not WorkerState.RENDERING:
                try:
                    worker.conn.send(wire.Stop())
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + 2
        for worker in workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=1)
        for worker in workers:
            worker.conn.close()

    def snapshot(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        hung = {w.index for w in self.hung_workers(now)}
        return [w.snapshot(now, w.index in hung) for w in self.workers]

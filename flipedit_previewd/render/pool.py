"""Render workers as child processes; the dispatcher (dispatch.py) drives them.

Processes, not threads: a frame's JPEG encode and alpha compositing hold the
GIL, so two threads on two cores render barely faster than one (see
``bench/render.py``), while two processes scale. Processes can also be killed
and replaced when a render hangs (a FIFO as media source, a wedged decoder),
which a thread cannot. Each worker reports what it is doing and since when, so
``/health`` and the watchdog can tell progress from a hang.

A worker parses untrusted media, so it is treated as a process that may be taken over: it confines
itself (``confine.py``: seccomp at start, Landlock at its first job, to that job's media roots) and
its replies are plain data the daemon checks field by field (``wire.py``), never pickle. A worker
whose Landlock rules do not cover a job's roots (another project opened) is replaced by a fresh one.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import pickle
import queue
import signal
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
from flipedit_previewd.timeline.model import Timeline, Track
from flipedit_previewd.worker import wire
from flipedit_previewd.worker.output import OutputSpec, RenderResult

if TYPE_CHECKING:  # a worker process never needs the configuration module (its import is on the cold start)
    from flipedit_previewd.config.schema import Config

IDLE_RELEASE_S = 10.0  # a worker without a job for this long closes its media and trims its heap

# Render-ahead jobs run on a worker thread at this nice value (Linux priorities are per thread; an
# unprivileged thread can raise its nice but never lower it again, hence a thread of its own).
# Without it a guess competes as an equal with the event loop (niced by loop_nice) and with the
# other worker's real render: a playback's cache hits then wait for the CPU (bench/render_ahead.py).
AHEAD_NICE = 10

# Test failpoint, read by the worker process only (never by the daemon, never set by the units, not a
# setting): "escape" or "escape:PATH" makes each worker, at its first job after it is confined, try
# to open PATH (default /etc/hostname), connect to 127.0.0.1 and run /bin/sh, and report each
# attempt; the daemon logs them as sandbox_violation. "badreply:FRAME" makes a worker answer FRAME
# with a pickled tuple, the old reply format, as a worker taken over might (tests/integration/test_confinement.py).
FAILPOINT_VARIABLE = "FLIPEDIT_WORKER_FAILPOINT"  # not FLIPEDIT_PREVIEWD_*: that prefix is the configuration's (config.py)


@dataclass(frozen=True)
class WorkerSettings:
    source_cache_bytes: int
    max_source_pixels: int
    test_render_hook: str = ""
    proxy_root: str = ""  # the proxy store a worker reads (proxy/); "" when proxies are off
    proxy_size: tuple[int, int] = (0, 0)  # the box proxies are made for; (0, 0): the canvas's size


@dataclass(frozen=True)
class RenderJob:
    job_id: int
    frame: int
    spec: OutputSpec
    timeline: Timeline | None  # None: the one the worker last received (see _send_timeline)
    broken: frozenset[str] = frozenset()  # sources that crashed a worker twice: drawn as placeholders
    revision: str = ""
    roots: tuple[str, ...] = ()  # where media may be read from, checked on each opened descriptor
    speculative: bool = False  # render-ahead: run at AHEAD_NICE, below the event loop and real renders


class BudgetExceeded(GatewayTimeout):
    """The render ran past ``render_budget``; its worker was replaced."""


class WorkerCrashed(RenderFailed):
    """The worker died during the job, and again on the retry."""


# Timelines go to a worker once per revision, in pieces of this many clips: pickling 50,000 clips in
# one call holds the GIL (and so stalls the event loop) for a third of a second.
CLIPS_PER_MESSAGE = 500

# A source that took down a worker this many times is drawn as a placeholder until the file changes.
CRASHES_TO_BREAK = 2


class BadReply(RenderFailed):
    """The worker's reply broke the wire format (wire.py): a worker taken over, or a bug; it was replaced."""


@dataclass
class RenderOutcome:
    result: RenderResult
    render_ms: float


def covers(locked: tuple[str, ...], roots: tuple[str, ...]) -> bool:
    """Whether a worker confined to ``locked`` may read everything under ``roots`` (all real paths)."""
    return all(any(root == lock or root.startswith(lock.rstrip("/") + "/") for lock in locked) for root in roots)


def child_main() -> None:
    """Entry point of a worker process (see ``_Child``): argv names it and its end of the socket pair."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the daemon's to handle; it ends the workers
    conn = Connection(int(sys.argv[2]))
    settings, parent = pickle.loads(conn.recv_bytes())  # from the daemon: the trusted direction (wire.py)
    _worker_main(conn, settings, parent)


def _send(conn: Connection, reply: wire.Reply) -> None:
    """A reply; a pipe the daemon closed (it is stopping and no longer waits for this job) ends the worker
    quietly: a traceback there would be the journal's only word about an orderly stop."""
    try:
        conn.send_bytes(wire.encode(reply))
    except (BrokenPipeError, ConnectionResetError, EOFError):
        os._exit(0)


def _worker_main(conn: Connection, settings: WorkerSettings, parent: int) -> None:
    """Child process loop: confine, say hello, then one job at a time, replies back over the pipe."""
    from flipedit_previewd.proxy.reader import ProxyReader
    from flipedit_previewd.proxy.store import Store
    from flipedit_previewd.worker import confine
    from flipedit_previewd.worker.compositor import compose  # PyAV and Pillow: in the workers only (output.py)
    from flipedit_previewd.worker.media import MediaPool

    failpoint = os.environ.pop(FAILPOINT_VARIABLE, "")
    # The test hook's record is opened before confinement (a confined worker writes nothing anywhere).
    record = open(settings.test_render_hook[5:], "a", buffering=1) if settings.test_render_hook.startswith("nice:") else None
    _libc()  # loaded now: later it would be a dlopen (the loader's cache is readable, but why depend on it)
    arch, status = confine.confine_process()  # seccomp: on this thread before any other thread exists
    _send(conn, wire.Reply("hello", sandbox=status.as_dict()))

    def orphan_guard() -> None:
        if arch is not None and status.landlock:
            try:
                confine.lock_thread_out(arch, status.landlock_abi)  # older than the worker's lock: shut out by itself
            except OSError:
                os._exit(1)
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=orphan_guard, daemon=True).start()
    def new_media() -> MediaPool:
        reader = ProxyReader(Store(settings.proxy_root)) if settings.proxy_root else None
        return MediaPool(settings.source_cache_bytes, settings.max_source_pixels, proxies=reader, proxy_size=settings.proxy_size)

    media = new_media()
    ahead = _LowPriority(AHEAD_NICE)
    current: Timeline | None = None
    used = False
    locked: tuple[str, ...] | None = None  # the roots this worker's Landlock rules allow, from its first job
    while True:
        try:
            if used and not conn.poll(IDLE_RELEASE_S):
                # Idle (the editor is closed or paused): give back decoders, cached sources and the
                # heap they left behind; the next frame reopens its files (bench/footprint.py).
                media.close()
                media, used = new_media(), False
                _trim_heap()
                continue
            job = conn.recv()
            if isinstance(job, tuple) and job and job[0] == "timeline":
                current = _receive_timeline(conn, job)
                continue
        except (EOFError, OSError):
            break
        if job is None:
            break
        if job.timeline is None:
            if current is None or current.revision != job.revision:
                _send(conn, wire.Reply("error", job.job_id, message="worker has no timeline for this job"))
                continue
            job = RenderJob(job.job_id, job.frame, job.spec, current, job.broken, job.revision, job.roots, job.speculative)
        attempts: list[dict[str, Any]] = []
        if locked is None:
            # Before anything of this job, and before the render-ahead thread exists (it inherits the rules).
            if arch is not None and status.landlock:
                try:
                    # the proxy store is read like media (proxy/reader.py treats it as untrusted)
                    confine.lock_filesystem(arch, status.landlock_abi, job.roots + ((settings.proxy_root,) if settings.proxy_root else ()))
                except OSError as exc:
                    _send(conn, wire.Reply("error", job.job_id, message=f"sandbox: cannot confine the worker: {exc}"))
                    break  # never decode unconfined when the kernel offered Landlock: the daemon starts a fresh one
            locked = job.roots
            if failpoint.startswith("escape"):
                attempts = _try_escape(failpoint.partition(":")[2] or "/etc/hostname")
        elif not covers(locked, job.roots):  # the daemon replaces such a worker first (WorkerPool.render)
            _send(conn, wire.Reply("error", job.job_id, message="sandbox: the job's media roots are outside this worker's"))
            continue
        started = time.perf_counter()
        used = True
        def render(job: RenderJob = job, media: Any = media) -> RenderResult:
            assert job.timeline is not None
            if job.timeline.source != "warm-up":
                _test_hook(settings.test_render_hook, job, record)
            media.set_roots(job.roots)
            return compose(job.timeline, job.frame, job.spec, media, job.broken)

        try:
            # A guess runs on the low-priority thread while this one waits (no CPU, no GIL): one job at a time.
            result = ahead.run(render) if job.speculative else render()
            reply = wire.Reply("ok", job.job_id, (time.perf_counter() - started) * 1000, result.content_type, result.body,
                               result.problems, result.clips, attempts=attempts, source=result.source)
        except Exception as exc:  # noqa: BLE001 - any render bug must become a 500, not a dead worker
            reply = wire.Reply("error", job.job_id, (time.perf_counter() - started) * 1000,
                               message=f"{type(exc).__name__}: {exc}", attempts=attempts)
        if failpoint == f"badreply:{job.frame}":
            conn.send(("ok", job.job_id, reply.body, reply.render_ms))  # pickle: what the daemon must never load
            continue
        _send(conn, reply)
    media.close()


def _try_escape(target: str) -> list[dict[str, Any]]:
    """The escape failpoint (FAILPOINT_VARIABLE): what a taken-over decoder would try first; each outcome."""
    attempts: list[dict[str, Any]] = []

    def attempt(what: str, call: Callable[[], None]) -> None:
        try:
            call()
            attempts.append({"what": what, "refused": False, "error": ""})
        except OSError as exc:
            code = exc.errno or 0
            attempts.append({"what": what, "refused": code in (errno.EPERM, errno.EACCES),
                             "error": errno.errorcode.get(code, str(exc))})

    def connect() -> None:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            sock.connect(("127.0.0.1", 9))

    def run_shell() -> None:
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 0"], {})
        os.waitpid(pid, 0)

    attempt(f"open {target}", lambda: os.close(os.open(target, os.O_RDONLY | os.O_NONBLOCK)))
    attempt("connect 127.0.0.1:9", connect)
    attempt("exec /bin/sh", run_shell)
    return attempts


class _LowPriority:
    """One thread, started on first use, that lowers its own priority once and runs calls handed to it."""

    def __init__(self, nice: int) -> None:
        self.nice = nice
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], queue.SimpleQueue[Any]]] | None = None

    def run(self, call: Callable[..., Any], *args: Any) -> Any:
        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(self._jobs,), daemon=True, name="render-ahead").start()
        done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._jobs.put((call, args, done))
        ok, value = done.get()
        if not ok:
            raise value
        return value

    def _serve(self, jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], queue.SimpleQueue[Any]]]) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.nice))
        except OSError:
            pass  # a priority is an optimisation; the guess still renders
        while True:
            call, args, done = jobs.get()
            try:
                done.put((True, call(*args)))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller, who reports it
                done.put((False, exc))


def _receive_timeline(conn: Connection, head: tuple[Any, ...]) -> Timeline:
    _, width, height, fps, source, revision, track_heads, note = head
    tracks = []
    for track_id, order, visible, kind, count in track_heads:
        clips: list[Any] = []
        while len(clips) < count:
            clips.extend(conn.recv())
        tracks.append(Track(track_id, order, visible, tuple(clips), kind))
    return Timeline(width, height, fps, tuple(tracks), source, revision=revision, note=note)


def _send_timeline(conn: Connection, timeline: Timeline) -> None:
    conn.send(("timeline", timeline.canvas_width, timeline.canvas_height, timeline.frame_rate, timeline.source, timeline.revision,
               [(t.id, t.order, t.visible, t.type, len(t.clips)) for t in timeline.tracks], timeline.note))
    for track in timeline.tracks:
        for start in range(0, len(track.clips), CLIPS_PER_MESSAGE):
            conn.send(track.clips[start:start + CLIPS_PER_MESSAGE])


_LIBC: list[ctypes.CDLL] = []


def _libc() -> ctypes.CDLL | None:
    if not _LIBC:
        try:
            _LIBC.append(ctypes.CDLL("libc.so.6"))
        except OSError:
            return None  # not glibc
    return _LIBC[0]


def _trim_heap() -> None:
    try:
        libc = _libc()
        if libc is not None:
            libc.malloc_trim(0)
    except AttributeError:
        pass  # not glibc


def _test_hook(hook: str, job: RenderJob, record: Any = None) -> None:
    if not hook:
        return
    if hook.startswith("crash:"):
        # Stands in for media that crashes FFmpeg: the process dies as a segfault would end it.
        needle = hook.split(":", 1)[1]
        layers = job.timeline.layers_at(job.frame) if job.timeline is not None else []
        if any(needle in c.source_path and c.source_path not in job.broken for c in layers):
            os._exit(139)
        return
    if hook == "hang":
        while True:
            time.sleep(3600)
    if hook.startswith("nice:"):
        # Records which thread priority each kind of job ran at (tests/integration/test_render_ahead.py).
        if record is not None:  # opened before confinement
            record.write(f"{'ahead' if job.speculative else 'real'} {os.getpriority(os.PRIO_PROCESS, threading.get_native_id())}\n")
        return
    if hook.startswith("sleep:"):
        time.sleep(float(hook.split(":", 1)[1]))


# The daemon's import path travels in the environment (/proc/PID/environ is readable by its owner only;
# argv is readable by every local user) and is dropped from it at once.
_PATH_VARIABLE = "FLIPEDIT_WORKER_SYS_PATH"
_CHILD_CODE = (f"import json, os, sys; sys.path[:] = json.loads(os.environ.pop({_PATH_VARIABLE!r})); "
               "from flipedit_previewd.render.pool import child_main; child_main()")


class _Child:
    """A worker process started by ``subprocess``, with the little of multiprocessing.Process we use.

    Not multiprocessing's spawn: that starts a resource-tracker process (6.6 MB PSS idle, for
    semaphores the daemon never makes) and re-imports the daemon's ``__main__`` (the HTTP side)
    in every worker. Here a worker imports only this module and the render side (bench/footprint.py).
    """

    def __init__(self, index: int, settings: WorkerSettings) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours, theirs:
            # The daemon's own import path and interpreter flags (-I, -s, -E ...), as multiprocessing
            # passes them: the worker renders with the same package the daemon runs (a source tree, a
            # venv, the .deb) under the same isolation, and -P keeps the working directory off the path.
            flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
            self.popen = subprocess.Popen(
                [sys.executable, *flags, "-P", "-c", _CHILD_CODE, f"flipedit-previewd-worker-{index}", str(theirs.fileno())],
                stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), env={**os.environ, _PATH_VARIABLE: json.dumps(sys.path)})
            self.conn = Connection(ours.detach())
        self.conn.send_bytes(pickle.dumps((settings, os.getpid())))

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
    job_id: int = 0
    revision: str = ""  # of the timeline this worker's process holds
    sandbox: dict[str, Any] | None = None  # what its process could apply (its hello), None until read
    locked: tuple[str, ...] | None = None  # the roots its first job gave it (Landlock's rules), None before

    def snapshot(self, now: float, hung: bool) -> dict[str, Any]:
        age = now - self.since
        state = "hung" if hung else self.state  # hung: decided by WorkerPool.hung_workers alone
        return {"index": self.index, "pid": self.process.pid, "state": state, "frame": self.frame,
                "since_s": round(age, 3), "completed": self.completed, "media_roots": list(self.locked or ())}


class WorkerPool:
    """Worker processes, addressed by index; ``render`` is one blocking job through one of them.

    The pool knows nothing of admission or requests: the dispatcher's thread for worker ``i``
    calls ``render(i, ...)`` (a blocking pipe round trip), so when the loop is swamped by a flood
    of requests, the workers still never wait for it.
    """

    def __init__(self, size: int, settings: WorkerSettings, hang_threshold: float) -> None:
        self.size = size
        self.settings = settings
        self.hang_threshold = hang_threshold
        self.workers: list[Worker] = []
        self.completed = 0
        self.replaced = 0
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

        proxy_root = (os.path.expanduser(config.proxy_dir) if config.proxy_dir else str(default_root())) if config.proxies else ""
        settings = WorkerSettings(config.source_cache_bytes, config.max_source_pixels, config.test_render_hook,
                                  proxy_root, (config.proxy_width, config.proxy_height))
        return cls(config.workers, settings,
                   config.hang_threshold)

    def start(self) -> None:
        """Spawn the worker processes."""
        for index in range(self.size):
            self.workers.append(self._spawn(index))

    def _spawn(self, index: int) -> Worker:
        child = _Child(index, self.settings)
        return Worker(index, child, child.conn, state="idle")

    def render(self, index: int, frame: int, spec: OutputSpec, timeline: Timeline, budget: float | None = None,
               roots: tuple[str, ...] = (), speculative: bool = False) -> RenderOutcome:
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
            if worker.state == "dead" or worker.killed_for_hang or not worker.process.is_alive():
                self._note("worker_died", f"worker {index} found dead while idle; replaced", worker)
                self._respawn(worker)
                worker = self.workers[index]
            if worker.locked is not None and not covers(worker.locked, roots):
                self._note("worker_replaced", f"worker {index} replaced for other media roots: its sandbox allows "
                           f"{', '.join(worker.locked) or 'none'}; the job needs {', '.join(roots)}", worker, REASON="media roots")
                self._respawn(worker)
                worker = self.workers[index]
            sources = self._sources(timeline, frame)
            broken = self.broken(sources)
            with self._lock:
                self._next_job += 1
                job = RenderJob(self._next_job, frame, spec, None, broken, timeline.revision, roots, speculative)
            with self._state_lock:  # replace_hung decides on (state, job_id): never on half of a change
                worker.state, worker.since, worker.frame, worker.hung_reported = "rendering", time.monotonic(), frame, False
                worker.job_id = job.job_id
            try:
                if worker.sandbox is None:
                    self._hello(worker)
                if worker.revision != timeline.revision:
                    worker.revision = ""
                    _send_timeline(worker.conn, timeline)
                    worker.revision = timeline.revision
                if worker.locked is None:
                    worker.locked = roots  # the worker confines itself to the roots of its first job
                worker.conn.send(job)
                if budget is not None and not worker.conn.poll(budget):
                    self._note("render_budget", f"render of frame {frame} ran past its budget of {budget:.1f} s; worker {index} replaced", worker)
                    self._respawn(worker)
                    raise BudgetExceeded(f"render of frame {frame} exceeded the render budget of {budget:.1f} s; cancelled")
                # maxlength: a longer message is refused before it is allocated (OSError: the crash path)
                limit = wire.body_limit(spec.width, spec.height)
                reply = wire.decode(worker.conn.recv_bytes(wire.HEADER.size + wire.MAX_META + limit), job.job_id, spec.content_type, limit)
            except wire.WireError as exc:
                self._note("worker_bad_reply", f"worker {index} sent a malformed reply to frame {frame} ({exc}); replaced",
                           worker, REASON=str(exc))
                self._respawn(worker)
                raise BadReply(f"worker {index} sent a malformed reply; it was replaced") from None
            except (EOFError, OSError, ValueError) as exc:
                killed = worker.killed_for_hang
                self._respawn(worker)
                if killed:
                    raise GatewayTimeout(f"render of frame {frame} hung for over {self.hang_threshold:.0f} s; worker replaced") from None
                attempts += 1
                newly_broken = self._count_crash(sources)
                self._note("worker_died", f"worker {index} died rendering frame {frame} ({exc or type(exc).__name__}); "
                           f"{'retrying on a fresh worker' if attempts == 1 else 'giving up'}", worker)
                if attempts == 1 or newly_broken:
                    continue  # once on a fresh worker; or again with the crashing sources as placeholders
                raise WorkerCrashed(f"worker {index} died twice rendering frame {frame}") from None
            with self._state_lock:
                worker.state, worker.since, worker.frame = "idle", time.monotonic(), None
            worker.completed += 1
            with self._lock:
                self.completed += 1
            for attempt in reply.attempts:
                what = "refused" if attempt["refused"] else "NOT refused"
                self._note("sandbox_violation", f"worker {index} tried to {attempt['what']}: {what} ({attempt['error'] or 'no error'})",
                           worker, ATTEMPT=attempt["what"], REFUSED=int(attempt["refused"]), ERRNO=attempt["error"])
            if reply.kind == "error":
                raise RenderFailed(reply.message)
            return RenderOutcome(RenderResult(reply.body, reply.content_type, reply.problems, reply.clips, source=reply.source), reply.render_ms)

    def _hello(self, worker: Worker) -> None:
        """The first message of a worker process: what confinement it applied (wire.py "hello")."""
        reply = wire.decode(worker.conn.recv_bytes(wire.HEADER.size + wire.MAX_META), body_limit=0)
        if reply.kind != "hello":
            raise wire.WireError("the first reply of a worker is not its hello")
        worker.sandbox = reply.sandbox
        if self.sandbox is None:
            self.sandbox = reply.sandbox

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

    def busy_count(self) -> int:
        return sum(1 for w in self.workers if w.state == "rendering")

    def hung_workers(self, now: float | None = None) -> list[Worker]:
        now = time.monotonic() if now is None else now
        return [w for w in self.workers if w.state == "rendering" and now - w.since > self.hang_threshold]

    def replace_hung(self, worker: Worker, job_id: int) -> None:
        """Kill a hung worker's process; its driver thread answers 504 and starts a fresh one.

        Only while it still renders the job it was found hung on: a worker that finished in the
        meantime may already run an unrelated job, which must not get the 504.
        """
        # Under the state lock: the driver cannot mark this job done and start the next one between the
        # check and the kill (the next job would get this one's 504). A job whose answer arrived just
        # before is still returned; the process is then found dead before the next job and replaced.
        with self._state_lock:
            if worker.state != "rendering" or worker.job_id != job_id or self.workers[worker.index] is not worker:
                return
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
        hung = {w.index for w in self.hung_workers(now)}
        return [w.snapshot(now, w.index in hung) for w in self.workers]

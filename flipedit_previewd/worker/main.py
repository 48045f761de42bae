"""A render worker process: its entry point and its loop, one job at a time (the daemon's side is render/pool.py).

Started by the pool with ``python -c`` (``render.pool._Child``: subprocess and a socket pair, not
multiprocessing), it imports this package and the timeline model only. It confines itself
(``confine.py``: seccomp at start, Landlock at its first job, to that job's media roots), says
``Hello``, then answers each ``Job`` with a ``Rendered`` or ``Failed`` (``wire.py``, the messages both
ends import). Render-ahead jobs run on a thread of lower priority while the main thread waits.
"""

from __future__ import annotations

import ctypes
import gc
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from flipedit_previewd.common.gcrypt import init_without_secure_memory
from flipedit_previewd.timeline.model import Timeline
from flipedit_previewd.worker import wire
from flipedit_previewd.worker.failpoints import Failpoint
from flipedit_previewd.worker.output import RenderResult

# A worker without a job for this long closes its media and trims its heap. The pool then usually replaces it by a
# fresh process (render.pool.WorkerPool.recycle); this release is what is left when it cannot (or recycling is off).
IDLE_RELEASE_S = 10.0

# Render-ahead jobs run on a worker thread at this nice value (Linux priorities are per thread; an
# unprivileged thread can raise its nice but never lower it again, hence a thread of its own).
# Without it a guess competes as an equal with the event loop (niced by loop_nice) and with the
# other worker's real render: a playback's cache hits then wait for the CPU (bench/render_ahead.py).
AHEAD_NICE = 10


def child_main() -> None:
    """Entry point of a worker process: argv names it and its end of the socket pair."""
    init_without_secure_memory()  # before PyAV can load libssh (common/gcrypt.py)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the daemon's to handle; it ends the workers
    failpoint = Failpoint.from_environ()  # the tests' fault injection (failpoints.py): read here, once
    conn = Connection(int(sys.argv[2]))
    start = conn.recv()  # from the daemon: the trusted direction (wire.py)
    if not isinstance(start, wire.Start):
        raise TypeError(f"the first message of the daemon is not Start but {type(start).__name__}")
    serve(conn, start, failpoint)


def _send(conn: Connection, reply: wire.FromWorker) -> None:
    """A reply; a pipe the daemon closed (it is stopping and no longer waits for this job) ends the worker
    quietly: a traceback there would be the journal's only word about an orderly stop."""
    try:
        conn.send_bytes(wire.encode(reply))
    except (BrokenPipeError, ConnectionResetError, EOFError):
        os._exit(0)


# A worker holds the decoders (hundreds of MB on 4K HEVC): when the unit's MemoryMax or the machine runs out, the
# kernel's OOM killer should end one (the pool starts another; one request gets its error), not the daemon.
WORKER_OOM_SCORE_ADJ = 300


def prefer_for_oom(adj: int) -> None:
    """Raise this process's oom_score_adj by ``adj`` above what it inherited, up to the kernel's 1000 (any process
    may raise its own; lowering needs a capability)."""
    try:
        with open("/proc/self/oom_score_adj", "r+") as handle:
            current = int(handle.read().strip() or 0)
            handle.seek(0)
            handle.write(str(min(1000, current + adj)))
    except (OSError, ValueError):
        pass  # no /proc, or a kernel without it: the OOM killer still chooses by size


def serve(conn: Connection, start: wire.Start, failpoint: Failpoint) -> None:
    """The worker's loop: confine, say hello, then one job at a time, replies back over the pipe."""
    from flipedit_previewd.proxy.reader import ProxyReader
    from flipedit_previewd.proxy.store import Store
    from flipedit_previewd.worker import confine
    from flipedit_previewd.worker.compositor import compose  # PyAV and Pillow: in the workers only (output.py)
    from flipedit_previewd.worker.media import MediaPool

    settings = start.settings
    failpoint.prepare()  # before confinement (a confined worker writes nothing anywhere)
    prefer_for_oom(WORKER_OOM_SCORE_ADJ)
    _libc()  # loaded now: later it would be a dlopen (the loader's cache is readable, but why depend on it)
    arch, status = confine.confine_process()  # seccomp: on this thread before any other thread exists
    _send(conn, wire.Hello(status.seccomp, status.landlock, status.landlock_abi, status.why))

    def orphan_guard() -> None:
        if arch is not None and status.landlock:
            try:
                confine.lock_thread_out(arch, status.landlock_abi)  # older than the worker's lock: shut out by itself
            except OSError:
                os._exit(1)
        while os.getppid() == start.parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=orphan_guard, daemon=True).start()

    def new_media() -> MediaPool:
        reader = ProxyReader(Store(settings.proxy_root)) if settings.proxy_root else None
        return MediaPool(
            settings.source_cache_bytes, settings.max_source_pixels, proxies=reader, proxy_size=settings.proxy_size
        )

    def lock(roots: tuple[str, ...]) -> None:
        """Landlock to ``roots`` and the proxy store (read like media: proxy/reader.py treats it as untrusted)."""
        if arch is not None and status.landlock:
            confine.lock_filesystem(
                arch, status.landlock_abi, roots + ((settings.proxy_root,) if settings.proxy_root else ())
            )

    media = new_media()
    ahead = _LowPriority(AHEAD_NICE)
    attempts: tuple[wire.Attempt, ...] = ()  # the tests' escape attempts, sent with the next reply
    current: Timeline | None = None
    used = False
    locked: tuple[str, ...] | None = None  # the roots this worker's Landlock rules allow, from its first job
    while True:
        try:
            if used and not conn.poll(IDLE_RELEASE_S):
                # Idle (the editor is closed or paused): give back decoders, cached sources and the
                # heap they left behind; the next frame reopens its files (bench/footprint.py). The
                # collection frees what only a cycle still holds (an idle process allocates nothing that
                # would start one) before the heap is trimmed.
                media.close()
                media, used = new_media(), False
                gc.collect()
                _trim_heap()
                continue
            message = conn.recv()
            if isinstance(message, wire.TimelineHead):
                current = wire.receive_timeline(message, conn.recv)
                continue
        except (EOFError, OSError):
            break
        if isinstance(message, wire.Stop):
            break
        if isinstance(message, wire.Confine):
            # Ahead of the first job (a fresh process in an idle one's place): locking takes 20-60 ms (the
            # paths of every mapped library, one rule each), which would otherwise fall on that job. A
            # failure is left to the first job, which then reports it.
            if locked is None:
                try:
                    lock(message.roots)
                    locked, attempts = message.roots, failpoint.after_confinement()
                except OSError:
                    pass
            continue
        if not isinstance(message, wire.Job):
            raise TypeError(f"unexpected message from the daemon: {type(message).__name__}")
        job = message
        if current is None or current.revision != job.revision:
            _send(conn, wire.Failed(job.job_id, 0.0, "worker has no timeline for this job"))
            continue
        if locked is None:
            # Before anything of this job, and before the render-ahead thread exists (it inherits the rules).
            try:
                lock(job.roots)
            except OSError as exc:
                _send(conn, wire.Failed(job.job_id, 0.0, f"sandbox: cannot confine the worker: {exc}"))
                break  # never decode unconfined when the kernel offered Landlock: the daemon starts a fresh one
            locked = job.roots
            attempts = failpoint.after_confinement()
        elif not wire.covers(locked, job.roots):  # the daemon replaces such a worker first (WorkerPool.render)
            _send(conn, wire.Failed(job.job_id, 0.0, "sandbox: the job's media roots are outside this worker's"))
            continue
        started = time.perf_counter()
        used = True

        def render(job: wire.Job = job, timeline: Timeline = current, media: Any = media) -> RenderResult:
            failpoint.before_render(job, timeline)
            media.set_roots(job.roots)
            return compose(timeline, job.frame, job.spec, media, job.broken)

        reply: wire.FromWorker
        try:
            # A guess runs on the low-priority thread while this one waits (no CPU, no GIL): one job at a time.
            result = ahead.run(render) if job.speculative else render()
            reply = wire.Rendered(
                job.job_id,
                (time.perf_counter() - started) * 1000,
                result.content_type,
                result.body,
                tuple(result.problems),
                result.clips,
                attempts,
                result.reach,
                result.source,
            )
        except Exception as exc:  # noqa: BLE001 - any render bug must become a 500, not a dead worker
            reply = wire.Failed(
                job.job_id, (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}", attempts
            )
        attempts = ()
        if failpoint.replaces_reply(job):
            body = reply.body if isinstance(reply, wire.Rendered) else b""
            conn.send(("ok", job.job_id, body, reply.render_ms))  # pickle: what the daemon must never load
            continue
        _send(conn, reply)
    media.close()


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

    def _serve(
        self, jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], queue.SimpleQueue[Any]]]
    ) -> None:
        try:
            os.setpriority(
                os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.nice)
            )
        except OSError:
            pass  # a priority is an optimisation; the guess still renders
        while True:
            call, args, done = jobs.get()
            try:
                done.put((True, call(*args)))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller, who reports it
                done.put((False, exc))


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

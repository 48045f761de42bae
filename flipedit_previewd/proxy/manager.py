"""Daemon side: which sources get a proxy, one maker process at a time, and what people see of it.

As soon as a timeline names a video (a project opened, a timeline put; noticed at the next health tick)
its source is queued. A thread of the daemon runs ``proxy.maker`` as a child process for each queued
source in turn: the child decides whether the source needs one (random-frame cost, ``proxy_min_cost``),
finds one already made, or makes it at idle priority, reporting progress as JSON lines. Real requests
never wait for any of this: nothing here holds a lock a request takes, and the child runs under
SCHED_IDLE. The daemon's own process never imports PyAV (idle memory, cold start): the child does.

Budget: before each maker the store is evicted (least recently used first, never a proxy of the current
timeline) and the maker is told how many bytes remain; a proxy that would pass them stops, and what was
made is used. Using a proxy (its source in the current timeline) touches it, the LRU clock.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.proxy.store import Params, Store, StoreError, default_root, params_for
from flipedit_previewd.timeline.model import Timeline
from flipedit_previewd.worker.sniff import STILL_EXTENSIONS

# The maker lowers itself too (maker.lower_priority), but only once Python and PyAV are loaded: half a
# second of CPU at normal priority per source. Started through chrt/ionice it is idle from its first instruction.
IDLE_PREFIX = tuple(
    part
    for tool, args in (("chrt", ("--idle", "0")), ("ionice", ("-c", "3")))
    if shutil.which(tool)
    for part in (str(shutil.which(tool)), *args)
)
RESUME_AFTER = 0.25  # s without a real render before a paused maker continues (rendering())
MAX_LINE = 4096  # a maker's progress line; longer is a broken maker
STOP_WAIT = 2.0  # s a maker gets after SIGTERM before SIGKILL


@dataclass
class Job:
    path: str
    stat: Any
    params: Params
    roots: tuple[str, ...] | None  # None: the served timeline's, worked out when the maker starts
    min_cost: float


@dataclass
class Current:
    path: str
    started: float
    done: int = 0
    total: int = 0
    key: str = ""
    pid: int = 0

    def as_dict(self) -> dict[str, Any]:
        percent = round(100 * self.done / self.total, 1) if self.total else None
        return {
            "source": self.path,
            "frames_done": self.done,
            "frames_total": self.total,
            "percent": percent,
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "pid": self.pid,
        }


@dataclass
class Counters:
    made: int = 0
    failed: int = 0
    skipped: int = 0
    evicted: int = 0
    last_error: str = ""
    outcomes: dict[tuple[str, Any, Params], str] = field(default_factory=dict)  # per source: made/exists/skipped/failed


class ProxyManager:
    def __init__(
        self,
        enabled: bool,
        root: Path,
        budget: int,
        size: tuple[int, int],
        min_cost: float,
        max_pixels: int,
        log: EventLog,
        roots: Callable[[Timeline], list[str]],
    ) -> None:
        self.enabled = enabled
        self.store = Store(root, budget)
        self.size = size
        self.min_cost = min_cost
        self.max_pixels = max_pixels
        self.log = log
        self.roots = roots
        self.counters = Counters()
        self.disk = 0
        self.stored = 0  # proxies in the store (made by this run or earlier ones), counted after each change
        self.current: Current | None = None
        self._queue: OrderedDict[tuple[str, Any, Params], Job] = OrderedDict()
        self._keys: dict[tuple[str, Any, Params], str] = {}  # source -> its proxy's key, as makers reported
        self._timeline: Timeline | None = None
        self._revision = ""
        self._cond = threading.Condition()
        self._stopping = False
        self._generation = 0  # moved by clear(): a maker it ended is not a failure
        self._process: subprocess.Popen[bytes] | None = None
        self._renders = 0  # real renders running now: the maker is stopped (SIGSTOP) while any is
        self._paused = False
        self._signal_lock = threading.Condition()
        self._last_render = 0.0
        self._thread: threading.Thread | None = None

    @classmethod
    def for_config(cls, config: Any, log: EventLog, roots: Callable[[Timeline], list[str]]) -> ProxyManager:
        root = Path(os.path.expanduser(config.proxy_dir)) if config.proxy_dir else default_root()
        return cls(
            config.proxies,
            root,
            config.proxy_budget_bytes,
            (config.proxy_width, config.proxy_height),
            config.proxy_min_cost,
            config.max_source_pixels,
            log,
            roots,
        )

    # --- life ----------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Before the workers lock their filesystem view (their first job): the store must exist to be granted."""
        if not self.enabled:
            return
        try:
            self.store.create()
        except (OSError, StoreError) as exc:
            self.enabled = False
            self.log.emit(
                "proxy_failed",
                f"proxies off: cannot use the store {self.store.root}: {exc}",
                "warning",
                PROXY_DIR=str(self.store.root),
                REASON=str(exc),
            )

    def start(self) -> None:
        if not self.enabled:
            return
        self._thread = threading.Thread(target=self._run, name="proxy-manager", daemon=True)
        self._thread.start()
        threading.Thread(target=self._resumer, name="proxy-resumer", daemon=True).start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()
        with self._signal_lock:
            self._signal_lock.notify_all()
        self._end_process()
        if self._thread is not None:
            self._thread.join(timeout=STOP_WAIT + 3)

    def rendering(self, busy: bool) -> None:
        """A real render started (True) or ended (False), on a dispatcher thread.

        SCHED_IDLE keeps the maker off a core a render wants, but not out of what both cores share (caches,
        memory bandwidth, the clock a CPU runs at with both cores busy): measured, real requests' p50 went
        from 5.8 to 8.0 ms and p95 1.28x with the maker running beside them, even when it was stopped during
        each render. So the maker is stopped (SIGSTOP) while a real render runs and until none has for
        RESUME_AFTER: it uses the time the editor is idle, and a scrub pauses it (two signals per burst).
        """
        with self._signal_lock:
            self._renders += 1 if busy else -1
            self._last_render = time.monotonic()
            if busy:
                self._signal(True)
            else:
                self._signal_lock.notify_all()

    def _signal(self, stop: bool) -> None:
        """SIGSTOP or SIGCONT the maker (under ``_signal_lock``)."""
        process = self._process
        stop = stop and not self._stopping
        if process is None or stop == self._paused or process.returncode is not None:
            return
        try:
            os.kill(
                process.pid, signal.SIGSTOP if stop else signal.SIGCONT
            )  # our child: its pid is not reused before we reap it
            self._paused = stop
        except ProcessLookupError:
            pass

    def _resumer(self) -> None:
        """Continue a paused maker once no real render has run for RESUME_AFTER."""
        with self._signal_lock:
            while not self._stopping:
                if not self._paused:
                    self._signal_lock.wait()
                    continue
                due = self._last_render + RESUME_AFTER - time.monotonic()
                if self._renders == 0 and due <= 0:
                    self._signal(False)
                else:
                    self._signal_lock.wait(max(due, 0.01) if self._renders == 0 else None)

    def _end_process(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            with self._signal_lock:
                if self._paused:
                    os.kill(process.pid, signal.SIGCONT)
                    self._paused = False
            process.terminate()
            try:
                process.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # --- what the daemon tells it ----------------------------------------------------------------

    def note(self, timeline: Timeline, force: bool = False, min_cost: float | None = None) -> int:
        """Queue the videos of ``timeline`` not yet seen (all of them again with ``force``); returns how many were
        queued. Called on the loop at each tick: cheap when the revision is the one already seen."""
        if not self.enabled or (timeline.revision == self._revision and not force):
            return 0
        self._revision = timeline.revision
        with self._cond:
            self._timeline = timeline
            queued = self._queue_videos(timeline, None, force, min_cost)
            self._cond.notify_all()
        return len(queued)

    def note_another(self, timeline: Timeline, roots: tuple[str, ...], min_cost: float | None = None) -> list[str]:
        """Queue the videos of another project's ``timeline`` (not the one served: ``proxies build --project``),
        each maker confined to that project's ``roots``; returns the sources queued. The served timeline stays
        the one whose proxies are kept from eviction and touched as used."""
        if not self.enabled:
            return []
        with self._cond:
            queued = self._queue_videos(timeline, roots, True, min_cost)
            self._cond.notify_all()
        return queued

    def _queue_videos(
        self, timeline: Timeline, roots: tuple[str, ...] | None, force: bool, min_cost: float | None
    ) -> list[str]:
        """Under ``_cond``: queue each video of ``timeline`` not made nor queued yet (with ``force``, those skipped
        or failed again); its parameters from the configured proxy size, else ``timeline``'s canvas."""
        params = params_for(self.size, (timeline.canvas_width, timeline.canvas_height))
        queued: list[str] = []
        for track in timeline.tracks:
            for clip in track.clips:
                if clip.type == "image" or os.path.splitext(clip.source_path)[1].lower() in STILL_EXTENSIONS:
                    continue
                key = (clip.source_path, clip.source_stat, params)
                if clip.source_stat is None or key in self._queue:
                    continue
                known = self.counters.outcomes.get(key)
                if known is not None and not (force and known in ("skipped", "failed")):
                    if key in self._keys:
                        self.store.touch(self._keys[key])
                    continue
                self._queue[key] = Job(
                    clip.source_path, clip.source_stat, params, roots, self.min_cost if min_cost is None else min_cost
                )
                queued.append(clip.source_path)
        return queued

    def clear(self) -> int:
        """Remove every proxy (a maker running is stopped first); returns how many were removed."""
        with self._cond:
            self._queue.clear()
            self.counters.outcomes.clear()
            self._keys.clear()
            self._revision = ""
            self._generation += 1
        self._end_process()
        removed = 0
        for entry in list(self.store.entries()):
            self.store.remove(entry.key)
            removed += 1
        self._measure()
        return removed

    # --- what people see ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            queued = len(self._queue)
            current = self.current.as_dict() if self.current is not None else None
        c = self.counters
        return {
            "enabled": self.enabled,
            "made": c.made,
            "stored": self.stored,
            "in_progress": current,
            "queued": queued,
            "failed": c.failed,
            "skipped": c.skipped,
            "evicted": c.evicted,
            "disk_bytes": self.disk,
            "budget_bytes": self.store.budget,
            "dir": str(self.store.root),
            "last_error": c.last_error,
        }

    def listing(self) -> list[dict[str, Any]]:
        rows = []
        now = time.time()
        for entry in sorted(self.store.entries(), key=lambda e: -e.used):
            m = entry.manifest
            rows.append(
                {
                    "key": entry.key,
                    "source": m.source_path if m else "",
                    "bytes": entry.bytes,
                    "frames": m.frames if m else 0,
                    "frames_total": m.frames_total if m else 0,
                    "complete": bool(m and m.complete),
                    "size": [m.width, m.height] if m else None,
                    "refused": m.refused if m else "unreadable",
                    "stopped": m.stopped if m else "",
                    "used_s_ago": round(now - entry.used, 1),
                }
            )
        return rows

    # --- the maker thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            removed = self.store.clean()  # nothing is being written: leftovers of a crash go
            if removed:
                self.log.emit(
                    "proxy_cleaned",
                    f"proxy store: removed {len(removed)} leftover(s) of an interrupted write",
                    "notice",
                    COUNT=len(removed),
                )
            self._measure()
        except OSError as exc:
            self.counters.last_error = str(exc)
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                key, job = self._queue.popitem(last=False)
                timeline = self._timeline
            if job.roots is None:  # a video of the served timeline: its project's roots now
                try:
                    job.roots = tuple(self.roots(timeline)) if timeline is not None else ()
                except Exception:  # noqa: BLE001 - the roots are checked again by the maker; none: it may read nothing
                    job.roots = ()
            self._make(key, job)

    def _measure(self) -> None:
        entries = list(self.store.entries())
        self.disk = sum(entry.bytes for entry in entries)
        self.stored = sum(1 for entry in entries if entry.manifest is not None and entry.manifest.frames)

    def _evicted(self, count: int) -> None:
        self.counters.evicted += count
        self.log.emit(
            "proxy_evicted",
            f"proxy store over its budget: removed {count} least recently used",
            "info",
            COUNT=count,
            BUDGET_BYTES=self.store.budget,
        )

    def _in_use(self) -> set[str]:
        """Keys of the proxies of the current timeline's sources (as far as makers reported them)."""
        with self._cond:
            timeline = self._timeline
            keys = dict(self._keys)
        if timeline is None:
            return set()
        wanted = {(clip.source_path, clip.source_stat) for track in timeline.tracks for clip in track.clips}
        return {key for (path, stat, _), key in keys.items() if (path, stat) in wanted}

    def _make(self, key: tuple[str, Any, Params], job: Job) -> None:
        if not job.roots:  # the maker takes no --root as "unchecked": with none, no file may be read
            self._failed(key, job, "no media roots: nothing may be read", Current(job.path, time.monotonic()))
            return
        keep = self._in_use()
        evicted = self.store.evict(keep=keep)  # over the budget already (a smaller budget since the last start)
        if evicted:
            self._evicted(len(evicted))
        cmd = [
            *IDLE_PREFIX,
            sys.executable,
            "-m",
            "flipedit_previewd.proxy.maker",
            job.path,
            "--store",
            str(self.store.root),
            "--size",
            f"{job.params.width}x{job.params.height}",
            "--max-pixels",
            str(self.max_pixels),
            "--budget",
            str(self.store.budget),
            "--min-cost",
            str(job.min_cost),
        ]
        for kept in sorted(keep):
            cmd += ["--keep", kept]
        for root in job.roots or ():
            cmd += ["--root", root]
        started = time.monotonic()
        generation = self._generation
        current = Current(job.path, started)
        try:
            process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True
            )
        except OSError as exc:
            self._failed(key, job, f"cannot start the maker: {exc}", current)
            return
        with self._cond:
            self._process = process
            current.pid = process.pid
            self.current = current
        with self._signal_lock:
            self._paused = False
            if self._renders or time.monotonic() - self._last_render < RESUME_AFTER:
                self._signal(True)  # the editor is busy now: the maker waits from its start
                self._signal_lock.notify_all()
        outcome, reason, frames = "failed", "the maker ended without a word", 0
        assert process.stdout is not None
        try:
            for raw in iter(lambda: process.stdout.readline(MAX_LINE), b""):  # type: ignore[union-attr]
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                kind = event.get("event")
                if kind == "start":
                    current.key, current.total = str(event.get("key", "")), _count(event.get("total"))
                    self._keys[key] = current.key
                    self.log.emit(
                        "proxy_started",
                        f"making a proxy of {job.path}",
                        "info",
                        SOURCE=job.path,
                        PROXY_KEY=current.key,
                        FRAMES_TOTAL=current.total,
                        WIDTH=job.params.width,
                        HEIGHT=job.params.height,
                    )
                elif kind == "progress":
                    current.done, current.total = _count(event.get("done")), _count(event.get("total"))
                elif kind == "exists":
                    self._keys[key] = str(event.get("key", ""))
                    self.store.touch(self._keys[key])
                    outcome = "exists"
                elif kind == "evicted" and isinstance(event.get("keys"), list):
                    self._evicted(len(event["keys"]))
                elif kind == "skipped":
                    outcome, reason = "skipped", str(event.get("reason", ""))[:500]
                elif kind == "done" and outcome != "exists":
                    outcome, frames = "made", _count(event.get("frames"))
                    reason = str(event.get("stopped", ""))[:200]
                elif kind == "failed":
                    outcome, reason = "failed", str(event.get("reason", ""))[:500]
        finally:
            process.stdout.close()
            stderr = process.stderr.read(65536) if process.stderr is not None else b""
            if process.stderr is not None:
                process.stderr.close()
            code = process.wait()
            with self._signal_lock, self._cond:
                self._process = None
                self._paused = False
                self.current = None
        if self._stopping or generation != self._generation:
            return
        if outcome == "failed" and code != 0 and reason == "the maker ended without a word":
            tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit status {code}"]
            reason = (
                f"the maker ended ({'signal ' + str(-code) if code < 0 else 'status ' + str(code)}): {tail[0][:300]}"
            )
        self.counters.outcomes[key] = outcome
        self._measure()
        seconds = time.monotonic() - started
        if outcome == "made":
            self.counters.made += 1
            self.log.emit(
                "proxy_done",
                f"proxy of {job.path} made: {frames} frames in {seconds:.1f} s"
                + (f" (stopped: {reason})" if reason else ""),
                "info",
                SOURCE=job.path,
                PROXY_KEY=current.key,
                FRAMES=frames,
                SECONDS=round(seconds, 2),
                DISK_BYTES=self.disk,
                STOPPED=reason or None,
            )
        elif outcome == "skipped":
            self.counters.skipped += 1
        elif outcome == "failed":
            self._failed(key, job, reason, current)

    def _failed(self, key: tuple[str, Any, Params], job: Job, reason: str, current: Current) -> None:
        self.counters.outcomes[key] = "failed"
        self.counters.failed += 1
        self.counters.last_error = f"{job.path}: {reason}"
        self.log.emit(
            "proxy_failed",
            f"no proxy of {job.path}: {reason}",
            "warning",
            SOURCE=job.path,
            PROXY_KEY=current.key or None,
            REASON=reason,
        )


def _count(value: Any) -> int:
    return value if type(value) is int and 0 <= value < 2**40 else 0

"""The preview service: routes, the render path, health, and the one error boundary.

Everything here runs on the event loop and never blocks it: database reads
go to a small thread pool, renders to worker processes. ``handle`` is the
only place where an ``HTTPError`` becomes a response.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from . import __version__
from .access import Guard, Peer, token_path, write_token
from .admission import Admission
from .config import Config
from .dispatch import Dispatcher, LoopHooks
from .errors import BadRequest, DomainError, HTTPError, MethodNotAllowed, NotFound, RenderFailed, as_http
from .framecache import FrameCache
from .frames import FrameService
from .journal import EventLog
from .limits import check_timeline
from .looplag import LoopLag
from .metrics import Metrics
from .offload import BoundedOffload
from .output import OutputSpec
from .projectdb import ProjectSource, asset_dirs
from .projects import ProjectFollower, Switch
from .protocol import Request, Response
from .rejections import RejectionSummary
from .renderahead import RenderAhead
from .safety import check_timeline_paths, effective_roots
from .timeline import Timeline, empty_timeline, timeline_from_json
from .workers import WorkerPool, WorkerSettings


class Service:
    def __init__(self, config: Config, log: EventLog) -> None:
        self.config = config
        self.log = log
        self.started = time.monotonic()
        self.metrics = Metrics()
        # Everything slow on untrusted input (timeline parsing, path checks, database reads, large
        # serialisations) runs here, never on the loop; a full queue is a 503.
        self.offload = BoundedOffload(2, 16)
        self.rejections = RejectionSummary(log)
        self.lag = LoopLag(config.loop_lag_threshold, self._report_lag)
        self._flush_handle: asyncio.TimerHandle | None = None
        project = config.project
        if config.demo and not project:
            from .demo import ensure_demo_project

            project = ensure_demo_project()
        # Unless --project pins one, follow the editor's project list (projects.py).
        self.follower = ProjectFollower(config.metadata_db) if not project else None
        if self.follower is not None:
            project = self.follower.initial()
        self.project_reason = project_reason(config, project)
        self.source = ProjectSource(os.path.expanduser(project) if project else "", (config.canvas_width, config.canvas_height), config.frame_rate)
        self._apply_source_limits(config)
        self.admission = Admission(config.workers, config.queue_size, config.queue_timeout)
        self.pool = WorkerPool(config.workers, WorkerSettings(config.source_cache_bytes, config.max_source_pixels,
                                                               config.test_render_hook), config.hang_threshold)
        self.frames = FrameCache(config.frame_cache_bytes)
        self.ahead = RenderAhead(config.render_ahead_frames)
        self._ahead_flushed: dict[str, int] = {}
        self.dispatcher = Dispatcher(self.admission, self.pool, self.frames, self.ahead, self.metrics, lambda: self.source.current(),
                                     self.allowed_roots, LoopHooks(worker_event=self._worker_event))
        self.frame_service = FrameService(self, self.dispatcher)
        self.connections = 0
        self.latencies: deque[float] = deque(maxlen=2000)
        self.summary: dict[str, int] = {}
        self.last_client_error: dict[int, str] = {}
        self.stopping = False
        self.overloaded_since: float | None = None
        self._follow_task: asyncio.Future[None] | None = None
        self.guard = Guard(config.allowed_hosts, self._make_token(), log)
        self._roots: tuple[Any, list[str]] | None = None
        self._roots_skipped: set[str] = set()
        m = self.metrics
        m.gauge("flipedit_preview_queue_depth", "Renders waiting for a worker", lambda: len(self.admission.queue))
        m.gauge("flipedit_preview_in_flight", "Renders running", lambda: len(self.admission.in_flight))
        m.gauge("flipedit_preview_workers_busy", "Workers rendering", lambda: self.pool.busy_count())
        m.gauge("flipedit_preview_connections", "Open client connections", lambda: self.connections)
        m.gauge("flipedit_preview_render_ahead_rendered", "Frames rendered ahead of a request", lambda: self.ahead.counters["rendered"])
        m.gauge("flipedit_preview_render_ahead_hits", "Requests answered by a frame rendered ahead", lambda: self.frames.ahead_hits)
        m.gauge("flipedit_preview_render_ahead_wasted", "Frames rendered ahead and discarded unused", lambda: self.frames.ahead_wasted)
        m.gauge("flipedit_preview_loop_lag_seconds", "Event-loop timer lag, last sample", lambda: self.lag.last)
        m.gauge("flipedit_preview_loop_lag_p99_seconds", "Event-loop timer lag, 99th percentile of the last minute",
                lambda: self.lag.percentile(99))
        m.gauge("flipedit_preview_rejections", "Requests refused (503, or 504 at once) since start", lambda: self.rejections.total)

    def _apply_source_limits(self, config: Config) -> None:
        self.source.read_timeout = config.db_read_timeout
        self.source.max_rows = config.max_timeline_clips
        self.source.check = self.check_limits

    def check_limits(self, timeline: Timeline) -> None:
        check_timeline(timeline, self.config.max_layer_pixels, self.config.max_timeline_clips)

    def _report_lag(self, worst: float, threshold: float) -> None:
        self.log.emit("loop_lag", f"event loop ran {worst * 1000:.0f} ms late (threshold {threshold * 1000:.0f} ms)", "warning",
                      LAG_MS=round(worst * 1000, 1), THRESHOLD_MS=round(threshold * 1000, 1))

    def _worker_event(self, event: str, message: str, worker: Any) -> None:
        self.log.emit(event, message, "warning", WORKER=worker.index, WORKER_PID=worker.process.pid, FRAME=worker.frame)

    def _make_token(self) -> str:
        """A fresh bearer token for state changes over TCP, in a file only this user can read."""
        self.token_file = token_path(os.environ, self.config.token_file)
        if not self.token_file:
            self.log.emit("config_error", "no token file (no $XDG_RUNTIME_DIR): PUT/DELETE only on the unix socket", "warning",
                          KEY="token_file")
            return ""
        try:
            return write_token(self.token_file)
        except OSError as exc:
            self.log.emit("config_error", f"cannot write the token file {self.token_file}: {exc.strerror}; "
                          "PUT/DELETE only on the unix socket", "warning", KEY="token_file", VALUE=self.token_file)
            return ""

    # --- lifecycle hooks used by the server -------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._flush_rejections(loop)
        self.dispatcher.start(loop)
        await self.offload.run(self.source.current, True)
        self._publish_source_events()
        await self.offload.run(self.allowed_roots)
        # Warm-up: READY=1 only after a worker really rendered a frame. Nothing is admitted yet, so
        # the driver threads are idle and the pipe is ours. An empty timeline proves the worker
        # renders and encodes without touching project media.
        warm_up = empty_timeline((64, 36), self.config.frame_rate, "warm-up")
        await self.offload.run(self.pool.render, 0, 0, OutputSpec(64, 36), warm_up)
        self.lag.start(loop)  # the serving loop's lag: start-up (spawning workers) is before READY=1

    async def drain(self, timeout: float, settled: Callable[[], bool] = lambda: True) -> bool:
        """Let queued and in-flight renders finish and the connections settle; True if all renders did in time.

        Requests that arrive meanwhile on open connections are still admitted: refusing them is the
        only alternative. Past the deadline nothing more is admitted.
        """
        self.stopping = True
        deadline = time.monotonic() + timeout
        while (self.admission.backlog() or not settled()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.admission.stopping = True
        return not self.admission.backlog()

    def close(self) -> None:
        self.dispatcher.stop()
        self.lag.stop()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.rejections.flush()
        self.offload.shutdown()

    def reload(self) -> None:
        """Re-read the project list and the timeline (settings: ``reconfigure.apply``, before this)."""
        if self.follower is not None:  # reload re-reads the project list too (the next follow, off the loop)
            self.follower.forget()

        def reread() -> None:
            self.source.current(force=True)
            self._publish_source_events()

        # Off the loop: a locked or hostile database must not hold the loop (or SIGHUP would stall it).
        self.offload.submit_nowait(reread)
        self._roots = None

    # --- the frame use case (frames.py) and the render path (dispatch.py) ----------------------

    def _apply_render_ahead(self, config: Config) -> None:
        self.frame_service.apply(config)

    def _publish_source_events(self) -> None:
        self.frame_service.publish_source_events()

    async def get_frame(self, request: Request, frame: int, over_limit: bool, client: str) -> Response:
        return await self.frame_service.get_frame(request, frame, over_limit, client)

    def render_ahead_stats(self) -> dict[str, Any]:
        return self.frame_service.render_ahead_stats()

    def _flush_rejections(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every second: one journal entry for the rejections of that second (none when there were none)."""
        self.rejections.flush()
        self._flush_handle = loop.call_later(1.0, self._flush_rejections, loop)

    def note_rejection(self) -> None:
        self._note_overload(True)

    async def follow(self) -> None:
        """Switch to the newest project in the editor's list when it changed (a stat; a read only on change)."""
        if self.follower is None or not self.follower.due(self.source.path):
            return
        switch = await self.offload.run(self.follower.choose, self.source.path)
        self._switch_to(switch)

    def _switch_to(self, switch: Switch | None) -> None:
        if switch is None or self.follower is None or switch.project == self.source.path:
            return
        source = ProjectSource(switch.project, (self.config.canvas_width, self.config.canvas_height), self.config.frame_rate)
        source.set_json(self.source.override)  # a PUT /timeline stays until DELETE
        self.source = source
        self._apply_source_limits(self.config)
        self.log.emit("project_switched", f"now serving {switch.project or 'no project'} ({switch.reason}); was {switch.previous or 'none'}",
                      "notice", PROJECT=switch.project, PREVIOUS_PROJECT=switch.previous, REASON=switch.reason,
                      METADATA_DB=self.follower.metadata_db, SWITCHES=self.follower.switches)

    async def timeline(self) -> Timeline:
        """The current timeline without blocking the event loop: a changed database is read in a thread."""
        await self.follow()
        timeline = self.source.current_if_unchanged()
        if timeline is None:
            timeline = await self.offload.run(self.source.current, False)
        return timeline

    def output_spec(self, request: Request, timeline: Timeline) -> OutputSpec:
        query = request.query
        cw, ch = timeline.canvas_width, timeline.canvas_height
        width = _int_param(query, "width", 1, 16384)
        height = _int_param(query, "height", 1, 16384)
        if width and not height:
            height = max(1, round(width * ch / cw))
        elif height and not width:
            width = max(1, round(height * cw / ch))
        width, height = width or cw, height or ch
        if width * height > self.config.max_output_pixels:
            raise BadRequest(f"output {width}x{height} exceeds {self.config.max_output_pixels} pixels", field="width")
        quality = _int_param(query, "quality", 1, 95) or self.config.jpeg_quality
        fmt = query.get("format", "jpeg").lower()
        if fmt not in ("jpeg", "jpg", "png"):
            raise BadRequest(f"format must be jpeg or png, not {fmt!r}", field="format")
        if fmt == "png":
            # PNG ignores quality: one cache key and ETag for every ?quality= (no 95 renders of the same bytes).
            return OutputSpec(width, height, 0, "png")
        return OutputSpec(width, height, quality, "jpeg")

    def _count(self, outcome: str) -> None:
        self.summary[outcome] = self.summary.get(outcome, 0) + 1
        self.metrics.requests.labels(outcome).inc()

    def _note_overload(self, rejected: bool) -> None:
        now = time.monotonic()
        if rejected and self.overloaded_since is None:
            self.overloaded_since = now
            self.log.emit("overload_began", "overload began: requests are being answered 503", "warning",
                          QUEUE_DEPTH=len(self.admission.queue), IN_FLIGHT=len(self.admission.in_flight))

    def tick(self) -> None:
        """Once per health tick on the loop: deadlines, overload end, hung workers, summaries."""
        self.admission.expire_overdue()
        if not self.ahead.active(time.monotonic()):
            self.admission.retain_ahead(lambda p: False)  # the playback or scrub stopped
        if self.source.health.state not in ("ok", "none") and not self.source.override:
            # A locked or unreadable database: try again now and then even with no requests, so /health
            # says "ok" again once the writer is done (the read itself respects its retry delay).
            def retry() -> None:
                self.source.current()
                self._publish_source_events()

            self.offload.submit_nowait(retry)
        if self.follower is not None and self._follow_task is None:  # notice a switch with no requests too
            self._follow_task = asyncio.ensure_future(self.follow())
            self._follow_task.add_done_callback(self._followed)
        if self.overloaded_since is not None and not self.admission.rejected_recently(5):
            duration = time.monotonic() - self.overloaded_since
            self.overloaded_since = None
            self.log.emit("overload_ended", f"overload ended after {duration:.1f} s", "notice", DURATION_S=round(duration, 1))
        now = time.monotonic()
        healthy = [w for w in self.pool.workers if w.state != "rendering" or now - w.since <= self.config.hang_threshold]
        for worker in self.pool.hung_workers(now):
            if not worker.hung_reported:
                worker.hung_reported = True
                self.log.emit("worker_hung", f"worker {worker.index} stuck on frame {worker.frame} for {now - worker.since:.1f} s",
                              "err", WORKER=worker.index, WORKER_PID=worker.process.pid, FRAME=worker.frame)
            if healthy and now - worker.since > 2 * self.config.hang_threshold:
                self.log.emit("worker_replaced", f"worker {worker.index} replaced after hanging on frame {worker.frame}",
                              "warning", WORKER=worker.index, WORKER_PID=worker.process.pid, FRAME=worker.frame)
                self.pool.replace_hung(worker, worker.job_id)

    def _note_client_error(self, status: int, what: str) -> None:
        """A 4xx answer (the caller's mistake) is cheap: counted per status for the per-minute summary,
        with the last one's reason, so 'previewctl logs' can say why a request was refused."""
        self.summary[f"http_{status}"] = self.summary.get(f"http_{status}", 0) + 1
        self.last_client_error[status] = what

    def _followed(self, task: asyncio.Future[None]) -> None:
        self._follow_task = None
        if not task.cancelled() and task.exception() is not None:
            self.log.emit("protocol_error", f"following the project list failed: {task.exception()!r}", "err")

    def flush_summary(self) -> None:
        counts = {k: v for k, v in self.summary.items() if k in ("cached", "not_modified", "health") or k.startswith("http_4")}
        now = {"rendered": self.ahead.counters["rendered"], "hits": self.frames.ahead_hits, "wasted": self.frames.ahead_wasted}
        ahead = {k: v - self._ahead_flushed.get(k, 0) for k, v in now.items()}
        if any(counts.values()) or any(ahead.values()):
            errors = {f"LAST_ERROR_{status}": what for status, what in self.last_client_error.items()}
            text = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v)
            text += "".join(f"; last {status}: {what}" for status, what in sorted(self.last_client_error.items()))
            if any(ahead.values()):
                text += "; render-ahead " + ", ".join(f"{k}={v}" for k, v in ahead.items())
            self.log.emit("summary", "cheap requests: " + text.lstrip("; "), "info",
                          **{f"COUNT_{k.upper()}": v for k, v in counts.items() if v}, **errors,
                          **{f"AHEAD_{k.upper()}": v for k, v in ahead.items() if v})
        self._ahead_flushed = now
        for key in counts:
            self.summary[key] = 0
        self.last_client_error.clear()

    def can_progress(self) -> bool:
        """The pool can make progress unless every worker is stuck past the hang threshold."""
        return len(self.pool.hung_workers()) < len(self.pool.workers)

    # --- health ------------------------------------------------------------------------------

    def status(self) -> str:
        if self.stopping:
            return "stopping"
        if self.overloaded_since is not None or len(self.admission.queue) >= self.config.queue_size > 0:
            return "overloaded"
        if self.pool.hung_workers() or self.source.health.state not in ("ok", "none"):
            return "degraded"
        return "ok"

    def health(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        workers = self.pool.snapshot()
        hung = sum(1 for w in workers if w["state"] == "hung")
        timeline = self.source.last  # never a database read here: /health must answer at once
        return {
            "status": self.status(),
            "queue_size": len(self.admission.queue),
            "active_requests": len(self.admission.in_flight),
            "max_concurrent": self.config.workers,
            "queue_capacity": self.config.queue_size,
            "in_flight": len(self.admission.in_flight),
            "capacity": self.config.workers - hung,
            "connections": self.connections,
            "max_connections": self.config.max_connections,
            "rate_per_s": round(self.admission.rate.rate(), 2),
            "rejected_last_minute": self.admission.rejected_recently(60),
            "counters": {**self.admission.counters, **{f"outcome_{k}": v for k, v in self.summary.items()},
                         "completed": self.pool.completed, "workers_replaced": self.pool.replaced},
            "latency_ms": {"p50": _pct(lat, 50), "p95": _pct(lat, 95), "p99": _pct(lat, 99), "samples": len(lat)},
            "workers": workers,
            "project": {"path": self.source.path, "state": self.source.health.state, "error": self.source.health.error,
                        "reads": self.source.health.reads, "revision": timeline.revision, "source": timeline.source,
                        "clips": len(timeline.clips), "following": self.follower.state() if self.follower else None},
            "cache": {"frames": len(self.frames), "bytes": self.frames.size, "hits": self.frames.hits, "misses": self.frames.misses},
            "render_ahead": self.render_ahead_stats(),
            "keepalive_timeout_s": self.config.keepalive_timeout,
            "restart_pending": list(self.config.restart_pending),  # restart-only settings changed in the configuration
            "loop_lag": self.lag.snapshot(),
            "rejections": {"total": self.rejections.total, "by_reason": dict(self.rejections.by_reason)},
            "offload": {"pending": self.offload.pending, "capacity": self.offload.capacity, "rejected": self.offload.rejected},
            "media_roots": (self._roots[1] if self._roots else None),
            "media_roots_skipped": [f"{root} ({why})" for root, why in getattr(self, "skipped_roots", [])],
            "uptime_s": round(time.monotonic() - self.started, 1),
            "version": __version__,
            "pid": os.getpid(),
        }

    def status_line(self) -> str:
        return (f"{self.status()}: {len(self.admission.in_flight)}/{self.config.workers} rendering, "
                f"{len(self.admission.queue)} queued, {self.admission.rejected_recently(60)} rejected in the last minute, "
                f"{self.admission.rate.rate():.1f} frames/s, loop lag p99 {self.lag.percentile(99) * 1000:.0f} ms")

    # --- routing: the one error boundary -----------------------------------------------------

    async def handle(self, request: Request, over_limit: bool = False, client: str = "", peer: Peer | None = None) -> Response:
        try:
            self.guard.check(request, peer)
        except HTTPError as exc:
            refused = Response.from_error(exc)
            refused.close = True  # nothing more for a client that is not (or not speaking as) the editor's user
            return refused
        try:
            return await self._route(request, over_limit, client)
        except (HTTPError, DomainError) as raised:
            answer = as_http(raised)
            if 400 <= answer.status < 500:
                self._note_client_error(answer.status, f"{request.method} {request.target[:200]}: {answer.detail}")
            return Response.from_error(answer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary: log, answer 500, keep serving
            self.log.emit("protocol_error", f"internal error on {request.target}: {type(exc).__name__}: {exc}", "err",
                          PATH=request.target)
            return Response.from_error(RenderFailed(f"internal error: {type(exc).__name__}"))

    async def _route(self, request: Request, over_limit: bool, client: str) -> Response:
        path = request.path
        method = request.method
        if path.startswith("/get_frame/"):
            _require(method, ("GET", "HEAD"))
            raw = path[len("/get_frame/"):]
            try:
                frame = int(raw)
            except ValueError:
                raise NotFound(f"frame index must be an integer, not {raw[:40]!r}") from None
            if frame < 0:
                raise BadRequest(f"frame index must not be negative: {frame}", field="frame")
            if frame > 10_000_000:
                raise BadRequest(f"frame index {frame} is absurd", field="frame")
            return await self.get_frame(request, frame, over_limit, client)
        if path == "/health":
            _require(method, ("GET", "HEAD"))
            self._count("health")
            return Response.json(200, self.health())
        if path == "/metrics":
            _require(method, ("GET", "HEAD"))
            return Response(200, self.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")
        if path == "/debug/timeline":
            _require(method, ("GET", "HEAD"))
            timeline = await self.timeline()
            queue_stats = {"queue_size": len(self.admission.queue), "active_requests": len(self.admission.in_flight)}
            return await self.offload.run(lambda: _large_json({**timeline.debug_json(), "queue_stats": queue_stats}))
        if path == "/timeline":
            _require(method, ("GET", "HEAD", "PUT", "DELETE"))
            if method == "PUT":
                return await self.put_timeline(request)
            if method == "DELETE":
                self.source.set_json(None)
                return Response.json(200, {"source": "database", "path": self.source.path})
            timeline = await self.timeline()
            return await self.offload.run(lambda: _large_json(timeline.to_json()))
        if path == "/":
            return Response.json(200, {"service": "flipedit-previewd", "version": __version__,
                                       "endpoints": ["/get_frame/<n>", "/health", "/metrics", "/debug/timeline", "/timeline"]})
        raise NotFound(f"no such endpoint: {path[:80]}")

    async def put_timeline(self, request: Request) -> Response:
        timeline = await self.offload.run(self._parse_timeline, request.body)
        self.source.set_json(timeline)
        return Response.json(200, {"revision": timeline.revision, "clips": len(timeline.clips), "total_frames": timeline.total_frames})

    def _parse_timeline(self, body: bytes) -> Timeline:
        """In an offload thread: parse, validate, check limits and paths (each can be slow on hostile input)."""
        try:
            data = json.loads(body or b"null")
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"timeline: body is not valid JSON: {exc}", field="timeline") from None
        timeline = timeline_from_json(data, (self.config.canvas_width, self.config.canvas_height), self.config.frame_rate)
        self.check_limits(timeline)
        check_timeline_paths(timeline, self.allowed_roots(timeline))
        return timeline

    def allowed_roots(self, timeline: Timeline | None = None) -> list[str]:
        """Where media may be read from: never /, a system directory or the home directory itself.

        Cached per project state (a database read lists the asset directories); a candidate that
        would make a forbidden root is skipped and logged once.
        """
        key = (tuple(self.config.allowed_roots), self.source.path, self.source.last.revision if self.source.path else "")
        if self._roots is not None and self._roots[0] == key:
            return self._roots[1]
        if self.config.allowed_roots:
            candidates = [os.path.expanduser(p) for p in self.config.allowed_roots]
        else:
            candidates = []
            if self.source.path:
                candidates.append(os.path.dirname(os.path.abspath(self.source.path)))
                candidates += asset_dirs(self.source.path)
        kept, skipped = effective_roots(candidates)
        for root, why in skipped:
            if root not in self._roots_skipped:
                self._roots_skipped.add(root)
                self.log.emit("media_roots", f"not a media root: {root} ({why})", "warning", ROOT=root, REASON=why)
        self._roots = (key, kept)
        self.skipped_roots = skipped
        return kept


def project_reason(config: Config, project: str) -> str:
    """Why this project (or none) is served, for the start and ready messages of a bare start."""
    if config.project:
        return "from --project / the configuration"
    if config.demo:
        return "the built-in demo project (--demo)"
    metadata = os.path.expanduser(config.metadata_db)
    if project:
        return f"the most recently modified project in {metadata}"
    if not os.path.exists(metadata):
        return f"no --project, no --demo, and the editor's project list {metadata} does not exist"
    return f"no --project, no --demo, and no usable project in {metadata}"


def _large_json(payload: Any) -> Response:
    """A 200 JSON answer built by the pure-Python encoder (in an offload thread): the C encoder
    serialises a 50,000-clip timeline in one call holding the GIL, which stalls the event loop."""
    encoder = json.JSONEncoder(separators=(",", ":"))
    return Response(200, "".join(encoder.iterencode(payload)).encode(), "application/json")


def _require(method: str, allowed: tuple[str, ...]) -> None:
    if method not in allowed:
        raise MethodNotAllowed(f"{method} not allowed here; use {', '.join(allowed)}", allow=allowed)


def _int_param(query: dict[str, str], name: str, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {raw[:20]!r}", field=name) from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}", field=name)
    return value


def _pct(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1], 2)

"""The preview service: the composition root of the application side, and the frame use-case.

``Service`` builds and owns the parts (admission, the worker pool, the frame cache, the project
source and its follower, the media roots) and offers the HTTP side the narrow interface it
serves through (``lifecycle.ServiceAPI``: start, handle, refuse, tick, drain, reload, close).
Routing is ``routes.py``, /health and the summaries ``health.py``, the tick and hang policy
``supervisor.py``. Everything here runs on the event loop and never blocks it: database reads
go to a small thread pool, renders to worker processes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .admission import Admission, Pending
from .config import Config
from .errors import GatewayTimeout, HTTPError, Overloaded, RenderFailed
from .framecache import FrameCache
from .health import flush_summary, health_report
from .journal import EventLog
from .lifecycle import LifecycleState
from .limits import check_timeline
from .looplag import LoopLag
from .metrics import Metrics
from .offload import BoundedOffload
from .output import OutputSpec
from .projectdb import ProjectSource
from .projects import ProjectFollower, Switch
from .protocol import Request, Response
from .reconfigure import configure_service
from .rejections import RejectionSummary
from .renderahead import RenderAhead
from .roots import MediaRoots
from .routes import Routes, output_spec
from .supervisor import Supervisor
from .textsafe import is_safe_token
from .timeline import Timeline, empty_timeline
from .workers import BudgetExceeded, WorkerPool, WorkerSettings


@dataclass
class FrameResult:
    body: bytes
    content_type: str
    etag: str
    render_ms: float
    queue_ms: float
    cached: bool


class Service:
    def __init__(self, config: Config, log: EventLog, lifecycle: LifecycleState | None = None) -> None:
        self.config = config
        self.log = log
        self.lifecycle = lifecycle or LifecycleState()  # moved by the server only; read here
        self.started = time.monotonic()
        self.metrics = Metrics()
        # Everything slow on untrusted input (timeline parsing, path checks, database reads, large
        # serialisations) runs here, never on the loop; a full queue is a 503.
        self.offload = BoundedOffload(2, 16)
        self.rejections = RejectionSummary(log)
        self.lag = LoopLag(config.loop_lag_threshold, self._report_lag)
        # (revision, frame, output) of renders that ran past the budget -> until when they are refused
        self.heavy: dict[str, float] = {}
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
        self.pool.on_event = self._worker_event
        self.frames = FrameCache(config.frame_cache_bytes)
        self.ahead = RenderAhead(config.render_ahead_frames)
        self.ahead_flushed: dict[str, int] = {}
        self._apply_render_ahead(config)
        self.open_connections: Callable[[], int] = lambda: 0  # the server's count, given at start
        self.latencies: deque[float] = deque(maxlen=2000)
        self.summary: dict[str, int] = {}
        self.last_client_error: dict[int, str] = {}
        self.overloaded_since: float | None = None
        self._request_seq = 0
        self._follow_task: asyncio.Future[None] | None = None
        self.roots = MediaRoots(log)
        self.routes = Routes(self)
        self.supervisor = Supervisor(self)
        m = self.metrics
        m.gauge("flipedit_preview_queue_depth", "Renders waiting for a worker", lambda: len(self.admission.queue))
        m.gauge("flipedit_preview_in_flight", "Renders running", lambda: len(self.admission.in_flight))
        m.gauge("flipedit_preview_workers_busy", "Workers rendering", lambda: self.pool.busy_count())
        m.gauge("flipedit_preview_connections", "Open client connections", lambda: self.open_connections())
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

    def render_budget(self) -> float:
        """The configured budget, kept below hang_threshold so a heavy render never looks like a hang."""
        return float(min(self.config.render_budget, self.config.hang_threshold * 0.8))

    def _report_lag(self, worst: float, threshold: float) -> None:
        self.log.emit("loop_lag", f"event loop ran {worst * 1000:.0f} ms late (threshold {threshold * 1000:.0f} ms)", "warning",
                      LAG_MS=round(worst * 1000, 1), THRESHOLD_MS=round(threshold * 1000, 1))

    def _worker_event(self, event: str, message: str, worker: Any) -> None:
        self.log.emit(event, message, "warning", WORKER=worker.index, WORKER_PID=worker.process.pid, FRAME=worker.frame)

    # --- the interface the server serves through (lifecycle.ServiceAPI) ----------------------

    async def start(self, open_connections: Callable[[], int] = lambda: 0) -> None:
        self.open_connections = open_connections
        loop = asyncio.get_running_loop()
        self.admission.bind(loop)
        self._flush_rejections(loop)
        self.pool.start(self.admission.take, self._run_job)
        await self.offload.run(self.source.current, True)
        self._publish_source_events()
        await self.offload.run(self.allowed_roots)
        # Warm-up: READY=1 only after a worker really rendered a frame. Nothing is admitted yet, so
        # the driver threads are idle and the pipe is ours. An empty timeline proves the worker
        # renders and encodes without touching project media.
        warm_up = empty_timeline((64, 36), self.config.frame_rate, "warm-up")
        await self.offload.run(self.pool.render, self.pool.workers[0], 0, OutputSpec(64, 36), warm_up)
        self.lag.start(loop)  # the serving loop's lag: start-up (spawning workers) is before READY=1

    async def drain(self, timeout: float, settled: Callable[[], bool] = lambda: True) -> bool:
        """Let queued and in-flight renders finish and the connections settle; True if all renders did in time.

        Requests that arrive meanwhile on open connections are still admitted: refusing them is the
        only alternative. Past the deadline the server moves the lifecycle to STOPPED: nothing more
        is admitted (routes.py).
        """
        deadline = time.monotonic() + timeout
        while (self.admission.backlog() or not settled()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return not self.admission.backlog()

    def close(self) -> None:
        self.admission.close()
        self.pool.stop()
        self.lag.stop()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.rejections.flush()
        self.offload.shutdown()

    def configure(self, config: Config) -> None:
        """The live settings (at start and on SIGHUP, from ``reconfigure.apply`` through the server)."""
        configure_service(config, self)

    def reload(self) -> None:
        """Re-read the project list and the timeline (settings: ``configure``, before this)."""
        if self.follower is not None:  # reload re-reads the project list too (the next follow, off the loop)
            self.follower.forget()

        def reread() -> None:
            self.source.current(force=True)
            self._publish_source_events()

        # Off the loop: a locked or hostile database must not hold the loop (or SIGHUP would stall it).
        self.offload.submit_nowait(reread)
        self.roots.forget()

    async def handle(self, request: Request, client: str = "") -> Response:
        return await self.routes.handle(request, client)

    def refuse(self, limit: str, detail: str) -> Overloaded:
        """A 503 decided outside admission (too many connections; a request refused by the stop), counted
        like admission's own; only too many connections marks an overload (a stop is not one)."""
        error = self.admission.reject(limit, detail)
        self.rejections.add("rejected", limit)
        if limit == "connections":
            self.note_rejection()
        return error

    def backlog(self) -> int:
        return self.admission.backlog()

    def project(self) -> tuple[str, str]:
        return self.source.path, self.project_reason

    def tick(self) -> None:
        self.supervisor.tick()

    def can_progress(self) -> bool:
        return self.supervisor.can_progress()

    def status_line(self) -> str:
        return self.supervisor.status_line()

    def health(self) -> dict[str, Any]:
        return health_report(self)

    def flush_summary(self) -> None:
        flush_summary(self)

    # --- the render path ---------------------------------------------------------------------

    def _run_job(self, worker: Any, pending: Pending) -> None:
        """On a worker's driver thread: read the timeline *now*, render (or find it cached), answer."""
        if pending.speculative:
            self._run_ahead(worker, pending)
            return
        frame, spec = pending.key
        queue_ms = (pending.started - pending.enqueued) * 1000
        self.metrics.queue_wait.observe(queue_ms / 1000)
        try:
            timeline = self.source.current()
            pending.revision = timeline.revision  # what this render shows (admission: newer requests need not wait for it)
            self._publish_source_events()
            etag = frame_etag(timeline, frame, spec)
            cached = self.frames.get(etag)
            if cached is not None:
                self.admission.finish(worker.index, pending, FrameResult(cached[0], cached[1], etag, 0.0, queue_ms, True))
                return
            outcome = self.pool.render(worker, frame, spec, timeline, self.render_budget(), tuple(self.allowed_roots(timeline)))
        except BudgetExceeded as exc:
            self._mark_heavy(etag)
            self.admission.finish(worker.index, pending, error=exc)
            return
        except HTTPError as exc:
            self.admission.finish(worker.index, pending, error=exc)
            return
        except Exception as exc:  # noqa: BLE001 - a bug in one render must not stop the worker's thread
            self.admission.finish(worker.index, pending, error=RenderFailed(f"{type(exc).__name__}: {exc}"))
            return
        result = outcome.result
        for path, problem in result.problems:
            self.log.emit("media_problem", f"media problem in {path}: {problem}", "warning", SOURCE_PATH=path, PROBLEM=problem)
        self.metrics.render_time.observe(outcome.render_ms / 1000)
        self.frames.put(etag, (result.body, result.content_type), len(result.body))
        self.admission.finish(worker.index, pending, FrameResult(result.body, result.content_type, etag, outcome.render_ms, queue_ms, False))

    def _run_ahead(self, worker: Any, pending: Pending) -> None:
        """On a driver thread: a render-ahead job, only if its revision is still the current one."""
        frame, spec = pending.key
        try:
            timeline = self.source.current()
            self._publish_source_events()
            etag = frame_etag(timeline, frame, spec)
            if timeline.revision != pending.revision:
                self.ahead.counters["stale"] += 1
            elif etag not in self.frames and etag not in self.heavy:
                outcome = self.pool.render(worker, frame, spec, timeline, self.render_budget(), tuple(self.allowed_roots(timeline)),
                                           speculative=True)
                self.ahead.counters["rendered"] += 1
                self.frames.put(etag, (outcome.result.body, outcome.result.content_type), len(outcome.result.body), ahead=True)
        except BudgetExceeded:
            self._mark_heavy(etag)  # the real request for it is then refused at once, like any heavy frame
            self.ahead.counters["failed"] += 1
        except Exception:  # noqa: BLE001 - a guess that failed costs nothing; the real request will report it
            self.ahead.counters["failed"] += 1
        finally:
            self.admission.finish(worker.index, pending)

    def _apply_render_ahead(self, config: Config) -> None:
        self.ahead.frames = config.render_ahead_frames if config.render_ahead else 0
        limit = config.render_ahead_workers or max(1, config.workers - 1)
        self.admission.ahead_limit = min(limit, config.workers) if self.ahead.frames else 0
        if not self.ahead.frames:
            self.admission.retain_ahead(lambda p: False)

    def _plan_ahead(self, frame: int, spec: OutputSpec, timeline: Timeline) -> None:
        """On the loop, for every real frame request: follow a playback or scrub with render-ahead jobs."""
        if not self.ahead.frames or not self.frames.capacity:
            return
        plan = self.ahead.observe(time.monotonic(), spec, frame, timeline.revision, timeline.total_frames)
        revision = timeline.revision
        if plan is None:
            self.admission.retain_ahead(lambda p: p.revision == revision)
            return
        real_busy = len(self.admission.in_flight) - self.admission.ahead_running()
        if self.overloaded_since is not None or self.admission.queue or self.ahead.contended or real_busy >= self.config.workers:
            # Real work is waiting, being refused, occupies every worker now (the first requests of a
            # flood, before any is refused) or has kept them busy lately: a guess would take its CPU.
            self.ahead.counters["suppressed"] += 1
            self.admission.retain_ahead(lambda p: False)
            return
        wanted = {(f, spec) for f in plan.frames}
        self.admission.retain_ahead(lambda p: p.revision == revision and (p.key[1] != spec or p.key in wanted))
        for f in plan.frames:
            if frame_etag(timeline, f, spec) not in self.frames:
                if self.admission.speculate((f, spec), revision, AHEAD_TTL_S, 4 * self.ahead.frames):
                    self.ahead.counters["planned"] += 1

    def _flush_rejections(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every second: one journal entry for the rejections of that second (none when there were none)."""
        self.rejections.flush()
        self._flush_handle = loop.call_later(1.0, self._flush_rejections, loop)

    def note_rejection(self) -> None:
        """A request was refused for overload: the first one of a run begins an overload (ended in the tick)."""
        if self.overloaded_since is None:
            self.overloaded_since = time.monotonic()
            self.log.emit("overload_began", "overload began: requests are being answered 503", "warning",
                          QUEUE_DEPTH=len(self.admission.queue), IN_FLIGHT=len(self.admission.in_flight))

    def _mark_heavy(self, etag: str) -> None:
        now = time.monotonic()
        if len(self.heavy) > 1000:
            self.heavy = {k: v for k, v in self.heavy.items() if v > now}
        self.heavy[etag] = now + self.config.heavy_frame_ttl

    def _refuse_heavy(self, etag: str, frame: int) -> None:
        until = self.heavy.get(etag)
        if until is None:
            return
        left = until - time.monotonic()
        if left <= 0:
            self.heavy.pop(etag, None)
            return
        raise GatewayTimeout(f"frame {frame} of this timeline ran past the render budget of {self.render_budget():.1f} s; "
                             f"refused for {left:.0f} s more", limit="render_budget")

    def _publish_source_events(self) -> None:
        for state, message in self.source.drain_events():
            if state == "ok":
                self.metrics.timeline_reads.inc()
            self.log.emit("project", message, "info" if state == "ok" else "warning",
                          PROJECT=self.source.path, PROJECT_STATE=state, TIMELINE_READS=self.source.health.reads)

    async def get_frame(self, request: Request, frame: int, over_limit: bool, client: str) -> Response:
        begun = time.monotonic()
        self._request_seq += 1
        given = request.headers.get("x-request-id", "")
        request_id = given if is_safe_token(given) else f"{os.getpid()}-{self._request_seq}"
        timeline = await self.timeline()
        spec = self.output_spec(request, timeline)
        fields: dict[str, Any] = {"REQUEST_ID": request_id, "METHOD": request.method, "PATH": request.target,
                                  "FRAME": frame, "CLIENT": client}
        etag = frame_etag(timeline, frame, spec)
        self._plan_ahead(frame, spec, timeline)
        if etag_matches(request.headers.get("if-none-match", ""), etag):
            self._count("not_modified")
            return Response(304, b"", spec.content_type, headers=[("ETag", etag)])
        cached = self.frames.get(etag)
        if cached is not None:
            self._count("cached")
            self.latencies.append((time.monotonic() - begun) * 1000)
            return Response(200, cached[0], cached[1], headers=[("ETag", etag), ("X-Cache", "hit"), ("X-Request-Id", request_id)])
        pending: Pending | None = None
        outcome = "failed"
        status = 500
        result: FrameResult | None = None
        try:
            if over_limit:
                raise self.admission.reject("connections", f"more than {self.config.max_connections} connections open")
            self._refuse_heavy(etag, frame)
            pending = self.admission.submit((frame, spec), timeline.revision)
            shared = pending.waiters > 1
            result = await asyncio.shield(pending.future)
            outcome, status = ("shared" if shared else "rendered"), 200
        except asyncio.CancelledError:
            outcome, status = "cancelled", 499
            if pending is not None:
                self.admission.leave(pending)
            raise
        except Overloaded as exc:
            outcome, status = ("timeout" if exc.limit == "deadline" else "rejected"), 503
            fields["LIMIT"] = exc.limit
            raise
        except HTTPError as exc:
            outcome, status = ("timeout" if exc.status == 504 else "failed"), exc.status
            fields["ERROR"] = exc.detail
            if exc.extra.get("limit"):
                fields["LIMIT"] = exc.extra["limit"]
            raise
        finally:
            total_ms = (time.monotonic() - begun) * 1000
            self._count(outcome)
            self.metrics.total_time.observe(total_ms / 1000)
            if status == 200:
                self.latencies.append(total_ms)
            if outcome == "rejected":
                self.note_rejection()
            fields.update(STATUS=status, OUTCOME=outcome, TOTAL_MS=round(total_ms, 2),
                          QUEUE_DEPTH=len(self.admission.queue), IN_FLIGHT=len(self.admission.in_flight))
            if result is not None:
                if not result.cached:
                    self.ahead.note_real_render(result.queue_ms)
                fields.update(QUEUE_MS=round(result.queue_ms, 2), RENDER_MS=round(result.render_ms, 2), BYTES=len(result.body),
                              CACHE="hit" if result.cached else "miss")
            if status == 503 or (fields.get("LIMIT") == "render_budget" and pending is None):
                # refused without a render: counted, and summarised once a second (rejections.py)
                self.rejections.add(outcome, str(fields.get("LIMIT", "other")))
            else:
                self.log.emit("request", f"{request.method} {request.target} -> {status} {outcome} in {total_ms:.1f} ms",
                              "info" if status < 500 else "warning", **fields)
        assert result is not None
        return Response(200, result.body, result.content_type,
                        headers=[("ETag", result.etag), ("X-Cache", "hit" if result.cached else "miss"), ("X-Request-Id", request_id),
                                 ("X-Render-Ms", f"{result.render_ms:.1f}"), ("X-Queue-Ms", f"{result.queue_ms:.1f}")])

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
        return output_spec(request.query, timeline, self.config)

    def _count(self, outcome: str) -> None:
        self.summary[outcome] = self.summary.get(outcome, 0) + 1
        self.metrics.requests.labels(outcome).inc()

    def note_client_error(self, status: int, what: str) -> None:
        """A 4xx answer (the caller's mistake) is cheap: counted per status for the per-minute summary,
        with the last one's reason, so 'previewctl logs' can say why a request was refused."""
        self.summary[f"http_{status}"] = self.summary.get(f"http_{status}", 0) + 1
        self.last_client_error[status] = what

    def follow_in_background(self) -> None:
        """From the tick: follow the project list with no requests coming (one follow at a time)."""
        if self.follower is not None and self._follow_task is None:
            self._follow_task = asyncio.ensure_future(self.follow())
            self._follow_task.add_done_callback(self._followed)

    def _followed(self, task: asyncio.Future[None]) -> None:
        self._follow_task = None
        if not task.cancelled() and task.exception() is not None:
            self.log.emit("protocol_error", f"following the project list failed: {task.exception()!r}", "err")

    def render_ahead_stats(self) -> dict[str, Any]:
        c = self.admission.counters
        return {"enabled": bool(self.ahead.frames), "frames": self.ahead.frames, "workers": self.admission.ahead_limit,
                "gestures": len(self.ahead.tracks), "queued": len(self.admission.ahead), "running": self.admission.ahead_running(),
                **self.ahead.counters, "started": c["ahead_started"], "taken_over": c["ahead_taken_over"],
                "dropped": c["ahead_dropped"], "hits": self.frames.ahead_hits, "wasted": self.frames.ahead_wasted,
                "contended": self.ahead.contended}

    def allowed_roots(self, timeline: Timeline | None = None) -> list[str]:
        """Where media may be read from (roots.py); cached per project state."""
        return self.roots.allowed(self.config.allowed_roots, self.source)


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


AHEAD_TTL_S = 1.0  # a render-ahead job not started within this is no longer ahead of anything


def frame_etag(timeline: Timeline, frame: int, spec: OutputSpec) -> str:
    return f'"{timeline.revision}-{frame}-{spec.width}x{spec.height}-q{spec.quality}-{spec.format}"'


def etag_matches(header: str, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))

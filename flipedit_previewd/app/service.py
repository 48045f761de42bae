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
from typing import Any

from flipedit_previewd.app.frames import FrameService
from flipedit_previewd.app.health import flush_summary, health_report
from flipedit_previewd.app.routes import Routes, output_spec
from flipedit_previewd.app.supervisor import Supervisor
from flipedit_previewd.common.errors import Overloaded
from flipedit_previewd.common.framecache import FrameCache
from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.common.looplag import LoopLag
from flipedit_previewd.common.metrics import Metrics
from flipedit_previewd.common.offload import BoundedOffload
from flipedit_previewd.common.rejections import ClientErrors, RejectionSummary
from flipedit_previewd.config.schema import Config, ConfigError
from flipedit_previewd.http.lifecycle import LifecycleState
from flipedit_previewd.http.protocol import Request, Response
from flipedit_previewd.http.reconfigure import configure_service
from flipedit_previewd.proxy.manager import ProxyManager
from flipedit_previewd.render.admission import Admission
from flipedit_previewd.render.dispatch import Dispatcher, LoopHooks
from flipedit_previewd.render.pool import WorkerPool
from flipedit_previewd.render.renderahead import RenderAhead
from flipedit_previewd.timeline.following import ProjectFollower, Switch
from flipedit_previewd.timeline.limits import check_timeline
from flipedit_previewd.timeline.model import Timeline, empty_timeline
from flipedit_previewd.timeline.projectdb import ProjectSource
from flipedit_previewd.timeline.roots import MediaRoots
from flipedit_previewd.worker.output import OutputSpec


class Service:
    def __init__(self, config: Config, log: EventLog, lifecycle: LifecycleState | None = None, pool: WorkerPool | None = None) -> None:
        self.config = config
        self.log = log
        self.lifecycle = lifecycle or LifecycleState()  # moved by the server only; read here
        self.started = time.monotonic()
        self.config_error: ConfigError | None = None  # the last reload's configuration, if it could not be used
        self.metrics = Metrics()
        # Everything slow on untrusted input (timeline parsing, path checks, database reads, large
        # serialisations) runs here, never on the loop; a full queue is a 503.
        self.offload = BoundedOffload(2, 16)
        self.rejections = RejectionSummary(log)
        self.client_errors = ClientErrors(log)  # every 4xx, protocol error and access refusal: one summarised path
        self.lag = LoopLag(config.loop_lag_threshold, self._report_lag)
        self._flush_handle: asyncio.TimerHandle | None = None
        project = config.project
        if config.demo and not project:
            from flipedit_previewd.demo.project import demo_project  # the media are written by a child process

            project = demo_project()
        # Unless --project pins one, follow the editor's project list (projects.py).
        self.follower = ProjectFollower(config.metadata_db) if not project else None
        if self.follower is not None:
            project = self.follower.initial()
        self.project_reason = project_reason(config, project)
        self.source = ProjectSource(os.path.expanduser(project) if project else "", (config.canvas_width, config.canvas_height), config.frame_rate,
                                    no_project_text(config))
        self._apply_source_limits(config)
        self.admission = Admission(config.workers, config.queue_size, config.queue_timeout)
        self.pool = pool if pool is not None else WorkerPool.for_config(config)
        self.frames = FrameCache(config.frame_cache_bytes)
        self.ahead = RenderAhead(config.render_ahead_frames)
        self.ahead_flushed: dict[str, int] = {}
        # The one-way render path (dispatch.py) and the frame use case on top of it (frames.py).
        self.dispatcher = Dispatcher(self.admission, self.pool, self.frames, self.ahead, self.metrics, lambda: self.source.current(),
                                     self.allowed_roots, LoopHooks(worker_event=self._worker_event))
        self.frame_service = FrameService(self, self.dispatcher)
        self.open_connections: Callable[[], int] = lambda: 0  # the server's count, given at start
        self.latencies: deque[float] = deque(maxlen=2000)
        self.summary: dict[str, int] = {}
        self.overloaded_since: float | None = None
        self._follow_task: asyncio.Future[None] | None = None
        self.roots = MediaRoots(log)
        self.proxies = ProxyManager.for_config(config, log, self.allowed_roots)  # proxy media (proxy/)
        self.dispatcher.rendering = self.proxies.rendering  # the maker pauses while a real render runs
        self.routes = Routes(self)
        self.supervisor = Supervisor(self)
        m = self.metrics
        m.gauge("flipedit_preview_queue_depth", "Renders waiting for a worker", lambda: len(self.admission.queue))
        m.gauge("flipedit_preview_in_flight", "Renders running", lambda: len(self.admission.in_flight))
        m.gauge("flipedit_preview_workers_busy", "Workers rendering", lambda: self.pool.busy_count())
        m.gauge("flipedit_preview_connections", "Open client connections", lambda: self.open_connections())
        m.counter("flipedit_preview_render_ahead_rendered_total", "Frames rendered ahead of a request since start",
                  lambda: self.ahead.counters["rendered"])
        m.counter("flipedit_preview_render_ahead_hits_total", "Frame requests answered by a frame rendered ahead, since start",
                  lambda: self.frames.ahead_hits)
        m.counter("flipedit_preview_render_ahead_wasted_total", "Frames rendered ahead and discarded unused, since start",
                  lambda: self.frames.ahead_wasted)
        m.gauge("flipedit_preview_loop_lag_seconds", "Event-loop timer lag, last sample", lambda: self.lag.last)
        m.gauge("flipedit_preview_loop_lag_p99_seconds", "Event-loop timer lag, 99th percentile of the last minute",
                lambda: self.lag.percentile(99))
        m.counter("flipedit_preview_rejections_total", "Requests refused (503, or 504 at once) since start", lambda: self.rejections.total)

    def _apply_source_limits(self, config: Config) -> None:
        self.source.read_timeout = config.db_read_timeout
        self.source.max_rows = config.max_timeline_clips
        self.source.check = self.check_limits

    def check_limits(self, timeline: Timeline) -> None:
        check_timeline(timeline, self.config.max_layer_pixels, self.config.max_timeline_clips)

    def _report_lag(self, worst: float, threshold: float) -> None:
        self.log.emit("loop_lag", f"event loop ran {worst * 1000:.0f} ms late (threshold {threshold * 1000:.0f} ms)", "warning",
                      LAG_MS=round(worst * 1000, 1), THRESHOLD_MS=round(threshold * 1000, 1))

    def _worker_event(self, event: str, message: str, worker: Any, fields: dict[str, Any] | None = None) -> None:
        fields = fields or {}
        if event == "sandbox_violation":  # refused is the sandbox working (the failpoint); allowed is a hole
            priority = "warning" if fields.get("REFUSED") else "err"
        else:  # a replacement for other media roots is the normal way of a project switch
            priority = "notice" if fields.get("REASON") == "media roots" else "warning"
        self.log.emit(event, message, priority, WORKER=worker.index, WORKER_PID=worker.process.pid, FRAME=worker.frame, **fields)

    def _report_sandbox(self) -> None:
        """Once, after the warm-up: what confinement the workers have (a kernel without Landlock is said here)."""
        status = self.pool.sandbox
        if status is None:
            return
        whole = status["seccomp"] and status["landlock"]
        text = (f"render workers confined: seccomp {'on' if status['seccomp'] else 'OFF'}, "
                f"Landlock {'ABI ' + str(status['landlock_abi']) if status['landlock'] else 'OFF'}")
        self.log.emit("sandbox", text + ("" if whole else f" ({status['why']})"), "info" if whole else "warning",
                      SECCOMP=int(status["seccomp"]), LANDLOCK=int(status["landlock"]),
                      LANDLOCK_ABI=status["landlock_abi"], REASON=status["why"] or None)

    # --- the interface the server serves through (lifecycle.ServiceAPI) ----------------------

    async def start(self, open_connections: Callable[[], int] = lambda: 0) -> None:
        self.open_connections = open_connections
        loop = asyncio.get_running_loop()
        self._flush_rejections(loop)
        self.dispatcher.start(loop)
        await self.offload.run(self.source.current, True)
        self._publish_source_events()
        roots = await self.offload.run(self.allowed_roots)
        # Warm-up: READY=1 only after a worker really rendered a frame. Nothing is admitted yet, so
        # the dispatcher threads are idle and the pipe is ours. An empty timeline proves the worker
        # renders and encodes without touching project media; it carries the current roots, which
        # the worker confines itself to (a warm-up with none would cost a replacement at the first frame).
        warm_up = empty_timeline((64, 36), self.config.frame_rate, "warm-up")
        # The proxy store exists before the warm-up: a worker grants itself the store's directory at its first job
        await self.offload.run(self.proxies.prepare)
        await self.offload.run(self.pool.render, 0, 0, OutputSpec(64, 36), warm_up, None, tuple(roots))
        self._report_sandbox()
        self.proxies.start()
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
        self.proxies.stop()
        self.dispatcher.stop()
        self.lag.stop()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.rejections.flush()
        self.offload.shutdown()

    def configure(self, config: Config) -> None:
        """The live settings (at start and on SIGHUP, from ``reconfigure.apply`` through the server)."""
        configure_service(config, self)

    def config_rejected(self, error: ConfigError | None) -> None:
        """See ``ServiceAPI.config_rejected``: read by the status word, STATUS= and /health."""
        self.config_error = error

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

    def refusal_written(self, seconds: float) -> None:
        self.metrics.refusal_time.observe(seconds)

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

    # --- the frame use case (frames.py) and the render path (dispatch.py) ----------------------

    def _apply_render_ahead(self, config: Config) -> None:
        self.frame_service.apply(config)

    def _publish_source_events(self) -> None:
        self.frame_service.publish_source_events()

    async def get_frame(self, request: Request, frame: int, client: str) -> Response:
        return await self.frame_service.get_frame(request, frame, client)

    def render_ahead_stats(self) -> dict[str, Any]:
        return self.frame_service.render_ahead_stats()

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

    async def follow(self) -> None:
        """Switch to the newest project in the editor's list when it changed (a stat; a read only on change)."""
        if self.follower is None or not self.follower.due(self.source.path):
            return
        switch = await self.offload.run(self.follower.choose, self.source.path)
        self._switch_to(switch)

    def _switch_to(self, switch: Switch | None) -> None:
        if switch is None or self.follower is None or switch.project == self.source.path:
            return
        source = ProjectSource(switch.project, (self.config.canvas_width, self.config.canvas_height), self.config.frame_rate,
                               no_project_text(self.config))
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
        """A frame request's outcome: the per-minute summary and /metrics' requests_total (frames only)."""
        self.summary[outcome] = self.summary.get(outcome, 0) + 1
        if outcome != "health":  # /health is in the summary's cheap requests, not in the frame request counter
            self.metrics.requests.labels(outcome).inc()

    def note_client_error(self, status: int, what: str, event: str = "", priority: str = "notice", **fields: Any) -> None:
        """An answer that is the caller's fault (a route's 4xx, a protocol error, an access refusal): counted per
        status for the per-minute summary with a few examples, so 'previewctl logs' can say why a request was
        refused; ``event``: journaled too, the first of its kind and status in the minute only (rejections.py)."""
        self.client_errors.note(status, what, event, priority, **fields)

    def follow_in_background(self) -> None:
        """From the tick: follow the project list with no requests coming (one follow at a time)."""
        if self.follower is not None and self._follow_task is None:
            self._follow_task = asyncio.ensure_future(self.follow())
            self._follow_task.add_done_callback(self._followed)

    def _followed(self, task: asyncio.Future[None]) -> None:
        self._follow_task = None
        if not task.cancelled() and task.exception() is not None:
            self.log.emit("protocol_error", f"following the project list failed: {task.exception()!r}", "err")

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


def no_project_text(config: Config) -> str:
    """What an empty frame, /health and doctor say when no project is served: where it was looked for, and the fix."""
    return (f"No project: none is open in FlipEdit (looked in {config.metadata_db}). "
            "Open a project in FlipEdit, or pass --project FILE.")

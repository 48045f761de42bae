"""The preview service: the composition root of the application side.

``Service`` builds and owns the parts (admission, the worker pool, the frame cache, the dispatcher,
the project served, the request stats, the running configuration) and offers the HTTP side the
narrow interface it serves through (``lifecycle.ServiceAPI``: start, handle, refuse, tick, drain,
reload, close). It hands each part what that part reads, never itself: routing is ``routes.py``,
/health and the summaries ``health.py``, the tick and hang policy ``supervisor.py``, the project
and its source ``project.py``, GET /get_frame ``frames.py`` (its host, ``frames.FrameHost``, is
the one narrow interface this object still implements). Everything here runs on the event loop
and never blocks it: database reads go to a small thread pool, renders to worker processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from flipedit_previewd.app.frames import FrameService
from flipedit_previewd.app.health import Health
from flipedit_previewd.app.project import Project
from flipedit_previewd.app.routes import Routes, output_spec
from flipedit_previewd.app.state import RequestStats, RunningConfig
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
from flipedit_previewd.timeline.following import ProjectFollower
from flipedit_previewd.timeline.model import Timeline, empty_timeline
from flipedit_previewd.timeline.projectdb import ProjectSource
from flipedit_previewd.worker.output import OutputSpec


class Service:
    def __init__(
        self, config: Config, log: EventLog, lifecycle: LifecycleState | None = None, pool: WorkerPool | None = None
    ) -> None:
        self.running = RunningConfig(config)  # the configuration in force: every part reads it there
        self.log = log
        self.lifecycle = lifecycle or LifecycleState()  # moved by the server only; read here
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
        # Unless --project pins one, follow the editor's project list (timeline/following.py).
        follower = ProjectFollower(config.metadata_db) if not project else None
        if follower is not None:
            project = follower.initial()
        self.served_project = served = Project(self.running, project, follower, log, self.metrics, self.offload)
        self.admission = Admission(config.workers, config.queue_size, config.queue_timeout)
        self.pool = pool if pool is not None else WorkerPool.for_config(config)
        self.frames = FrameCache(config.frame_cache_bytes)
        self.ahead = RenderAhead(config.render_ahead_frames)
        # The one-way render path (dispatch.py) and the frame use case on top of it (frames.py).
        self.dispatcher = Dispatcher(
            self.admission,
            self.pool,
            self.frames,
            self.ahead,
            self.metrics,
            served.current,
            served.allowed_roots,
            LoopHooks(timeline_read=served.publish_events, worker_event=self._worker_event),
        )
        queue = self.dispatcher.snapshot
        self.stats = RequestStats(self.metrics, log, queue)
        self.frame_service = FrameService(self, self.dispatcher)
        self.proxies = ProxyManager.for_config(config, log, served.allowed_roots)  # proxy media (proxy/)
        self.dispatcher.rendering = self.proxies.rendering  # the maker pauses while a real render runs
        # Each part is handed what it reads, never this object.
        self.supervisor = Supervisor(
            running=self.running,
            lifecycle=self.lifecycle,
            admission=self.admission,
            snapshot=queue,
            pool=self.pool,
            ahead=self.ahead,
            project=served,
            stats=self.stats,
            lag=self.lag,
            log=log,
            proxies=self.proxies,
        )
        self.reports = Health(
            running=self.running,
            stats=self.stats,
            snapshot=queue,
            pool=self.pool,
            frames=self.frame_service,
            project=served,
            lag=self.lag,
            rejections=self.rejections,
            client_errors=self.client_errors,
            offload=self.offload,
            status=self.supervisor.status,
            log=log,
            proxies=self.proxies.snapshot,
        )
        self.routes = Routes(
            running=self.running,
            lifecycle=self.lifecycle,
            project=served,
            frames=self.frame_service,
            snapshot=queue,
            stats=self.stats,
            client_errors=self.client_errors,
            offload=self.offload,
            metrics=self.metrics,
            log=log,
            health=self.reports.report,
            refuse=self.refuse,
            proxies=self.proxies,
        )
        m = self.metrics
        m.gauge("flipedit_preview_queue_depth", "Renders waiting for a worker", lambda: queue().queued)
        m.gauge("flipedit_preview_in_flight", "Renders running", lambda: queue().in_flight)
        m.gauge("flipedit_preview_workers_busy", "Workers rendering", lambda: self.pool.busy_count())
        m.gauge("flipedit_preview_connections", "Open client connections", lambda: self.reports.open_connections())
        m.counter(
            "flipedit_preview_render_ahead_rendered_total",
            "Frames rendered ahead of a request since start",
            lambda: self.ahead.counters["rendered"],
        )
        m.counter(
            "flipedit_preview_render_ahead_hits_total",
            "Frame requests answered by a frame rendered ahead, since start",
            lambda: self.frames.ahead_hits,
        )
        m.counter(
            "flipedit_preview_render_ahead_wasted_total",
            "Frames rendered ahead and discarded unused, since start",
            lambda: self.frames.ahead_wasted,
        )
        m.gauge("flipedit_preview_loop_lag_seconds", "Event-loop timer lag, last sample", lambda: self.lag.last)
        m.gauge(
            "flipedit_preview_loop_lag_p99_seconds",
            "Event-loop timer lag, 99th percentile of the last minute",
            lambda: self.lag.percentile(99),
        )
        m.counter(
            "flipedit_preview_rejections_total",
            "Requests refused (503, or 504 at once) since start",
            lambda: self.rejections.total,
        )

    @property
    def config(self) -> Config:
        """The configuration in force (``RunningConfig``; a reload replaces it: ``reconfigure.configure_service``)."""
        return self.running.config

    @config.setter
    def config(self, config: Config) -> None:
        self.running.config = config

    @property
    def source(self) -> ProjectSource:
        """The served project's source now (a switch of project replaces it)."""
        return self.served_project.source

    def _report_lag(self, worst: float, threshold: float) -> None:
        self.log.emit(
            "loop_lag",
            f"event loop ran {worst * 1000:.0f} ms late (threshold {threshold * 1000:.0f} ms)",
            "warning",
            LAG_MS=round(worst * 1000, 1),
            THRESHOLD_MS=round(threshold * 1000, 1),
        )

    def _worker_event(self, event: str, message: str, worker: Any, fields: dict[str, Any] | None = None) -> None:
        fields = fields or {}
        if event == "sandbox_violation":  # refused is the sandbox working (the failpoint); allowed is a hole
            priority = "warning" if fields.get("REFUSED") else "err"
        else:  # a replacement for other media roots is the normal way of a project switch
            priority = "notice" if fields.get("REASON") == "media roots" else "warning"
        self.log.emit(
            event, message, priority, WORKER=worker.index, WORKER_PID=worker.process.pid, FRAME=worker.frame, **fields
        )

    def _report_sandbox(self) -> None:
        """Once, after the warm-up: what confinement the workers have (a kernel without Landlock is said here)."""
        status = self.pool.sandbox
        if status is None:
            return
        whole = status["seccomp"] and status["landlock"]
        text = (
            f"render workers confined: seccomp {'on' if status['seccomp'] else 'OFF'}, "
            f"Landlock {'ABI ' + str(status['landlock_abi']) if status['landlock'] else 'OFF'}"
        )
        self.log.emit(
            "sandbox",
            text + ("" if whole else f" ({status['why']})"),
            "info" if whole else "warning",
            SECCOMP=int(status["seccomp"]),
            LANDLOCK=int(status["landlock"]),
            LANDLOCK_ABI=status["landlock_abi"],
            REASON=status["why"] or None,
        )

    # --- the interface the server serves through (lifecycle.ServiceAPI) ----------------------

    async def start(self, open_connections: Callable[[], int] = lambda: 0) -> None:
        self.reports.open_connections = open_connections
        loop = asyncio.get_running_loop()
        self._flush_rejections(loop)
        self.dispatcher.start(loop)
        await self.offload.run(self.source.current, True)
        self.served_project.publish_events()
        roots = await self.offload.run(self.served_project.allowed_roots)
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
        self.running.rejected = error

    def reload(self) -> None:
        """Re-read the project list and the timeline (settings: ``configure``, before this)."""
        self.served_project.reread()

    async def handle(self, request: Request, client: str = "") -> Response:
        return await self.routes.handle(request, client)

    def answer_now(self, request: Request, client: str = "") -> Response | None:
        return self.routes.answer_now(request, client)

    def last_timeline(self) -> Timeline:
        return self.served_project.source.last

    def refuse(self, limit: str, detail: str) -> Overloaded:
        """A 503 decided outside admission (too many connections; a request refused by the stop), counted
        like admission's own; only too many connections marks an overload (a stop is not one)."""
        error = self.admission.reject(limit, detail)
        self.rejections.add("rejected", limit)
        if limit == "connections":
            self.stats.note_rejection()
        return error

    def refusal_written(self, seconds: float) -> None:
        self.metrics.refusal_time.observe(seconds)

    def backlog(self) -> int:
        return self.admission.backlog()

    def project(self) -> tuple[str, str]:
        return self.source.path, self.served_project.reason

    def tick(self) -> None:
        self.supervisor.tick()

    def can_progress(self) -> bool:
        return self.supervisor.can_progress()

    def status_line(self) -> str:
        return self.supervisor.status_line()

    def health(self) -> dict[str, Any]:
        return self.reports.report()

    def flush_summary(self) -> None:
        self.reports.flush_summary()

    def note_client_error(
        self, status: int, what: str, event: str = "", priority: str = "notice", **fields: Any
    ) -> None:
        """An answer that is the caller's fault (a route's 4xx, a protocol error, an access refusal): counted per
        status for the per-minute summary with a few examples, so 'previewctl logs' can say why a request was
        refused; ``event``: journaled too, the first of its kind and status in the minute only (rejections.py)."""
        self.client_errors.note(status, what, event, priority, **fields)

    def _flush_rejections(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every second: one journal entry for the rejections of that second (none when there were none)."""
        self.rejections.flush()
        self._flush_handle = loop.call_later(1.0, self._flush_rejections, loop)

    # --- what the frame use case asks of its host (frames.FrameHost) ---------------------------

    async def timeline(self) -> Timeline:
        return await self.served_project.timeline()

    async def timeline_unless_changed(self) -> Timeline | None:
        return await self.served_project.timeline_unless_changed()

    def output_spec(self, request: Request, timeline: Timeline) -> OutputSpec:
        return output_spec(request.query, timeline, self.config)

"""The application side's parts built by hand, for the unit tests of app/ (no socket, no worker process).

``AppParts`` builds what ``Service`` composes, from the same classes: the running configuration, the
project served (a real SQLite project), admission, the frame cache, render-ahead, a real ``Dispatcher``
over a ``WorkerPool`` that is never started, the request stats and the counters. Nothing takes jobs
from admission: the test is the worker, with ``AppParts.serve`` (what a dispatcher thread does with
a real job: take it, finish it with a ``FrameResult``). ``AppParts`` is also the frame use-case's
host (``frames.FrameHost``), as ``Service`` is.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
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
from flipedit_previewd.config.schema import Config
from flipedit_previewd.http.lifecycle import LifecycleState
from flipedit_previewd.http.protocol import Request, Response
from flipedit_previewd.render.admission import Admission, Pending
from flipedit_previewd.render.dispatch import Dispatcher, FrameResult, frame_etag
from flipedit_previewd.render.pool import WorkerPool
from flipedit_previewd.render.renderahead import RenderAhead
from flipedit_previewd.timeline.model import Timeline
from flipedit_previewd.worker.output import OutputSpec


class AppParts:
    """The parts of the application side over the project at ``project`` ("" for none); ``settings``: Config's."""

    def __init__(self, project: Path | str, **settings: Any) -> None:
        config = Config(**settings)
        self.running = RunningConfig(config)
        self.log = EventLog(to_journal=False, to_stderr=False)
        self.metrics = Metrics()
        self.offload = BoundedOffload(2, 16)
        self.project = Project(self.running, str(project), None, self.log, self.metrics, self.offload)
        self.project.source.current(True)  # the first read, as Service.start does
        self.admission = Admission(config.workers, config.queue_size, config.queue_timeout)
        self.pool = WorkerPool.for_config(config)  # never started: the test is the worker (``serve``)
        self.cache = FrameCache(config.frame_cache_bytes)
        self.ahead = RenderAhead(config.render_ahead_frames)
        self.dispatcher = Dispatcher(
            self.admission,
            self.pool,
            self.cache,
            self.ahead,
            self.metrics,
            self.project.current,
            self.project.allowed_roots,
        )
        self.stats = RequestStats(self.metrics, self.log, self.dispatcher.snapshot)
        self.rejections = RejectionSummary(self.log)
        self.client_errors = ClientErrors(self.log)
        self.lifecycle = LifecycleState()
        self.lag = LoopLag(config.loop_lag_threshold, lambda worst, threshold: None)
        self.frames = FrameService(self, self.dispatcher)
        self.supervisor = Supervisor(
            running=self.running,
            lifecycle=self.lifecycle,
            admission=self.admission,
            snapshot=self.dispatcher.snapshot,
            pool=self.pool,
            ahead=self.ahead,
            project=self.project,
            stats=self.stats,
            lag=self.lag,
            log=self.log,
        )
        self.health = Health(
            running=self.running,
            stats=self.stats,
            snapshot=self.dispatcher.snapshot,
            pool=self.pool,
            frames=self.frames,
            project=self.project,
            lag=self.lag,
            rejections=self.rejections,
            client_errors=self.client_errors,
            offload=self.offload,
            status=self.supervisor.status,
            log=self.log,
        )
        self.refused: list[tuple[str, str]] = []
        self.routes = Routes(
            running=self.running,
            lifecycle=self.lifecycle,
            project=self.project,
            frames=self.frames,
            snapshot=self.dispatcher.snapshot,
            stats=self.stats,
            client_errors=self.client_errors,
            offload=self.offload,
            metrics=self.metrics,
            log=self.log,
            health=self.health.report,
            refuse=self.refuse,
        )

    # --- frames.FrameHost, as Service implements it ----------------------------------------------

    @property
    def config(self) -> Config:
        return self.running.config

    async def timeline(self) -> Timeline:
        return await self.project.timeline()

    async def timeline_unless_changed(self) -> Timeline | None:
        return await self.project.timeline_unless_changed()

    def last_timeline(self) -> Timeline:
        return self.project.source.last

    def output_spec(self, request: Request, timeline: Timeline) -> OutputSpec:
        return output_spec(request.query, timeline, self.config)

    def refuse(self, limit: str, detail: str) -> Overloaded:
        """Routes' ``refuse`` (Service.refuse without its journal side): admission's refusal, remembered."""
        self.refused.append((limit, detail))
        return self.admission.reject(limit, detail)

    async def queued(self, target: str) -> asyncio.Future[Response]:
        """``target`` handed to the routes; returns (its answer to come) once its render is queued."""
        self.admission.bind(asyncio.get_running_loop())
        answer = asyncio.ensure_future(self.routes.handle(get(target)))
        while not self.admission.queue:
            await asyncio.sleep(0)
        return answer

    # --- the worker's side: what a dispatcher thread would do -------------------------------------

    async def serve(self, body: bytes = b"frame-bytes", render_ms: float = 12.0, jobs: int = 1) -> list[Pending]:
        """Take ``jobs`` real jobs as they are admitted and finish each with ``body`` (and put it in the
        frame cache, as a dispatcher thread does); yields to the loop while none is queued."""
        admission = self.admission
        admission.bind(asyncio.get_running_loop())
        served: list[Pending] = []
        while len(served) < jobs:
            if not admission.queue:
                await asyncio.sleep(0)
                continue
            job = admission.take(threading.Event())
            assert job is not None and not job.speculative
            frame, spec = job.key
            etag = frame_etag(self.project.current(), frame, spec)
            self.cache.put(etag, (body, spec.content_type, ""), len(body))  # "": no video drawn (X-Preview-Source)
            admission.finish(job, FrameResult(body, spec.content_type, etag, render_ms, 1.0, False))
            served.append(job)
        return served

    def close(self) -> None:
        self.dispatcher.stop()  # closes admission; the pool has no process to stop
        self.offload.shutdown()


def get(target: str, method: str = "GET", body: bytes = b"", **headers: str) -> Request:
    """A parsed request as the connection hands it to the routes (header names in lower case)."""
    return Request(method, target, {name.replace("_", "-").lower(): value for name, value in headers.items()}, body)

"""frames.FrameService.refuse_now: the 503 a connection writes in data_received (no task), and the requests it
lets through counted against the render queue until their task submits them. No worker process is started."""

from __future__ import annotations

import asyncio
import gc

from flipedit_previewd.app.frames import FrameService
from flipedit_previewd.app.routes import output_spec
from flipedit_previewd.app.state import RequestStats
from flipedit_previewd.common.framecache import FrameCache
from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.common.metrics import Metrics
from flipedit_previewd.common.rejections import RejectionSummary
from flipedit_previewd.config.schema import Config
from flipedit_previewd.http.protocol import Request
from flipedit_previewd.render.admission import Admission
from flipedit_previewd.render.dispatch import Dispatcher, QueueSnapshot
from flipedit_previewd.render.pool import WorkerPool
from flipedit_previewd.render.renderahead import RenderAhead
from flipedit_previewd.timeline.model import Timeline, empty_timeline
from flipedit_previewd.worker.output import OutputSpec
from flipedit_previewd.worker.wire import WorkerSettings

TIMELINE = empty_timeline((640, 360), 30.0)


class Host:
    def __init__(self, metrics: Metrics) -> None:
        self.config = Config()
        self.log = EventLog(to_journal=False, to_stderr=False)
        self.metrics = metrics
        self.rejections = RejectionSummary(self.log)
        self.stats = RequestStats(metrics, self.log, lambda: QueueSnapshot(0, 0, 0, 0, 0.0, 0, {}))

    async def timeline(self) -> Timeline:
        return TIMELINE

    async def timeline_unless_changed(self) -> Timeline | None:
        await asyncio.sleep(0)  # a task that has not submitted yet
        return TIMELINE

    def last_timeline(self) -> Timeline:
        return TIMELINE

    def output_spec(self, request: Request, timeline: Timeline) -> OutputSpec:
        return output_spec(request.query, timeline, self.config)


def service(queue_size: int) -> tuple[FrameService, Admission]:
    metrics = Metrics()
    admission = Admission(capacity=2, queue_size=queue_size, queue_timeout=5)
    pool = WorkerPool(2, WorkerSettings(1 << 20, 1 << 24), 10.0)
    dispatcher = Dispatcher(admission, pool, FrameCache(0), RenderAhead(0), metrics, lambda: TIMELINE, lambda t: [])
    return FrameService(Host(metrics), dispatcher), admission  # type: ignore[arg-type]


def get(frame: int, **headers: str) -> Request:
    return Request("GET", f"/get_frame/{frame}", {"host": "127.0.0.1", **headers})


def test_with_room_nothing_is_refused_and_each_let_through_holds_a_place_until_its_task_submits() -> None:
    async def scenario() -> None:
        frames, admission = service(queue_size=2)
        first, second, third = get(1), get(2), get(3)
        assert frames.refuse_now(first, 1) is None and frames.refuse_now(second, 2) is None
        refused = frames.refuse_now(third, 3)  # two let through, none submitted yet: the queue's room is spoken for
        assert refused is not None and refused.status == 503 and any(k == "Retry-After" for k, _ in refused.headers)
        assert frames.host.stats.summary["rejected"] == 1
        tasks = [asyncio.ensure_future(frames.get_frame(r, n, "c")) for r, n in ((first, 1), (second, 2))]
        await asyncio.sleep(0.01)
        assert len(admission.queue) == 2  # submitted: their places are the queue's now, not counted twice
        assert frames.refuse_now(get(4), 4) is not None
        assert frames.refuse_now(get(1), 1) is None  # the same frame joins the queued job: never refused
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


def test_a_let_through_request_whose_task_never_runs_gives_its_place_back() -> None:
    """A connection lost before its task ran: the request goes, and with it its place (or a flood would leak
    places until every request is refused)."""

    async def scenario() -> None:
        frames, _ = service(queue_size=1)
        assert frames.refuse_now(get(1), 1) is None  # the Request object is dropped at once
        gc.collect()
        assert frames.refuse_now(get(2), 2) is None

    asyncio.run(scenario())


def test_a_conditional_request_is_never_refused_here() -> None:
    async def scenario() -> None:
        frames, admission = service(queue_size=0)
        assert frames.refuse_now(get(1, **{"if-none-match": '"x"'}), 1) is None  # may be a 304: no render needed
        assert frames.refuse_now(get(1), 1) is not None

    asyncio.run(scenario())

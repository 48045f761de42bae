"""The one-way render path with a real worker process: admission -> dispatcher thread -> worker -> waiters.

No sockets: the worker is a real child process (the daemon's own WorkerPool) on a pipe.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image

from flipedit_previewd.common.errors import BadRequest, GatewayTimeout, RenderFailed
from flipedit_previewd.common.framecache import FrameCache
from flipedit_previewd.common.metrics import Metrics
from flipedit_previewd.render.admission import Admission
from flipedit_previewd.render.dispatch import (
    Dispatcher,
    FrameResult,
    HeavyFrameRefused,
    HeavyFrames,
    LoopHooks,
    frame_etag,
)
from flipedit_previewd.render.pool import BudgetExceeded, RenderOutcome, WorkerPool
from flipedit_previewd.render.renderahead import RenderAhead
from flipedit_previewd.timeline.model import Timeline, timeline_from_json
from flipedit_previewd.worker.failpoints import VARIABLE
from flipedit_previewd.worker.output import OutputSpec, RenderResult
from flipedit_previewd.worker.wire import WorkerSettings

SPEC = OutputSpec(64, 36)


def timeline(revision: str) -> Timeline:
    return Timeline(64, 36, 30.0, (), source="test", revision=revision)


def new_pool() -> WorkerPool:
    return WorkerPool(1, WorkerSettings(1 << 22, 1 << 24), hang_threshold=30.0)


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    shared = new_pool()
    shared.start()
    yield shared
    shared.stop()


class Side:
    """The loop side: the timeline the render will read, and what the hooks heard (and on which thread)."""

    def __init__(self) -> None:
        self.current: Timeline | Exception = timeline("r1")
        self.heard: list[tuple[Any, ...]] = []
        self.threads: set[int] = set()
        self.reads = 0
        self.allowed: tuple[str, ...] = ()
        self.roots_asked: list[Timeline] = []

    def roots(self, timeline: Timeline) -> list[str]:
        self.roots_asked.append(timeline)
        return list(self.allowed)

    def read(self) -> Timeline:
        self.reads += 1
        if isinstance(self.current, Exception):
            raise self.current
        return self.current

    def hook(self, name: str) -> Callable[..., None]:
        def heard(*args: Any) -> None:
            self.threads.add(threading.get_ident())
            self.heard.append((name, *args))

        return heard

    def hooks(self) -> LoopHooks:
        return LoopHooks(self.hook("timeline_read"), self.hook("media_problem"), self.hook("worker_event"))


def make(pool: WorkerPool, side: Side, queue_timeout: float = 5.0) -> Dispatcher:
    admission = Admission(capacity=1, queue_size=8, queue_timeout=queue_timeout)
    return Dispatcher(
        admission,
        pool,
        FrameCache(1 << 22),
        RenderAhead(4),
        Metrics(),
        side.read,
        side.roots,
        side.hooks(),
        budget=10.0,
        heavy_ttl=60.0,
    )


def run(
    pool: WorkerPool, scenario: Callable[[Dispatcher, Side], Any], start: bool = True, side: Side | None = None
) -> Side:
    side = side or Side()

    async def main() -> None:
        d = make(pool, side)
        if start:
            d.start(asyncio.get_running_loop())
        try:
            await scenario(d, side)
        finally:
            d.admission.close()
            for thread in d._threads:
                thread.join(5)
            assert not any(t.is_alive() for t in d._threads)  # closing admission ends the dispatcher's threads

    asyncio.run(main())
    return side


def sample(d: Dispatcher, name: str) -> float:
    return d.metrics.registry.get_sample_value(name) or 0.0


async def until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_a_render_is_cached_and_the_next_one_is_answered_from_the_cache(pool: WorkerPool) -> None:
    async def scenario(d: Dispatcher, side: Side) -> None:
        etag = frame_etag(timeline("r1"), 5, SPEC)
        completed = pool.completed
        first = await d.render((5, SPEC), "r1", etag)
        assert first.body.startswith(b"\xff\xd8") and first.content_type == "image/jpeg"
        assert (
            first.etag == etag and not first.cached and not first.shared and first.render_ms > 0 and first.queue_ms >= 0
        )
        assert (
            pool.completed == completed + 1 and d.position[0] is not None and d.position[0][0] <= 5 < d.position[0][1]
        )  # its decoders reach frame 5
        assert d.cache.get(etag) == (first.body, "image/jpeg", "")  # no video drawn: no X-Preview-Source
        assert first.cached is False
        assert sample(d, "flipedit_preview_render_seconds_sum") == first.render_ms / 1000
        assert sample(d, "flipedit_preview_queue_wait_seconds_sum") == first.queue_ms / 1000
        again = await d.render((5, SPEC), "r1", etag)
        assert (
            again.cached is True
            and again.body == first.body
            and again.render_ms == 0.0
            and pool.completed == completed + 1
        )
        assert again.content_type == "image/jpeg" and again.etag == etag and 0.0 <= again.queue_ms < 60_000
        assert sample(d, "flipedit_preview_queue_wait_seconds_count") == 2
        assert sample(d, "flipedit_preview_render_seconds_count") == 1
        queue = d.snapshot()
        assert (queue.queued, queue.in_flight, queue.ahead_queued, queue.ahead_running) == (0, 0, 0, 0)
        assert queue.rate_per_s > 0 and queue.rejected_last_minute == 0 and queue.counters == d.admission.counters
        queue.counters["admitted"] = -1  # a copy: whoever reads a snapshot cannot change admission's counters
        assert d.admission.counters["admitted"] > 0
        assert [(t.name, t.daemon) for t in d._threads] == [("worker-0", True)]  # never holds the daemon's exit
        assert not d.admission.in_flight and d.admission.rate.rate() > 0

    side = run(pool, scenario)
    assert side.heard == [("timeline_read",), ("timeline_read",)]
    assert side.threads == {threading.get_ident()}  # the hooks ran on the loop's thread, not a dispatcher thread


def test_the_render_reads_the_timeline_when_it_starts(pool: WorkerPool) -> None:
    async def scenario(d: Dispatcher, side: Side) -> None:
        side.current = timeline("r2")  # the timeline changed after the request arrived with r1
        task = asyncio.ensure_future(d.render((1, SPEC), "r1", frame_etag(timeline("r1"), 1, SPEC)))
        await asyncio.sleep(0)
        job = d.admission.queue[(1, SPEC)]
        assert job.revision == "r1"  # admitted with the request's revision
        job.enqueued -= 2.0  # it has waited two seconds for a worker
        d.start(asyncio.get_running_loop())
        result = await task
        assert result.etag == frame_etag(timeline("r2"), 1, SPEC)
        assert side.reads == 1 and job.revision == "r2"  # admission learns what the render shows
        assert 2000.0 <= result.queue_ms < 2000.0 + 60_000
        assert result.queue_ms == (job.started - job.enqueued) * 1000  # from admitted to taken, in milliseconds

    run(pool, scenario, start=False)


def test_render_ahead_jobs_reach_the_worker_as_speculative(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / "kinds.txt"
    monkeypatch.setenv(VARIABLE, f"nice:{record}")  # the failpoint of the workers this test starts (docs/tests.md)
    marked = new_pool()
    try:

        async def scenario(d: Dispatcher, side: Side) -> None:
            await d.render((1, SPEC), "r1", "e")
            d.admission.ahead_limit = 1
            assert d.admission.speculate((2, SPEC), "r1", 5.0, 8)
            await until(lambda: d.ahead.counters["rendered"] == 1 and not d.admission.in_flight)

        run(marked, scenario)
        assert [line.split()[0] for line in record.read_text().splitlines()] == ["real", "ahead"]
    finally:
        marked.stop()


def test_identical_requests_share_one_render(pool: WorkerPool) -> None:
    async def scenario(d: Dispatcher, side: Side) -> None:
        etag = frame_etag(timeline("r1"), 2, SPEC)
        first = asyncio.ensure_future(d.render((2, SPEC), "r1", etag))
        second = asyncio.ensure_future(d.render((2, SPEC), "r1", etag))
        await asyncio.sleep(0)  # both submitted before any thread can take the job
        completed = pool.completed
        d.start(asyncio.get_running_loop())
        a, b = await first, await second
        assert (a.shared, b.shared) == (False, True) and a.body == b.body and not a.cached and not b.cached
        assert pool.completed == completed + 1 and d.admission.counters["joined"] == 1

    run(pool, scenario, start=False)


def test_the_last_waiter_leaving_cancels_the_queued_render(pool: WorkerPool) -> None:
    async def scenario(d: Dispatcher, side: Side) -> None:
        d.admission.bind(asyncio.get_running_loop())
        task = asyncio.ensure_future(d.render((3, SPEC), "r1", "e"))
        await asyncio.sleep(0)
        assert len(d.admission.queue) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not d.admission.queue and d.admission.counters["cancelled"] == 1

    run(pool, scenario, start=False)


def test_a_queued_render_past_its_deadline_is_answered_503(pool: WorkerPool) -> None:
    async def scenario(d: Dispatcher, side: Side) -> None:
        d.admission.bind(asyncio.get_running_loop())
        d.admission.queue_timeout = 0.05
        with pytest.raises(Exception) as info:
            await d.render((3, SPEC), "r1", "e")
        assert getattr(info.value, "limit", None) == "deadline" and d.admission.counters["expired"] == 1

    run(pool, scenario, start=False)


def test_render_errors_reach_the_waiter_and_the_thread_keeps_serving(pool: WorkerPool) -> None:
    async def scenario(d: Dispatcher, side: Side) -> None:
        bad = BadRequest("no such timeline", field="timeline")
        side.current = bad
        with pytest.raises(BadRequest) as info:
            await d.render((4, SPEC), "r1", "e")
        assert info.value is bad
        side.current = ValueError("database gone")
        with pytest.raises(RenderFailed) as failed:
            await d.render((4, SPEC), "r1", "e")
        assert failed.value.status == 500 and failed.value.detail == "ValueError: database gone"
        side.current = timeline("r1")
        assert not (await d.render((4, SPEC), "r1", "e")).cached  # the same thread renders the next job
        assert d.admission.rate.rate() > 0 and not d.admission.in_flight

    run(pool, scenario)


def test_media_problems_are_told_to_the_loop(pool: WorkerPool) -> None:
    clip = {
        "id": 1,
        "type": "video",
        "source_path": "/nonexistent-media/a.mp4",
        "start_on_track_ms": 0,
        "end_on_track_ms": 1000,
    }
    broken = timeline_from_json(
        {"canvas": {"width": 64, "height": 36}, "tracks": [{"id": 1, "clips": [clip]}]}, (64, 36), 30
    )

    async def scenario(d: Dispatcher, side: Side) -> None:
        side.current = broken
        result = await d.render((0, SPEC), broken.revision, "e")
        assert result.body.startswith(b"\xff\xd8")

    side = run(pool, scenario)
    problems = [h for h in side.heard if h[0] == "media_problem"]
    assert len(problems) == 1 and problems[0][1] == "/nonexistent-media/a.mp4" and problems[0][2]
    assert side.threads == {threading.get_ident()}


def test_a_worker_found_dead_is_told_to_the_loop_and_the_render_still_succeeds(pool: WorkerPool) -> None:
    async def scenario(d: Dispatcher, side: Side) -> None:
        victim = pool.workers[0].process
        victim.kill()
        victim.join(5)
        result = await d.render((6, SPEC), "r1", "e")
        assert not result.cached and result.body

    side = run(pool, scenario)
    events = [h for h in side.heard if h[0] == "worker_event"]
    assert [e[1] for e in events] == ["worker_died"] and side.threads == {threading.get_ident()}
    assert events[0][2].startswith("worker 0 found dead") and events[0][3].index == 0 and events[0][4] == {}


def test_a_worker_event_s_journal_fields_reach_the_loop(pool: WorkerPool) -> None:
    async def scenario(d: Dispatcher, side: Side) -> None:
        assert pool.on_event is not None
        pool.on_event("worker_replaced", "replaced for other media roots", pool.workers[0], REASON="media roots")
        await until(lambda: any(h[0] == "worker_event" for h in side.heard))

    side = run(pool, scenario)
    assert side.heard == [
        (
            "worker_event",
            "worker_replaced",
            "replaced for other media roots",
            pool.workers[0],
            {"REASON": "media roots"},
        )
    ]


def test_render_ahead_fills_the_cache_only_for_the_current_revision(pool: WorkerPool) -> None:
    async def scenario(d: Dispatcher, side: Side) -> None:
        adm = d.admission
        adm.ahead_limit = 1
        completed = pool.completed
        assert adm.speculate((7, SPEC), "r1", 5.0, 8)
        await until(lambda: d.ahead.counters["rendered"] == 1 and not adm.in_flight)
        etag = frame_etag(timeline("r1"), 7, SPEC)
        assert etag in d.cache and pool.completed == completed + 1
        assert d.position == [None]  # a guess does not move the decoder position admission's locality follows
        assert adm.speculate((8, SPEC), "r0", 5.0, 8)  # planned for a revision that is gone
        await until(lambda: d.ahead.counters["stale"] == 1 and not adm.in_flight)
        d.heavy.mark(frame_etag(timeline("r1"), 9, SPEC))
        assert adm.speculate((9, SPEC), "r1", 5.0, 8)  # heavy: not rendered ahead
        await until(lambda: adm.counters["ahead_started"] == 3 and not adm.in_flight)
        assert d.ahead.counters["rendered"] == 1 and pool.completed == completed + 1
        side.current = ValueError("gone")
        assert adm.speculate((10, SPEC), "r1", 5.0, 8)
        await until(lambda: d.ahead.counters["failed"] == 1 and not adm.in_flight)
        cached = d.cache.get(etag)  # a real request then finds the guess
        assert cached is not None and d.cache.ahead_hits == 1

    run(pool, scenario)


def test_a_render_past_the_budget_is_a_504_and_the_frame_is_then_refused_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(VARIABLE, "sleep:5")
    slow = new_pool()
    try:

        async def scenario(d: Dispatcher, side: Side) -> None:
            d.budget = 0.3
            etag = frame_etag(timeline("r1"), 1, SPEC)
            with pytest.raises(BudgetExceeded):
                await d.render((1, SPEC), "r1", etag)
            assert slow.replaced == 1 and etag in d.heavy
            with pytest.raises(HeavyFrameRefused) as refused:
                await d.render((1, SPEC), "r1", etag)
            assert refused.value.status == 504 and refused.value.extra["limit"] == "render_budget"
            assert refused.value.detail.startswith("frame 1 of this timeline") and "0.3 s" in refused.value.detail
            assert "refused for 60 s more" in refused.value.detail
            assert d.admission.counters["admitted"] == 1  # refused before admission: no second render
            d.stop()
            for thread in d._threads:
                thread.join(5)
            assert not any(t.is_alive() for t in d._threads) and not slow.workers[0].process.is_alive()

        run(slow, scenario)
    finally:
        slow.stop()


def test_a_speculative_render_past_the_budget_marks_the_frame_heavy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, "sleep:5")
    slow = new_pool()
    try:

        async def scenario(d: Dispatcher, side: Side) -> None:
            d.budget = 0.3
            d.admission.ahead_limit = 1
            assert d.admission.speculate((2, SPEC), "r1", 5.0, 8)
            await until(lambda: d.ahead.counters["failed"] == 1 and not d.admission.in_flight)
            assert frame_etag(timeline("r1"), 2, SPEC) in d.heavy and d.ahead.counters["rendered"] == 0

        run(slow, scenario)
    finally:
        slow.stop()


def test_heavy_frames_expire_and_are_pruned() -> None:
    heavy = HeavyFrames(ttl=60.0)
    assert heavy.left("a") == 0.0 and "a" not in heavy
    heavy.mark("a")
    assert 59.0 < heavy.left("a") <= 60.0 and "a" in heavy
    heavy.until["a"] = time.monotonic() + 0.5
    assert 0.0 < heavy.left("a") <= 0.5  # the last second of its refusal still counts
    heavy.until["a"] = time.monotonic() - 1
    assert heavy.left("a") == 0.0 and "a" not in heavy  # expired: forgotten
    heavy.until = {str(i): time.monotonic() - 1 for i in range(1000)}
    heavy.mark("b")
    assert len(heavy.until) == 1001  # at most 1000 kept before pruning
    heavy.mark("c")
    assert set(heavy.until) == {"b", "c"}  # past 1000: the expired ones go


def test_events_before_start_or_after_the_loop_closed_are_dropped(pool: WorkerPool) -> None:
    side = Side()
    d = make(pool, side)
    d._post(side.hook("early"))  # no loop yet: nothing, no error
    loop = asyncio.new_event_loop()
    d._loop = loop
    loop.close()
    d._post(side.hook("late"))  # closed loop: dropped, no error
    assert side.heard == []
    assert LoopHooks().timeline_read() is None and LoopHooks().media_problem("p", "x") is None
    default = Dispatcher(d.admission, pool, d.cache, d.ahead, d.metrics, side.read, lambda t: ())
    assert default.hooks.worker_event("e", "m", pool.workers[0]) is None
    assert default.budget == 5.0 and default.heavy.ttl == 60.0


def test_frame_result_and_etag_shapes() -> None:
    assert frame_etag(timeline("abc"), 12, OutputSpec(320, 180, 80, "jpeg")) == '"abc-12-320x180-q80-jpeg"'
    assert FrameResult(b"x", "image/png", "e", 1.0, 2.0, True).shared is False
    assert issubclass(HeavyFrameRefused, GatewayTimeout)


def green_still(tmp_path: Any) -> Timeline:
    """A green still on frames 0-29 (one second at 30 fps); other frames are black."""
    path = tmp_path / "green.png"
    Image.new("RGB", (64, 36), (0, 200, 0)).save(path)
    clip = {
        "id": 1,
        "type": "image",
        "source_path": str(path),
        "start_on_track_ms": 0,
        "end_on_track_ms": 1000,
        "rect": {"left": 0, "top": 0, "width": 64, "height": 36},
    }
    return timeline_from_json(
        {"canvas": {"width": 64, "height": 36}, "tracks": [{"id": 1, "clips": [clip]}]}, (64, 36), 30
    )


def centre(body: bytes) -> tuple[int, ...]:
    return tuple(Image.open(io.BytesIO(body)).convert("RGB").getpixel((32, 18)))


def is_green(rgb: tuple[int, ...]) -> bool:
    return rgb[1] > 150 and rgb[0] < 60 and rgb[2] < 60


def test_renders_use_the_frame_and_the_media_roots_of_their_timeline(pool: WorkerPool, tmp_path: Any) -> None:
    still = green_still(tmp_path)
    side = Side()
    side.current, side.allowed = still, (str(tmp_path),)

    async def scenario(d: Dispatcher, side: Side) -> None:
        shown = await d.render((3, SPEC), still.revision, "e")
        assert is_green(centre(shown.body))  # inside the roots: the still itself, no placeholder
        after = await d.render((45, SPEC), still.revision, "e")
        assert centre(after.body) != centre(
            shown.body
        )  # frame 45 is past the clip: the frame number reached the worker
        d.admission.ahead_limit = 1
        for frame in (4, 5):
            assert d.admission.speculate((frame, SPEC), still.revision, 5.0, 8)
        await until(lambda: d.ahead.counters["rendered"] == 2 and not d.admission.in_flight and not d.admission.ahead)
        for frame in (4, 5):
            cached = d.cache.get(frame_etag(still, frame, SPEC))
            assert cached is not None and is_green(centre(cached[0]))
        for frame in (6, 7):
            assert d.admission.speculate((frame, SPEC), "gone", 5.0, 8)
        await until(lambda: d.ahead.counters["stale"] == 2 and not d.admission.in_flight and not d.admission.ahead)
        side.current = RuntimeError("read failed")
        for frame in (8, 9):
            assert d.admission.speculate((frame, SPEC), still.revision, 5.0, 8)
        await until(lambda: d.ahead.counters["failed"] == 2 and not d.admission.in_flight and not d.admission.ahead)

    run(pool, scenario, side=side)
    assert not [h for h in side.heard if h[0] == "media_problem"]
    assert side.roots_asked and all(t is still for t in side.roots_asked)


def test_a_worker_goes_on_from_the_frame_its_decoders_are_at(pool: WorkerPool) -> None:
    async def scenario(d: Dispatcher, side: Side) -> None:
        await d.render((10, SPEC), "r1", "e")
        assert d.position[0] is not None and d.position[0][0] <= 10 < d.position[0][1]
        with d.admission._cond:  # both queued before the worker's thread looks again
            far = asyncio.ensure_future(d.render((200, SPEC), "r1", "e"))
            near = asyncio.ensure_future(d.render((12, SPEC), "r1", "e"))
            await asyncio.sleep(0)
            order: list[int] = []
            for frame in (200, 12):
                d.admission.queue[(frame, SPEC)].future.add_done_callback(lambda f, frame=frame: order.append(frame))
        await asyncio.gather(far, near)
        assert order == [12, 200]  # 2 frames on from its position, before the older request for frame 200

    run(pool, scenario)


def test_a_worker_killed_for_an_earlier_hang_never_answers_504_for_the_next_job() -> None:
    """replace_hung may kill a worker whose job answered just before the kill. The next job must go to a fresh
    worker, not get the 504 meant for the hung one, even while the killed process still looks alive (the
    signal not yet delivered: is_alive is forced to True here to hold that moment)."""
    fresh = new_pool()
    fresh.start()
    try:
        first = fresh.render(0, 0, SPEC, timeline("r1"))
        assert first.result.body
        worker = fresh.workers[0]
        with fresh._state_lock:  # as replace_hung does it, for the job that has just answered
            worker.killed_for_hang = True
            worker.process.kill()
        worker.process.join(5)
        worker.process.is_alive = lambda: True  # type: ignore[method-assign]
        second = fresh.render(0, 1, SPEC, timeline("r1"))
        assert second.result.body and fresh.workers[0] is not worker and fresh.replaced == 1
    finally:
        fresh.stop()


def test_a_render_s_source_and_reach_reach_the_answer_the_cache_and_the_taker(
    pool: WorkerPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the worker says: X-Preview-Source (answered, cached, answered again from the cache) and its decoders'
    reach (admission's locality); the proxy maker is paused for each real render and only for it."""
    rendered: list[int] = []

    def render(index: int, frame: int, spec: OutputSpec, timeline: Timeline, *rest: Any) -> RenderOutcome:
        rendered.append(frame)
        if frame == 6:
            raise RuntimeError("worker broke")
        return RenderOutcome(RenderResult(b"frame", "image/jpeg", source="proxy", reach=(100, 160)), 3.0)

    monkeypatch.setattr(pool, "render", render)

    async def scenario(d: Dispatcher, side: Side) -> None:
        busy: list[bool] = []
        d.rendering = busy.append
        etag = frame_etag(timeline("r1"), 5, SPEC)
        first = await d.render((5, SPEC), "r1", etag)
        assert (first.body, first.source, first.render_ms, first.cached) == (b"frame", "proxy", 3.0, False)
        assert busy == [True, False]  # paused for the render, resumed after it
        assert d.position[0] == (100, 160)  # the worker's reach, not a guess from the frame number
        assert d.cache.get(etag) == (b"frame", "image/jpeg", "proxy")
        again = await d.render((5, SPEC), "r1", etag)
        assert again.cached and again.source == "proxy"
        assert busy == [True, False] and rendered == [5]  # from the cache: no render, no pause
        with pytest.raises(RenderFailed):
            await d.render((6, SPEC), "r1", frame_etag(timeline("r1"), 6, SPEC))
        assert busy == [True, False, True, False]  # resumed after a failed render too

    run(pool, scenario)


def test_the_snapshot_counts_the_rejections_of_the_last_minute(pool: WorkerPool) -> None:
    d = make(pool, Side())
    now = time.monotonic()
    d.admission.rejections = deque([(now - 90.0, "queue"), (now - 50.0, "queue"), (now - 1.0, "connections")])
    assert d.snapshot().rejected_last_minute == 2


def test_a_worker_idle_after_rendering_is_replaced_by_a_fresh_process() -> None:
    """Idle memory (bench/footprint.py): a process that has decoded keeps pages a fresh one has not touched, so the
    dispatcher's thread swaps an idle worker for a fresh process; the next frame renders on it, and it is not
    counted as a replaced (dead or hung) worker."""
    recycling = WorkerPool(1, WorkerSettings(1 << 22, 1 << 24), hang_threshold=30.0, recycle_after=0.3)
    recycling.start()
    try:
        fresh_pid = recycling.workers[0].process.pid
        time.sleep(0.6)
        assert recycling.recycle_due(0) is None and not recycling.recycle(0)  # never rendered: already fresh

        async def scenario(d: Dispatcher, side: Side) -> None:
            first = await d.render((1, SPEC), "r1", frame_etag(timeline("r1"), 1, SPEC))
            used = recycling.workers[0]
            assert used.process.pid == fresh_pid and used.completed == 1
            await until(lambda: recycling.recycled == 1 and d.position[0] is None, 5.0)
            assert recycling.workers[0] is not used and recycling.replaced == 0
            assert recycling.workers[0].revision == "r1"  # sent its predecessor's timeline while idle
            assert recycling.workers[0].locked == used.locked == ()  # and its media roots (wire.Confine)
            await until(lambda: not used.process.is_alive(), 5.0)
            second = await d.render((2, SPEC), "r1", frame_etag(timeline("r1"), 2, SPEC))
            assert first.body.startswith(b"\xff\xd8") and second.body.startswith(b"\xff\xd8") and not second.cached
            assert recycling.workers[0].completed == 1 and recycling.workers[0].process.pid != fresh_pid

        run(recycling, scenario)
    finally:
        recycling.stop()
    assert not any(w.process.is_alive() for w in recycling.workers)


def test_a_stopping_pool_recycles_nothing() -> None:
    recycling = WorkerPool(1, WorkerSettings(1 << 22, 1 << 24), hang_threshold=30.0, recycle_after=0.0)
    recycling.start()
    worker = recycling.workers[0]
    worker.completed = 1  # as if it had rendered
    recycling.stop()
    assert not recycling.recycle(0) and recycling.workers == [worker] and recycling.recycled == 0

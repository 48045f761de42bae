"""Render-ahead without sockets: the pattern detector, the admission rules, the cache's eviction rule."""

from __future__ import annotations

import asyncio
import threading

from flipedit_previewd.common.framecache import FrameCache
from flipedit_previewd.render.admission import Admission
from flipedit_previewd.render.renderahead import MAX_INTERVAL_S, RenderAhead
from tests.support.helpers import run


def feed(
    ra: RenderAhead,
    frames: list[int],
    step_s: float = 1 / 30,
    revision: str = "r1",
    start: float = 100.0,
    total: int = 1000,
) -> list[list[int] | None]:
    plans = []
    for i, frame in enumerate(frames):
        plan = ra.observe(start + i * step_s, "spec", frame, revision, total)
        plans.append(plan.frames if plan else None)
    return plans


def test_playback_is_recognised_after_three_requests_and_predicts_the_next_frames() -> None:
    ra = RenderAhead(frames=4)
    plans = feed(ra, [10, 11, 12, 13])
    assert plans[:2] == [None, None]
    assert plans[2] == [13, 14, 15, 16]
    assert plans[3] == [14, 15, 16, 17]


def test_backward_scrub_predicts_backwards_with_its_step_and_stops_at_frame_0() -> None:
    ra = RenderAhead(frames=5)
    assert feed(ra, [20, 18, 16])[-1] == [14, 12, 10, 8, 6]
    ra2 = RenderAhead(frames=5)
    assert feed(ra2, [7, 5, 3])[-1] == [1]


def test_prediction_stays_below_the_timeline_end() -> None:
    ra = RenderAhead(frames=5)
    assert feed(ra, [95, 96, 97], total=100)[-1] == [98, 99]


def test_random_frames_jumps_and_slow_requests_predict_nothing() -> None:
    assert feed(RenderAhead(frames=4), [10, 500, 20, 700, 3]) == [None] * 5
    assert feed(RenderAhead(frames=4), [10, 11, 10, 11, 10]) == [None] * 5  # back and forth: no direction
    assert feed(RenderAhead(frames=4), [10, 30, 50]) == [None] * 3  # steps beyond MAX_STEP are jumps
    assert feed(RenderAhead(frames=4), [10, 11, 12], step_s=MAX_INTERVAL_S + 0.1) == [None] * 3


def test_the_same_frame_again_neither_predicts_nor_breaks_the_pattern() -> None:
    ra = RenderAhead(frames=2)
    plans = feed(ra, [1, 2, 3, 3, 4])
    assert plans == [None, None, [4, 5], None, [5, 6]]


def test_a_new_revision_restarts_recognition() -> None:
    ra = RenderAhead(frames=3)
    assert feed(ra, [1, 2, 3])[-1] == [4, 5, 6]
    assert ra.observe(100.2, "spec", 4, "r2", 1000) is None  # the timeline changed: old pattern forgotten
    assert ra.observe(100.25, "spec", 5, "r2", 1000) is None
    plan = ra.observe(100.3, "spec", 6, "r2", 1000)
    assert plan is not None and plan.revision == "r2" and plan.frames == [7, 8, 9]


def test_gestures_end_when_the_requests_stop() -> None:
    ra = RenderAhead(frames=3)
    feed(ra, [1, 2, 3], start=100.0)
    assert ra.active(100.1) == ["spec"]
    assert ra.active(100.0 + 2 / 30 + MAX_INTERVAL_S + 0.01) == []
    assert ra.tracks == {}


def test_zero_frames_disables_prediction() -> None:
    assert feed(RenderAhead(frames=0), [1, 2, 3, 4]) == [None] * 4


# --- admission: speculation only on idle workers, real work first ---------------------------------


def test_a_real_job_is_taken_before_any_render_ahead_job() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        adm.ahead_limit = 2
        assert adm.speculate((5, "s"), "r", 1.0, 8)
        real = adm.submit((99, "s"))
        assert adm.take(threading.Event()) is real
        ahead = adm.take(threading.Event())
        assert ahead is not None and ahead.speculative and ahead.key == (5, "s")
        assert adm.counters["ahead_started"] == 1

    run(scenario())


def test_render_ahead_never_runs_on_more_than_its_limit_of_workers() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        adm.ahead_limit = 1
        for frame in (1, 2, 3):
            assert adm.speculate((frame, "s"), "r", 1.0, 8)
        first = adm.take(threading.Event())
        assert first is not None and first.speculative
        stop = threading.Event()
        got: list[object] = []
        thread = threading.Thread(target=lambda: got.append(adm.take(stop)))
        thread.start()
        thread.join(0.3)
        assert thread.is_alive() and not got  # worker 1 stays free for real requests
        real = adm.submit((50, "s"))
        thread.join(2)
        assert got == [real]
        adm.finish(first)
        assert first.future.result() is None

    run(scenario())


def test_a_real_request_takes_over_a_queued_render_ahead_job() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=5)
        adm.ahead_limit = 1
        adm.speculate((7, "s"), "r", 1.0, 8)
        real = adm.submit((7, "s"))
        assert not real.speculative and real.waiters == 1 and not adm.ahead and list(adm.queue) == [(7, "s")]
        assert adm.counters["ahead_taken_over"] == 1
        taken = adm.take(threading.Event())
        assert taken is real
        adm.finish(taken, "frame")
        assert real.future.result() == "frame"

    run(scenario())


def test_speculation_is_refused_for_queued_running_or_stopping_and_without_workers() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        assert not adm.speculate((1, "s"), "r", 1.0, 8)  # ahead_limit 0: disabled
        adm.ahead_limit = 1
        adm.submit((1, "s"))
        assert not adm.speculate((1, "s"), "r", 1.0, 8)
        adm.take(threading.Event())
        assert not adm.speculate((1, "s"), "r", 1.0, 8)  # in flight
        assert adm.speculate((2, "s"), "r", 1.0, 1)
        assert not adm.speculate((3, "s"), "r", 1.0, 1)  # queue bound
        adm.closed = True
        assert not adm.speculate((4, "s"), "r", 1.0, 8)

    run(scenario())


def test_expired_and_dropped_render_ahead_jobs_never_start() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=5)
        adm.ahead_limit = 1
        adm.speculate((1, "s"), "old", 0.01, 8)
        adm.speculate((2, "s"), "new", 5.0, 8)
        adm.speculate((3, "s"), "old", 5.0, 8)
        await asyncio.sleep(0.05)
        assert adm.retain_ahead(lambda p: p.revision == "new") == 2
        taken = adm.take(threading.Event())
        assert taken is not None and taken.key == (2, "s")
        adm.finish(taken)
        adm.speculate((4, "s"), "new", 0.01, 8)
        await asyncio.sleep(0.05)
        stop = threading.Event()
        stop.set()
        assert adm.take(stop) is None  # expired: dropped, not started
        assert adm.counters["ahead_dropped"] == 3 and adm.counters["ahead_started"] == 1

    run(scenario())


def test_a_failed_render_ahead_job_raises_nothing() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=5)
        adm.ahead_limit = 1
        adm.speculate((1, "s"), "r", 1.0, 8)
        job = adm.take(threading.Event())
        assert job is not None
        adm.finish(job, error=RuntimeError("decoder broke"))
        assert job.future.result() is None and adm.rate.rate() == 0.0  # guesses do not count as served

    run(scenario())


# --- the frame cache: guesses never push out what the editor looks at ------------------------
# (entry_overhead=0: these are about the eviction policy in round numbers; what an entry costs is test_framecache.py's)


def test_speculative_put_never_evicts_a_frame_in_use() -> None:
    cache = FrameCache(capacity=300, idle_s=10.0, entry_overhead=0)
    cache.put("a", "A", 100)
    cache.put("b", "B", 100)
    cache.put("c", "C", 100)
    assert not cache.put("x", "X", 100, ahead=True)
    assert cache.ahead_wasted == 1 and len(cache) == 3 and "x" not in cache


def test_speculative_put_evicts_unused_guesses_and_idle_frames() -> None:
    cache = FrameCache(capacity=300, idle_s=0.0, entry_overhead=0)  # every real frame counts as idle
    cache.put("a", "A", 100)
    assert cache.put("x", "X", 100, ahead=True)
    assert cache.put("y", "Y", 100, ahead=True)
    assert cache.put("z", "Z", 100, ahead=True)  # evicts the idle real frame "a"
    assert "a" not in cache and cache.ahead_wasted == 0
    assert cache.put("w", "W", 100, ahead=True)  # evicts the oldest unused guess "x"
    assert "x" not in cache and cache.ahead_wasted == 1


def test_hits_on_guesses_are_counted_once_and_a_real_put_evicts_as_usual() -> None:
    cache = FrameCache(capacity=200, entry_overhead=0)
    cache.put("x", "X", 100, ahead=True)
    assert cache.get("x") == "X" and cache.get("x") == "X"
    assert cache.ahead_hits == 1
    cache.put("a", "A", 100)
    cache.put("b", "B", 100)  # a real put evicts the LRU entry, a used guess: not waste
    assert "x" not in cache and cache.ahead_wasted == 0
    cache.put("y", "Y", 300, ahead=True)  # larger than the cache
    assert cache.ahead_wasted == 1


def test_playback_is_followed_through_other_requests_of_the_same_size() -> None:
    ra = RenderAhead(frames=2)
    # A playback 10, 11, 12, 13 with random frames of another client interleaved.
    plans = feed(ra, [10, 700, 11, 42, 12, 300, 13])
    assert plans == [None, None, None, None, [13, 14], None, [14, 15]]


def test_speculation_is_gated_while_most_real_renders_wait_for_a_worker() -> None:
    from flipedit_previewd.render.renderahead import WAITED_MS

    ahead = RenderAhead(8)
    for _ in range(10):
        ahead.note_real_render(0.3)  # a lone playback: real renders start at once
    assert not ahead.contended
    for _ in range(20):
        ahead.note_real_render(WAITED_MS * 4)  # four clients on two workers: every render queues
    assert ahead.contended
    for _ in range(3):
        ahead.note_real_render(0.3)
    assert ahead.contended  # a few quick ones do not end it at once ...
    for _ in range(10):
        ahead.note_real_render(0.3)
    assert not ahead.contended  # ... but the load going away does

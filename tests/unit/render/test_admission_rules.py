"""Admission's arithmetic and bookkeeping, each rule pinned by a value it must produce (mutation-tested)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

import pytest

from flipedit_previewd.common.errors import Overloaded
from flipedit_previewd.render import admission as admission_module
from flipedit_previewd.render.admission import Admission, retry_after
from tests.support.helpers import run


def test_retry_after_is_the_backlog_over_the_rate() -> None:
    assert retry_after(backlog=3, rate=2.0, capacity=9) == 2  # (3 + 1) / 2
    assert retry_after(backlog=4, rate=0.5, capacity=4) == 10  # a measured rate below 1/s is used as it is
    assert retry_after(backlog=3, rate=0.0, capacity=4) == 2  # no rate measured yet: half a frame per worker and second
    assert retry_after(backlog=3, rate=0.0, capacity=0) == 8  # ... and at least one worker
    assert (
        retry_after(backlog=0, rate=1000.0, capacity=1) == 1 and retry_after(backlog=10_000, rate=1.0, capacity=1) == 30
    )


def test_a_rejection_counts_and_its_retry_after_covers_queue_and_in_flight() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        for frame in (1, 2, 3):
            adm.submit((frame,))
        assert adm.take(threading.Event()) is not None
        assert adm.backlog() == 3  # two queued, one in flight
        refused = adm.reject("queue")
        assert refused.retry_after == 4  # (3 + 1) / (2 workers * 0.5 per second)
        assert refused.detail == "queue limit reached" and refused.limit == "queue"
        assert adm.reject("connections", "too many").detail == "too many"
        assert adm.counters["rejected"] == 2

    run(scenario())


def test_rejections_are_counted_over_their_window_and_forgotten_after_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    adm = Admission(capacity=1, queue_size=1, queue_timeout=1)
    adm.rejections = deque([(939.5, "q"), (940.0, "q"), (990.0, "q"), (995.0, "q")])
    monkeypatch.setattr(admission_module.time, "monotonic", lambda: 1000.0)
    assert adm.rejected_recently(10) == 2  # 990 is exactly 10 s ago: counted
    assert adm.rejected_recently(60) == 3  # 940 is exactly a minute old: kept; 939.5 is gone
    assert len(adm.rejections) == 3


def test_leaving_counts_each_cancelled_job_and_ignores_jobs_no_longer_queued() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=5)
        first, second = adm.submit((1,)), adm.submit((2,))
        adm.leave(first)
        adm.leave(second)
        assert adm.counters["cancelled"] == 2 and first.future.cancelled() and not adm.queue
        expired = adm.submit((3,))
        adm._expire(expired)  # its deadline timer fired: answered 503, out of the queue
        adm.leave(expired)  # then its waiter goes away: nothing left to cancel
        assert adm.counters["cancelled"] == 2 and adm.counters["expired"] == 1
        taken = adm.submit((4,))
        assert adm.take(threading.Event()) is taken
        adm.leave(taken)  # started: it finishes for the cache, nobody is told
        assert adm.in_flight == [taken] and not taken.future.done()

    run(scenario())


def test_deadline_timers_answer_503_once_and_leave_started_or_cancelled_jobs_alone() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=5)
        a, b = adm.submit((1,)), adm.submit((2,))
        adm._expire(a)
        adm._expire(b)
        assert adm.counters["expired"] == 2 and not adm.queue
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as info:
            a.future.result()
        assert info.value.limit == "deadline" and info.value.detail == "waited over 5.0 s for a worker"
        gone = adm.submit((3,))
        adm.leave(gone)
        adm._expire(gone)  # cancelled before its timer fired: nothing to answer
        started = adm.submit((4,))
        assert adm.take(threading.Event()) is started
        adm._expire(started)
        assert adm.counters["expired"] == 2 and adm.in_flight == [started] and not started.future.done()

    run(scenario())


def test_expire_overdue_answers_only_the_jobs_past_their_deadline() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=30)
        late, later, fresh = adm.submit((1,)), adm.submit((2,)), adm.submit((3,))
        late.deadline = later.deadline = 0.0
        adm.expire_overdue()
        assert list(adm.queue.values()) == [fresh] and adm.counters["expired"] == 2
        await asyncio.sleep(0)
        for job in (late, later):
            with pytest.raises(Overloaded) as info:
                job.future.result()
            assert info.value.limit == "deadline" and info.value.detail == "waited over 30.0 s for a worker"
        assert not fresh.future.done()

    run(scenario())


def test_retain_ahead_counts_every_drop_and_returns_zero_when_nothing_is_queued_ahead() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        assert adm.retain_ahead(lambda p: False) == 0
        adm.ahead_limit = 1
        for frame in (1, 2, 3):
            adm.speculate((frame, "s"), "r", 5.0, 8)
        assert adm.retain_ahead(lambda p: p.key[0] != 1) == 1
        assert adm.retain_ahead(lambda p: p.key[0] != 2) == 1
        assert adm.counters["ahead_dropped"] == 2 and list(adm.ahead) == [(3, "s")]

    run(scenario())


def test_the_rate_is_completions_over_the_window_and_at_least_a_second() -> None:
    meter = admission_module.RateMeter(window=10)
    meter.mark(100.0)
    assert meter.rate(now=100.5) == 1.0  # one completion half a second ago: 1/s, not 2/s (span at least 1 s)
    meter.mark(103.0)
    assert meter.rate(now=104.0) == 0.5  # two over the 4 s since the first
    assert meter.rate(now=110.0) == 0.2  # the first is exactly one window old: still counted
    assert meter.rate(now=110.5) == 1 / 7.5 and len(meter.events) == 1  # then it is forgotten, the second is not
    assert meter.rate(now=200.0) == 0.0 and not meter.events


def test_each_render_ahead_job_queued_is_counted_once() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        adm.ahead_limit = 1
        for frame in (1, 2, 3):
            assert adm.speculate((frame, "s"), "r", 5.0, 8)
        assert adm.counters["ahead_queued"] == 3
        assert all(p.speculative and p.revision == "r" and p.waiters == 0 for p in adm.ahead.values())

    run(scenario())


def test_the_rate_meter_uses_the_clock_when_no_time_is_given() -> None:
    meter = admission_module.RateMeter(window=10)
    meter.mark()
    meter.mark()
    assert meter.rate() == 2.0  # two just now, over the one-second minimum span


def test_submissions_and_joins_are_counted_and_carry_the_newest_revision() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=5)
        plain = adm.submit((1,))
        assert plain.revision == "" and plain.waiters == 1
        job = adm.submit((2,), "r1")
        assert adm.submit((2,), "r2") is job and job.revision == "r2"  # a join brings the newer revision
        assert adm.submit((2,)) is job and job.revision == "r2" and job.waiters == 3  # no revision: kept
        assert adm.counters["admitted"] == 2 and adm.counters["joined"] == 2
        adm.ahead_limit = 1
        for frame in (7, 8):
            adm.speculate((frame, "s"), "old", 5.0, 8)
        taken = adm.submit((7, "s"), "new")
        assert taken.revision == "new" and not taken.speculative
        kept = adm.submit((8, "s"))
        assert kept.revision == "old"  # taken over without a revision: the planned one stays
        assert adm.counters["ahead_taken_over"] == 2 and adm.counters["admitted"] == 4

    run(scenario())


def test_refusals_say_why() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=2, queue_timeout=5)
        adm.submit((1,))
        adm.submit((2,))
        with pytest.raises(Overloaded) as full:
            adm.submit((3,))
        assert full.value.detail == "render queue full (2 waiting)"
        adm.closed = True
        with pytest.raises(Overloaded) as stopping:
            adm.submit((1,))
        assert stopping.value.detail == "the daemon is stopping"

    run(scenario())


def test_queued_jobs_and_taken_over_guesses_are_answered_503_by_their_deadline_timer() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=0.05)
        adm.ahead_limit = 1
        adm.speculate((2, "s"), "r", 5.0, 8)
        queued, taken_over = adm.submit((1, "s")), adm.submit((2, "s"))
        await asyncio.sleep(0.3)  # no worker takes them, nobody calls expire_overdue: only the timers
        for job in (queued, taken_over):
            assert job.future.done() and isinstance(job.future.exception(), Overloaded)
        assert adm.counters["expired"] == 2 and not adm.queue

    run(scenario())


def test_results_from_another_thread_reach_the_loop_and_on_the_loop_settle_at_once() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        loop = asyncio.get_running_loop()
        adm.bind(loop)
        assert adm._loop is loop
        good, bad = adm.submit((1,)), adm.submit((2,))
        failure = Overloaded("deadline", 1)

        def worker() -> None:
            for job, kwargs in (
                (adm.take(threading.Event()), {"result": "frame"}),
                (adm.take(threading.Event()), {"error": failure}),
            ):
                assert job is not None
                adm.finish(job, **kwargs)

        thread = threading.Thread(target=worker)
        thread.start()
        assert await asyncio.wait_for(asyncio.shield(good.future), 5) == "frame"
        with pytest.raises(Overloaded) as info:
            await asyncio.wait_for(asyncio.shield(bad.future), 5)
        assert info.value is failure
        thread.join(5)
        here = adm.submit((3,))
        assert adm.take(threading.Event()) is here
        adm.finish(here, "now")
        assert here.future.done() and here.future.result() == "now"  # on the loop's own thread: no round trip

    run(scenario())


def test_render_ahead_running_is_counted_per_job() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        adm.ahead_limit = 2
        adm.speculate((1, "s"), "r", 5.0, 8)
        assert adm.take(threading.Event()) is not None
        assert adm.ahead_running() == 1

    run(scenario())


def test_expire_overdue_keeps_a_job_exactly_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=30)
        job = adm.submit((1,))
        job.deadline = 500.0
        monkeypatch.setattr(admission_module.time, "monotonic", lambda: 500.0)
        adm.expire_overdue()
        monkeypatch.undo()
        assert list(adm.queue.values()) == [job]

    run(scenario())


def test_close_ends_takers_and_drops_render_ahead_jobs() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=5)
        adm.ahead_limit = 1
        adm.speculate((1, "s"), "r", 5.0, 8)
        adm.close()
        assert not adm.ahead and adm.closed is True
        assert adm.take(threading.Event()) is None  # not stopped, but closed: returns

    run(scenario())


def test_take_answers_a_job_past_its_deadline_503_itself_and_starts_the_next() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=5)
        stale, older, fresh = adm.submit((1,)), adm.submit((0,)), adm.submit((2,))
        stale.deadline = older.deadline = 0.0  # overdue, and their timers have not fired yet
        assert adm.take(threading.Event()) is fresh
        assert stale.started == 0.0 and fresh.started > 0 and adm.counters["expired"] == 2
        exc = stale.future.exception()
        assert (
            isinstance(exc, Overloaded) and exc.limit == "deadline" and exc.detail == "waited over 5.0 s for a worker"
        )
        adm.ahead_limit = 1
        adm.speculate((3, "s"), "r", 5.0, 8)
        adm.speculate((4, "s"), "r", 5.0, 8)
        guess = adm.take(threading.Event())
        assert guess is not None and guess.speculative and guess.started > 0
        adm.finish(guess)
        assert adm.take(threading.Event()) is not None and adm.counters["ahead_started"] == 2

    run(scenario())


def test_locality_prefers_the_nearest_frame_at_or_after_the_decoders_within_a_gop() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=10, queue_timeout=5)

        def pick(near: int, frames: list[tuple[object, ...]]) -> tuple[object, ...]:
            for key in frames:
                adm.submit(key)
            job = adm.take(threading.Event(), near=near)
            assert job is not None
            adm.finish(job)
            for left in list(adm.queue.values()):
                adm.leave(left)
            return job.key

        assert pick(10, [(200,), (10, "other size")]) == (10, "other size")  # the same frame: distance 0
        assert pick(10, [(200,), (40,)]) == (200,)  # 30 frames on is past a GOP: the oldest first
        assert pick(10, [(200,), (12,), (14,)]) == (12,)  # the nearest, not the last within reach
        assert pick(10, [(200,), (14, "a"), (14, "b")]) == (14, "a")  # equally near: the older
        assert pick(10, [("x",), (200,), (12,)]) == (12,)  # a key that is no frame number is never "near"

    run(scenario())


def test_the_default_window_is_ten_seconds() -> None:
    meter = admission_module.RateMeter()
    meter.mark(100.0)
    assert meter.rate(now=110.0) == 0.1 and meter.rate(now=110.5) == 0.0


def test_a_result_from_another_thread_is_settled_by_the_loop_not_by_that_thread() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=5)
        adm.bind(asyncio.get_running_loop())
        job = adm.submit((1,))
        assert adm.take(threading.Event()) is job
        thread = threading.Thread(target=adm.finish, args=(job, "frame"))
        thread.start()
        thread.join(5)
        assert not job.future.done()  # futures are not thread-safe: the loop settles it, on its next turn
        assert await asyncio.wait_for(asyncio.shield(job.future), 5) == "frame"

    run(scenario())


def test_a_taker_given_an_until_waits_for_a_job_up_to_then_and_not_less() -> None:
    """``until``: the dispatcher's thread replaces its idle worker then; giving up earlier recycles a worker that
    a job might still have reached."""
    adm = Admission(capacity=1, queue_size=5, queue_timeout=5)
    started = time.monotonic()
    assert adm.take(threading.Event(), until=started + 0.9) is None
    assert time.monotonic() - started >= 0.9 and adm.waiting == {}

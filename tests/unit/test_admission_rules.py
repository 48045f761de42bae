"""Admission's arithmetic and bookkeeping, each rule pinned by a value it must produce (mutation-tested)."""

from __future__ import annotations

import asyncio
import threading
from collections import deque

import pytest

from flipedit_previewd import admission as admission_module
from flipedit_previewd.admission import Admission, retry_after
from flipedit_previewd.errors import Overloaded


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_retry_after_is_the_backlog_over_the_rate() -> None:
    assert retry_after(backlog=3, rate=2.0, capacity=9) == 2  # (3 + 1) / 2
    assert retry_after(backlog=4, rate=0.5, capacity=4) == 10  # a measured rate below 1/s is used as it is
    assert retry_after(backlog=3, rate=0.0, capacity=4) == 2  # no rate measured yet: half a frame per worker and second
    assert retry_after(backlog=3, rate=0.0, capacity=0) == 8  # ... and at least one worker
    assert retry_after(backlog=0, rate=1000.0, capacity=1) == 1 and retry_after(backlog=10_000, rate=1.0, capacity=1) == 30


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

from __future__ import annotations

import asyncio
import threading

import pytest

from flipedit_previewd.admission import Admission, RateMeter, retry_after
from flipedit_previewd.errors import Overloaded


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_identical_requests_join_one_pending_job() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        first = adm.submit((1, "spec"))
        second = adm.submit((1, "spec"))
        other = adm.submit((2, "spec"))
        assert first is second and first.waiters == 2 and other is not first
        assert len(adm.queue) == 2 and adm.counters["joined"] == 1
    run(scenario())


def test_request_for_a_frame_in_flight_queues_one_more_not_more() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        adm.submit((7, "s"))
        started = adm.take(threading.Event())  # now in flight
        assert started is not None
        pendings = {id(adm.submit((7, "s"))) for _ in range(10)}
        assert len(pendings) == 1 and len(adm.queue) == 1 and adm.in_flight == [started]
        other = adm.submit((8, "s"))
        # A second worker skips the URL already being rendered and takes the next one.
        assert adm.take(threading.Event()) is other
        adm.finish(started, "frame")
        assert started.future.result() == "frame"
    run(scenario())


def test_full_queue_rejects_with_retry_after_from_rate() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=2, queue_timeout=5)
        adm.submit((1,))
        adm.submit((2,))
        with pytest.raises(Overloaded) as info:
            adm.submit((3,))
        assert info.value.limit == "queue" and 1 <= info.value.retry_after <= 30
        assert adm.counters["rejected"] == 1 and adm.rejected_recently(5) == 1
    run(scenario())


def test_expired_deadline_is_answered_503_and_never_started() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=0.01)
        stale = adm.submit((1,))
        await asyncio.sleep(0.05)
        fresh = adm.submit((2,))
        job = adm.take(threading.Event())
        assert job is fresh
        with pytest.raises(Overloaded) as info:
            stale.future.result()
        assert info.value.limit == "deadline"
    run(scenario())


def test_last_waiter_leaving_drops_the_queued_job() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=5)
        job = adm.submit((1,))
        adm.submit((1,))
        adm.leave(job)
        assert (1,) in adm.queue
        adm.leave(job)
        assert (1,) not in adm.queue and adm.counters["cancelled"] == 1
    run(scenario())


def test_stopping_refuses_new_work() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=5)
        adm.stopping = True
        with pytest.raises(Overloaded) as info:
            adm.submit((1,))
        assert info.value.limit == "stopping"
    run(scenario())


def test_retry_after_follows_service_rate() -> None:
    assert retry_after(backlog=20, rate=2.0, capacity=2) == 11
    assert retry_after(backlog=0, rate=100.0, capacity=2) == 1
    assert retry_after(backlog=1000, rate=1.0, capacity=2) == 30
    meter = RateMeter(window=10)
    for t in range(10):
        meter.mark(100.0 + t)
    assert 0.9 <= meter.rate(now=110.0) <= 1.1


def test_take_returns_none_when_stopped_and_waits_otherwise() -> None:
    adm = Admission(capacity=1, queue_size=5, queue_timeout=5)
    stop = threading.Event()
    stop.set()
    assert adm.take(stop) is None

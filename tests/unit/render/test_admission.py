from __future__ import annotations

import asyncio
import threading

import pytest

from flipedit_previewd.common.errors import Overloaded
from flipedit_previewd.render.admission import Admission, Pending, RateMeter, retry_after
from tests.support.helpers import run


# The takers' side of Admission in one place (it knows no workers: take(stop, near), finish(job)).
def take(adm: Admission, stop: threading.Event | None = None, worker: int = 0) -> Pending | None:
    return adm.take(stop or threading.Event())


def finish(adm: Admission, job: Pending, result: object = None, worker: int = 0) -> None:
    adm.finish(job, result)


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
        started = take(adm)  # now in flight
        assert started is not None
        pendings = {id(adm.submit((7, "s"))) for _ in range(10)}
        assert len(pendings) == 1 and len(adm.queue) == 1 and adm.in_flight == [started]
        other = adm.submit((8, "s"))
        # A second worker skips the URL already being rendered and takes the next one.
        assert take(adm, worker=1) is other
        finish(adm, started, "frame", worker=0)
        assert started.future.result() == "frame"

    run(scenario())


def test_full_queue_rejects_with_retry_after_from_rate() -> None:
    """Retry-After is the backlog over the measured completion rate, not a constant in 1..30."""

    async def retry_after_for(completions: int) -> int:
        adm = Admission(capacity=8, queue_size=4, queue_timeout=5)
        for n in range(completions):  # completions in the last second: the measured rate is completions/s
            adm.submit((1000 + n,))
            job = take(adm)
            assert job is not None
            finish(adm, job, "frame")
            await asyncio.sleep(0)
        for n in range(4):
            adm.submit((n,))
        with pytest.raises(Overloaded) as info:
            adm.submit((99,))
        assert info.value.limit == "queue"
        assert adm.counters["rejected"] == 1 and adm.rejected_recently(5) == 1
        return info.value.retry_after

    async def scenario() -> None:
        # backlog 4 (+1 for the refused request): 5 / rate, rounded up
        assert await retry_after_for(0) == 2  # nothing measured yet: half a render per worker per second (8 * 0.5)
        assert await retry_after_for(1) == 5  # 1 render/s
        assert await retry_after_for(2) == 3  # 2 renders/s: ceil(5 / 2)
        assert await retry_after_for(10) == 1  # 10 renders/s

    run(scenario())


def test_expired_deadline_is_answered_503_and_never_started() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=1, queue_size=5, queue_timeout=0.01)
        stale = adm.submit((1,))
        await asyncio.sleep(0.05)
        fresh = adm.submit((2,))
        job = take(adm)
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
        adm.closed = True
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
    assert take(adm, stop) is None

    async def scenario() -> None:
        # With nothing queued a worker waits (it neither returns None nor spins) until a job is submitted...
        stop = threading.Event()
        got: list[Pending | None] = []
        taker = threading.Thread(target=lambda: got.append(take(adm, stop)))
        taker.start()
        await asyncio.sleep(0.7)  # longer than one 0.5 s wait of the condition: it must wait again
        assert taker.is_alive() and got == []
        job = adm.submit((5,))
        await asyncio.to_thread(taker.join, 5)
        assert got == [job] and not taker.is_alive()
        # ...and a waiting worker returns None once it is told to stop.
        got.clear()
        taker = threading.Thread(target=lambda: got.append(take(adm, stop)))
        taker.start()
        await asyncio.sleep(0.2)
        assert taker.is_alive()
        stop.set()
        await asyncio.to_thread(taker.join, 5)
        assert got == [None] and not taker.is_alive()

    run(scenario())

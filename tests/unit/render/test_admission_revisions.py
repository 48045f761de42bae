"""A drag: requests that arrive after the timeline changed never wait for a render of the old revision."""

from __future__ import annotations

import asyncio
import threading
import time

from flipedit_previewd.common.errors import RenderFailed
from flipedit_previewd.render.admission import UNREAD, Admission


def test_newer_revision_starts_beside_a_stale_render_in_flight() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        stale = adm.submit((7, "s"), "rev-a")
        assert adm.take(threading.Event()) is stale  # rendering revision a
        fresh = adm.submit((7, "s"), "rev-b")  # the rectangle moved: revision b
        assert fresh is not stale
        # The second worker starts it now instead of waiting for the stale render to finish.
        assert adm.take(threading.Event()) is fresh
        assert adm.in_flight == [stale, fresh]
        adm.finish(stale, "old frame")
        adm.finish(fresh, "new frame")
        assert stale.future.result() == "old frame" and fresh.future.result() == "new frame"

    asyncio.run(scenario())


def test_same_revision_joins_the_render_in_flight() -> None:
    """A request of the revision being rendered shares that render: no second render of the same picture after it."""

    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        first = adm.submit((7, "s"), "rev-a")
        assert adm.take(threading.Event()) is first
        again = adm.submit((7, "s"), "rev-a")
        assert again is first and first.waiters == 2 and not adm.queue and adm.counters["joined"] == 1
        assert adm.submit((7, "s"), "rev-a") is first and first.waiters == 3 and adm.counters["joined"] == 2
        adm.finish(first, "frame a")
        assert again.future.result() == "frame a"

    asyncio.run(scenario())


def test_unread_starts_beside_any_render_in_flight_and_never_joins_it() -> None:
    """A request that found the database changed and unread must not get a render that read before the change
    (it may be the old picture), nor wait for it: its own render starts at once and reads the timeline then."""

    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        first = adm.submit((7, "s"), UNREAD)
        assert adm.take(threading.Event()) is first
        first.revision = "rev-a"  # its driver read the timeline: revision a (perhaps just before the change)
        fresh = adm.submit((7, "s"), UNREAD)
        assert fresh is not first
        assert adm.take(threading.Event()) is fresh  # not held back behind the render of rev-a
        other = adm.submit((7, "s"), UNREAD)  # nor behind one still reading
        assert other is not fresh and adm.take(threading.Event()) is other

    asyncio.run(scenario())


def test_render_that_read_the_new_revision_is_not_duplicated() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        first = adm.submit((7, "s"), "rev-a")
        assert adm.take(threading.Event()) is first
        first.revision = "rev-b"  # the driver read the timeline when it started: already revision b
        adm.submit((7, "s"), "rev-b")
        stop = threading.Event()
        threading.Timer(0.2, stop.set).start()
        assert adm.take(stop) is None

    asyncio.run(scenario())


def test_worker_goes_on_forward_from_its_last_frame_while_the_oldest_has_time() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=10, queue_timeout=5)
        first = adm.submit((10, "s"))
        assert adm.take(threading.Event()) is first
        adm.finish(first, "frame 10")
        far, behind, near = adm.submit((200, "s")), adm.submit((5, "s")), adm.submit((14, "s"))
        assert adm.take(threading.Event(), near=10) is near  # 4 frames on: no seek back to a keyframe
        assert adm.take(threading.Event()) is far  # no position yet: the oldest
        assert list(adm.queue.values()) == [behind]

    asyncio.run(scenario())


def test_oldest_goes_first_once_half_its_queue_time_is_gone() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=10, queue_timeout=5)
        first = adm.submit((10, "s"))
        assert adm.take(threading.Event()) is first
        adm.finish(first, "frame 10")
        late = adm.submit((200, "s"))
        late.deadline = time.monotonic() + 2.0  # less than half of 5 s left
        adm.submit((11, "s"))
        assert adm.take(threading.Event(), near=10) is late

    asyncio.run(scenario())


def test_a_frame_in_the_gop_another_waiting_worker_is_in_is_left_to_it() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=10, queue_timeout=5)
        adm.waiting[-1] = (100, 350)  # another taker, idle, its decoder in a 250-frame GOP (reported by its worker)
        theirs, other = adm.submit((240, "s")), adm.submit((900, "s"))
        assert adm.take(threading.Event(), near=(0, 30)) is other  # 240 is 140 frames past that decoder, in its GOP
        assert adm.take(threading.Event(), near=(230, 300)) is theirs  # a taker whose own reach has it takes it
        late = adm.submit((241, "s"))
        late.deadline = time.monotonic() + 2.0  # less than half of 5 s left: whoever is free takes it
        assert adm.take(threading.Event(), near=(0, 30)) is late

    asyncio.run(scenario())


def test_an_unread_job_that_reads_the_revision_in_flight_is_answered_with_that_render() -> None:
    """Two requests after one change (the editor's and another view's) render the new picture once: the second,
    having read the same revision, follows the render in flight; one that read another revision renders."""

    async def scenario() -> None:
        adm = Admission(capacity=3, queue_size=5, queue_timeout=5)
        first = adm.submit((7, "s"), UNREAD)
        assert adm.take(threading.Event()) is first
        first.revision = "rev-b"
        second = adm.submit((7, "s"), UNREAD)
        assert adm.submit((7, "s"), UNREAD) is second  # a second request joins it while it is queued
        assert adm.take(threading.Event()) is second
        second.revision = "rev-b"  # its own read, after its request arrived: the same revision
        assert adm.follow(second) and adm.in_flight == [first]
        assert first.waiters == 3 and first.followers == [second]  # its own waiter and the two that followed
        assert adm.counters["joined"] == 2  # the join in the queue, then the follow
        third = adm.submit((7, "s"), UNREAD)
        assert adm.take(threading.Event()) is third
        third.revision = "rev-c"  # changed again meanwhile: renders on its own
        assert not adm.follow(third)
        adm.finish(first, "frame b")
        await asyncio.sleep(0)
        assert second.future.result() == "frame b" and not third.future.done()

    asyncio.run(scenario())


def test_a_job_that_follows_a_failed_render_gets_its_error() -> None:
    """A follower is answered with whatever the render it follows ends with: its error too, never a frame of None."""

    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        first = adm.submit((7, "s"), UNREAD)
        assert adm.take(threading.Event()) is first
        first.revision = "rev-b"
        second = adm.submit((7, "s"), UNREAD)
        assert adm.take(threading.Event()) is second
        second.revision = "rev-b"
        assert adm.follow(second)
        failed = RenderFailed("worker broke")
        adm.finish(first, error=failed)
        await asyncio.sleep(0)
        assert first.future.exception() is failed and second.future.exception() is failed
        assert not adm.in_flight and first.followers == []

    asyncio.run(scenario())


def test_a_queued_job_waits_for_the_render_in_flight_that_read_its_revision() -> None:
    """Queued beside an older render, which then read the timeline and found the queued job's revision: the same
    picture is being rendered, so the queued job waits for it instead of rendering it a second time."""

    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        first = adm.submit((7, "s"), "rev-a")
        assert adm.take(threading.Event()) is first
        queued = adm.submit((7, "s"), "rev-b")
        assert queued is not first
        first.revision = "rev-b"  # its driver read the timeline after the change
        at_once = threading.Event()
        at_once.set()  # take answers at once: an eligible job or None
        assert adm.take(at_once) is None
        adm.finish(first, "frame b")
        assert adm.take(at_once) is queued

    asyncio.run(scenario())


def test_another_waiting_taker_s_reach_is_from_its_first_frame_up_to_its_last_excluded() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=3, queue_size=10, queue_timeout=5)
        adm.waiting[-1] = (100, 350)  # another idle taker, its decoder serving frames 100..349
        adm.waiting[-2] = None  # and one whose worker has reported no reach: nothing is left to it
        at_once = threading.Event()
        at_once.set()
        first, past = adm.submit((100, "s")), adm.submit((350, "s"))
        assert adm.take(at_once, near=(0, 30)) is past  # 100 is in that taker's reach: left to it; 350 is not
        assert adm.take(at_once, near=(0, 30)) is None
        assert adm.take(at_once, near=(100, 130)) is first

    asyncio.run(scenario())


def test_of_several_queued_frames_in_its_reach_a_taker_takes_the_nearest_after_the_start_of_it() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=10, queue_timeout=5)
        far, further, nearest = adm.submit((900, "s")), adm.submit((120, "s")), adm.submit((105, "s"))
        assert adm.take(threading.Event(), near=(100, 130)) is nearest  # 5 frames into its reach, before 20
        assert adm.take(threading.Event(), near=(100, 130)) is further
        assert adm.take(threading.Event(), near=(100, 130)) is far

    asyncio.run(scenario())


def test_a_waiting_taker_s_reach_is_seen_by_the_others_while_it_waits() -> None:
    """Two real takers: one waits with its decoder in frames 100..349; a job there is left to it by the other, and
    it takes that job itself once it wakes."""

    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=10, queue_timeout=5)
        stop = threading.Event()
        taken: list[object] = []
        waiter = threading.Thread(target=lambda: taken.append(adm.take(stop, near=(100, 350))))
        waiter.start()
        try:
            deadline = time.monotonic() + 5
            while not adm.waiting:
                assert time.monotonic() < deadline, "the waiting taker never registered"
                time.sleep(0.005)
            with adm._cond:  # the waiting taker cannot look before this taker has chosen
                assert list(adm.waiting.values()) == [(100, 350)]
                theirs, other = adm.submit((240, "s")), adm.submit((900, "s"))
                assert adm.take(threading.Event(), near=(0, 30)) is other
            waiter.join(5)
            assert taken == [theirs] and adm.waiting == {}
        finally:
            stop.set()
            waiter.join(5)

    asyncio.run(scenario())

"""A drag: requests that arrive after the timeline changed never wait for a render of the old revision."""

from __future__ import annotations

import asyncio
import threading
import time

from flipedit_previewd.render.admission import Admission


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


def test_same_revision_still_waits_for_the_render_in_flight() -> None:
    async def scenario() -> None:
        adm = Admission(capacity=2, queue_size=5, queue_timeout=5)
        first = adm.submit((7, "s"), "rev-a")
        assert adm.take(threading.Event()) is first
        again = adm.submit((7, "s"), "rev-a")
        stop = threading.Event()
        threading.Timer(0.2, stop.set).start()
        assert adm.take(stop) is None  # one render per URL and revision: no duplicate work
        assert list(adm.queue.values()) == [again]
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

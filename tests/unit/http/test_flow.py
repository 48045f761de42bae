"""http/flow.py: one connection's back-pressure, against a fake transport (as uvicorn tests its FlowControl)."""

from __future__ import annotations

import asyncio
from typing import Any

from flipedit_previewd.http.flow import READ_HIGH_BYTES, WRITE_HIGH_BYTES, FlowControl


class FakeTransport(asyncio.Transport):
    """Records what flow control asks of it; ``reading`` is what a real transport would do."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = True
        self.calls: list[str] = []
        self.limits: dict[str, Any] = {}
        self.closing = False

    def pause_reading(self) -> None:
        self.calls.append("pause")
        self.reading = False

    def resume_reading(self) -> None:
        self.calls.append("resume")
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closing

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = {"high": high, "low": low}


def flow(read_high: int = 100) -> tuple[FlowControl, FakeTransport]:
    transport = FakeTransport()
    return FlowControl(transport, read_high=read_high), transport


def test_reading_pauses_only_above_the_high_water_mark_and_once() -> None:
    control, transport = flow(100)
    control.hold(60)
    control.hold(40)  # exactly the mark: still reading
    assert transport.reading and transport.calls == []
    control.hold(1)
    control.hold(500)  # already paused: not asked again
    assert not transport.reading and transport.calls == ["pause"]
    assert control.reading_paused and control.backlogged


def test_ready_forgets_the_backlog_and_resumes_once() -> None:
    control, transport = flow(100)
    control.hold(101)
    control.ready()
    control.ready()
    assert transport.reading and transport.calls == ["pause", "resume"] and control.held == 0
    control.hold(100)  # counted afresh from ready(): not over the mark
    assert transport.reading


def test_stalled_output_pauses_reading_and_only_its_end_resumes_it() -> None:
    control, transport = flow()
    control.pause_writing()
    assert not transport.reading and control.write_paused
    control.ready()  # the connection is ready for a request, but the peer still takes nothing: keep pausing
    assert not transport.reading
    control.resume_writing()
    assert transport.reading and not control.write_paused and transport.calls == ["pause", "resume"]


def test_output_resumed_does_not_resume_reading_over_a_backlog() -> None:
    # the bug of two owners: whoever clears its own reason must not undo another's
    control, transport = flow(100)
    control.hold(200)
    control.pause_writing()
    control.resume_writing()
    assert not transport.reading and transport.calls == ["pause"]
    control.ready()
    assert transport.reading


def test_a_parked_connection_stays_paused_until_unparked_whatever_else_happens() -> None:
    # the fd-store hand-over: what the peer sends now must stay in the socket for the next instance
    control, transport = flow(100)
    control.park()
    control.ready()
    control.resume_writing()
    assert not transport.reading and transport.calls == ["pause"]
    control.unpark()
    assert transport.reading


def test_unparking_keeps_a_pause_another_reason_holds() -> None:
    # what settle() did before by calling resume_reading() itself: it would resume a connection whose output is stalled
    control, transport = flow()
    control.pause_writing()
    control.park()
    control.unpark()
    assert not transport.reading


def test_a_closing_transport_is_not_asked_to_pause_or_resume() -> None:
    control, transport = flow(100)
    transport.closing = True
    control.hold(1000)
    control.pause_writing()
    assert transport.calls == [] and not control.reading_paused
    transport.closing = False
    control.hold(1)  # the state is applied at the next change
    assert transport.calls == ["pause"]


def test_the_output_high_water_mark_is_set_only_when_given() -> None:
    assert flow()[1].limits == {}
    transport = FakeTransport()
    FlowControl(transport, write_high=WRITE_HIGH_BYTES)
    assert transport.limits == {"high": WRITE_HIGH_BYTES, "low": None}
    assert FlowControl(FakeTransport()).read_high == READ_HIGH_BYTES

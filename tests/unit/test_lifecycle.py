"""The one lifecycle state and the watchdog's heartbeat decision, without sockets or systemd.

(The daemon's real transitions and notifications under systemd: tests/system/test_systemd.py.)
"""

from __future__ import annotations

import pytest

from flipedit_previewd.journal import EventLog
from flipedit_previewd.lifecycle import Lifecycle, LifecycleState
from flipedit_previewd.supervisor import MAX_TICK, Watchdog


def test_a_stop_is_final_and_reload_returns_to_serving() -> None:
    state = LifecycleState()
    assert state.current is Lifecycle.STARTING and not state.stopping
    for step in (Lifecycle.SERVING, Lifecycle.RELOADING, Lifecycle.SERVING, Lifecycle.DRAINING):
        state.enter(step)
    assert state.stopping
    for back in (Lifecycle.SERVING, Lifecycle.RELOADING, Lifecycle.STARTING):
        with pytest.raises(RuntimeError):
            state.enter(back)
    state.enter(Lifecycle.STOPPED)
    assert state.stopping
    with pytest.raises(RuntimeError):
        state.enter(Lifecycle.DRAINING)


def test_a_stop_may_come_during_start_up_or_a_reload_but_nothing_skips_the_drain() -> None:
    for before in ((), (Lifecycle.SERVING, Lifecycle.RELOADING)):
        state = LifecycleState()
        for step in before:
            state.enter(step)
        with pytest.raises(RuntimeError):
            state.enter(Lifecycle.STOPPED)  # STOPPED only after DRAINING: the drain is never skipped
        state.enter(Lifecycle.DRAINING)


class Journal(EventLog):
    def __init__(self) -> None:
        super().__init__(to_journal=False, to_stderr=False)
        self.events: list[tuple[str, dict[str, object]]] = []

    def emit(self, event: str, message: str, priority: str = "info", **fields: object) -> None:  # type: ignore[override]
        self.events.append((event, fields))


def test_watchdog_is_sent_only_when_the_loop_answered_and_a_worker_can_progress() -> None:
    sent: list[str] = []
    log = Journal()
    dog = Watchdog(None, sent.append, log, watchdog_usec=3_000_000)  # type: ignore[arg-type]
    assert dog.interval() == 1.5
    assert dog.heartbeat(True, True) == "sent" and sent == ["WATCHDOG=1"]
    assert dog.heartbeat(True, False) == "withheld"
    assert dog.heartbeat(False, True) == "withheld"
    assert sent == ["WATCHDOG=1"]
    # withheld is logged once per run of withheld ticks, with the first reason
    assert [(e, f["REASON"]) for e, f in log.events] == [("watchdog_withheld", "no worker can make progress")]
    dog.heartbeat(True, True)
    dog.heartbeat(False, False)
    assert sent == ["WATCHDOG=1", "WATCHDOG=1"]
    assert [f["REASON"] for _, f in log.events] == ["no worker can make progress", "event loop did not answer its probe"]


def test_without_a_watchdog_nothing_is_sent_or_logged() -> None:
    sent: list[str] = []
    log = Journal()
    dog = Watchdog(None, sent.append, log, watchdog_usec=0)  # type: ignore[arg-type]
    assert dog.interval() == MAX_TICK
    assert dog.heartbeat(True, True) == "" and dog.heartbeat(False, False) == ""
    assert sent == [] and log.events == []

"""The one lifecycle state and the watchdog's heartbeat decision, without sockets or systemd.

(The daemon's real transitions and notifications under systemd: tests/system/test_systemd.py.)
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.http.lifecycle import Lifecycle, LifecycleState
from flipedit_previewd.sd.watchdog import MAX_TICK, Watchdog


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
    assert [f["REASON"] for _, f in log.events] == [
        "no worker can make progress",
        "event loop did not answer its probe",
    ]


def test_without_a_watchdog_nothing_is_sent_or_logged() -> None:
    sent: list[str] = []
    log = Journal()
    dog = Watchdog(None, sent.append, log, watchdog_usec=0)  # type: ignore[arg-type]
    assert dog.interval() == MAX_TICK
    assert dog.heartbeat(True, True) == "" and dog.heartbeat(False, False) == ""
    assert sent == [] and log.events == []


def test_a_hung_worker_is_reported_once_and_replaced_only_while_another_is_healthy() -> None:
    from flipedit_previewd.app.supervisor import hang_policy
    from flipedit_previewd.render.pool import Worker, WorkerPool, WorkerState
    from flipedit_previewd.worker.wire import WorkerSettings

    pool = WorkerPool(2, WorkerSettings(0, 0), hang_threshold=10.0)  # no process is started
    now = 1000.0
    stuck = Worker(0, None, None, state=WorkerState.RENDERING, since=now - 25)  # type: ignore[arg-type]
    idle = Worker(1, None, None, state=WorkerState.IDLE, since=now - 25)  # type: ignore[arg-type]
    pool.workers = [stuck, idle]
    assert pool.hung_workers(now) == [stuck]
    assert hang_policy(pool.hung_workers(now), 2, now, 10.0) == ([stuck], [stuck])
    stuck.hung_reported = True
    assert hang_policy(pool.hung_workers(now), 2, now, 10.0) == ([], [stuck])  # reported once, replaced still
    assert hang_policy(pool.hung_workers(now - 10), 2, now - 10, 10.0) == (
        [],
        [],
    )  # 15 s: hung, not yet twice the threshold
    idle.state = WorkerState.RENDERING  # now both are stuck: nobody is replaced, the watchdog decides
    assert hang_policy(pool.hung_workers(now), 2, now, 10.0) == ([idle], [])
    # /health's worker states come from the same definition
    t = time.monotonic()
    stuck.since, idle.since, idle.state = t - 25, t, WorkerState.IDLE
    stuck.process = idle.process = SimpleNamespace(pid=1)
    assert [w["state"] for w in pool.snapshot()] == ["hung", "idle"]

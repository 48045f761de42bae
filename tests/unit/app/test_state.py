"""The small objects the application's parts share (app/state.py): no Service needed to test them."""

from __future__ import annotations

from flipedit_previewd.app.state import RequestStats
from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.common.metrics import Metrics
from flipedit_previewd.render.dispatch import QueueSnapshot


def stats() -> tuple[RequestStats, EventLog]:
    log = EventLog()
    queue = QueueSnapshot(
        queued=7, in_flight=2, ahead_queued=0, ahead_running=0, rate_per_s=1.0, rejected_last_minute=3, counters={}
    )
    return RequestStats(Metrics(), log, lambda: queue), log


def events(log: EventLog) -> list[str]:
    return [entry["event"] for entry in log.recent]


def test_the_cheap_outcomes_are_taken_once_and_the_others_kept() -> None:
    s, _ = stats()
    for outcome in ("cached", "cached", "not_modified", "health", "rendered"):
        s.count(outcome)
    assert s.take_cheap() == {"cached": 2, "not_modified": 1, "health": 1}
    assert s.take_cheap() == {"cached": 0, "not_modified": 0, "health": 0}  # the next minute starts from nothing
    assert s.summary["rendered"] == 1  # a rendered frame is journaled one by one: never summarised, never reset


def test_health_is_summarised_but_not_a_frame_request() -> None:
    s, _ = stats()
    s.count("health")
    s.count("cached")
    counted = {
        sample.labels["outcome"]: sample.value
        for metric in s.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "flipedit_preview_requests_total"
    }
    assert counted == {"cached": 1.0}


def test_an_overload_begins_once_and_ends_only_after_a_quiet_spell() -> None:
    s, log = stats()
    s.note_rejection()
    began = s.overloaded_since
    s.note_rejection()
    assert began is not None and s.overloaded_since == began  # one overload, however many refusals
    assert events(log) == ["overload_began"] and log.recent[0]["message"].startswith("overload began")
    s.end_overload(refused_lately=2)
    assert s.overloaded_since == began  # still refusing: not over
    s.end_overload(refused_lately=0)
    assert s.overloaded_since is None and events(log) == ["overload_began", "overload_ended"]
    s.end_overload(refused_lately=0)
    assert events(log) == ["overload_began", "overload_ended"]  # ended once

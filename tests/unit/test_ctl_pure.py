"""previewctl's pure parts: time specs, the stats summary, argument errors."""

from __future__ import annotations

import io
from datetime import datetime

import pytest

from flipedit_previewd.ctl import main
from flipedit_previewd.ctl.commands import Env, bar, health_rows, sparkline
from flipedit_previewd.ctl.journal_read import BadTime, parse_time
from flipedit_previewd.ctl.stats import summarise
from flipedit_previewd.journal import MESSAGE_IDS

NOW = datetime(2026, 11, 28, 12, 0, 0)


@pytest.mark.parametrize(("spec", "expected"), [
    ("1 hour ago", datetime(2026, 11, 28, 11, 0, 0)),
    ("-30min", datetime(2026, 11, 28, 11, 30, 0)),
    ("today", datetime(2026, 11, 28)),
    ("yesterday", datetime(2026, 11, 27)),
    ("2026-11-01 10:20:30", datetime(2026, 11, 1, 10, 20, 30)),
    ("09:15", datetime(2026, 11, 28, 9, 15)),
])
def test_journalctl_time_formats(spec: str, expected: datetime) -> None:
    assert parse_time(spec, NOW) == expected.astimezone()


def test_bad_time_is_an_error() -> None:
    with pytest.raises(BadTime):
        parse_time("whenever", NOW)


def entry(minute: int, event: str, **fields: object) -> dict[str, object]:
    return {"__REALTIME_TIMESTAMP": datetime(2026, 11, 28, 12, minute, 0), "MESSAGE_ID": MESSAGE_IDS[event], **fields}


def test_summary_counts_percentiles_worst_minute_and_restarts() -> None:
    entries = [entry(0, "start"), entry(0, "ready")]
    entries += [entry(1, "request", OUTCOME="rendered", TOTAL_MS=str(v), QUEUE_MS="1", RENDER_MS=str(v - 1)) for v in range(10, 110)]
    entries += [entry(2, "overload_began")] + [entry(2, "request", OUTCOME="rejected", TOTAL_MS="0.5") for _ in range(7)]
    entries += [entry(3, "overload_ended", DURATION_S="60"), entry(4, "watchdog_withheld"), entry(4, "start")]
    entries += [entry(5, "summary", COUNT_CACHED="40")]
    summary = summarise(entries)
    assert summary["outcomes"] == {"cached": 40, "rejected": 7, "rendered": 100}
    assert summary["total_ms"]["count"] == 107
    assert summary["render_ms"]["p50"] == pytest.approx(58.5, abs=0.6)
    assert summary["worst_minute"]["minute"] == "2026-11-28 12:02" and summary["worst_minute"]["not_served"] == 7
    assert len(summary["overload_periods"]) == 1 and summary["restarts"] == 1 and summary["watchdog_withheld"] == 1


def test_usage_error_exit_code_and_one_line() -> None:
    err = io.StringIO()
    env = Env(io.StringIO(), err, {}, False, False)
    assert main(["render", "not-a-number"], env) == 3
    assert err.getvalue().count("\n") == 1 and "previewctl render --help" in err.getvalue()


def test_bars_and_sparklines() -> None:
    assert bar(5, 20, 10).startswith("[##........]") and bar(0, 0).endswith("0/0")
    assert sparkline([0, 5, 10]) == " ▄█"


def test_epoch_and_the_hint_for_a_bare_duration() -> None:
    from datetime import UTC

    assert parse_time("@1700000000", NOW) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    with pytest.raises(BadTime, match=r"'1h ago' \(or --since=-1h\)"):
        parse_time("1h", NOW)
    err = io.StringIO()
    assert main(["logs", "--since=-1h", "-D", "/nonexistent-journal"], Env(io.StringIO(), err, {}, False, False)) == 1
    assert "no journal found (looked in /nonexistent-journal)" in err.getvalue()


@pytest.mark.parametrize(("seconds", "text"), [(None, "-"), (0.25, "250ms"), (12.5, "12.5s"), (42, "42s"), (243, "4min 3s"),
                                               (7500, "2h 5min"), (3 * 86400 + 4 * 3600, "3d 4h"), ("junk", "-")])
def test_durations_read_like_systemctl(seconds: object, text: str) -> None:
    from flipedit_previewd.ctl.words import duration

    assert duration(seconds) == text


def test_journal_values_become_json_types() -> None:
    import json
    import uuid
    from datetime import timedelta

    from flipedit_previewd.ctl.journal_read import as_json
    from systemd import journal

    entry = {"__MONOTONIC_TIMESTAMP": journal.Monotonic((timedelta(seconds=3.5), uuid.uuid4())), "_BOOT_ID": uuid.uuid4(),
             "__REALTIME_TIMESTAMP": datetime(2026, 11, 28, 12, 0), "PRIORITY": 6, "MESSAGE_ID": uuid.UUID(MESSAGE_IDS["ready"])}
    out = as_json(entry)
    assert out["__MONOTONIC_TIMESTAMP"] == 3.5 and out["EVENT"] == "ready" and isinstance(out["_BOOT_ID"], str)
    assert json.loads(json.dumps(out)) == out and "Monotonic" not in json.dumps(out)


def test_health_names_settings_waiting_for_a_restart_and_only_then() -> None:
    """After a SIGHUP that changed a restart-only setting (e.g. workers), /health's restart_pending names it:
    the operator reading `previewctl health` must learn that the running value is not the configured one."""
    base = {"status": "ok", "pid": 1, "restart_pending": []}
    assert not [label for label, _ in health_rows(base) if label == "restart"]
    rows = dict(health_rows({**base, "restart_pending": ["workers", "listen"]}))
    assert "workers, listen" in rows["restart"] and "restart flipedit-preview" in rows["restart"]
    assert "restart" not in dict(health_rows({**base, "restart_pending": "workers"}))  # a hostile shape: ignored

"""previewctl's pure parts: time specs, the stats summary, argument errors."""

from __future__ import annotations

import io
from datetime import datetime

import pytest

from flipedit_previewd.ctl import main
from flipedit_previewd.ctl.commands import Env, bar, sparkline
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

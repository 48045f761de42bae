"""The post-incident view: what happened in a window, computed from journal entries alone."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from flipedit_previewd.common.percentiles import summary

from .journal_read import IGNORED, event_of, number


def percentiles(values: list[float]) -> dict[str, float | None]:
    return {**summary(values), "count": len(values)}


def summarise(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    timings: dict[str, list[float]] = {"queue_ms": [], "render_ms": [], "total_ms": []}
    per_minute: dict[str, Counter[str]] = defaultdict(Counter)
    events: Counter[str] = Counter()
    ahead: Counter[str] = Counter()
    overloads: list[dict[str, Any]] = []
    open_overload: datetime | None = None
    ignored_before = IGNORED["fields"]
    for entry in entries:
        event = event_of(entry)
        if not event:
            continue  # not one of our MESSAGE_IDs
        stamp = entry.get("__REALTIME_TIMESTAMP")
        if event == "request":
            outcome = str(entry.get("OUTCOME", "unknown"))[:40]
            outcomes[outcome] += 1
            for field in timings:
                value = number(entry, field.upper())
                if value is not None:
                    timings[field].append(value)
            if isinstance(stamp, datetime):
                minute = stamp.strftime("%Y-%m-%d %H:%M")
                per_minute[minute]["requests"] += 1
                if outcome not in ("rendered", "shared"):
                    per_minute[minute]["bad"] += 1
        elif event in ("summary", "rejections"):
            for key in entry:
                if not key.startswith(("COUNT_", "AHEAD_")):
                    continue
                count = number(entry, key)
                if count is None or not 0 <= count < 1e12:
                    continue  # junk, nan or a forged absurd count: ignored
                name = key[6:].lower()
                if key.startswith("AHEAD_"):
                    ahead[name] += int(count)
                    continue
                outcomes[name] += int(count)
                if event == "rejections" and isinstance(stamp, datetime):
                    minute = stamp.strftime("%Y-%m-%d %H:%M")
                    per_minute[minute]["requests"] += int(count)
                    per_minute[minute]["bad"] += int(count)
            if event == "rejections":
                events[event] += 1
        else:
            events[event] += 1
            if event == "overload_began" and isinstance(stamp, datetime):
                open_overload = stamp
            elif event == "overload_ended" and isinstance(stamp, datetime):
                overloads.append(
                    {
                        "began": open_overload.isoformat() if open_overload else None,
                        "ended": stamp.isoformat(),
                        "seconds": number(entry, "DURATION_S"),
                    }
                )
                open_overload = None
    if open_overload is not None:
        overloads.append({"began": open_overload.isoformat(), "ended": None, "seconds": None})
    worst = max(per_minute.items(), key=lambda item: (item[1]["bad"], item[1]["requests"]), default=None)
    return {
        "requests": sum(v for k, v in outcomes.items() if k not in ("health",)),
        "outcomes": dict(sorted(outcomes.items())),
        "queue_ms": percentiles(sorted(timings["queue_ms"])),
        "render_ms": percentiles(sorted(timings["render_ms"])),
        "total_ms": percentiles(sorted(timings["total_ms"])),
        "worst_minute": {"minute": worst[0], "requests": worst[1]["requests"], "not_served": worst[1]["bad"]}
        if worst
        else None,
        "overload_periods": overloads,
        "render_ahead": {k: ahead[k] for k in ("rendered", "hits", "wasted")},
        "starts": events["start"],
        "restarts": max(events["start"] - 1, 0),
        "watchdog_withheld": events["watchdog_withheld"],
        "workers_hung": events["worker_hung"],
        "events": dict(sorted(events.items())),
        "ignored_fields": IGNORED["fields"] - ignored_before,
    }


PENDING = ("cached", "not_modified")  # what /health counts until the next per-minute summary takes it


def pending_counts(entries: list[dict[str, Any]], health: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the journal does not have yet: cache hits, 304s, 4xx and render-ahead arrive with the next
    per-minute summary. With /health's live counts (those it holds for that summary) when the daemon answers.

    None when the journal has no summary and no daemon answered (nothing to say)."""
    last = None
    for entry in entries:
        if event_of(entry) == "summary" and isinstance(entry.get("__REALTIME_TIMESTAMP"), datetime):
            last = entry["__REALTIME_TIMESTAMP"]
    when = f"last summary at {last:%H:%M}" if last else "no per-minute summary yet"
    counters = health.get("counters") if isinstance(health, dict) else None
    if not isinstance(counters, dict):
        if last is None:
            return None
        return {
            "last_summary": last.isoformat(),
            "from_health": None,
            "note": f"{when}; cache hits, 304s, 4xx and render-ahead since then arrive with the next one "
            "(the daemon did not answer for live counts)",
        }
    live = {
        name: int(n)
        for name in PENDING
        if isinstance(n := counters.get(f"outcome_{name}"), (int, float)) and not isinstance(n, bool) and 0 <= n < 1e12
    }
    total = sum(live.values())
    counted = "  ".join(f"{k}={v}" for k, v in live.items())
    return {
        "last_summary": last.isoformat() if last else None,
        "from_health": live,
        "note": f"{when}; {total} requests since (from /health: {counted}); 4xx and render-ahead since then "
        "arrive with the next summary, within a minute",
    }

"""previewctl stats: what happened in a window, from the journal alone (exit 1 when there is no journal or no entry).

When the window reaches now, /health adds what the next per-minute summary will hold (``stats.pending_counts``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .arguments import format_args
from .context import EXIT_OK, Command, Env, client_for, wants_json
from .discovery import Unreachable
from .journal_read import entries
from .journal_window import add_journal_args, no_entries, open_journal, time_window
from .safeout import clean
from .stats import pending_counts, summarise
from .words import show


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_journal_args(p)
    format_args(p)


def cmd_stats(args: argparse.Namespace, env: Env) -> int:
    since, until = time_window(args)
    found = list(entries(open_journal(args), since, until))
    if not found:
        raise no_entries(args)
    summary = summarise(found)
    health: dict[str, Any] | None = None
    if until is None:  # the window reaches now: what the next per-minute summary will add, from /health
        try:
            health = client_for(args, env).health()
        except Unreachable:
            health = None
    summary["pending"] = pending = pending_counts(found, health)
    if wants_json(args):
        env.out(json.dumps(summary, indent=2))
        return EXIT_OK
    env.say(f"window      {args.since or 'beginning'} .. {args.until or 'now'}   ({len(found)} journal entries)")
    env.say(
        f"requests    {summary['requests']}   "
        + ("  ".join(f"{clean(k, 40)}={v}" for k, v in summary["outcomes"].items()) or "none")
    )
    if pending is not None:
        env.say(f"not yet     {pending['note']}")
    for name in ("queue_ms", "render_ms", "total_ms"):
        p = summary[name]
        label = name.replace("_ms", " ms")
        if p["count"]:
            env.out(f"{label:<11} p50 {show(p['p50'])}  p95 {show(p['p95'])}  p99 {show(p['p99'])}  (n={p['count']})")
        else:
            env.out(f"{label:<11} no timed requests in the window")
    worst = summary["worst_minute"]
    if worst:
        env.out(f"worst min   {worst['minute']}: {worst['not_served']} of {worst['requests']} not served")
    env.out(
        f"overloads   {len(summary['overload_periods'])}"
        + "".join(
            f"\n            {o['began'] or '(before the window)'} .. {o['ended'] or 'still'}"
            for o in summary["overload_periods"]
        )
    )
    env.out(
        f"restarts    {summary['restarts']}   watchdog withheld {summary['watchdog_withheld']}   workers hung "
        f"{summary['workers_hung']}"
    )
    ra = summary["render_ahead"]
    env.out(f"render-ahead rendered {ra['rendered']}   hits {ra['hits']}   wasted {ra['wasted']}")
    if summary.get("ignored_fields"):
        env.out(f"ignored     {summary['ignored_fields']} numeric fields that were not finite numbers")
    return EXIT_OK


COMMAND = Command(
    "stats",
    "what happened in a window, from the journal alone (exit 1 when there is no journal or no entry)",
    add_arguments,
    cmd_stats,
)

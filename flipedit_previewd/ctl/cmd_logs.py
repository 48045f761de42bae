"""previewctl logs: the daemon's journal entries, filtered; -f follows (exit 1 when there is no journal or no entry)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from flipedit_previewd.common.journal import MESSAGE_IDS

from .arguments import format_args, number
from .context import EXIT_OK, Command, Env
from .journal_read import as_json, entries, event_of, journal_places, short_line
from .journal_read import number as field_number
from .journal_window import add_journal_args, no_entries, open_journal, time_window

OUTCOMES = ("rendered", "shared", "rejected", "timeout", "failed", "cancelled")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_journal_args(p)
    p.add_argument("--outcome", choices=OUTCOMES, help="only requests with this outcome")
    p.add_argument(
        "--slower-than", type=number(float, low=0), metavar="MS", help="only requests whose total time exceeded MS"
    )
    p.add_argument("--request-id", metavar="ID", help="only the entry of this request")
    p.add_argument(
        "--event",
        choices=sorted(MESSAGE_IDS),
        metavar="EVENT",
        help="only this event kind: " + ", ".join(sorted(MESSAGE_IDS)),
    )
    p.add_argument(
        "-n",
        "--lines",
        type=number(int, low=0),
        metavar="N",
        help="only the last N matching entries (with -f: default 10)",
    )
    p.add_argument(
        "-f", "--follow", action="store_true", help="show the last 10 (or -n) entries, then keep printing new ones"
    )
    format_args(p)


def _matches(args: argparse.Namespace, entry: dict[str, Any]) -> bool:
    event = event_of(entry)
    if args.event and event != args.event:
        return False
    if args.outcome and str(entry.get("OUTCOME")) != args.outcome:
        return False
    if args.request_id and str(entry.get("REQUEST_ID")) != args.request_id:
        return False
    if args.slower_than is not None:
        total = field_number(entry, "TOTAL_MS")
        if total is None or total <= args.slower_than:
            return False
    return True


def cmd_logs(args: argparse.Namespace, env: Env) -> int:
    since, until = time_window(args)
    reader = open_journal(args)
    seen = 0
    selected = []
    for entry in entries(reader, since, until):
        seen += 1
        if _matches(args, entry):
            selected.append(entry)
    lines = (
        args.lines if args.lines is not None else (10 if args.follow else None)
    )  # journalctl -f: the last 10, then follow
    if lines is not None:
        selected = selected[-lines:] if lines > 0 else []
    json_out = args.output == "json"
    for entry in selected:
        env.out(json.dumps(as_json(entry)) if json_out else short_line(entry))
    if not args.follow:
        if not seen:
            raise no_entries(args)
        if not selected and lines != 0:
            raise no_entries(args, "entries of flipedit-previewd matching the filters")
        return EXIT_OK
    if not seen:
        print(
            f"previewctl: no entries of flipedit-previewd yet in "
            f"{', '.join(journal_places(args.directory, args.file)[0])}; "
            "waiting for new ones",
            file=env.stderr,
            flush=True,
        )
    reader.seek_tail()
    reader.get_previous()
    try:
        while True:
            reader.wait(1.0)
            for entry in reader:
                if _matches(args, entry):
                    env.out(json.dumps(as_json(entry)) if json_out else short_line(entry))
    except KeyboardInterrupt:
        return EXIT_OK


COMMAND = Command(
    "logs",
    "the daemon's journal entries, filtered (exit 1 when there is no journal or no entry)",
    add_arguments,
    cmd_logs,
)

"""The journal flags (--since/--until/--directory/--file) of logs, stats and doctor, and what they mean.

The flags are declared here beside their reading: a window of time (journalctl's formats, checked
by argparse and again here), a reader of the journal files, and the error that says where nothing
was found.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from .context import EXIT_USAGE, CtlError
from .journal_read import BadTime, journal_places, open_reader, parse_time
from .restarts import JOURNALCTL_USER


def time_spec(text: str) -> str:
    try:
        parse_time(text)
    except BadTime as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_journal_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--since",
        "-S",
        type=time_spec,
        metavar="TIME",
        help='start of the window, in the formats of journalctl: "1 hour ago", "-1h" (as --since=-1h), '
        '"today", "2026-11-28 10:00", "@1700000000"',
    )
    p.add_argument("--until", "-U", type=time_spec, metavar="TIME", help="end of the window, same formats")
    p.add_argument(
        "--directory",
        "-D",
        metavar="DIR",
        help="read journal files from this directory (e.g. copied from another machine)",
    )
    p.add_argument("--file", action="append", metavar="FILE", help="read this journal file (repeatable)")


def time_window(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    try:
        since = parse_time(args.since) if getattr(args, "since", None) else None
        until = parse_time(args.until) if getattr(args, "until", None) else None
    except BadTime as exc:
        raise CtlError(
            str(exc), "see journalctl(1) 'SPECIFYING TIMESTAMPS' for the accepted forms", EXIT_USAGE
        ) from None
    if since is not None and until is not None and since > until:  # journalctl: "--since= must be before --until="
        raise CtlError(
            f"--since {args.since} ({since:%Y-%m-%d %H:%M:%S}) is after --until {args.until} "
            f"({until:%Y-%m-%d %H:%M:%S})",
            "swap them, or widen the window",
            EXIT_USAGE,
        )
    return since, until


def open_journal(args: argparse.Namespace) -> Any:
    places, found = journal_places(args.directory, args.file)
    if not found:
        raise CtlError(
            f"no journal found (looked in {', '.join(places)})",
            "the daemon's entries are in the journal when systemd runs it; a daemon started by hand "
            "writes them to its stderr; or pass --directory/--file",
        )
    try:
        return open_reader(args.directory, args.file)
    except OSError as exc:
        raise CtlError(
            f"cannot open the journal in {', '.join(places)}: {exc}",
            "check --directory/--file, or run as a user in the systemd-journal group",
        ) from None


def no_entries(args: argparse.Namespace, what: str = "entries of flipedit-previewd") -> CtlError:
    places, _ = journal_places(args.directory, args.file)
    window = f" between {args.since or 'the beginning'} and {args.until or 'now'}" if args.since or args.until else ""
    hint = "widen --since/--until or the filters; 'previewctl status' shows whether the daemon ran here"
    if not args.directory and not args.file:
        hint += (
            f"; the unit's own journal is '{JOURNALCTL_USER}' for the user unit ('journalctl -u' alone searches "
            "system units only) or 'journalctl -u flipedit-preview' for the system-wide one"
        )
    return CtlError(f"no {what} in the journal ({', '.join(places)}){window}", hint)

"""previewctl: the operator's tool for the preview daemon.

Subcommands live in one table; the environment (streams, tty, colour, variables)
is injected, so tests drive it without a terminal; every exception goes through
one funnel to a documented exit code and a one-line message that says what to do.

Exit codes: 0 ok, 1 degraded/overloaded or a failed check, 2 daemon unreachable, 3 usage error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .commands import (
    EXIT_PROBLEM,
    EXIT_USAGE,
    CtlError,
    Env,
    cmd_doctor,
    cmd_health,
    cmd_logs,
    cmd_monitor,
    cmd_render,
    cmd_stats,
    cmd_status,
)
from .safeout import clean


def _journal_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help='start of the window, in the formats of journalctl: "1 hour ago", "today", "2026-11-28 10:00"')
    p.add_argument("--until", help="end of the window, same formats")
    p.add_argument("--directory", "-D", help="read journal files from this directory (e.g. copied from another machine)")
    p.add_argument("--file", action="append", help="read this journal file (repeatable)")


def _logs_args(p: argparse.ArgumentParser) -> None:
    _journal_args(p)
    p.add_argument("--outcome", help="only requests with this outcome (rendered, shared, rejected, timeout, failed, cancelled)")
    p.add_argument("--slower-than", type=float, metavar="MS", help="only requests whose total time exceeded MS")
    p.add_argument("--request-id", help="only the entry of this request")
    p.add_argument("--event", help="only this event kind (request, start, ready, reload, worker_hung, ...)")
    p.add_argument("-n", "--lines", type=int, help="only the last N matching entries")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new entries")
    p.add_argument("-o", "--output", choices=("short", "json"), default="short", help="line format")


def _stats_args(p: argparse.ArgumentParser) -> None:
    _journal_args(p)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _health_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the daemon's /health JSON")


def _render_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("frame", type=int, help="timeline frame index")
    p.add_argument("-o", "--output", default="frame.jpg", help="where to write the JPEG (default frame.jpg)")
    p.add_argument("--width", type=int, help="render at this width")
    p.add_argument("--height", type=int, help="render at this height")
    p.add_argument("--quality", type=int, help="JPEG quality 1-95")


def _monitor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interval", type=float, default=1.0, help="seconds between updates (default 1)")
    p.add_argument("--count", type=int, help="stop after N updates")


def _none(p: argparse.ArgumentParser) -> None:
    _journal_args(p)


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[Any, Env], int]]
COMMANDS: tuple[Command, ...] = (
    ("health", _health_args, cmd_health),
    ("status", lambda p: None, cmd_status),
    ("monitor", _monitor_args, cmd_monitor),
    ("logs", _logs_args, cmd_logs),
    ("stats", _stats_args, cmd_stats),
    ("doctor", _none, cmd_doctor),
    ("render", _render_args, cmd_render),
)
HELP = {
    "health": "one readable summary of the daemon's health (exit 0 ok, 1 degraded/overloaded, 2 unreachable)",
    "status": "the systemd unit's state next to the daemon's health",
    "monitor": "a live view; one line per interval when not on a terminal",
    "logs": "the daemon's journal entries, filtered",
    "stats": "what happened in a window, from the journal alone",
    "doctor": "the troubleshooting checklist, automated (exit 0 all pass, 1 otherwise)",
    "render": "fetch one frame and report timing and cache state",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors are exit 3, not argparse's 2
        raise CtlError(message, f"see '{self.prog} --help'", EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="previewctl", description="Inspect and troubleshoot the FlipEdit preview daemon.",
                     epilog="Exit codes: 0 ok, 1 degraded/overloaded or failed check, 2 daemon unreachable, 3 usage error.")
    parser.add_argument("--url", help="daemon address: http://HOST:PORT or a unix socket path (default: "
                                      "$XDG_RUNTIME_DIR/flipedit-preview.sock, then http://127.0.0.1:8081)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the daemon (default 3)")
    parser.add_argument("--no-pager", action="store_true", help="accepted for journalctl compatibility; previewctl never pages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, add_args, _ in COMMANDS:
        add_args(sub.add_parser(name, help=HELP[name], description=HELP[name]))
    return parser


def default_env() -> Env:
    is_tty = sys.stdout.isatty()
    color = is_tty and "NO_COLOR" not in os.environ
    return Env(sys.stdout, sys.stderr, dict(os.environ), is_tty, color, shutil.get_terminal_size().columns if is_tty else 100)


def main(argv: Sequence[str] | None = None, env: Env | None = None) -> int:
    env = env or default_env()
    try:
        args = build_parser().parse_args(argv)
        handler = {name: run for name, _, run in COMMANDS}[args.command]
        return handler(args, env)
    except CtlError as exc:
        print(f"previewctl: {clean(exc, 2000)}; {exc.hint}", file=env.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the funnel: one line, never a traceback
        print(f"previewctl: unexpected error: {type(exc).__name__}: {clean(exc)}; please report it with 'previewctl logs -n 50'",
              file=env.stderr)
        return EXIT_PROBLEM


if __name__ == "__main__":
    sys.exit(main())

"""previewctl: the operator's tool for the preview daemon.

Subcommands live in one table; the environment (streams, tty, colour, variables)
is injected, so tests drive it without a terminal; every exception goes through
one funnel to a documented exit code and a one-line message that says what to do.

Conventions of the tools people know: ``-o json`` (alias ``--json``) wherever
data is printed (``render`` and ``profile`` write a file: there ``-o`` is the
file, as in curl, and ``-`` is stdout); global flags also after the subcommand;
journalctl's time formats; every argument checked by argparse (exit 3).

Exit codes: 0 ok, 1 degraded/overloaded, a failed check or nothing found, 2 daemon unreachable,
3 usage error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..journal import MESSAGE_IDS
from .commands import (
    EXIT_PROBLEM,
    EXIT_USAGE,
    CtlError,
    Env,
    cmd_doctor,
    cmd_health,
    cmd_logs,
    cmd_monitor,
    cmd_profile,
    cmd_render,
    cmd_stats,
    cmd_status,
)
from .journal_read import BadTime, parse_time
from .safeout import clean
from .words import wants_colour

OUTCOMES = ("rendered", "shared", "rejected", "timeout", "failed", "cancelled")
EXIT_STATUS = ("Exit codes: 0 ok; 1 degraded/overloaded, a failed check, or no journal/entries found; "
               "2 daemon unreachable; 3 usage error.")


def _number(kind: type, low: float | None = None, high: float | None = None, above: float | None = None) -> Callable[[str], Any]:
    """An argparse type: a number in range, with a message a person understands."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {'an integer' if kind is int else 'a number'}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be above {above:g}, not {text}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, not {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, not {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def time_spec(text: str) -> str:
    try:
        parse_time(text)
    except BadTime as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def url_spec(text: str) -> str:
    """http://HOST:PORT, a unix socket path, unix:PATH, or HOST:PORT (taken as http://)."""
    text = text.strip()
    if not text:
        raise argparse.ArgumentTypeError("empty address")
    if text.startswith(("/", "unix:", "http://", "https://", "http+unix://")):
        return text
    if "://" in text:
        raise argparse.ArgumentTypeError(f"'{text}': use http://HOST:PORT or a unix socket path")
    return "http://" + text


def _global_args(p: argparse.ArgumentParser, suppress: bool) -> None:
    """The same flags on the main parser and after each subcommand ('previewctl health --url ...')."""
    default: Any = argparse.SUPPRESS
    p.add_argument("--url", type=url_spec, default=default if suppress else None,
                   help="daemon address: http://HOST:PORT, HOST:PORT or a unix socket path (default: "
                        "$XDG_RUNTIME_DIR/flipedit-preview.sock, then http://127.0.0.1:8081)")
    p.add_argument("--timeout", type=_number(float, above=0, high=3600), default=default if suppress else 3.0, metavar="SECONDS",
                   help="seconds to wait for the daemon (default 3)")
    p.add_argument("--no-pager", action="store_true", default=default if suppress else False,
                   help="accepted for journalctl compatibility; previewctl never pages")


def _format_args(p: argparse.ArgumentParser, choices: tuple[str, ...] = ("text", "json"), default: str = "text") -> None:
    p.add_argument("-o", "--output", choices=choices, default=default, help=f"output format (default {default})")
    p.add_argument("--json", dest="output", action="store_const", const="json", help="the same as -o json")


def _journal_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", "-S", type=time_spec, metavar="TIME",
                   help='start of the window, in the formats of journalctl: "1 hour ago", "-1h" (as --since=-1h), '
                        '"today", "2026-11-28 10:00", "@1700000000"')
    p.add_argument("--until", "-U", type=time_spec, metavar="TIME", help="end of the window, same formats")
    p.add_argument("--directory", "-D", metavar="DIR", help="read journal files from this directory (e.g. copied from another machine)")
    p.add_argument("--file", action="append", metavar="FILE", help="read this journal file (repeatable)")


def _logs_args(p: argparse.ArgumentParser) -> None:
    _journal_args(p)
    p.add_argument("--outcome", choices=OUTCOMES, help="only requests with this outcome")
    p.add_argument("--slower-than", type=_number(float, low=0), metavar="MS", help="only requests whose total time exceeded MS")
    p.add_argument("--request-id", metavar="ID", help="only the entry of this request")
    p.add_argument("--event", choices=sorted(MESSAGE_IDS), metavar="EVENT",
                   help="only this event kind: " + ", ".join(sorted(MESSAGE_IDS)))
    p.add_argument("-n", "--lines", type=_number(int, low=0), metavar="N", help="only the last N matching entries (with -f: default 10)")
    p.add_argument("-f", "--follow", action="store_true", help="show the last 10 (or -n) entries, then keep printing new ones")
    _format_args(p, ("short", "json"), "short")


def _stats_args(p: argparse.ArgumentParser) -> None:
    _journal_args(p)
    _format_args(p)


def _doctor_args(p: argparse.ArgumentParser) -> None:
    _journal_args(p)
    _format_args(p)


def _render_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("frame", type=_number(int, low=0, high=10_000_000), help="timeline frame index (from 0)")
    p.add_argument("-o", "--output", default="frame.jpg", metavar="FILE", help="where to write the image; - for stdout (default frame.jpg)")
    p.add_argument("--width", type=_number(int, low=1, high=16384), help="render at this width (px)")
    p.add_argument("--height", type=_number(int, low=1, high=16384), help="render at this height (px); another aspect ratio is letterboxed")
    p.add_argument("--quality", type=_number(int, low=1, high=95), help="JPEG quality 1-95")
    p.add_argument("--json", action="store_true", help="report timing and cache state as JSON")


def _monitor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interval", type=_number(float, low=0.1, high=3600), default=1.0, metavar="SECONDS",
                   help="seconds between updates, at least 0.1 (default 1)")
    p.add_argument("--count", type=_number(int, low=1), metavar="N", help="stop after N updates")
    _format_args(p)


def _health_args(p: argparse.ArgumentParser) -> None:
    _format_args(p)


def _profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=_number(int, low=1, high=3600), default=10, metavar="N", help="how long to record (default 10)")
    p.add_argument("-o", "--output", default="profile.svg", metavar="FILE.svg", help="the flame graph to write (default profile.svg)")
    p.add_argument("--rate", type=_number(int, low=1, high=1000), default=100, metavar="HZ", help="samples per second (default 100)")
    p.add_argument("--idle", action="store_true", help="include threads that are waiting, not only running")
    p.add_argument("--json", action="store_true", help="report what was written as JSON")


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[Any, Env], int]]
COMMANDS: tuple[Command, ...] = (
    ("health", _health_args, cmd_health),
    ("status", _format_args, cmd_status),
    ("monitor", _monitor_args, cmd_monitor),
    ("logs", _logs_args, cmd_logs),
    ("stats", _stats_args, cmd_stats),
    ("doctor", _doctor_args, cmd_doctor),
    ("render", _render_args, cmd_render),
    ("profile", _profile_args, cmd_profile),
)
HELP = {
    "health": "one readable summary of the daemon's health (exit 0 ok, 1 degraded/overloaded, 2 unreachable)",
    "status": "the systemd unit's state next to the daemon's health (systemd checks n/a for a daemon run by hand)",
    "monitor": "a live view; one line per interval when not on a terminal",
    "logs": "the daemon's journal entries, filtered (exit 1 when there is no journal or no entry)",
    "stats": "what happened in a window, from the journal alone (exit 1 when there is no journal or no entry)",
    "doctor": "the troubleshooting checklist, automated (exit 0 all pass, 1 otherwise)",
    "render": "fetch one frame and report timing and cache state",
    "profile": "record the daemon's main process and workers with py-spy into one flame graph (SVG)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors are exit 3, not argparse's 2
        raise CtlError(message, f"see '{self.prog} --help'", EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="previewctl", description="Inspect and troubleshoot the FlipEdit preview daemon.", epilog=EXIT_STATUS)
    _global_args(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, add_args, _ in COMMANDS:
        command = sub.add_parser(name, help=HELP[name], description=HELP[name])
        add_args(command)
        _global_args(command.add_argument_group("global options (also before the command)"), suppress=True)  # type: ignore[arg-type]
    return parser


def default_env() -> Env:
    is_tty = sys.stdout.isatty()
    return Env(sys.stdout, sys.stderr, dict(os.environ), is_tty, wants_colour(is_tty, os.environ),
               shutil.get_terminal_size().columns if is_tty else 100)


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

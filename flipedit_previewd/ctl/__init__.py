"""previewctl: the operator's tool for the preview daemon.

Subcommands live in one table; the environment (streams, tty, colour, variables)
is injected, so tests drive it without a terminal; every exception goes through
one funnel to a documented exit code and a one-line message that says what to do.

Conventions of the tools people know: ``-o text|json`` (alias ``--json``) on every
command, as kubectl's and gh's (``render`` and ``profile`` write their file with
``-O/--output-file``, ``-`` for stdout); with ``-o json`` stdout is JSON whatever
happens, an error included; global flags also after the subcommand; journalctl's time
formats; every argument checked by argparse (exit 3), a mistyped command or choice
answered with "did you mean".

Exit codes: 0 ok, 1 degraded/overloaded, a failed check or nothing found, 2 daemon unreachable
(or not answering in time), 3 usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

from flipedit_previewd import __version__
from flipedit_previewd.common.journal import MESSAGE_IDS

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
    cmd_stats,
    cmd_status,
)
from .completion import SHELLS, cmd_completion
from .journal_read import BadTime, parse_time
from .proxies import cmd_proxies
from .render import FORMATS, cmd_render
from .safeout import clean
from .timeline import cmd_timeline
from .words import wants_colour

OUTCOMES = ("rendered", "shared", "rejected", "timeout", "failed", "cancelled")
EXIT_STATUS = ("Exit codes: 0 ok; 1 degraded/overloaded, a failed check, no journal/entries found, or a frame past "
               "the end of the timeline; 2 daemon unreachable or not answering within --timeout; 3 usage error.")


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


def output_format(text: str) -> str:
    """-o's value: text or json ('short', logs' old word, is text). A file name here is the old render/profile spelling."""
    text = {"short": "text"}.get(text, text)
    if text not in ("text", "json") and ("." in text or "/" in text or text == "-"):
        raise argparse.ArgumentTypeError(f"'{text}' is not an output format (text, json): write the file with -O {text}")
    return text


def _format_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", type=output_format, choices=("text", "json"), default="text",
                   help="output format: text or json (default text)")
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
    _format_args(p)


def _stats_args(p: argparse.ArgumentParser) -> None:
    _journal_args(p)
    _format_args(p)


def _doctor_args(p: argparse.ArgumentParser) -> None:
    _journal_args(p)
    _format_args(p)


def _render_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("frame", type=_number(int, low=0, high=10_000_000), help="timeline frame index (from 0)")
    p.add_argument("-O", "--output-file", metavar="FILE",
                   help="where to write the image; - for stdout (default frame.jpg, or frame.png with --format png)")
    p.add_argument("--format", choices=FORMATS, help="image format (default: from the file's extension, else jpeg)")
    p.add_argument("--width", type=_number(int, low=1, high=16384), help="render at this width (px)")
    p.add_argument("--height", type=_number(int, low=1, high=16384), help="render at this height (px); another aspect ratio is letterboxed")
    p.add_argument("--quality", type=_number(int, low=1, high=95), help="JPEG quality 1-95")
    _format_args(p)


def _monitor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interval", type=_number(float, low=0.1, high=3600), default=1.0, metavar="SECONDS",
                   help="seconds between updates, at least 0.1 (default 1)")
    p.add_argument("--count", type=_number(int, low=1), metavar="N", help="stop after N updates")
    _format_args(p)


def _health_args(p: argparse.ArgumentParser) -> None:
    _format_args(p)


def _profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=_number(int, low=1, high=3600), default=10, metavar="N", help="how long to record (default 10)")
    p.add_argument("-O", "--output-file", default="profile.svg", metavar="FILE.svg", help="the flame graph to write (default profile.svg)")
    p.add_argument("--rate", type=_number(int, low=1, high=1000), default=100, metavar="HZ", help="samples per second (default 100)")
    p.add_argument("--idle", action="store_true", help="include threads that are waiting, not only running")
    _format_args(p)


def _timeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("put", "get", "clear"),
                   help="put: show the JSON timeline in FILE instead of the project; get: write the timeline served to FILE "
                        "(default stdout); clear: back to the project database")
    p.add_argument("file", nargs="?", metavar="FILE", help="the JSON timeline (put: required, - for stdin; get: default stdout)")
    _format_args(p)


def _proxies_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "build", "clear"), nargs="?", default="list",
                   help="list: the proxies kept and what is being made (default); build: make proxies now for the videos "
                        "of the timeline being served; clear: remove every proxy")
    p.add_argument("--all", action="store_true", help="build: also videos whose random frames are cheap")
    _format_args(p)


def _completion_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    p.set_defaults(make_parser=build_parser)  # completion.py completes this parser without importing this package


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
    ("timeline", _timeline_args, cmd_timeline),
    ("proxies", _proxies_args, cmd_proxies),
    ("completion", _completion_args, cmd_completion),
)
HELP = {
    "health": "one readable summary of the daemon's health (exit 0 ok, 1 degraded/overloaded, 2 unreachable)",
    "status": "the systemd unit's state next to the daemon's health (systemd checks n/a for a daemon run by hand)",
    "monitor": "a live view; one line per interval when not on a terminal",
    "logs": "the daemon's journal entries, filtered (exit 1 when there is no journal or no entry)",
    "stats": "what happened in a window, from the journal alone (exit 1 when there is no journal or no entry)",
    "doctor": "the troubleshooting checklist, automated (exit 0 all pass, 1 otherwise)",
    "render": "fetch one frame and report timing and cache state (exit 1 past the end of the timeline)",
    "profile": "record the daemon's main process and workers with py-spy into one flame graph (SVG)",
    "timeline": "put, get or clear a JSON timeline shown instead of the project (the daemon's own user only)",
    "proxies": "list, build (for the timeline served) or clear the proxy media the daemon makes for slow sources",
    "completion": "print the shell completion script: bash, zsh or fish",
}


def _did_you_mean(message: str) -> str:
    """argparse's "invalid choice: 'helth' (choose from 'health', ...)" -> " did you mean 'health'?" (or "")."""
    found = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)", message)
    if not found:
        return ""
    choices = re.findall(r"'([^']*)'", found.group(2))
    close = difflib.get_close_matches(found.group(1), choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors are exit 3, not argparse's 2
        raise CtlError(message, f"{_did_you_mean(message)}see '{self.prog} --help'", EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="previewctl", description="Inspect and troubleshoot the FlipEdit preview daemon.", epilog=EXIT_STATUS)
    parser.add_argument("--version", action="version", version=f"previewctl {__version__}")
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
    args: Any = None
    try:
        parser = build_parser()
        try:
            with contextlib.redirect_stdout(env.stdout):  # --help and --version go to the injected stdout
                args = parser.parse_args(argv)
        except SystemExit as done:  # --help and --version: argparse prints them and exits 0
            return done.code if isinstance(done.code, int) else EXIT_USAGE
        handler = {name: run for name, _, run in COMMANDS}[args.command]
        return handler(args, env)
    except CtlError as exc:
        if getattr(args, "output", None) == "json" and not env.printed and args.command not in ("logs", "monitor"):
            # -o json: stdout is a JSON document whatever happened (logs and monitor print JSON lines: none is valid)
            env.out(json.dumps({"error": clean(exc, 2000), "hint": exc.hint, "exit_code": exc.code}, indent=2))
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

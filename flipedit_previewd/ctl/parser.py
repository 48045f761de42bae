"""previewctl's command line: the one argparse definition the program, its man page and its completions use.

``build_parser`` is the entry point of ``scripts/docs.sh``, packaging/debian/rules and the RPM spec
(``flipedit_previewd.ctl:build_parser``, re-exported by the package). The global flags are accepted
before and after the subcommand; a usage error is exit 3 with a "did you mean".

A new subcommand: a module ``cmd_NAME.py`` that ends with ``COMMAND = Command(NAME, HELP, add_arguments,
cmd_NAME)`` (``context.Command``; ``cmd_health.py`` is the smallest), and one line in ``COMMANDS`` below,
where it should appear in ``--help``. Nothing else changes: the man page and completions follow.
"""

from __future__ import annotations

import argparse
import difflib
import re
from typing import Any

from flipedit_previewd import __version__

from . import (
    cmd_completion,
    cmd_doctor,
    cmd_health,
    cmd_logs,
    cmd_monitor,
    cmd_profile,
    cmd_proxies,
    cmd_render,
    cmd_stats,
    cmd_status,
    cmd_timeline,
)
from .arguments import number
from .context import EXIT_USAGE, Command, CtlError

# Every subcommand, in the order --help lists them: one line each.
COMMANDS: tuple[Command, ...] = (
    cmd_health.COMMAND,
    cmd_status.COMMAND,
    cmd_monitor.COMMAND,
    cmd_logs.COMMAND,
    cmd_stats.COMMAND,
    cmd_doctor.COMMAND,
    cmd_render.COMMAND,
    cmd_profile.COMMAND,
    cmd_timeline.COMMAND,
    cmd_proxies.COMMAND,
    cmd_completion.COMMAND,
)
EXIT_STATUS = (
    "Exit codes: 0 ok; 1 degraded/overloaded, a failed check, no journal/entries found, or a frame past "
    "the end of the timeline; 2 daemon unreachable or not answering within --timeout; 3 usage error."
)


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


def global_args(p: argparse.ArgumentParser, suppress: bool) -> None:
    """The same flags on the main parser and after each subcommand ('previewctl health --url ...')."""
    default: Any = argparse.SUPPRESS
    p.add_argument(
        "--url",
        type=url_spec,
        default=default if suppress else None,
        help="daemon address: http://HOST:PORT, HOST:PORT or a unix socket path (default: "
        "$XDG_RUNTIME_DIR/flipedit-preview.sock, then http://127.0.0.1:8081)",
    )
    p.add_argument(
        "--timeout",
        type=number(float, above=0, high=3600),
        default=default if suppress else 3.0,
        metavar="SECONDS",
        help="seconds to wait for the daemon (default 3)",
    )
    p.add_argument(
        "--no-pager",
        action="store_true",
        default=default if suppress else False,
        help="accepted for journalctl compatibility; previewctl never pages",
    )


def did_you_mean(message: str) -> str:
    """argparse's "invalid choice: 'helth' (choose from 'health', ...)" -> " did you mean 'health'?" (or "")."""
    found = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)", message)
    if not found:
        return ""
    choices = re.findall(r"'([^']*)'", found.group(2))
    close = difflib.get_close_matches(found.group(1), choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors are exit 3, not argparse's 2
        raise CtlError(message, f"{did_you_mean(message)}see '{self.prog} --help'", EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="previewctl", description="Inspect and troubleshoot the FlipEdit preview daemon.", epilog=EXIT_STATUS
    )
    parser.add_argument("--version", action="version", version=f"previewctl {__version__}")
    global_args(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        global_args(p.add_argument_group("global options (also before the command)"), suppress=True)  # type: ignore[arg-type]
    parser.set_defaults(make_parser=build_parser)  # cmd_completion completes this parser without importing this module
    return parser

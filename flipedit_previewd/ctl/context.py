"""What every subcommand is handed and may raise: the injected environment, the one error, the exit codes.

As HTTPie's ``context.Environment``: a command writes only through ``Env`` (streams, tty, colour,
width, the variables and ``sleep`` are injected, so tests drive it without a terminal) and fails
only by raising ``CtlError``, which the funnel (``core.main``) turns into its exit code and a
one-line message that says what to do. ``Command`` is what a subcommand module registers
(``parser.COMMANDS``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from .discovery import DaemonClient, TimedOut, Unreachable
from .words import fit, paint

EXIT_OK, EXIT_PROBLEM, EXIT_UNREACHABLE, EXIT_USAGE = 0, 1, 2, 3


class CtlError(Exception):
    def __init__(self, message: str, hint: str, code: int = EXIT_PROBLEM) -> None:
        super().__init__(message)
        self.hint = hint
        self.code = code


@dataclass
class Env:
    stdout: IO[str]
    stderr: IO[str]
    environ: dict[str, str]
    is_tty: bool
    color: bool
    width: int = 100
    sleep: Any = field(default=time.sleep)
    printed: bool = False  # anything on stdout yet (the funnel's JSON error document only on an empty stdout)

    def out(self, text: str = "") -> None:
        self.printed = True
        print(text, file=self.stdout, flush=True)

    @property
    def columns(self) -> int:
        """80 columns, the convention (fewer on a narrower terminal)."""
        return min(80, self.width) if self.is_tty and self.width > 20 else 80

    def say(self, text: str, indent: int = 12) -> None:
        """A human line, wrapped within ``columns`` (continuation lines indented under the value)."""
        for line in fit(text, indent, self.columns):
            self.out(line)

    def paint(self, text: str, word: str | None = None) -> str:
        return paint(text, self.color, word)


def wants_json(args: argparse.Namespace) -> bool:
    return getattr(args, "output", None) == "json"


def client_for(args: argparse.Namespace, env: Env) -> DaemonClient:
    return DaemonClient(
        getattr(args, "url", None),
        env.environ,
        timeout=getattr(args, "timeout", 3.0),
        warn=lambda text: print(text, file=env.stderr, flush=True),
    )


def unreachable_error(exc: Unreachable, timeout: float) -> CtlError:
    """A timeout is a timeout (the daemon may well run, busy or far); anything else: it is not there."""
    if isinstance(exc, TimedOut):
        return CtlError(
            f"the daemon did not answer within --timeout {timeout:g} s ({exc})",
            "raise --timeout; 'previewctl monitor' shows whether it is busy",
            EXIT_UNREACHABLE,
        )
    return CtlError(
        f"daemon unreachable ({exc})",
        "start it ('systemctl --user start flipedit-preview.socket', or by hand: 'make demo' or "
        "'flipedit-previewd --listen HOST:PORT') or pass --url",
        EXIT_UNREACHABLE,
    )


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, its one-line help (the man page's and ``--help``'s), its arguments, and what it does.

    Each ``cmd_*.py`` module defines one as ``COMMAND``; ``parser.COMMANDS`` lists them in ``--help`` order.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Env], int]

"""previewctl's funnel, as HTTPie's ``core.main``: arguments in, one exit code out, never a traceback.

Exit codes: 0 ok, 1 degraded/overloaded, a failed check or nothing found, 2 daemon unreachable
(or not answering in time), 3 usage error. A ``CtlError`` becomes its code and one line on
stderr with what to do (with ``-o json``, also a JSON document on a still-empty stdout); Ctrl-C
and a closed pipe are 0; anything else is 1 with one line asking for a report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Sequence

from .context import EXIT_PROBLEM, EXIT_USAGE, CtlError, Env, wants_json
from .parser import COMMANDS, build_parser
from .safeout import clean
from .words import wants_colour


def default_env() -> Env:
    is_tty = sys.stdout.isatty()
    return Env(
        sys.stdout,
        sys.stderr,
        dict(os.environ),
        is_tty,
        wants_colour(is_tty, os.environ),
        shutil.get_terminal_size().columns if is_tty else 100,
    )


def main(argv: Sequence[str] | None = None, env: Env | None = None) -> int:
    env = env or default_env()
    args: argparse.Namespace | None = None
    try:
        parser = build_parser()
        try:
            with contextlib.redirect_stdout(env.stdout):  # --help and --version go to the injected stdout
                args = parser.parse_args(argv)
        except SystemExit as done:  # --help and --version: argparse prints them and exits 0
            return done.code if isinstance(done.code, int) else EXIT_USAGE
        handler = {command.name: command.run for command in COMMANDS}[args.command]
        return handler(args, env)
    except CtlError as exc:
        if args is not None and wants_json(args) and not env.printed and args.command not in ("logs", "monitor"):
            # -o json: stdout is a JSON document whatever happened (logs and monitor print JSON lines: none is valid)
            env.out(json.dumps({"error": clean(exc, 2000), "hint": exc.hint, "exit_code": exc.code}, indent=2))
        print(f"previewctl: {clean(exc, 2000)}; {exc.hint}", file=env.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the funnel: one line, never a traceback
        print(
            f"previewctl: unexpected error: {type(exc).__name__}: {clean(exc)}; please report it with 'previewctl logs "
            f"-n 50'",
            file=env.stderr,
        )
        return EXIT_PROBLEM


if __name__ == "__main__":
    sys.exit(main())

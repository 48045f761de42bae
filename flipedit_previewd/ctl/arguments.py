"""argparse types and flag groups the subcommands share: numbers in range, -o text|json.

Every argument is checked by argparse, with a message a person understands; a usage error is
exit 3 (``parser.Parser``). The journal's flags are ``journal_window.add_journal_args``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def number(
    kind: type, low: float | None = None, high: float | None = None, above: float | None = None
) -> Callable[[str], Any]:
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


def output_format(text: str) -> str:
    """-o's value: text or json ('short', logs' old word, is text). A file name here is the old render/profile "
    "spelling."""
    text = {"short": "text"}.get(text, text)
    if text not in ("text", "json") and ("." in text or "/" in text or text == "-"):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not an output format (text, json): write the file with -O {text}"
        )
    return text


def format_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o",
        "--output",
        type=output_format,
        choices=("text", "json"),
        default="text",
        help="output format: text or json (default text)",
    )
    p.add_argument("--json", dest="output", action="store_const", const="json", help="the same as -o json")

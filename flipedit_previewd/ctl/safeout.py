"""previewctl prints what a server or the journal said: nothing of it may steer the terminal.

Everything that reaches the operator's screen from outside (a /health field, a journal
MESSAGE, a path) goes through ``clean`` (control characters escaped, one bounded line),
numbers through ``as_int``/``as_float`` (junk becomes a default, never an exception), and
anything shown through rich goes in as ``Text`` (never parsed as markup).
"""

from __future__ import annotations

from typing import Any

from flipedit_previewd.common.textsafe import escape, escape_tree, finite_number


def clean(value: Any, limit: int = 500) -> str:
    return escape("" if value is None else value, limit, backslash=False)


def clean_tree(value: Any) -> Any:
    return escape_tree(value, 500)


def as_float(value: Any, default: float = 0.0) -> float:
    number = finite_number(value)
    return default if number is None else number


def as_int(value: Any, default: int = 0) -> int:
    number = finite_number(value)
    if number is None or abs(number) > 2**53:
        return default
    return int(number)


def rich_text(value: Any) -> Any:
    """A rich ``Text``: shown literally, so '[/bold]' or '[link=...]' in a server string is just text."""
    from rich.text import Text

    return Text(clean(value))


def as_dict(value: Any) -> dict[str, Any]:
    """A JSON object from outside, or an empty one when it is anything else."""
    return value if isinstance(value, dict) else {}

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


def refusal_reason(response: Any, detail_limit: int) -> str:
    """Why the daemon refused a request, as one clean line: its JSON ``error: detail``, else the body's text,
    else the HTTP reason phrase (a proxy or another server in between answers in any of the three)."""
    try:
        body = response.json()
        return (
            f"{clean(body.get('error'), 80)}: {clean(body.get('detail'), detail_limit)}"
            if isinstance(body, dict)
            else clean(response.text, detail_limit)
        )
    except ValueError:
        return clean(response.reason or "no reason given", 80)


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

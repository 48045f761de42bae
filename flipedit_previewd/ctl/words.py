"""How previewctl shows things to a person: durations, absent values, colour, line widths.

Presentation only: nothing here reads the system (what previewctl learns about the machine is
``system.py``, the journal's whereabouts ``journal_read.py``); escaping what came from outside is
``safeout.py``. Human output never shows Python reprs: an absent value is "-", a duration reads
like systemctl's ("2h 3min"), and colour marks status words only on a terminal
(never with NO_COLOR, never when piped).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

GREEN, YELLOW, RED, DIM, RESET = "\033[32m", "\033[33m", "\033[1;31m", "\033[2m", "\033[0m"
WORD_COLOURS = {
    "ok": GREEN,
    "active": GREEN,
    "pass": GREEN,
    "degraded": YELLOW,
    "overloaded": YELLOW,
    "activating": YELLOW,
    "reloading": YELLOW,
    "stopping": RED,
    "unreachable": RED,
    "failed": RED,
    "fail": RED,
    "inactive": YELLOW,
    "n/a": DIM,
}


def wants_colour(is_tty: bool, environ: Mapping[str, str]) -> bool:
    """https://no-color.org: NO_COLOR set to anything non-empty turns colour off; so does TERM=dumb."""
    return is_tty and not environ.get("NO_COLOR") and environ.get("TERM", "") != "dumb"


def paint(text: str, colour: bool, word: str | None = None) -> str:
    code = WORD_COLOURS.get((word or text).strip().strip("[]").lower())
    return f"{code}{text}{RESET}" if colour and code else text


def show(value: Any, unit: str = "") -> str:
    """A value for a person: '-' for absent, numbers without float noise."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:.0f}"
    else:
        text = str(value)
    return f"{text} {unit}" if unit else text


def fit(text: str, indent: int = 12, columns: int = 80) -> list[str]:
    """One human line within ``columns``: wrapped at spaces, continuation lines indented by ``indent``.

    The spacing between words is kept (aligned columns stay aligned); a word longer than a line
    (a path, a URL) is kept whole, on the line it starts."""
    if len(text) <= columns:
        return [text]
    head = len(text) - len(text.lstrip(" "))
    pad = " " * indent
    lines: list[str] = []
    line, gap, fresh = " " * head, "", True
    for word, after in re.findall(r"(\S+)(\s*)", text[head:]):
        candidate = line + gap + word
        if not fresh and len(candidate) > columns and len(pad) + len(word) <= columns:
            lines.append(line)
            line = pad + word
        else:
            line = candidate
        fresh, gap = False, after
    lines.append(line)
    return lines


def duration(seconds: Any) -> str:
    """Like systemctl: '850ms', '12.5s', '4min 3s', '2h 5min', '3d 4h'; '-' when absent."""
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "-"
    if s != s or s < 0:
        return "-"
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.1f}s".replace(".0s", "s")
    minutes, sec = divmod(int(s), 60)
    if minutes < 60:
        return f"{minutes}min {sec}s" if sec else f"{minutes}min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}min" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"

"""Parsers of configuration values: a raw value in, the setting's typed value out, or ``ValueError``
saying what is wrong in the user's words (``schema.py`` shows the key, the value as written, the
source and the line before it, so a reason never repeats them).

A raw value is either text (an environment variable or a flag: strings by nature, parsed strictly,
so "3" is an int but "3.0" and "x" are not) or a TOML value whose type ``schema.py`` has already
checked against the setting's (no float or string or bool where an int is meant). Nothing here lets
Python's own conversion messages (``invalid literal for int() with base 10``) reach the user.
"""

from __future__ import annotations

import re
from typing import Any

# The largest canvas side, and the largest output side a request may ask for (routes.py): a frame
# of 16384 x 16384 is the most any part of the daemon is built to hold.
MAX_SIDE = 16384

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def whole_number(raw: Any) -> int:
    """An int from TOML, or text that is one ("3", "-2"); never a bool, a float or "3.0"."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and _INT.fullmatch(raw.strip()):
        return int(raw.strip())
    raise ValueError("expected a whole number")


def number(raw: Any) -> float:
    """An int or float from TOML, or decimal text ("2.5", "3", "1e-3"); finite."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str) and _FLOAT.fullmatch(raw.strip()):
        value = float(raw.strip())
    else:
        raise ValueError("expected a number")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("expected a finite number")
    return value


def _int_between(raw: Any, low: int, high: int | None, why: str) -> int:
    value = whole_number(raw)
    if value < low or (high is not None and value > high):
        raise ValueError(why)
    return value


def positive_int(raw: Any) -> int:
    return _int_between(raw, 1, None, "must be at least 1")


def non_negative_int(raw: Any) -> int:
    return _int_between(raw, 0, None, "must not be negative")


def canvas_side(raw: Any) -> int:
    """A canvas side: a frame must be possible, so at most MAX_SIDE (and the whole canvas within
    max_output_pixels, checked in ``schema.py`` where both are known)."""
    return _int_between(raw, 1, MAX_SIDE, f"must be between 1 and {MAX_SIDE} pixels")


def positive_float(raw: Any) -> float:
    value = number(raw)
    if not value > 0:
        raise ValueError("must be above 0")
    return value


def non_negative_float(raw: Any) -> float:
    value = number(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def quality(raw: Any) -> int:
    return _int_between(raw, 1, 95, "JPEG quality must be between 1 and 95")


def text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("expected a string in quotes")
    return raw


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in {"1", "true", "yes", "on"}:
        return True
    if word in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false (or yes/no, on/off, 1/0)")


def split_list(raw: str) -> list[str]:
    """A list written as text (an environment variable, a flag): items separated by commas, ``\\,``
    a comma inside an item and ``\\\\`` a backslash; spaces around an item are dropped, spaces inside
    kept ("/my media" is one item). Commas rather than ':' because hosts and addresses contain ':'."""
    items: list[str] = []
    current: list[str] = []
    chars = iter(raw)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            if following not in (",", "\\"):
                current.append(char)  # a lone backslash stays what it is
            current.append(following)
        elif char == ",":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


LIST_SYNTAX = (
    "in TOML an array of strings; as a flag repeat it or separate items with commas; "
    "in the environment separate items with commas; write \\, for a comma inside an item"
)


def str_list(raw: Any) -> tuple[str, ...]:
    """A list of strings (text was split by ``split_list`` in ``schema.py`` before it gets here)."""
    if not isinstance(raw, (list, tuple)) or not all(isinstance(item, str) for item in raw):
        raise ValueError('expected a list of strings, e.g. ["/a", "/b"]')
    return tuple(item.strip() for item in raw if item.strip())


def listen_list(raw: Any) -> tuple[str, ...]:
    """HOST:PORT, [V6]:PORT or unix:PATH each; a typo is a configuration error, not a socket error."""
    items = str_list(raw)
    for item in items:
        if item.startswith("unix:"):
            if len(item) == 5:
                raise ValueError(f"{item!r}: unix: needs a path")
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not HOST:PORT (port 1-65535) or unix:PATH")
        if host.startswith("[") != host.endswith("]"):
            raise ValueError(f"{item!r}: an IPv6 host goes in brackets, e.g. [::1]:8081")
    return items

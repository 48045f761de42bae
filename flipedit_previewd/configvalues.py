"""Parsers of configuration values: a raw value from TOML, the environment or the command line in,
the setting's typed value out, or ``ValueError`` saying what is wrong (``config.py`` adds key and source).
"""

from __future__ import annotations

from typing import Any


def _int_at_least(raw: Any, low: int, why: str) -> int:
    if isinstance(raw, bool):
        raise ValueError("expected an integer")
    value = int(raw)
    if value < low:
        raise ValueError(why)
    return value


def positive_int(raw: Any) -> int:
    return _int_at_least(raw, 1, "must be at least 1")


def non_negative_int(raw: Any) -> int:
    return _int_at_least(raw, 0, "must not be negative")


def positive_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number")
    value = float(raw)
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("must be a finite number above 0")
    return value


def quality(raw: Any) -> int:
    value = positive_int(raw)
    if value > 95:
        raise ValueError("JPEG quality must be between 1 and 95")
    return value


def text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    return raw


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


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


def str_list(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        items = [part.strip() for part in raw.replace(",", " ").split()]
    elif isinstance(raw, (list, tuple)):
        items = [str(part).strip() for part in raw]
    else:
        raise ValueError("expected a list of strings")
    return tuple(item for item in items if item)

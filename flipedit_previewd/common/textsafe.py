"""Printing strings that someone else controls: one line, no control characters, bounded.

Media paths, request targets, headers, and everything previewctl reads from a
server or the journal can carry a newline (a forged log line), ESC sequences
(terminal control, OSC 8 links, clear-screen) or bidi overrides. ``escape``
turns every non-printable character into a visible ``\\xNN``/``\\uNNNN`` escape
and bounds the length, so what is shown is one honest line; structured fields
keep the raw value. Backslashes are doubled so an escape cannot be forged.
"""

from __future__ import annotations

import math
import re
from typing import Any

DEFAULT_LIMIT = 1000
SAFE_TOKEN = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def _escape_char(ch: str, backslash: bool = True) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\" if backslash else ch
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(value: Any, limit: int = DEFAULT_LIMIT, backslash: bool = True) -> str:
    """One printable line: non-printable characters escaped, at most ``limit`` characters kept.

    ``backslash=False`` leaves backslashes alone: for showing text that was escaped at its source
    (the daemon's MESSAGE), where doubling them again would only make it unreadable.
    """
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    if not (text.isprintable() and (not backslash or "\\" not in text)):
        text = "".join(
            ch if ch.isprintable() and (ch != "\\" or not backslash) else _escape_char(ch, backslash) for ch in text
        )
    return text + (f"...[{len(value if isinstance(value, str) else str(value)) - limit} more]" if cut else "")


def escape_tree(value: Any, limit: int = DEFAULT_LIMIT, depth: int = 0) -> Any:
    """Every string in a JSON-like value escaped (keys too): for JSON a terminal will show."""
    if depth > 32:
        return "..."
    if isinstance(value, str):
        return escape(value, limit)
    if isinstance(value, dict):
        return {escape(k, 200): escape_tree(v, limit, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [escape_tree(v, limit, depth + 1) for v in value]
    return value


def is_safe_token(value: str) -> bool:
    """A client-supplied identifier (X-Request-Id) we may echo and log as is."""
    return SAFE_TOKEN.fullmatch(value) is not None


def finite_number(value: Any) -> float | None:
    """A finite float, or None for junk, nan and infinities (journal fields anyone could have written)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    try:
        number = float(value) if isinstance(value, (int, float)) else float(str(value)[:64])
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None

"""Opening an editor's database read-only, as untrusted input: the daemon's reader and previewctl doctor.

A leaf (standard library only) so that previewctl can use the daemon's own opener without
importing the render side (ARCHITECTURE.md, the layering rule).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from urllib.parse import quote

BUSY_TIMEOUT_MS = 200
PROGRESS_STEPS = 10_000  # SQLite VM instructions between deadline checks


def readonly_uri(path: str) -> str:
    """SQLite's read-only URI for ``path``: every byte that means something in a URI (``?``, ``#``, ``%``) quoted."""
    return f"file:{quote(os.path.abspath(path), safe='/')}?mode=ro"


def open_readonly(path: str, deadline: float | None = None) -> sqlite3.Connection:
    """Open a project database as untrusted input.

    Regular files only (opening a FIFO blocks forever), ``trusted_schema`` off (a hostile
    schema's views and triggers cannot call functions with side effects), and with a
    ``deadline`` SQLite's progress handler abandons any statement still running at it
    (a recursive view as ``clips`` would otherwise run forever).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise sqlite3.OperationalError(f"cannot stat: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise sqlite3.DatabaseError("not a regular file")
    conn = sqlite3.connect(readonly_uri(path), uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA query_only = 1")
    conn.execute("PRAGMA trusted_schema = OFF")
    if deadline is not None:
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), PROGRESS_STEPS)
    return conn

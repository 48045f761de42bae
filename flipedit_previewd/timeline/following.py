"""Following the editor's project list: the daemon serves the newest project without a restart.

A socket-activated daemon outlives many editor sessions, so reading the list once at start (what
the old server did) serves yesterday's project. The list is a small SQLite database the editor
writes when a project is opened or saved. Whether it changed is decided by ``stat`` alone (the
database, its ``-wal``, and whether the project being served still exists), at most every
``CHECK_INTERVAL`` seconds from the request path; only a change costs a read, in the caller's
I/O thread. The newest project whose database exists is chosen, so a project that vanished
falls back to the next newest, and to no project ("No videos in timeline") when none is left.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from flipedit_previewd.common.readonlydb import read_readonly
from flipedit_previewd.timeline.model import stat_of

# Requests stat at most this often (three stat calls): a change is noticed well within 1 s.
CHECK_INTERVAL = 0.2
LIST_READ_TIMEOUT = 2.0  # the list is small; a read still running then is blocked (readonlydb.read_readonly)


def list_projects(metadata_db: str) -> list[str]:
    """The project list, newest first (the editor's order: last_modified_at, then id); only paths that can
    name a file (text without a NUL byte): the rest is skipped, it cannot be opened anyway."""
    rows = read_readonly(
        metadata_db,
        LIST_READ_TIMEOUT,
        lambda conn: conn.execute(
            "SELECT database_path FROM project_metadata_table ORDER BY last_modified_at DESC, id DESC"
        ).fetchall(),
    )
    return [row[0] for row in rows if isinstance(row[0], str) and row[0] and "\x00" not in row[0]]


@dataclass
class Switch:
    previous: str
    project: str
    reason: str


class ProjectFollower:
    """Which project to serve, per the editor's list; thread-safe, cheap to ask."""

    def __init__(self, metadata_db: str) -> None:
        self.metadata_db = os.path.expanduser(metadata_db)
        self._signature: tuple[Any, ...] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.switches = 0
        self.switched_at = 0.0  # wall clock of the last switch, 0 when none
        self.previous = ""
        self.error = ""

    def _signature_now(self) -> tuple[Any, ...]:
        return (stat_of(self.metadata_db), stat_of(self.metadata_db + "-wal"))

    def due(self, current: str) -> bool:
        """True when the list changed or the served project vanished: stat only, rate-limited."""
        now = time.monotonic()
        if now - self._checked < CHECK_INTERVAL:
            return False
        self._checked = now
        return self._signature_now() != self._signature or (bool(current) and not os.path.exists(current))

    def choose(self, current: str) -> Switch | None:
        """Read the list (in an I/O thread) and say which project to serve, if not ``current``."""
        with self._lock:
            signature = self._signature_now()
            if signature == self._signature and (not current or os.path.exists(current)):
                return None
            self._signature, self._checked = signature, time.monotonic()
            try:
                listed = list_projects(self.metadata_db) if signature[0] is not None else []
                self.error = ""
            except Exception as exc:  # noqa: BLE001 - an unreadable list (locked, hostile, blocked) is never the daemon's end
                self.error = (
                    f"project list {self.metadata_db}: {exc if isinstance(exc, sqlite3.Error) else repr(exc)[:200]}"
                )
                return None  # keep serving what we serve; the editor's next write changes the signature again
            newest = next((path for path in listed if os.path.exists(path)), "")
            if newest == current:
                return None
            if not newest:
                reason = "no project left in the list" if listed else "the project list is empty or missing"
            elif current and not os.path.exists(current):
                reason = "the project served vanished; next newest"
            elif current in listed:
                reason = "a newer project in the list"
            else:
                reason = "newest project in the list"
            self.previous = current
            self.switches += 1
            self.switched_at = time.time()
            return Switch(current, newest, reason)

    def forget(self) -> None:
        """Make the next ``choose`` read the list whatever the stats say (reload)."""
        self._signature, self._checked = None, 0.0

    def initial(self) -> str:
        """The project to start with (not counted as a switch)."""
        chosen = self.choose("")
        self.switches, self.switched_at, self.previous = 0, 0.0, ""
        return chosen.project if chosen else ""

    def state(self) -> dict[str, Any]:
        return {
            "metadata_db": self.metadata_db,
            "switches": self.switches,
            "previous": self.previous,
            "switched_at": self.switched_at or None,
            "error": self.error,
        }

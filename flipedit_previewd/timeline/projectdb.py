"""Reading the editor's Drift/SQLite project databases, read-only and only when they change.

The editor writes the database while we read it, many times a second during a
drag. We open it with ``mode=ro`` and a short busy timeout, decide whether to
re-read from the database and ``-wal`` files' mtime and size (a stat, not a
query), and keep the last good timeline whenever a read fails: a locked,
half-written or vanished database must never blank the preview.

The database is untrusted input: whatever one row holds (a type SQLite lets any column have, JSON
nested 100,000 deep, a NUL byte, bytes that are not UTF-8) is a problem of that row, skipped and
named; whatever else a read raises, or a read blocked in a system call, is a problem of the project
(its state in /health), never of the daemon.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flipedit_previewd.common.readonlydb import ReadStuck, read_readonly
from flipedit_previewd.timeline.model import (
    MAX_CANVAS_SIDE,
    Clip,
    Rect,
    Timeline,
    Track,
    empty_timeline,
    restat,
    stat_of,
)

# The database's own files are stat'ed on every call (two stat calls: the drag must settle fast);
# media files, which rarely change under a running editor, at most this often.
MEDIA_STAT_INTERVAL = 0.5
FETCH_BATCH = 1000  # rows fetched between deadline and row-limit checks
DB_READ_TIMEOUT = 2.0
MAX_ROWS = 65536
# A failed read is not retried on every request while the files stay the same; a lock clears on its own.
RETRY_LOCKED = 0.5
RETRY_FAILED = 5.0


class TimelineRefused(sqlite3.DatabaseError):
    """The database was read but its timeline breaks a limit: the last good timeline stays."""


def schema_version(conn: sqlite3.Connection) -> int:
    """Drift's user_version, cross-checked against the columns actually present."""
    declared = int(conn.execute("PRAGMA user_version").fetchone()[0])
    columns = {row[1] for row in conn.execute("PRAGMA table_info(clips)")}
    if not columns:
        raise sqlite3.DatabaseError("no clips table: not a FlipEdit project database")
    if "preview_position_x" in columns:
        return 3
    if "metadata" in columns:
        return 2
    if "metadata_json" in columns:
        return 1
    return declared or 1


def _rect_from_metadata(raw: Any) -> tuple[Rect | None, int]:
    if not raw:
        return None, 0
    try:
        meta = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return None, 0
    if not isinstance(meta, dict):
        return None, 0
    rect = None
    pr = meta.get("previewRect")
    if isinstance(pr, dict):
        try:
            rect = Rect(float(pr["left"]), float(pr["top"]), float(pr["width"]), float(pr["height"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            rect = None
        if rect is not None and (rect.width <= 0 or rect.height <= 0):
            rect = None
        if rect is not None:
            _check_rect(rect, "previewRect")
    flip = meta.get("previewFlip", 0)
    return rect, flip if flip in (0, 1, 2) else 0


class BadRow(ValueError):
    """One row whose values break the rules JSON timelines follow; it is skipped and reported."""


def describe(exc: BaseException) -> str:
    """One line for a skipped row or a failed read: the reason of a ``BadRow``, else the exception's type too."""
    text = str(exc)[:160]
    return text if isinstance(exc, (BadRow, sqlite3.Error)) else f"{type(exc).__name__}: {text}"


def _text(value: Any, name: str, default: str = "") -> str:
    """A column read as text: bytes that were not UTF-8 arrive as lone surrogates (``_decode``) and break the row."""
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRow(f"{name}: not text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRow(f"{name}: not valid UTF-8") from None
    return value


def _decode(raw: bytes) -> str:
    """SQLite TEXT to str; invalid UTF-8 is kept (as surrogates) for ``_text`` to refuse in its row only:
    the default decoder raises for the whole query, so one such row would make the project unreadable."""
    return raw.decode("utf-8", "surrogateescape")


def _number(value: Any, name: str, low: float = 0.0, high: float = 1e10) -> float:
    """A finite number in range, as a JSON timeline must have; SQLite lets any column hold text."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRow(f"{name}: {str(value)[:40]!r} is not a number")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise BadRow(f"{name}: {number} is not finite or out of range")
    return number


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRow(f"{name}: {str(value)[:40]!r} is not an integer")
    return value


def _check_rect(rect: Rect, name: str) -> None:
    values = (rect.left, rect.top, rect.width, rect.height)
    if not all(math.isfinite(v) for v in values):
        raise BadRow(f"{name}: not finite")
    if (
        not (0 < rect.width <= 4 * MAX_CANVAS_SIDE and 0 < rect.height <= 4 * MAX_CANVAS_SIDE)
        or abs(rect.left) > 1e6
        or abs(rect.top) > 1e6
    ):
        raise BadRow(f"{name}: width and height must be positive and bounded")


def _fetch(conn: sqlite3.Connection, sql: str, max_rows: int) -> list[Any]:
    """At most ``max_rows`` rows, fetched in batches: one C call building 65,536 rows holds the GIL
    (and so the event loop) for a tenth of a second."""
    cursor = conn.execute(sql)
    rows: list[Any] = []
    while len(rows) <= max_rows:
        batch = cursor.fetchmany(FETCH_BATCH)
        if not batch:
            break
        rows.extend(batch)
    if len(rows) > max_rows:
        raise TimelineRefused(f"more than {max_rows} rows in {sql.rsplit(' FROM ', 1)[1]} (max_timeline_clips)")
    return rows


def read_timeline(
    conn: sqlite3.Connection,
    canvas: tuple[int, int],
    fps: float,
    source: str,
    max_rows: int = MAX_ROWS,
    skipped: list[str] | None = None,
) -> Timeline:
    """The database's timeline; rows whose values are not valid are skipped and described in ``skipped``."""
    skipped = [] if skipped is None else skipped
    conn.text_factory = _decode
    version = schema_version(conn)
    meta_col = "metadata_json" if version == 1 else "metadata"
    extra = ", preview_position_x, preview_position_y, preview_width, preview_height" if version == 3 else ""
    conn.execute("BEGIN")
    try:
        track_rows = _fetch(conn, 'SELECT id, "order", is_visible, type FROM tracks', max_rows)
        clip_rows = _fetch(
            conn,
            "SELECT id, track_id, type, source_path, start_time_on_track_ms, end_time_on_track_ms, "
            f"start_time_in_source_ms, end_time_in_source_ms, {meta_col}{extra} FROM clips",
            max_rows,
        )
    finally:
        conn.execute("COMMIT")
    by_track: dict[int, list[Clip]] = {}
    for row in clip_rows:
        try:
            clip_id, track_id = _integer(row[0], "id"), _integer(row[1], "track_id")
            rect, flip = _rect_from_metadata(row[8])
            if version == 3:
                x, y, w, h = (
                    _number(v, name, -1e6, 4 * MAX_CANVAS_SIDE) if v is not None else None
                    for v, name in zip(
                        row[9:13],
                        ("preview_position_x", "preview_position_y", "preview_width", "preview_height"),
                        strict=True,
                    )
                )
                if w is not None and h is not None and w > 0 and h > 0:
                    rect = Rect(x or 0.0, y or 0.0, w, h)
                    _check_rect(rect, "preview rectangle")
            path = _text(row[3], "source_path")
            if "\x00" in path or len(path) >= 4096:
                raise BadRow("source_path: not a usable path")
            start, end = _number(row[4], "start_time_on_track_ms"), _number(row[5], "end_time_on_track_ms")
            if end < start:
                raise BadRow("end_time_on_track_ms: before start_time_on_track_ms")
            clip = Clip(
                clip_id,
                track_id,
                _text(row[2], "type") or "video",
                path,
                start,
                end,
                _number(row[6], "start_time_in_source_ms"),
                _number(row[7], "end_time_in_source_ms"),
                rect,
                flip,
                stat_of(path) if path else None,
            )
        except Exception as exc:  # noqa: BLE001 - anything one row raises (RecursionError, MemoryError...) skips that row
            skipped.append(f"clip {_ident(row[0])}: {describe(exc)}")
            continue
        by_track.setdefault(clip.track_id, []).append(clip)
    tracks = []
    for r in track_rows:
        try:
            track_id, order = _integer(r[0], "tracks.id"), int(_number(r[1], "order", -1e9, 1e9))
            track = Track(
                track_id, order, bool(r[2]), tuple(by_track.get(track_id, ())), _text(r[3], "tracks.type") or "video"
            )
        except Exception as exc:  # noqa: BLE001 - as for clips
            skipped.append(f"track {_ident(r[0])}: {describe(exc)}")
            continue
        tracks.append(track)
    return Timeline(canvas[0], canvas[1], fps, tuple(tracks), source=f"{source} (schema v{version})")


def _ident(value: Any) -> str:
    """A row's id as it may appear in a message: whatever the column holds, short and printable."""
    return repr(value)[:20] if not isinstance(value, int) or isinstance(value, bool) else str(value)


def _asset_rows(conn: sqlite3.Connection) -> list[Any]:
    conn.text_factory = _decode
    return conn.execute("SELECT DISTINCT source_path FROM project_assets").fetchmany(MAX_ROWS)


def asset_dirs(path: str) -> list[str]:
    """Directories the project's assets live in: the default roots for media besides the project's own.

    Only absolute, valid paths (no NUL byte, valid UTF-8, not over PATH_MAX): the rest cannot name a
    directory and must not reach ``realpath``. A read that fails in any way gives no asset directories.
    """
    try:
        rows = read_readonly(path, DB_READ_TIMEOUT, _asset_rows)
    except Exception:  # noqa: BLE001 - a project read that fails is the project's problem (ProjectSource says which)
        return []
    return asset_dirs_of(rows)


def _assets_beside(conn: sqlite3.Connection) -> list[str] | None:
    """``asset_dirs`` in the timeline's own read (one open of the database, not two, after each change: the
    drag's settle); None when the table cannot be read (then ``asset_dirs`` reads it on its own, as before)."""
    try:
        return asset_dirs_of(_asset_rows(conn))
    except sqlite3.Error:
        return None


def asset_dirs_of(rows: list[Any]) -> list[str]:
    dirs = set()
    for value, *_ in rows:
        try:
            text = _text(value, "source_path")
        except BadRow:
            continue
        if text and "\x00" not in text and len(text) < 4096 and os.path.isabs(text):
            dirs.add(os.path.dirname(text))
    return sorted(dirs)


def read_project(
    path: str, canvas: tuple[int, int], fps: float, timeout: float, max_rows: int, skipped: list[str]
) -> tuple[Timeline, list[str] | None]:
    """One read of a project database, as untrusted input (``read_readonly``: regular files only, a deadline, in a
    thread of its own): its timeline and its assets' directories (None: that table could not be read). Rows
    that break the rules are described in ``skipped``; any other failure is raised. The served project's
    reads (``ProjectSource.current``) and a project read for its proxies (``app.project.read_another``)."""
    return read_readonly(
        path,
        timeout,
        lambda conn: (read_timeline(conn, canvas, fps, path, max_rows, skipped), _assets_beside(conn)),
    )


def discover_project(metadata_db: str) -> str | None:
    """The old server's rule: the most recently modified project in the editor's project list."""
    path = os.path.expanduser(metadata_db)
    if not os.path.exists(path):
        return None
    try:
        row = read_readonly(
            path,
            DB_READ_TIMEOUT,
            lambda conn: conn.execute(
                "SELECT database_path FROM project_metadata_table ORDER BY last_modified_at DESC, id DESC LIMIT 1"
            ).fetchone(),
        )
    except Exception:  # noqa: BLE001 - an unreadable list is no project, whatever the reason
        return None
    return str(row[0]) if row and row[0] else None


@dataclass
class SourceHealth:
    path: str = ""
    state: str = "none"
    error: str = ""
    reads: int = 0
    events: list[tuple[str, str]] = field(default_factory=list)


KEEPING = "; keeping the last good timeline"


class ProjectSource:
    """The live timeline of one project database (or a PUT JSON timeline), thread-safe.

    The event loop never waits for a database read: reads and digests run under
    ``_read_lock``, which only worker and offload threads take; ``_lock`` guards
    nothing but swapping references in and out. A read that fails (locked,
    corrupt, past its deadline, over a limit) keeps the last good timeline and
    is not retried while the files stay the same (a lock is retried soon).
    """

    def __init__(self, path: str, canvas: tuple[int, int], fps: float, no_project: str = "") -> None:
        """``no_project``: what an empty frame says when there is no project (where it was looked for, the fix)."""
        self.canvas = canvas
        self.fps = fps
        self.health = SourceHealth(path=path, error="" if path else no_project)
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._timeline = empty_timeline(canvas, fps, source="no project", note="" if path else no_project)
        self._signature: tuple[Any, ...] | None = None
        self._failed: tuple[Any, ...] | None = None
        self._retry_at = 0.0
        self._checked = 0.0
        self._restat_claimed = False
        self._override: Timeline | None = None
        # The directories of the project's assets, read with the last good timeline (None: not read with it).
        self.asset_dirs: list[str] | None = None
        self.read_timeout = DB_READ_TIMEOUT
        self.max_rows = MAX_ROWS
        # Called with each timeline read from the database; raises to refuse it (limits.check_timeline).
        self.check: Any = None

    @property
    def path(self) -> str:
        return self.health.path

    def set_json(self, timeline: Timeline | None) -> None:
        with self._lock:
            self._override = timeline

    def _db_signature(self) -> tuple[Any, ...]:
        return (stat_of(self.path), stat_of(self.path + "-wal"))

    @property
    def override(self) -> Timeline | None:
        """The PUT /timeline in force, if any."""
        return self._override

    @property
    def last(self) -> Timeline:
        """The last good timeline, without looking at the files."""
        return self._override if self._override is not None else self._timeline

    def current_if_unchanged(self) -> Timeline | None:
        """The current timeline when that costs no database read (the event loop's fast path), else None."""
        return self.peek()[0]

    def peek(self) -> tuple[Timeline | None, str]:
        """The current timeline when that costs no database read (the event loop's fast path): ``(timeline, "")``;
        else ``(None, why)``: "database" (its files changed since the last read) or "media" (a re-stat is due).

        Takes no lock a reader holds: two stat calls at most. Media due for a stat: a replaced still must
        change the revision (and the ETag) even on cache hits, so one caller is sent to ``current`` for it
        while the others keep the fast path meanwhile.
        """
        if time.monotonic() - self._checked >= MEDIA_STAT_INTERVAL and not self._restat_claimed:
            self._restat_claimed = True
            return None, "media"
        override = self._override
        if override is not None:
            return override, ""
        if not self.path:
            return self._timeline, ""
        signature = self._db_signature()
        if signature == self._signature or (signature == self._failed and time.monotonic() < self._retry_at):
            return self._timeline, ""
        return None, "database"

    def current(self, force: bool = False) -> Timeline:
        """The newest good timeline; re-reads the database only when its files changed."""
        with self._read_lock:
            now = time.monotonic()
            media_due = force or now - self._checked >= MEDIA_STAT_INTERVAL
            # Whoever claimed the re-stat on the fast path is here now (or another reader just did it):
            # release the claim either way, or a claim left behind would stop media from being followed.
            self._restat_claimed = False
            if media_due:
                self._checked = now
            override = self._override
            if override is not None:
                if media_due:
                    fresh = restat(override)
                    with self._lock:
                        if self._override is override:
                            self._override = fresh
                    return fresh
                return override
            if not self.path:
                return self._timeline
            signature = self._db_signature()
            if signature[0] is None:
                self._note("missing", f"project database {self.path} does not exist")
                return self._timeline
            if signature == self._signature and not force:
                if media_due:
                    self._timeline = restat(self._timeline)
                return self._timeline
            if signature == self._failed and now < self._retry_at and not force:
                return self._timeline
            skipped: list[str] = []
            try:
                # In a thread of its own (read_readonly): a read blocked in open() frees this thread, and
                # ``_read_lock`` that every render waits for, at its deadline.
                timeline, assets = read_project(
                    self.path, self.canvas, self.fps, self.read_timeout, self.max_rows, skipped
                )
                if self.check is not None:
                    try:
                        self.check(timeline)
                    except Exception as exc:  # noqa: BLE001 - any limit breach keeps the last good timeline
                        raise TimelineRefused(getattr(exc, "detail", str(exc))) from None
            except Exception as exc:  # noqa: BLE001 - any failure of a read is the project's, never the daemon's
                text = describe(exc)
                if isinstance(exc, TimelineRefused):
                    state = "refused"
                elif isinstance(exc, ReadStuck):
                    state = "stuck"
                elif "interrupted" in text:
                    state, text = "timeout", f"read abandoned after {self.read_timeout:.1f} s ({text})"
                elif "locked" in text or "busy" in text:
                    state = "locked"
                else:
                    state = "unreadable"
                self._failed = signature
                self._retry_at = time.monotonic() + (RETRY_LOCKED if state == "locked" else RETRY_FAILED)
                self._note(state, f"project database {self.path}: {text}{KEEPING}")
                return self._timeline
            with self._lock:
                self._signature = signature
                self._failed = None
                self._timeline = timeline
                self.asset_dirs = assets
            self.health.reads += 1
            if skipped:
                self._note(
                    "partial", f"project database {self.path}: {len(skipped)} rows skipped: {'; '.join(skipped[:3])}"
                )
                return timeline
            if self.health.state != "ok":
                self.health.events.append(("ok", f"project database {self.path} read (revision {timeline.revision})"))
            self.health.state, self.health.error = "ok", ""
            return timeline

    def _note(self, state: str, error: str) -> None:
        if self.health.state != state or self.health.error != error:
            with self._lock:
                self.health.events.append((state, error))
                if self._signature is None and state != "partial":  # never read: the empty frame says why
                    self._timeline = empty_timeline(
                        self.canvas,
                        self.fps,
                        source="no project",
                        note=f"Project not readable: {error.removesuffix(KEEPING)}. 'previewctl doctor' says more.",
                    )
        self.health.state, self.health.error = state, error

    def drain_events(self) -> list[tuple[str, str]]:
        with self._lock:
            events, self.health.events = self.health.events, []
            return events

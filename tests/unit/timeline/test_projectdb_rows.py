"""Hostile rows and unchanged failures in the project database reader (timeline/projectdb.py)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flipedit_previewd.common.readonlydb import open_readonly
from flipedit_previewd.timeline.projectdb import ProjectSource, read_timeline
from tests.support.helpers import endless_clips_view, one_track_project


def _db(tmp_path: Path) -> Path:
    db = tmp_path / "p.sqlite"
    one_track_project(db, [{"source": "/m/a.png", "rect": (0, 0, 10, 10), "end": 1000}])
    return db


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("start_time_on_track_ms", "abc"),
        ("preview_width", 9e999),
        ("end_time_on_track_ms", -5),
        ("track_id", "x"),
        ("preview_position_x", 1e300),
    ],
)
def test_bad_row_is_skipped_and_reported(tmp_path: Path, column: str, value: Any) -> None:
    db = _db(tmp_path)
    conn = sqlite3.connect(str(db))
    with conn:
        conn.execute(
            "INSERT INTO clips (track_id, name, type, source_path, start_time_in_source_ms, end_time_in_source_ms, "
            "start_time_on_track_ms, end_time_on_track_ms, metadata) "
            "SELECT track_id, name, type, source_path, 0, 10, 0, 10, '{}' FROM clips"
        )
        conn.execute(f"UPDATE clips SET {column} = ? WHERE id = 2", (value,))
    conn.close()
    skipped: list[str] = []
    reader = open_readonly(str(db))
    timeline = read_timeline(reader, (1280, 720), 30, "p", skipped=skipped)
    reader.close()
    assert [c.id for c in timeline.clips] == [1]
    assert len(skipped) == 1 and skipped[0].startswith("clip 2:")


def test_source_keeps_last_good_timeline_and_does_not_retry_an_unchanged_failure(tmp_path: Path) -> None:
    db = _db(tmp_path)
    source = ProjectSource(str(db), (1280, 720), 30)
    good = source.current()
    assert source.health.state == "ok" and len(good.clips) == 1
    endless_clips_view(db)
    source.read_timeout = 0.3
    t0 = time.monotonic()
    assert source.current() is good
    first = time.monotonic() - t0
    assert source.health.state == "timeout" and 0.25 < first < 5
    t0 = time.monotonic()
    assert source.current() is good and source.current_if_unchanged() is good  # not read again: files unchanged
    assert time.monotonic() - t0 < 0.2


def test_current_if_unchanged_never_waits_for_a_reader(tmp_path: Path) -> None:
    db = _db(tmp_path)
    source = ProjectSource(str(db), (1280, 720), 30)
    source.current()
    with source._read_lock:  # a reader thread is in the middle of a long read
        t0 = time.monotonic()
        assert source.current_if_unchanged() is not None
        assert time.monotonic() - t0 < 1.0  # waiting for the lock would never return (this thread holds it)


def test_fifo_is_refused_before_opening(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo.sqlite"
    os.mkfifo(fifo)
    source = ProjectSource(str(fifo), (1280, 720), 30)
    done = threading.Event()
    threading.Thread(target=lambda: (source.current(), done.set()), daemon=True).start()
    assert done.wait(5)
    assert source.health.state == "unreadable" and "not a regular file" in source.health.error

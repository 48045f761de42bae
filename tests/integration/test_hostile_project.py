"""A hostile project folder at a real daemon: a FIFO beside the database, rows that raise, paths with NUL bytes.

The project is a real SQLite file with the editor's schema; the FIFOs are real. The daemon must start, serve
frames within the request deadline and say in /health which project problem it has; never wedge, never die.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.support.helpers import build_project, close_to, decode, solid_png, wait_for

RED = (255, 0, 0)


def red_project(tmp_path: Path) -> Path:
    red = solid_png(tmp_path / "red.png", (32, 32), RED)
    db = tmp_path / "p.sqlite"
    build_project(
        db, 3, [{"name": "t", "order": 0, "clips": [{"source": red, "rect": (0, 0, 1280, 720), "end": 100_000}]}]
    )
    return db


def frame_colour(daemon: Any) -> tuple[int, ...]:
    response = daemon.get("/get_frame/1?width=64&height=36", timeout=8)
    assert response.status_code == 200, response.text[:200]
    return tuple(decode(response.content).getpixel((32, 18)))


def test_a_fifo_journal_at_start_is_a_degraded_project_not_a_daemon_that_never_starts(
    start_daemon: Any, tmp_path: Path
) -> None:
    db = red_project(tmp_path)
    journal = Path(f"{db}-journal")
    os.mkfifo(journal)
    begun = time.monotonic()
    daemon = start_daemon("--project", str(db))
    assert time.monotonic() - begun < 20
    health = daemon.health()
    assert health["status"] == "degraded" and health["project"]["state"] == "unreadable", health["project"]
    assert "FIFO" in health["project"]["error"]
    frame_colour(daemon)  # served (no timeline yet: nothing red), and at once
    journal.unlink()  # the folder repaired: the next retry reads it
    assert wait_for(lambda: daemon.health()["project"]["state"] == "ok", 15), daemon.health()["project"]
    assert close_to(frame_colour(daemon), RED)


def test_a_fifo_journal_while_serving_keeps_the_last_timeline_and_says_so(start_daemon: Any, tmp_path: Path) -> None:
    db = red_project(tmp_path)
    daemon = start_daemon("--project", str(db))
    assert close_to(frame_colour(daemon), RED)
    os.mkfifo(f"{db}-journal")  # (an editor would block on it too: the test writes no more)
    later = time.time() + 5
    os.utime(db, (later, later))  # the database changed: the daemon re-reads, and meets the FIFO
    begun = time.monotonic()
    for _ in range(3):
        assert close_to(frame_colour(daemon), RED)  # the last good timeline, within the request deadline
    assert time.monotonic() - begun < 8
    project = daemon.health()["project"]
    assert project["state"] == "unreadable" and "FIFO" in project["error"], project
    assert daemon.get("/debug/timeline", timeout=8).status_code == 200


def test_deep_json_and_a_nul_byte_in_an_asset_path_are_problems_of_their_rows(
    start_daemon: Any, tmp_path: Path
) -> None:
    db = red_project(tmp_path)
    conn = sqlite3.connect(str(db))
    with conn:
        row = conn.execute(
            "SELECT track_id, name, type, source_path, source_duration_ms, start_time_in_source_ms, "
            "end_time_in_source_ms, start_time_on_track_ms, end_time_on_track_ms FROM clips"
        ).fetchone()
        deep = "[" * 100_000 + "]" * 100_000
        conn.execute(
            "INSERT INTO clips (track_id, name, type, source_path, source_duration_ms, start_time_in_source_ms, "
            "end_time_in_source_ms, start_time_on_track_ms, end_time_on_track_ms, metadata) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*row, deep),
        )
        conn.execute(
            "INSERT INTO project_assets (name, source_path, type, created_at) VALUES ('x', ?, 'image', 0)",
            (f"{tmp_path}/a\x00b/x.png",),
        )
        conn.execute(
            "INSERT INTO project_assets (name, source_path, type, created_at) "
            "VALUES ('x', CAST(? AS TEXT), 'image', 0)",
            (b"/tmp/\xff\xfe/x.png",),
        )
    conn.close()
    daemon = start_daemon("--project", str(db))
    assert close_to(frame_colour(daemon), RED)  # the good clip drawn, the deep one skipped
    health = daemon.health()
    assert health["status"] == "degraded" and health["project"]["state"] == "partial", health["project"]
    assert "RecursionError" in health["project"]["error"]
    assert json.loads(daemon.get("/debug/timeline").text)["clips_count"] == 1
    assert daemon.proc.poll() is None

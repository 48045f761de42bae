"""Following the editor's project list (projects.py): which project, when a read is due, and why."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from flipedit_previewd.demo.fixtures import create_metadata_db
from flipedit_previewd.timeline.following import CHECK_INTERVAL, ProjectFollower


def _files(tmp: Path, *names: str) -> list[str]:
    paths = []
    for name in names:
        (tmp / name).write_bytes(b"x")
        paths.append(str(tmp / name))
    return paths


def _tick() -> None:
    time.sleep(CHECK_INTERVAL + 0.02)


def test_newest_existing_project_then_next_newest_then_none(tmp_path: Path) -> None:
    a, b = _files(tmp_path, "a.sqlite", "b.sqlite")
    meta = tmp_path / "list.sqlite"
    create_metadata_db(meta, [("a", a, 1), ("b", b, 2), ("gone", str(tmp_path / "never.sqlite"), 3)])
    follower = ProjectFollower(str(meta))
    assert follower.initial() == b and follower.switches == 0  # the newest whose database exists
    _tick()
    assert not follower.due(b)  # nothing changed: no read
    os.unlink(b)
    _tick()
    assert follower.due(b)
    switch = follower.choose(b)
    assert switch is not None and switch.project == a and "vanished" in switch.reason and follower.switches == 1
    os.unlink(a)
    _tick()
    assert follower.due(a)
    switch = follower.choose(a)
    assert switch is not None and switch.project == "" and "no project left" in switch.reason


def test_a_newer_row_is_due_by_stat_and_chosen(tmp_path: Path) -> None:
    a, b = _files(tmp_path, "a.sqlite", "b.sqlite")
    meta = tmp_path / "list.sqlite"
    create_metadata_db(meta, [("a", a, 1)])
    follower = ProjectFollower(str(meta))
    assert follower.initial() == a
    conn = sqlite3.connect(meta)
    with conn:
        conn.execute(
            "INSERT INTO project_metadata_table (name, database_path, created_at, last_modified_at) VALUES ('b', ?, 2, "
            "2)",
            (b,),
        )
    conn.close()
    assert not follower.due(a)  # rate-limited: at most one stat round per CHECK_INTERVAL
    _tick()
    assert follower.due(a)
    switch = follower.choose(a)
    assert switch is not None and (switch.previous, switch.project) == (a, b) and "newer" in switch.reason
    assert follower.choose(b) is None  # read once per change


def test_a_corrupt_list_keeps_the_project(tmp_path: Path) -> None:
    (a,) = _files(tmp_path, "a.sqlite")
    meta = tmp_path / "list.sqlite"
    create_metadata_db(meta, [("a", a, 1)])
    follower = ProjectFollower(str(meta))
    assert follower.initial() == a
    meta.write_bytes(b"not a database" * 100)
    _tick()
    assert follower.due(a) and follower.choose(a) is None and "list" in follower.error

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

import pytest

from flipedit_previewd.demo.fixtures import add_track, create_metadata_db, set_clip_rect
from flipedit_previewd.timeline.projectdb import ProjectSource, discover_project
from tests.support.helpers import build_project, solid_png


@pytest.mark.parametrize("version", [1, 2, 3])
def test_each_schema_version_reads_rect_flip_and_visibility(tmp_path: Path, version: int) -> None:
    png = solid_png(tmp_path / "a.png", (10, 10), (255, 0, 0))
    db = tmp_path / "p.sqlite"
    build_project(
        db,
        version,
        [
            {
                "name": "bottom",
                "order": 0,
                "clips": [{"source": png, "rect": (10, 20, 300, 200), "flip": 1, "start": 0, "end": 2000}],
            },
            {"name": "hidden", "order": 1, "visible": False, "clips": [{"source": png, "rect": (0, 0, 5, 5)}]},
        ],
    )
    timeline = ProjectSource(str(db), (1280, 720), 30).current()
    assert f"schema v{version}" in timeline.source
    clips = sorted(timeline.clips, key=lambda c: c.id)
    assert clips[0].rect is not None and (
        clips[0].rect.left,
        clips[0].rect.top,
        clips[0].rect.width,
        clips[0].rect.height,
    ) == (10, 20, 300, 200)
    assert clips[0].flip == 1
    assert [t.visible for t in sorted(timeline.tracks, key=lambda t: t.order)] == [True, False]
    assert len(timeline.layers_at(0)) == 1


def test_rereads_only_when_the_database_changes_and_never_writes(tmp_path: Path) -> None:
    png = solid_png(tmp_path / "a.png", (10, 10), (255, 0, 0))
    db = tmp_path / "p.sqlite"
    ids = build_project(
        db, 3, [{"name": "t", "order": 0, "clips": [{"name": "c", "source": png, "rect": (0, 0, 100, 100)}]}]
    )
    source = ProjectSource(str(db), (1280, 720), 30)
    first = source.current()
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    for _ in range(20):
        time.sleep(0.06)
        assert source.current().revision == first.revision
    assert source.health.reads == 1
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    conn = sqlite3.connect(str(db))
    with conn:
        set_clip_rect(conn, 3, ids["c"], (50, 60, 100, 100))
    conn.close()
    time.sleep(0.06)
    second = source.current()
    assert second.revision != first.revision and source.health.reads == 2
    assert second.clips[0].rect is not None and second.clips[0].rect.left == 50


def test_locked_corrupt_or_missing_database_keeps_last_good_timeline(tmp_path: Path) -> None:
    png = solid_png(tmp_path / "a.png", (10, 10), (255, 0, 0))
    db = tmp_path / "p.sqlite"
    build_project(db, 2, [{"name": "t", "order": 0, "clips": [{"source": png}]}])
    source = ProjectSource(str(db), (1280, 720), 30)
    good = source.current()
    writer = sqlite3.connect(str(db), isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    add_track(writer, "new", 5)
    assert source.current(force=True).revision == good.revision
    assert source.health.state == "locked"
    writer.execute("ROLLBACK")
    writer.close()
    assert source.current(force=True).revision == good.revision and source.health.state == "ok"
    db.write_bytes(b"this is not sqlite" * 100)
    assert source.current(force=True).revision == good.revision and source.health.state == "unreadable"
    os.unlink(db)
    assert source.current(force=True).revision == good.revision and source.health.state == "missing"
    states = [state for state, _ in source.drain_events()]
    assert {"locked", "unreadable", "missing"} <= set(states)


def test_discovery_picks_most_recently_modified_project(tmp_path: Path) -> None:
    meta = tmp_path / "meta.sqlite"
    create_metadata_db(
        meta, [("old", "/p/old.sqlite", 100), ("new", "/p/new.sqlite", 200), ("mid", "/p/mid.sqlite", 150)]
    )
    assert discover_project(str(meta)) == "/p/new.sqlite"
    assert discover_project(str(tmp_path / "absent.sqlite")) is None

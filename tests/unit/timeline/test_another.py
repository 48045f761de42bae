"""Another project than the one served (proxies built ahead): every path and file that cannot be one is refused
with its reason, never opened in a way that blocks; a good one gives its timeline and its own media roots.

Real SQLite files with the editor's schema (tests/support helpers), real FIFOs and symlinks."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from flipedit_previewd.common.errors import PathRefused, PayloadTooLarge, ProjectRefused, as_http
from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.timeline.another import Another, check_project_path, read_another
from flipedit_previewd.timeline.cost import check_timeline
from flipedit_previewd.timeline.model import Timeline
from tests.support.helpers import still_project


def read(path: object, configured: tuple[str, ...] = (), max_rows: int = 1000) -> Another:
    def check(timeline: Timeline) -> None:
        check_timeline(timeline, 10**12, max_rows)

    return read_another(
        path,
        (1280, 720),
        30.0,
        timeout=2.0,
        max_rows=max_rows,
        check=check,
        configured_roots=configured,
        log=EventLog(to_journal=False, to_stderr=False),
    )


def good(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    return still_project(folder, rect=(0, 0, 64, 64), size=(10, 10), name="a.png", db="p.sqlite", end=1000)


def test_a_good_project_gives_its_timeline_and_its_own_folder_as_root(tmp_path: Path) -> None:
    db = good(tmp_path / "other")
    another = read(str(db))
    assert another.path == str(db) and another.roots == (str(tmp_path / "other"),)
    assert [clip.source_path for clip in another.timeline.clips] == [str(tmp_path / "other" / "a.png")]
    assert (another.timeline.canvas_width, another.timeline.canvas_height) == (1280, 720)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: os.mkfifo(p), "a FIFO, not a regular file"),
        (lambda p: os.mkdir(p), "a directory, not a regular file"),
        (lambda p: None, "no such file"),
    ],
)
def test_what_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, make: object, reason: str) -> None:
    path = tmp_path / "p.sqlite"
    make(path)  # type: ignore[operator]
    started = time.monotonic()
    with pytest.raises(ProjectRefused, match=reason) as refused:
        read(str(path))
    assert time.monotonic() - started < 1  # a FIFO is never opened: nothing waits for a writer
    assert as_http(refused.value).status == 422


def test_a_symlink_to_a_good_project_is_refused(tmp_path: Path) -> None:
    db = good(tmp_path / "other")
    link = tmp_path / "link.sqlite"
    link.symlink_to(db)
    with pytest.raises(ProjectRefused, match="a symlink"):
        read(str(link))


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "a path is needed"),
        (None, "a path is needed"),
        ("relative/p.sqlite", "not an absolute path"),
        ("/x\x00y", "NUL byte"),
        ("/" + "a" * 5000, "PATH_MAX"),
        ("/m/\udcff.sqlite", "not valid UTF-8"),
    ],
)
def test_paths_that_name_no_file_are_refused(path: object, reason: str) -> None:
    with pytest.raises(ProjectRefused, match=reason):
        check_project_path(path)


def test_a_file_that_is_not_a_flipedit_database_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(os.urandom(8192))
    with pytest.raises(ProjectRefused, match="cannot be read"):
        read(str(junk))
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.commit()
    with pytest.raises(ProjectRefused, match="not a FlipEdit project database"):
        read(str(other))


def test_rows_that_break_the_rules_are_named(tmp_path: Path) -> None:
    db = good(tmp_path / "other")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE clips SET start_time_on_track_ms = 'x'")
    with pytest.raises(ProjectRefused, match=r"1 row\(s\) break the rules: clip \d+: start_time_on_track_ms"):
        read(str(db))


def test_more_clips_than_the_limit_are_refused(tmp_path: Path) -> None:
    db = good(tmp_path / "other")
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT * FROM clips").fetchone()
        for _ in range(5):
            conn.execute(f"INSERT INTO clips VALUES (NULL{', ?' * (len(row) - 1)})", row[1:])
    with pytest.raises(ProjectRefused, match=r"more than 3 rows in clips"):
        read(str(db), max_rows=3)


def test_a_clip_outside_that_projects_roots_is_refused_as_a_put_timeline_is(tmp_path: Path) -> None:
    db = good(tmp_path / "other")
    elsewhere = good(tmp_path / "elsewhere").parent / "a.png"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE clips SET source_path = ?", (str(elsewhere),))
    with pytest.raises(PathRefused, match="outside the allowed roots") as refused:
        read(str(db))
    assert as_http(refused.value).status == 403
    assert read(str(db), configured=(str(tmp_path),)).roots == (str(tmp_path),)  # the configured roots bind all


def test_a_limit_is_named_and_answered_422(tmp_path: Path) -> None:
    db = good(tmp_path / "other")

    def over(timeline: Timeline) -> None:
        raise PayloadTooLarge("timeline: too costly", limit="max_layer_pixels")

    with pytest.raises(ProjectRefused, match="too costly") as refused:
        read_another(
            str(db),
            (64, 36),
            30.0,
            timeout=2.0,
            max_rows=100,
            check=over,
            configured_roots=(),
            log=EventLog(to_journal=False, to_stderr=False),
        )
    answer = as_http(refused.value)
    assert answer.status == 422 and answer.extra["breaks"] == "max_layer_pixels"

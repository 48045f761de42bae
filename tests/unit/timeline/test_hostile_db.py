"""A hostile project database: side files SQLite would block on, and rows that raise anything.

Real SQLite files with the editor's schema (``testing.create_project_db``), real FIFOs. A read that
blocks is run in a daemon thread here and the FIFO opened for writing afterwards, so that a test
failing on a blocking read ends (and leaves no thread behind) instead of hanging the run.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flipedit_previewd.common.readonlydb import STUCK_GRACE, ReadStuck, read_readonly
from flipedit_previewd.demo.fixtures import create_metadata_db, create_project_db
from flipedit_previewd.timeline.following import ProjectFollower
from flipedit_previewd.timeline.projectdb import ProjectSource, asset_dirs
from flipedit_previewd.timeline.safety import effective_roots
from tests.support.helpers import still_project


def within(seconds: float, call: Callable[[], Any], fifos: list[Path]) -> Any:
    """``call()``'s result, failing if it takes longer than ``seconds``; a blocked call is freed afterwards."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    blocked = thread.is_alive()
    for fifo in fifos:  # a writer (opened without blocking) lets a reader blocked in open() go on
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    thread.join(5)
    assert not blocked, f"still blocked after {seconds} s"
    return result[0]


def project(tmp_path: Path) -> tuple[Path, Path]:
    db = still_project(tmp_path, rect=(0, 0, 64, 64), size=(10, 10), name="a.png", db="p.sqlite", end=1000)
    return db, tmp_path / "a.png"


@pytest.mark.parametrize("side", ["-journal", "-wal", "-shm", "link-journal", "real-journal"])
def test_a_fifo_beside_the_database_is_refused_without_blocking(tmp_path: Path, side: str) -> None:
    db, _ = project(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    if side == "link-journal":  # a symlink to a FIFO elsewhere
        os.symlink(fifo, str(db) + "-journal")
    elif side == "real-journal":  # the database is a symlink: SQLite names its side files after the target
        real = tmp_path / "elsewhere.sqlite"
        db.rename(real)
        db.symlink_to(real)
        os.rename(fifo, str(real) + "-journal")
        fifo = Path(str(real) + "-journal")
    else:
        os.rename(fifo, str(db) + side)
        fifo = Path(str(db) + side)
    source = ProjectSource(str(db), (1280, 720), 30)
    begun = time.monotonic()
    timeline = within(5, source.current, [fifo])
    assert time.monotonic() - begun < 1.0  # refused by the checks, not abandoned at the deadline
    assert timeline.clips == [] and source.health.state == "unreadable"
    assert "not a regular file" in source.health.error, source.health.error
    assert within(5, lambda: asset_dirs(str(db)), [fifo]) == []


def test_a_read_blocked_after_the_checks_frees_its_caller_at_the_deadline(tmp_path: Path) -> None:
    """What the checks cannot see (a side file made a FIFO between the check and SQLite's open): the caller
    gets ReadStuck at the deadline, the blocked thread is a daemon thread and holds no lock."""
    db, _ = project(tmp_path)
    journal = Path(str(db) + "-journal")

    def swap_then_read(conn: sqlite3.Connection) -> Any:
        os.mkfifo(journal)
        return conn.execute("SELECT count(*) FROM clips").fetchone()

    begun = time.monotonic()
    with pytest.raises(ReadStuck, match="did not finish"):
        read_readonly(str(db), 0.5, swap_then_read)
    assert time.monotonic() - begun < 0.5 + STUCK_GRACE + 0.5
    stuck = [t for t in threading.enumerate() if t.name == "dbread"]
    assert stuck and all(t.daemon for t in stuck)
    os.close(os.open(journal, os.O_WRONLY | os.O_NONBLOCK))  # free it: the test leaves no thread behind
    for thread in stuck:
        thread.join(5)


def test_a_metadata_list_with_a_fifo_journal_is_an_error_not_a_hang(tmp_path: Path) -> None:
    db, _ = project(tmp_path)
    meta = tmp_path / "meta.sqlite"
    create_metadata_db(meta, [("p", str(db), 100)])
    fifo = Path(str(meta) + "-journal")
    os.mkfifo(fifo)
    follower = ProjectFollower(str(meta))
    assert within(5, follower.initial, [fifo]) == ""
    assert "not a regular file" in follower.error


# --- rows that raise anything ---------------------------------------------------------------------------


def clip_row(conn: sqlite3.Connection, track: int, values: dict[str, Any]) -> None:
    row = {
        "track_id": track,
        "name": "c",
        "type": "image",
        "source_path": "/nowhere/a.png",
        "source_duration_ms": 1000,
        "start_time_in_source_ms": 0,
        "end_time_in_source_ms": 1000,
        "start_time_on_track_ms": 0,
        "end_time_on_track_ms": 1000,
        "metadata": "{}",
        **values,
    }
    marks = ", ".join("CAST(? AS TEXT)" if isinstance(v, bytes) else "?" for v in row.values())
    conn.execute(f"INSERT INTO clips ({', '.join(row)}) VALUES ({marks})", list(row.values()))


def hostile_project(tmp_path: Path, rows: list[dict[str, Any]], assets: list[Any] = ()) -> tuple[Path, Path]:  # type: ignore[assignment]
    db, png = project(tmp_path)
    conn = sqlite3.connect(str(db))
    with conn:
        (track,) = conn.execute("SELECT id FROM tracks").fetchone()
        for row in rows:
            clip_row(conn, track, row)
        for path in assets:
            mark = "CAST(? AS TEXT)" if isinstance(path, bytes) else "?"
            conn.execute(
                f"INSERT INTO project_assets (name, source_path, type, created_at) VALUES ('a', {mark}, 'image', 0)",
                (path,),
            )
    conn.close()
    return db, png


def test_deep_json_nul_bytes_and_bad_utf8_are_problems_of_their_rows(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    db, png = hostile_project(
        tmp_path,
        [
            {"metadata": deep},
            {"metadata": json.dumps({"previewRect": deep})},  # deep but only as a string: fine
            {"source_path": "/tmp/a\x00b.png"},
            {"source_path": b"/tmp/\xff\xfe.png"},  # not UTF-8
            {"type": b"\xc3("},
        ],
        assets=["/tmp/a\x00b/x.png", b"/tmp/\xff/x.png", str(tmp_path / "a.png"), 12, b"\x00\xff"],
    )
    source = ProjectSource(str(db), (1280, 720), 30)
    timeline = source.current()
    assert source.health.state == "partial"
    assert "RecursionError" in source.health.error and "4 rows skipped" in source.health.error
    assert sorted(c.source_path for c in timeline.clips) == sorted([str(png), "/nowhere/a.png"])
    dirs = asset_dirs(str(db))
    assert dirs == [str(png.parent)]
    assert effective_roots(["/tmp/a\x00b", str(png.parent)])[0] == [os.path.realpath(png.parent)]


# The editor's schema, every column given values of any SQLite type, sizes, NUL bytes, nesting and encodings.
NESTED = st.integers(1, 3000).flatmap(
    lambda depth: st.sampled_from(["[", '{"a":', '{"previewRect":']).map(lambda open_: open_ * depth)
)
TEXTS = st.text(max_size=40) | st.sampled_from(["", "\x00", "/a\x00b", "/" + "x" * 5000, "NaN", "1e999", "-0"])
BAD_UTF8 = st.binary(min_size=1, max_size=20).map(lambda b: b + b"\xff")  # stored as TEXT (CAST)
JSONS = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["previewRect", "previewFlip", "left", "top", "width", "height", "x"]), inner, max_size=4
        )
    ),
    max_leaves=12,
).map(lambda v: json.dumps(v, allow_nan=True))
VALUES = (
    st.none()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXTS
    | st.binary(max_size=40)
    | BAD_UTF8
    | NESTED
    | JSONS
)
COLUMNS = (
    "track_id",
    "type",
    "source_path",
    "start_time_in_source_ms",
    "end_time_in_source_ms",
    "start_time_on_track_ms",
    "end_time_on_track_ms",
    "metadata",
    "preview_position_x",
    "preview_position_y",
    "preview_width",
    "preview_height",
)


@st.composite
def hostile_rows(draw: st.DrawFn) -> tuple[int, list[dict[str, Any]], list[Any], list[Any]]:
    version = draw(st.sampled_from([1, 2, 3]))
    columns = [c for c in COLUMNS if version == 3 or not c.startswith("preview_")]
    rows = draw(st.lists(st.dictionaries(st.sampled_from(columns), VALUES, max_size=5), min_size=1, max_size=4))
    tracks = draw(st.lists(st.tuples(VALUES, VALUES), max_size=2))
    assets = draw(st.lists(VALUES, max_size=3))
    return version, rows, tracks, assets


def insert(conn: sqlite3.Connection, sql: str, values: list[Any]) -> None:
    """A row SQLite itself refuses (NOT NULL: a NaN is stored as NULL) cannot be in any database: left out."""
    try:
        conn.execute(sql, values)
    except sqlite3.IntegrityError:
        pass


def write_rows(db: Path, version: int, rows: list[dict[str, Any]], tracks: list[Any], assets: list[Any]) -> None:
    create_project_db(db, version)
    conn = sqlite3.connect(str(db))
    conn.execute("PRAGMA foreign_keys = OFF")
    with conn:
        conn.execute(
            "INSERT INTO tracks (name, type, \"order\", created_at, updated_at) VALUES ('t', 'video', 0, 0, 0)"
        )
        for order, kind in tracks:  # SQLite's NOT NULL holds even for hostile writers; types do not
            insert(
                conn,
                'INSERT INTO tracks (name, type, "order", created_at, updated_at) VALUES '
                f"('t', {'CAST(? AS TEXT)' if isinstance(kind, bytes) else '?'}, ?, 0, 0)",
                [kind if kind is not None else "video", order if order is not None else 0],
            )
        for row in rows:
            row = {k: v for k, v in row.items() if v is not None}
            if version == 1 and "metadata" in row:
                row["metadata_json"] = row.pop("metadata")
            full = {
                "track_id": 1,
                "name": "c",
                "type": "video",
                "source_path": "/nowhere/v.mp4",
                "start_time_in_source_ms": 0,
                "end_time_in_source_ms": 1000,
                "start_time_on_track_ms": 0,
                "end_time_on_track_ms": 1000,
                **row,
            }
            marks = ", ".join(
                "CAST(? AS TEXT)" if isinstance(v, bytes) and v.endswith(b"\xff") else "?" for v in full.values()
            )
            insert(conn, f"INSERT INTO clips ({', '.join(full)}) VALUES ({marks})", list(full.values()))
        for path in assets:
            insert(
                conn,
                "INSERT INTO project_assets (name, source_path, type, created_at) VALUES ('a', ?, 'image', 0)",
                [path if path is not None else ""],
            )
    conn.close()


def test_fuzz_database_rows_never_raise(tmp_path: Path, fuzz_examples: int) -> None:
    """Any row the editor's schema lets a hostile writer store: the read gives a timeline and a state, and
    every clip it keeps has a path the rest of the daemon can use (text, UTF-8, no NUL)."""
    counter = iter(range(10**9))

    @settings(
        max_examples=max(200, fuzz_examples // 4),
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(hostile_rows())
    def check(case: tuple[int, list[dict[str, Any]], list[Any], list[Any]]) -> None:
        version, rows, tracks, assets = case
        db = tmp_path / f"p{next(counter)}.sqlite"
        write_rows(db, version, rows, tracks, assets)
        source = ProjectSource(str(db), (1280, 720), 30)
        timeline = source.current()
        assert source.health.state in ("ok", "partial", "refused"), source.health.error
        for clip in timeline.clips:
            assert isinstance(clip.source_path, str) and "\x00" not in clip.source_path
            clip.source_path.encode("utf-8")
        json.dumps(timeline.to_json())  # /debug/timeline: every value serialisable
        kept, _ = effective_roots(asset_dirs(str(db)))
        assert all(isinstance(root, str) for root in kept)
        os.unlink(db)

    check()

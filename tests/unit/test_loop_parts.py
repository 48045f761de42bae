"""The pure parts behind issue 12: limits, database value rules, the offload queue, rejection summaries, loop lag."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import build_project

from flipedit_previewd.common.errors import Overloaded, PayloadTooLarge
from flipedit_previewd.common.looplag import LoopLag
from flipedit_previewd.common.offload import BoundedOffload
from flipedit_previewd.common.readonlydb import open_readonly
from flipedit_previewd.common.rejections import RejectionSummary
from flipedit_previewd.timeline.cost import check_timeline, max_overlap
from flipedit_previewd.timeline.model import timeline_from_json
from flipedit_previewd.timeline.projectdb import ProjectSource, read_timeline


def _timeline(clips: list[tuple[int, int]], canvas: tuple[int, int] = (1280, 720), path: str = "/m/a.png") -> Any:
    return timeline_from_json({"canvas": {"width": canvas[0], "height": canvas[1]}, "frame_rate": 10, "tracks": [
        {"clips": [{"source_path": path, "start_on_track_ms": s, "end_on_track_ms": e} for s, e in clips]}]}, canvas, 10)


def test_max_overlap_counts_layers_drawn_at_one_frame() -> None:
    assert max_overlap(_timeline([])) == 0
    assert max_overlap(_timeline([(0, 1000), (1000, 2000)])) == 1  # one ends where the next starts
    assert max_overlap(_timeline([(0, 1000), (500, 2000), (900, 1000), (1900, 3000)])) == 3


def test_check_timeline_names_the_limit() -> None:
    heavy = _timeline([(0, 1000)] * 8, (8192, 8192))
    with pytest.raises(PayloadTooLarge) as info:
        check_timeline(heavy, 7 * 8192 * 8192, 100)
    assert info.value.extra["limit"] == "max_layer_pixels" and "max_layer_pixels" in info.value.detail
    check_timeline(heavy, 8 * 8192 * 8192, 100)
    with pytest.raises(PayloadTooLarge) as info:
        check_timeline(heavy, 8 * 8192 * 8192, 7)
    assert info.value.extra["limit"] == "max_timeline_clips"
    with pytest.raises(PayloadTooLarge) as info:
        check_timeline(_timeline([(0, 10)], path="/" + "x/.." * 1100), 10**12, 100)
    assert info.value.extra["limit"] == "path_max" and "tracks[0].clips[0].source_path" in info.value.detail


def _db(tmp_path: Path) -> Path:
    db = tmp_path / "p.sqlite"
    build_project(db, 3, [{"name": "t", "order": 0, "clips": [{"source": "/m/a.png", "rect": (0, 0, 10, 10), "end": 1000}]}])
    return db


@pytest.mark.parametrize(("column", "value"), [("start_time_on_track_ms", "abc"), ("preview_width", 9e999),
                                                ("end_time_on_track_ms", -5), ("track_id", "x"), ("preview_position_x", 1e300)])
def test_bad_row_is_skipped_and_reported(tmp_path: Path, column: str, value: Any) -> None:
    db = _db(tmp_path)
    conn = sqlite3.connect(str(db))
    with conn:
        conn.execute("INSERT INTO clips (track_id, name, type, source_path, start_time_in_source_ms, end_time_in_source_ms, "
                     "start_time_on_track_ms, end_time_on_track_ms, metadata) "
                     "SELECT track_id, name, type, source_path, 0, 10, 0, 10, '{}' FROM clips")
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
    conn = sqlite3.connect(str(db))
    with conn:
        conn.execute("DROP TABLE clips")
        conn.execute("CREATE VIEW clips AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
                     "SELECT n AS id, 1 AS track_id, 'image' AS type, '' AS source_path, 0 AS start_time_on_track_ms, "
                     "0 AS end_time_on_track_ms, 0 AS start_time_in_source_ms, 0 AS end_time_in_source_ms, '{}' AS metadata, "
                     "0.0 AS preview_position_x, 0.0 AS preview_position_y, 1.0 AS preview_width, 1.0 AS preview_height "
                     "FROM r WHERE n < 0")
    conn.close()
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


def test_offload_queue_full_is_an_immediate_503() -> None:
    async def scenario() -> tuple[int, list[Any]]:
        offload = BoundedOffload(1, 1)
        gate = threading.Event()
        first = asyncio.ensure_future(offload.run(gate.wait, 5))
        second = asyncio.ensure_future(offload.run(gate.wait, 5))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded):
            await offload.run(time.sleep, 0)
        gate.set()
        results = await asyncio.gather(first, second)
        after = await offload.run(lambda: 7)
        offload.shutdown()
        return offload.rejected, [*results, after]

    rejected, results = asyncio.run(scenario())
    assert rejected == 1 and results == [True, True, 7]


class _Log:
    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event: str, message: str, priority: str = "info", **fields: Any) -> None:
        self.entries.append((event, fields))


def test_rejection_summary_adds_up_to_every_rejection() -> None:
    log = _Log()
    summary = RejectionSummary(log)  # type: ignore[arg-type]
    for i in range(2500):
        summary.add("rejected" if i % 5 else "timeout", "queue" if i % 5 else "deadline")
        if i % 1000 == 999:
            summary.flush()
    summary.flush()
    summary.flush()  # nothing new: no entry
    assert len(log.entries) == 3
    assert sum(f["REJECTED"] for _, f in log.entries) == 2500
    assert sum(f.get("COUNT_REJECTED", 0) + f.get("COUNT_TIMEOUT", 0) for _, f in log.entries) == 2500
    assert sum(f.get("LIMIT_QUEUE", 0) for _, f in log.entries) == 2000 and summary.total == 2500


def test_loop_lag_sees_a_blocked_loop_and_reports_once() -> None:
    reports: list[float] = []

    async def scenario() -> LoopLag:
        lag = LoopLag(0.1, lambda worst, _: reports.append(worst))
        lag.start(asyncio.get_running_loop())
        await asyncio.sleep(0.2)
        time.sleep(0.3)  # the loop is blocked
        await asyncio.sleep(0.2)
        time.sleep(0.2)
        await asyncio.sleep(0.1)
        lag.stop()
        return lag

    lag = asyncio.run(scenario())
    assert lag.snapshot()["max_ms"] >= 250
    assert lag.over_threshold == 2 and len(reports) == 1 and reports[0] >= 0.25


def test_journal_writer_keeps_order_counts_drops_and_flushes_on_stop(capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from flipedit_previewd.common import journal

    monkeypatch.setattr(journal, "JOURNAL_QUEUE", 3)
    log = journal.EventLog(to_journal=False, to_stderr=True)
    log.start_writer()
    with log._lock:  # the writer is stuck (journald slow): emit must not wait for it
        t0 = time.monotonic()
        for i in range(10):
            log.emit("request", f"entry {i}", "info")
        assert time.monotonic() - t0 < 0.5
    log.stop_writer()
    lines = capsys.readouterr().err.splitlines()
    written = [line for line in lines if "request: entry" in line]
    assert 3 <= len(written) < 10 and written == sorted(written, key=lambda line: int(line.rsplit(" ", 1)[1]))
    dropped = [line for line in lines if "journal_dropped" in line]
    assert len(dropped) == 1 and f"{10 - len(written)} journal entries dropped" in dropped[0]
    log.emit("request", "after stop", "info")  # synchronous again
    assert "after stop" in capsys.readouterr().err

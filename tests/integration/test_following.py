"""The daemon follows the editor: a newer project in the list, a vanished project, a replaced still.

Real daemon, real SQLite files with the editor's schema, real images; the time limits are the
issue's acceptance figures (1 s), checked by polling, not by timing asserts.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from flipedit_previewd.demo.fixtures import create_metadata_db
from tests.support.helpers import close_to, decode, solid_png, still_project

RED, GREEN, BLUE = (220, 20, 20), (20, 200, 20), (20, 20, 220)


def _project(tmp: Path, name: str, colour: tuple[int, int, int]) -> Path:
    return still_project(tmp, colour, (0, 0, 1280, 720), (64, 36), name=f"{name}.png", db=f"{name}.sqlite")


def _centre(daemon, frame: int = 5) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    response = daemon.get(f"/get_frame/{frame}?width=128")
    assert response.status_code == 200
    return decode(response.content).getpixel((64, 36))  # type: ignore[no-any-return]


def _add_to_list(meta: Path, name: str, db: Path, modified: int) -> None:
    conn = sqlite3.connect(meta)
    with conn:
        conn.execute(
            "INSERT INTO project_metadata_table (name, database_path, created_at, last_modified_at) "
            "VALUES (?, ?, ?, ?)",
            (name, str(db), modified, modified),
        )
    conn.close()


def _served_within(daemon, colour: tuple[int, int, int], limit: float = 1.0) -> float | None:  # type: ignore[no-untyped-def]
    """Seconds until frame 5 shows ``colour`` (asked 10 times a second), None if not within ``limit``."""
    begun = time.monotonic()
    while time.monotonic() - begun <= limit:
        if close_to(_centre(daemon), colour):
            return time.monotonic() - begun
        time.sleep(0.1)
    return None


@pytest.mark.solo  # "within 1 s"
def test_newer_project_in_the_list_is_served_without_restart(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b, c = _project(tmp_path, "a", RED), _project(tmp_path, "b", GREEN), _project(tmp_path, "c", BLUE)
    meta = tmp_path / "projects.sqlite"
    create_metadata_db(meta, [("a", str(a), 1000)])
    daemon = start_daemon("--metadata-db", str(meta))
    assert close_to(_centre(daemon), RED)
    pid = daemon.health()["pid"]

    _add_to_list(meta, "b", b, 2000)  # the editor opened another project
    took = _served_within(daemon, GREEN)
    assert took is not None, "newer project not served within 1 s"
    print(f"\nnewer project served after {took:.2f} s")
    health = daemon.health()
    assert health["pid"] == pid  # no restart
    assert health["project"]["path"] == str(b)
    assert health["project"]["following"]["switches"] == 1 and health["project"]["following"]["previous"] == str(a)
    assert any(
        "project_switched" in line and str(b) in line for line in daemon.log_once("project_switched").splitlines()
    )

    _add_to_list(meta, "c", c, 3000)
    assert _served_within(daemon, BLUE) is not None
    os.unlink(c)  # the project served vanishes: the next newest
    assert _served_within(daemon, GREEN, 2.0) is not None
    assert "vanished" in daemon.log_once("vanished")
    os.unlink(b)
    os.unlink(a)  # none left: the "no project" frame
    deadline = time.monotonic() + 2
    while daemon.health()["project"]["path"] and time.monotonic() < deadline:
        _centre(daemon)
        time.sleep(0.1)
    assert daemon.health()["project"]["path"] == "", daemon.log()[-3000:]
    assert close_to(_centre(daemon), (0, 0, 0), 60)  # black with "No videos in timeline"


def test_pinned_project_is_not_switched(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = _project(tmp_path, "a", RED), _project(tmp_path, "b", GREEN)
    meta = tmp_path / "projects.sqlite"
    create_metadata_db(meta, [("a", str(a), 1000)])
    daemon = start_daemon("--project", str(a), "--metadata-db", str(meta))
    _add_to_list(meta, "b", b, 2000)
    time.sleep(1.2)
    assert close_to(_centre(daemon), RED)
    assert daemon.health()["project"]["following"] is None


@pytest.mark.solo  # "within 1 s"
def test_replaced_still_changes_etag_within_1s_while_one_frame_is_asked_10_per_s(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = _project(tmp_path, "a", RED)
    still = tmp_path / "a.png"
    daemon = start_daemon("--project", str(db))
    first = daemon.get("/get_frame/10")
    old_etag = first.headers["ETag"]
    assert daemon.get("/get_frame/10", headers={"If-None-Match": old_etag}).status_code == 304
    assert daemon.get("/get_frame/10").headers["X-Cache"] == "hit"  # the cached path is the one under test

    stop = threading.Event()
    seen: list[tuple[float, int, str, tuple[int, ...] | None]] = []
    replaced_at: list[float] = []

    def editor() -> None:  # one frame, 10 times a second, sending the ETag it holds
        etag = old_etag
        while not stop.is_set():
            response = daemon.get("/get_frame/10", headers={"If-None-Match": etag})
            pixel = decode(response.content).getpixel((640, 360)) if response.status_code == 200 else None
            seen.append((time.monotonic(), response.status_code, response.headers.get("ETag", ""), pixel))
            if response.status_code == 200:
                etag = response.headers["ETag"]
            time.sleep(0.1)

    thread = threading.Thread(target=editor)
    thread.start()
    try:
        time.sleep(1.0)
        replacement = tmp_path / "a.new.png"
        solid_png(replacement, (64, 36), GREEN)
        os.replace(replacement, still)  # what an export does: a new file under the same name
        replaced_at.append(time.monotonic())
        time.sleep(1.5)
    finally:
        stop.set()
        thread.join()
    after = [s for s in seen if s[0] >= replaced_at[0]]
    fresh = next((s for s in after if s[1] == 200 and s[2] != old_etag), None)
    assert fresh is not None, after
    print(f"\nreplaced still: new ETag after {fresh[0] - replaced_at[0]:.2f} s ({len(after)} requests)")
    assert fresh[0] - replaced_at[0] <= 1.0 + 0.15  # the 1 s limit plus one request interval of the 10/s client
    assert fresh[3] is not None and close_to(fresh[3], GREEN)
    stale = [s for s in after if s[2] == old_etag and s[0] > fresh[0]]
    assert not stale, stale  # never the old picture (a 304 for the old ETag) once the new one was served
    assert any(s[1] == 304 and s[2] == fresh[2] for s in after)  # the 304 path itself goes on working, on the new ETag

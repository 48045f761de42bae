"""The built-in demo project: generated once in the one demo location, served by ``--demo``.

The writers it uses live in ``fixtures.py`` (shared with the tests and benchmarks); this module is
imported only by the demo command and by the daemon when started with ``--demo``.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from flipedit_previewd.demo.fixtures import add_clip, add_track, create_project_db, make_indexed_video, make_still


def demo_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "flipedit-preview" / "demo"


def ensure_demo_project(directory: Path | None = None) -> str:
    """Generate the demo media and a schema-v3 project database once; return the database path."""
    directory = directory or demo_dir()
    db = directory / "demo_project.sqlite"
    if db.exists():
        return str(db)
    directory.mkdir(parents=True, exist_ok=True)
    video = make_indexed_video(directory / "demo_clip.mp4", 150, (640, 360), 30, 30)
    still = make_still(directory / "demo_still.png", (400, 300))
    tmp = directory / "demo_project.sqlite.tmp"
    tmp.unlink(missing_ok=True)
    create_project_db(tmp, 3)
    conn = sqlite3.connect(str(tmp))
    with conn:
        bottom = add_track(conn, "Video", 0)
        top = add_track(conn, "Overlay", 1)
        add_clip(conn, 3, bottom, str(video), "video", 0, 5000, rect=(0, 0, 1280, 720))
        add_clip(conn, 3, top, str(still), "image", 1000, 4000, rect=(880, 40, 360, 270))
        conn.execute("INSERT INTO project_assets (name, source_path, type, mime_type, created_at) VALUES (?, ?, 'video', 'video/mp4', 0)",
                     ("demo_clip.mp4", str(video)))
    conn.close()
    tmp.rename(db)
    return str(db)

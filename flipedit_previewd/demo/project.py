"""The built-in demo project: generated once in the one demo location, served by ``--demo``.

The daemon asks for it with ``demo_project``, which imports nothing but the standard library: the
media are written by a child process (``_write_in_child``) with the writers of ``fixtures.py`` (PyAV, Pillow), so the
daemon's own process never loads them.
``ensure_demo_project`` is the writer itself (tests and benchmarks call it directly).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

DATABASE = "demo_project.sqlite"
_PATH_VARIABLE = "FLIPEDIT_DEMO_SYS_PATH"
_CHILD_CODE = (
    f"import json, os, sys; sys.path[:] = json.loads(os.environ.pop({_PATH_VARIABLE!r})); "
    "from flipedit_previewd.demo.project import _write_in_child; _write_in_child(sys.argv[1])"
)


def demo_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "flipedit-preview" / "demo"


def demo_project(directory: Path | None = None) -> str:
    """The demo project's database path, written first by a child process if it does not exist yet."""
    directory = directory or demo_dir()
    db = directory / DATABASE
    if db.exists():
        return str(db)
    # The same interpreter, flags and import path as this process (as the worker pool starts its workers).
    flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    subprocess.run(
        [sys.executable, *flags, "-P", "-c", _CHILD_CODE, str(directory)],
        stdin=subprocess.DEVNULL,
        check=True,
        env={**os.environ, _PATH_VARIABLE: json.dumps(sys.path)},
    )
    return str(db)


def ensure_demo_project(directory: Path | None = None) -> str:
    """Generate the demo media and a schema-v3 project database once; return the database path."""
    from flipedit_previewd.demo.fixtures import add_clip, add_track, create_project_db, make_indexed_video, make_still

    directory = directory or demo_dir()
    db = directory / DATABASE
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
        conn.execute(
            "INSERT INTO project_assets (name, source_path, type, mime_type, created_at) VALUES (?, ?, 'video', "
            "'video/mp4', 0)",
            ("demo_clip.mp4", str(video)),
        )
    conn.close()
    tmp.rename(db)
    return str(db)


def _write_in_child(directory: str) -> None:
    """The child process's entry (``demo_project``)."""
    from flipedit_previewd.common.gcrypt import init_without_secure_memory

    init_without_secure_memory()  # before PyAV can load libssh (common/gcrypt.py)
    ensure_demo_project(Path(directory))

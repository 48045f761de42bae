"""Writers of fixtures: the editor's project and metadata databases, and generated media.

Tests, benchmarks and the demo project (``demo/project.py``) use these; the daemon never imports this
module (a unit test checks that importing every daemon module leaves it unimported): the daemon
only ever reads the editor's files, and writers have no place on its import path.

Videos made here carry their own frame index as a row of black/white blocks
(16 bits, most significant first, 1 = white), big enough to survive H.264 and
JPEG, so a test can read back which source frame a rendered frame shows.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import av
from PIL import Image, ImageDraw

# --- the editor's schema (Drift, versions 1-3) -----------------------------------------

TRACKS_DDL = (
    "CREATE TABLE tracks (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, type TEXT NOT NULL, "
    '"order" INTEGER NOT NULL, is_visible INTEGER NOT NULL DEFAULT 1, is_locked INTEGER NOT NULL DEFAULT 0, '
    "metadata_json TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)"
)
CLIPS_COMMON = (
    "id INTEGER PRIMARY KEY AUTOINCREMENT, track_id INTEGER NOT NULL REFERENCES tracks(id), name TEXT NOT NULL, "
    "type TEXT NOT NULL, source_path TEXT NOT NULL, source_duration_ms INTEGER, start_time_in_source_ms INTEGER NOT "
    "NULL, "
    "end_time_in_source_ms INTEGER NOT NULL, start_time_on_track_ms INTEGER NOT NULL, end_time_on_track_ms INTEGER NOT "
    "NULL"
)
ASSETS_DDL = (
    "CREATE TABLE project_assets (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, source_path TEXT NOT NULL, "
    "type TEXT NOT NULL, mime_type TEXT, duration_ms INTEGER, width INTEGER, height INTEGER, file_size INTEGER, "
    "metadata_json TEXT, thumbnail_path TEXT, created_at INTEGER NOT NULL)"
)


def create_project_db(path: str | Path, version: int) -> None:
    """Create an empty project database with the editor's schema at ``version`` (1, 2 or 3)."""
    if version == 1:
        clips = f"CREATE TABLE clips ({CLIPS_COMMON}, metadata_json TEXT)"
    elif version == 2:
        clips = f"CREATE TABLE clips ({CLIPS_COMMON}, metadata TEXT)"
    elif version == 3:
        clips = (
            f"CREATE TABLE clips ({CLIPS_COMMON}, metadata TEXT, preview_position_x REAL NOT NULL DEFAULT 0, "
            "preview_position_y REAL NOT NULL DEFAULT 0, preview_width REAL NOT NULL DEFAULT 100, "
            "preview_height REAL NOT NULL DEFAULT 100)"
        )
    else:
        raise ValueError(f"unknown schema version {version}")
    conn = sqlite3.connect(str(path))
    with conn:
        conn.execute(TRACKS_DDL)
        conn.execute(clips)
        conn.execute(ASSETS_DDL)
        conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


def add_track(conn: sqlite3.Connection, name: str, order: int, visible: bool = True) -> int:
    now = int(time.time())
    cur = conn.execute(
        'INSERT INTO tracks (name, type, "order", is_visible, is_locked, created_at, updated_at) '
        "VALUES (?, 'video', ?, ?, 0, ?, ?)",
        (name, order, int(visible), now, now),
    )
    return int(cur.lastrowid or 0)


def add_clip(
    conn: sqlite3.Connection,
    version: int,
    track_id: int,
    source_path: str,
    clip_type: str,
    start_on_track_ms: int,
    end_on_track_ms: int,
    start_in_source_ms: int = 0,
    rect: tuple[float, float, float, float] | None = None,
    flip: int = 0,
) -> int:
    meta: dict[str, Any] = {}
    if rect is not None and version < 3:
        meta["previewRect"] = dict(zip(("left", "top", "width", "height"), rect, strict=True))
    if flip:
        meta["previewFlip"] = flip
    duration = end_on_track_ms - start_on_track_ms
    values: list[Any] = [
        track_id,
        os.path.basename(source_path),
        clip_type,
        source_path,
        duration,
        start_in_source_ms,
        start_in_source_ms + duration,
        start_on_track_ms,
        end_on_track_ms,
        json.dumps(meta),
    ]
    columns = (
        "track_id, name, type, source_path, source_duration_ms, start_time_in_source_ms, end_time_in_source_ms, "
        "start_time_on_track_ms, end_time_on_track_ms, " + ("metadata_json" if version == 1 else "metadata")
    )
    if version == 3 and rect is not None:
        columns += ", preview_position_x, preview_position_y, preview_width, preview_height"
        values += list(rect)
    marks = ", ".join("?" * len(values))
    cur = conn.execute(f"INSERT INTO clips ({columns}) VALUES ({marks})", values)
    return int(cur.lastrowid or 0)


def set_clip_rect(
    conn: sqlite3.Connection, version: int, clip_id: int, rect: tuple[float, float, float, float]
) -> None:
    """What the editor does during a drag: write the clip's new preview rectangle."""
    if version == 3:
        conn.execute(
            "UPDATE clips SET preview_position_x=?, preview_position_y=?, preview_width=?, preview_height=? WHERE id=?",
            (*rect, clip_id),
        )
        return
    col = "metadata_json" if version == 1 else "metadata"
    (raw,) = conn.execute(f"SELECT {col} FROM clips WHERE id=?", (clip_id,)).fetchone()
    meta = json.loads(raw or "{}")
    meta["previewRect"] = dict(zip(("left", "top", "width", "height"), rect, strict=True))
    conn.execute(f"UPDATE clips SET {col}=? WHERE id=?", (json.dumps(meta), clip_id))


def create_metadata_db(path: str | Path, projects: list[tuple[str, str, int]]) -> None:
    conn = sqlite3.connect(str(path))
    with conn:
        conn.execute(
            "CREATE TABLE project_metadata_table (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, "
            "database_path TEXT NOT NULL, created_at INTEGER NOT NULL, last_modified_at INTEGER)"
        )
        for name, db_path, modified in projects:
            conn.execute(
                "INSERT INTO project_metadata_table (name, database_path, created_at, last_modified_at) "
                "VALUES (?, ?, ?, ?)",
                (name, db_path, modified, modified),
            )
    conn.close()


# --- generated media ----------------------------------------------------------------

INDEX_BITS = 16


def index_pattern(index: int, width: int, height: int) -> Image.Image:
    """An RGB frame: a colour that drifts with ``index``, the index in blocks along the top, and as text."""
    image = Image.new("RGB", (width, height), ((index * 7) % 200 + 30, (index * 3) % 200 + 30, 120))
    draw = ImageDraw.Draw(image)
    block = width // INDEX_BITS
    for bit in range(INDEX_BITS):
        on = (index >> (INDEX_BITS - 1 - bit)) & 1
        draw.rectangle([bit * block, 0, (bit + 1) * block - 1, block - 1], fill=(255, 255, 255) if on else (0, 0, 0))
    draw.text((width // 2, height // 2), f"frame {index}", fill=(255, 255, 255), anchor="mm")
    return image


def read_index(image: Image.Image, box: tuple[int, int, int, int] | None = None) -> int:
    """Decode the index blocks from a (possibly scaled and placed) rendered frame."""
    if box is not None:
        image = image.crop((box[0], box[1], box[0] + box[2], box[1] + box[3]))
    gray = image.convert("L")
    block = gray.width / INDEX_BITS
    value = 0
    for bit in range(INDEX_BITS):
        x = int((bit + 0.5) * block)
        y = int(block / 2)
        level = gray.getpixel((x, y))
        value = (value << 1) | (1 if isinstance(level, (int, float)) and level > 128 else 0)
    return value


def make_indexed_video(
    path: str | Path,
    frames: int,
    size: tuple[int, int] = (320, 180),
    fps: int = 30,
    gop: int = 30,
    codec: str = "libx264",
) -> Path:
    """An H.264 MP4 whose frame i shows index i, with a keyframe every ``gop`` frames."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
            "bf": "0",
            "crf": "12",
            "preset": "ultrafast",
        }
        for index in range(frames):
            frame = av.VideoFrame.from_image(index_pattern(index, *size))  # rgb24, no numpy needed
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_still(path: str | Path, size: tuple[int, int], colour: tuple[int, int, int] = (200, 60, 40)) -> Path:
    path = Path(path)
    image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    draw.ellipse([size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4], fill=(240, 220, 40))
    image.save(path)
    return path

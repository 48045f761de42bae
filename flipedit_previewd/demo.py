"""The built-in demo project, and the generated media the tests and benchmarks share.

Videos made here carry their own frame index as a row of black/white blocks
(16 bits, most significant first, 1 = white), big enough to survive H.264 and
JPEG, so a test can read back which source frame a rendered frame shows.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from .projectdb import add_clip, add_track, create_project_db

INDEX_BITS = 16


def index_pattern(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame: a colour that drifts with ``index``, the index in blocks along the top, and as text."""
    image = Image.new("RGB", (width, height), ((index * 7) % 200 + 30, (index * 3) % 200 + 30, 120))
    draw = ImageDraw.Draw(image)
    block = width // INDEX_BITS
    for bit in range(INDEX_BITS):
        on = (index >> (INDEX_BITS - 1 - bit)) & 1
        draw.rectangle([bit * block, 0, (bit + 1) * block - 1, block - 1], fill=(255, 255, 255) if on else (0, 0, 0))
    draw.text((width // 2, height // 2), f"frame {index}", fill=(255, 255, 255), anchor="mm")
    return np.asarray(image)


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


def make_indexed_video(path: str | Path, frames: int, size: tuple[int, int] = (320, 180), fps: int = 30,
                       gop: int = 30, codec: str = "libx264") -> Path:
    """An H.264 MP4 whose frame i shows index i, with a keyframe every ``gop`` frames."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "0", "crf": "12",
                          "preset": "ultrafast"}
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(index_pattern(index, *size), format="rgb24")
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

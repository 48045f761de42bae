"""The old server's rendering, as its notes describe it: re-read the database and re-open every source
for every request, decode at full size (``to_image()``), resize in Pillow, ``save()`` to BytesIO."""

from __future__ import annotations

import io

import av
from PIL import Image, ImageDraw

from flipedit_previewd.common.readonlydb import open_readonly
from flipedit_previewd.timeline.model import Timeline
from flipedit_previewd.timeline.projectdb import read_timeline


def _video_frame(path: str, index: int, fps: float) -> Image.Image:
    with av.open(path) as container:
        stream = container.streams.video[0]
        target = int(index / fps / stream.time_base)
        container.seek(target, stream=stream, backward=True)
        last = None
        for frame in container.decode(stream):
            last = frame
            if frame.pts is not None and frame.pts >= target:
                break
        if last is None:
            raise RuntimeError("no frame")
        return last.to_image()


def render(db: str, frame: int, width: int = 1280, height: int = 720) -> bytes:
    conn = open_readonly(db)
    try:
        timeline: Timeline = read_timeline(conn, (1280, 720), 30.0, db)
    finally:
        conn.close()
    scale = width / timeline.canvas_width
    canvas = Image.new("RGB", (width, height))
    layers = timeline.layers_at(frame)
    for clip in layers:
        if clip.type == "video":
            image = _video_frame(clip.source_path, clip.source_frame(frame, timeline.frame_rate), timeline.frame_rate)
        else:
            image = Image.open(clip.source_path).convert("RGB")
        rect = clip.rect
        if rect is None:
            continue
        box = (round(rect.left * scale), round(rect.top * scale))
        image = image.resize((max(1, round(rect.width * scale)), max(1, round(rect.height * scale))))
        canvas.paste(image, box)
    if not layers:
        ImageDraw.Draw(canvas).text((width // 2 - 60, height // 2), "No videos in timeline", fill=(255, 255, 255))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()

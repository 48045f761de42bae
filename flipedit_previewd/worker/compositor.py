"""Composite a timeline frame and encode it, working at the output size throughout.

Layering: tracks are drawn in ascending ``order`` (lowest first, so the track
with the highest order is on top); within a track, clips in start order. Each
clip fills its preview rectangle (canvas pixels, scaled to the output size);
without one it is centred and fitted inside the canvas, never upscaled, as the
old server did; a video's size there is its displayed size (rotation and pixel
aspect applied, ``display.py``). Rectangles may lie partly or wholly off canvas; Pillow's paste
clips them. A frame with no active clip is black with the old server's text. An output
size of another aspect ratio than the canvas is letterboxed: the canvas scaled to fit,
centred, black bars on the other two sides.
"""

from __future__ import annotations

import io
import textwrap

from PIL import Image, ImageDraw

from flipedit_previewd.timeline.model import FLIP_HORIZONTAL, FLIP_VERTICAL, Clip, Timeline
from flipedit_previewd.worker.media import MediaError, MediaPool, placeholder
from flipedit_previewd.worker.output import OutputSpec, RenderResult

__all__ = ["EMPTY_MESSAGE", "OutputSpec", "RenderResult", "compose", "encode", "letterbox"]

EMPTY_MESSAGE = "No videos in timeline"


def clip_box(clip: Clip, native: tuple[int, int], timeline: Timeline, scale: float) -> tuple[int, int, int, int]:
    """(left, top, width, height) in output pixels."""
    if clip.rect is not None:
        r = clip.rect
        left, top, width, height = r.left, r.top, r.width, r.height
    else:
        fit = min(timeline.canvas_width / native[0], timeline.canvas_height / native[1], 1.0)
        width, height = native[0] * fit, native[1] * fit
        left, top = (timeline.canvas_width - width) / 2, (timeline.canvas_height - height) / 2
    return (round(left * scale), round(top * scale), max(1, round(width * scale)), max(1, round(height * scale)))


def _visible(box: tuple[int, int, int, int], out: tuple[int, int]) -> bool:
    left, top, width, height = box
    return left < out[0] and top < out[1] and left + width > 0 and top + height > 0


def letterbox(spec: OutputSpec, canvas: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the canvas inside an output of another aspect ratio: scaled to
    fit and centred, black bars on the two other sides (as a video player shows 16:9 in 4:3)."""
    scale = min(spec.width / canvas[0], spec.height / canvas[1])
    width, height = (
        max(1, min(spec.width, round(canvas[0] * scale))),
        max(1, min(spec.height, round(canvas[1] * scale))),
    )
    return (spec.width - width) // 2, (spec.height - height) // 2, width, height


def compose(
    timeline: Timeline, frame: int, spec: OutputSpec, media: MediaPool, broken: frozenset[str] = frozenset()
) -> RenderResult:
    # PNG is the lossless output: always the originals (a proxy is the same frame, not the same pixels)
    media.begin((timeline.canvas_width, timeline.canvas_height), lossless=spec.format == "png")
    media.reach = None
    left, top, width, height = letterbox(spec, (timeline.canvas_width, timeline.canvas_height))
    if (width, height) == (spec.width, spec.height):
        result = _compose(timeline, frame, spec, media, broken)
    else:
        inner = _compose(
            timeline, frame, OutputSpec(width, height, spec.quality, spec.format), media, broken, encoded=False
        )
        assert inner.image is not None
        framed = Image.new("RGB", (spec.width, spec.height), (0, 0, 0))
        framed.paste(inner.image, (left, top))
        result = RenderResult(encode(framed, spec), spec.content_type, inner.problems, inner.clips)
    if media.reach is not None:
        result.reach = (max(0, frame - media.reach[0]), frame + media.reach[1])
    result.source = media.source_used()
    return result


def _compose(
    timeline: Timeline,
    frame: int,
    spec: OutputSpec,
    media: MediaPool,
    broken: frozenset[str] = frozenset(),
    encoded: bool = True,
) -> RenderResult:
    out = (spec.width, spec.height)
    scale = spec.width / timeline.canvas_width
    canvas = Image.new("RGB", out, (0, 0, 0))
    layers = timeline.layers_at(frame)
    problems: list[tuple[str, str]] = []
    for clip in layers:
        try:
            if clip.source_path in broken:
                raise MediaError("crashed the renderer twice; shown as a placeholder until the file changes")
            kind = media.kind(clip.source_path, clip.source_stat, clip.type)
            native = media.native_size(clip.source_path, clip.source_stat, kind)
            box = clip_box(clip, native, timeline, scale)
            if not _visible(box, out):
                continue
            size = (box[2], box[3])
            if size[0] * size[1] > 16 * out[0] * out[1]:
                raise MediaError(f"preview rectangle {size[0]}x{size[1]} is too large to scale")
            if kind == "video":
                image = media.video_frame(
                    clip.source_path,
                    clip.source_stat,
                    clip.source_frame(frame, timeline.frame_rate),
                    timeline.frame_rate,
                    size,
                )
                warning = media.warning(clip.source_path, clip.source_stat)
                if warning and media.first_report(clip.source_path, warning):
                    problems.append((clip.source_path, warning))  # drawn, but said: journal and /health
            else:
                image = media.still(clip.source_path, clip.source_stat, size)
        except MediaError as exc:
            problem = str(exc)
            if media.first_report(clip.source_path, problem):
                problems.append((clip.source_path, problem))
            box = clip_box(clip, (timeline.canvas_width, timeline.canvas_height), timeline, scale)
            if box[2] * box[3] > 16 * out[0] * out[1]:
                continue
            if not _visible(box, out):
                continue
            image = placeholder((box[2], box[3]), clip.source_path, problem)
        if clip.flip == FLIP_HORIZONTAL:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        elif clip.flip == FLIP_VERTICAL:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        if image.mode == "RGBA":
            canvas.paste(image, (box[0], box[1]), image)
        else:
            canvas.paste(image, (box[0], box[1]))
    if not layers:
        draw = ImageDraw.Draw(canvas)
        text = "\n".join(textwrap.wrap(timeline.note, max(20, spec.width // 7))[:8]) if timeline.note else EMPTY_MESSAGE
        draw.multiline_text(
            (spec.width // 2, spec.height // 2), text, fill=(255, 255, 255), anchor="mm", align="center"
        )
    if not encoded:
        return RenderResult(b"", spec.content_type, problems, len(layers), canvas)
    return RenderResult(encode(canvas, spec), spec.content_type, problems, len(layers))


def encode(image: Image.Image, spec: OutputSpec) -> bytes:
    buffer = io.BytesIO()
    if spec.format == "png":
        image.save(buffer, "PNG", compress_level=1)
    else:
        image.save(buffer, "JPEG", quality=spec.quality, subsampling=2, progressive=False, optimize=False)
    return buffer.getvalue()

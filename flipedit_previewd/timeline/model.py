"""The immutable timeline model and the editor's timing model.

A timeline is a value: once built it never changes, and its ``revision`` is a
digest of everything that affects a pixel (clips, tracks, canvas, frame rate,
source files' mtime and size). Render caches and ETags key on the revision, so
a stale frame can only be served if the digest misses a change; that is why
source file stats are part of it.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from flipedit_previewd.common.errors import TimelineInvalid

FLIP_NONE, FLIP_HORIZONTAL, FLIP_VERTICAL = 0, 1, 2
MAX_CANVAS_SIDE = 8192


FileStat = tuple[int, int, int, int]  # mtime_ns, size, inode, device: stat_of()


@dataclass(frozen=True)
class Rect:
    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class Clip:
    id: int
    track_id: int
    type: str
    source_path: str
    start_on_track_ms: float
    end_on_track_ms: float
    start_in_source_ms: float
    end_in_source_ms: float
    rect: Rect | None = None
    flip: int = FLIP_NONE
    source_stat: FileStat | None = None

    def start_frame(self, fps: float) -> int:
        return int(self.start_on_track_ms * fps / 1000)

    def end_frame(self, fps: float) -> int:
        return int(self.end_on_track_ms * fps / 1000)

    def source_frame(self, frame: int, fps: float) -> int:
        """The editor's model: source frame = start_in_source frame + offset into the clip."""
        return int(self.start_in_source_ms * fps / 1000) + (frame - self.start_frame(fps))


@dataclass(frozen=True)
class Track:
    id: int
    order: int
    visible: bool
    clips: tuple[Clip, ...]
    type: str = "video"


@dataclass(frozen=True)
class Timeline:
    canvas_width: int
    canvas_height: int
    frame_rate: float
    tracks: tuple[Track, ...]
    source: str = ""
    revision: str = field(default="", compare=False)
    note: str = ""  # drawn on an empty frame instead of "No videos in timeline": why there is nothing (no project ...)

    def __post_init__(self) -> None:
        if not self.revision:
            object.__setattr__(self, "revision", _digest(self))

    @property
    def clips(self) -> list[Clip]:
        return [clip for track in self.tracks for clip in track.clips]

    @property
    def total_frames(self) -> int:
        return max((clip.end_frame(self.frame_rate) for clip in self.clips), default=0)

    def layers_at(self, frame: int) -> list[Clip]:
        """Active clips bottom to top: tracks with a lower ``order`` are drawn first, higher on top."""
        active = []
        for track in sorted(self.tracks, key=lambda t: (t.order, t.id)):
            if not track.visible:
                continue
            for clip in sorted(track.clips, key=lambda c: (c.start_on_track_ms, c.id)):
                if clip.type in ("video", "image") and clip.start_frame(self.frame_rate) <= frame < clip.end_frame(
                    self.frame_rate
                ):
                    active.append(clip)
        return active

    def debug_json(self) -> dict[str, Any]:
        clips = []
        for index, clip in enumerate(self.clips):
            clips.append(
                {
                    "index": index,
                    "id": clip.id,
                    "track_id": clip.track_id,
                    "type": clip.type,
                    "source_path": clip.source_path,
                    "track_time_ms": {
                        "start": clip.start_on_track_ms,
                        "end": clip.end_on_track_ms,
                        "duration": clip.end_on_track_ms - clip.start_on_track_ms,
                    },
                    "source_time_ms": {
                        "start": clip.start_in_source_ms,
                        "end": clip.end_in_source_ms,
                        "duration": clip.end_in_source_ms - clip.start_in_source_ms,
                    },
                    "rect": asdict(clip.rect) if clip.rect else None,
                    "flip": clip.flip,
                }
            )
        return {
            "total_frames": self.total_frames,
            "frame_rate": self.frame_rate,
            "clips_count": len(clips),
            "clips": clips,
            "revision": self.revision,
            "source": self.source,
            "canvas": {"width": self.canvas_width, "height": self.canvas_height},
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "canvas": {"width": self.canvas_width, "height": self.canvas_height},
            "frame_rate": self.frame_rate,
            "tracks": [
                {
                    "id": t.id,
                    "order": t.order,
                    "visible": t.visible,
                    "type": t.type,
                    "clips": [
                        {k: v for k, v in asdict(c).items() if k not in ("source_stat", "track_id")} for c in t.clips
                    ],
                }
                for t in self.tracks
            ],
            "revision": self.revision,
        }


def stat_of(path: str) -> FileStat | None:
    """What says a file changed: its time and size, and which file it is (inode, device), since a file replaced
    by another of the same size and time (``cp -p``, a sync tool) must not go on showing the old one's frames
    from a decoder that still holds the old file open."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


def _digest(timeline: Timeline) -> str:
    """Clip by clip, never one call over the whole timeline: a C call over 50,000 clips holds the GIL
    (and so the event loop) for a second; a Python loop lets the loop run between clips."""
    h = hashlib.blake2b(
        repr((timeline.canvas_width, timeline.canvas_height, timeline.frame_rate)).encode(), digest_size=12
    )
    if timeline.note:  # another reason for an empty frame is another frame (and ETag)
        h.update(repr(timeline.note).encode())
    for t in timeline.tracks:
        h.update(repr((t.id, t.order, t.visible, t.type, len(t.clips))).encode())
        for c in t.clips:
            h.update(
                repr(
                    (
                        c.id,
                        c.track_id,
                        c.type,
                        c.source_path,
                        c.start_on_track_ms,
                        c.end_on_track_ms,
                        c.start_in_source_ms,
                        c.end_in_source_ms,
                        c.rect and (c.rect.left, c.rect.top, c.rect.width, c.rect.height),
                        c.flip,
                        c.source_stat,
                    )
                ).encode()
            )  # repr escapes every lone surrogate: always valid UTF-8
    return h.hexdigest()


def restat(timeline: Timeline) -> Timeline:
    """The same timeline with fresh source stats; same object when nothing changed."""
    changed = False
    tracks = []
    for track in timeline.tracks:
        clips = []
        for clip in track.clips:
            st = stat_of(clip.source_path)
            if st != clip.source_stat:
                changed = True
                clip = _replace(clip, source_stat=st)
            clips.append(clip)
        tracks.append(_replace(track, clips=tuple(clips)))
    if not changed:
        return timeline
    return Timeline(timeline.canvas_width, timeline.canvas_height, timeline.frame_rate, tuple(tracks), timeline.source)


def _replace(obj: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(obj, **changes)


# --- JSON timelines (PUT /timeline) -------------------------------------------------


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if name not in obj:
        if default is ...:
            raise TimelineInvalid(f"{where}.{name}: required field is missing", field=f"{where}.{name}")
        return default
    value = obj[name]
    if kind in (int, float, (int, float)) and isinstance(value, bool):
        raise TimelineInvalid(f"{where}.{name}: expected a number, got {value!r}", field=f"{where}.{name}")
    if not isinstance(value, kind):
        raise TimelineInvalid(
            f"{where}.{name}: expected {_kind_name(kind)}, got {type(value).__name__}", field=f"{where}.{name}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise TimelineInvalid(f"{where}.{name}: must be finite", field=f"{where}.{name}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
        raise TimelineInvalid(
            f"{where}.{name}: out of range (at most {MAX_NUMBER:.0e} in magnitude)", field=f"{where}.{name}"
        )
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return KIND_NAMES[kind]


NUMBER = (int, float)
MAX_NUMBER = 2**53  # any number in a timeline: beyond it float() overflows or loses integer precision
KIND_NAMES: dict[type | tuple[type, ...], str] = {
    str: "a string",
    int: "an integer",
    bool: "a boolean",
    list: "a list",
    dict: "an object",
    NUMBER: "a number",
    (dict, type(None)): "an object or null",
}


def timeline_from_json(data: Any, default_canvas: tuple[int, int], default_fps: float) -> Timeline:
    """Validate a JSON timeline; a ``TimelineInvalid`` names the field and the reason."""
    if not isinstance(data, dict):
        raise TimelineInvalid("timeline: expected a JSON object", field="timeline")
    canvas = _field(data, "canvas", dict, "timeline", {"width": default_canvas[0], "height": default_canvas[1]})
    width = _field(canvas, "width", int, "timeline.canvas")
    height = _field(canvas, "height", int, "timeline.canvas")
    for name, side in (("width", width), ("height", height)):
        if not 1 <= side <= MAX_CANVAS_SIDE:
            raise TimelineInvalid(
                f"timeline.canvas.{name}: must be between 1 and {MAX_CANVAS_SIDE}", field=f"timeline.canvas.{name}"
            )
    fps = float(_field(data, "frame_rate", NUMBER, "timeline", default_fps))
    if not 1 <= fps <= 240:
        raise TimelineInvalid("timeline.frame_rate: must be between 1 and 240", field="timeline.frame_rate")
    raw_tracks = _field(data, "tracks", list, "timeline")
    if len(raw_tracks) > 256:
        raise TimelineInvalid("timeline.tracks: at most 256 tracks", field="timeline.tracks")
    tracks = []
    for t_index, raw_track in enumerate(raw_tracks):
        where = f"timeline.tracks[{t_index}]"
        if not isinstance(raw_track, dict):
            raise TimelineInvalid(f"{where}: expected an object", field=where)
        track_id = _field(raw_track, "id", int, where, t_index + 1)
        raw_clips = _field(raw_track, "clips", list, where)
        if len(raw_clips) > 4096:
            raise TimelineInvalid(f"{where}.clips: at most 4096 clips", field=f"{where}.clips")
        clips = []
        for c_index, raw_clip in enumerate(raw_clips):
            cw = f"{where}.clips[{c_index}]"
            if not isinstance(raw_clip, dict):
                raise TimelineInvalid(f"{cw}: expected an object", field=cw)
            start = float(_field(raw_clip, "start_on_track_ms", NUMBER, cw))
            end = float(_field(raw_clip, "end_on_track_ms", NUMBER, cw))
            if start < 0 or end < start or end > 1e10:
                raise TimelineInvalid(
                    f"{cw}.end_on_track_ms: must be >= start_on_track_ms >= 0", field=f"{cw}.end_on_track_ms"
                )
            src_start = float(_field(raw_clip, "start_in_source_ms", NUMBER, cw, 0))
            if src_start < 0 or src_start > 1e10:
                raise TimelineInvalid(f"{cw}.start_in_source_ms: must be >= 0", field=f"{cw}.start_in_source_ms")
            src_end = float(_field(raw_clip, "end_in_source_ms", NUMBER, cw, src_start + end - start))
            clip_type = _field(raw_clip, "type", str, cw, "video")
            if clip_type not in ("video", "image", "audio", "text"):
                raise TimelineInvalid(f"{cw}.type: unknown clip type {clip_type!r}", field=f"{cw}.type")
            path = _field(raw_clip, "source_path", str, cw)
            if not path or "\x00" in path:
                raise TimelineInvalid(f"{cw}.source_path: must be a non-empty path", field=f"{cw}.source_path")
            rect = None
            raw_rect = _field(raw_clip, "rect", (dict, type(None)), cw, None)
            if raw_rect is not None:
                rect = Rect(
                    *(float(_field(raw_rect, k, NUMBER, f"{cw}.rect")) for k in ("left", "top", "width", "height"))
                )
                if (
                    not (0 < rect.width <= 4 * MAX_CANVAS_SIDE and 0 < rect.height <= 4 * MAX_CANVAS_SIDE)
                    or abs(rect.left) > 1e6
                    or abs(rect.top) > 1e6
                ):
                    raise TimelineInvalid(
                        f"{cw}.rect: width and height must be positive and bounded", field=f"{cw}.rect"
                    )
            flip = _field(raw_clip, "flip", int, cw, 0)
            if flip not in (0, 1, 2):
                raise TimelineInvalid(f"{cw}.flip: must be 0, 1 or 2", field=f"{cw}.flip")
            clips.append(
                Clip(
                    _field(raw_clip, "id", int, cw, c_index + 1),
                    track_id,
                    clip_type,
                    path,
                    start,
                    end,
                    src_start,
                    src_end,
                    rect,
                    flip,
                    stat_of(path),
                )
            )
        tracks.append(
            Track(
                track_id,
                _field(raw_track, "order", int, where, t_index),
                _field(raw_track, "visible", bool, where, True),
                tuple(clips),
                _field(raw_track, "type", str, where, "video"),
            )
        )
    return Timeline(width, height, fps, tuple(tracks), source="json")


def empty_timeline(canvas: tuple[int, int], fps: float, source: str = "empty", note: str = "") -> Timeline:
    return Timeline(canvas[0], canvas[1], fps, (), source=source, note=note)

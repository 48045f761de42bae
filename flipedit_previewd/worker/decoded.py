"""Decoded frames kept at output size, so that a scrub that turns back does not seek and decode a GOP again.

A request behind the decoder's position costs a seek to the keyframe before it and a decode forward to
it: on a 250-frame GOP, hundreds of frames for one picture. A scrub that reverses asks next for the
frames just before the one it got, which that very decode passed through. ``VideoSource`` hands the
last frames of such a pass (``RUN_FRAMES`` at most) to ``DecodedFrames``; they are scaled by the same
``picture()`` as any frame shown, and kept with the presentation time of the frame after each.

The frame rule holds exactly: an entry answers a time only when it is the last frame at or before it,
i.e. ``pts <= limit < next_pts``, where ``next_pts`` is the frame that followed it in the same decode
(math.inf for the last frame of the file). Bounded by bytes (least recently used out first); entries
belong to one source identity (path and stat) and one size, so a replaced file never answers.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from PIL import Image

RUN_FRAMES = 24  # at most this many frames before a seek's target are kept from its decode
# ... and at most this many bytes of them: they are held at the source's size until the target is reached (a 4K
# 10-bit frame is 25 MB; 24 of them took a worker from ~380 MB to ~930 MB PSS on a phone's 2160p HEVC).
RUN_BYTES = 96 << 20
DECODED_BYTES = 48 << 20  # per worker: ~17 frames at 1280x720 RGB, ~70 at 640x360


# A kept frame: its image at the view's size, or (kept "lazily") what makes it: a decoded frame is scaled only if a
# request asks for it. A random jump that looks like a scrub turning back then costs no scaling of frames nobody
# asks for (bench/render.py's random frames: p95 200 ms with eager scaling, 42 ms without any keeping).
Picture = Image.Image | Callable[[], Image.Image]


class DecodedFrames:
    """(source, size) -> frames at that size with the span of time each is shown for; an LRU by bytes."""

    def __init__(self, capacity: int = DECODED_BYTES) -> None:
        self.capacity = capacity
        self.used = 0
        self.hits = 0
        self.stored = 0
        self._entries: OrderedDict[tuple[Any, tuple[int, int], int], tuple[float | int, Picture, int]] = OrderedDict()
        self._by_view: dict[tuple[Any, tuple[int, int]], set[int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, source: Any, size: tuple[int, int], limit: Fraction) -> tuple[int, Image.Image] | None:
        """The frame shown at ``limit`` (stream ticks) if kept: (its pts, the image), else None."""
        for pts in self._by_view.get((source, size), ()):
            if pts <= limit:
                key = (source, size, pts)
                following, value, cost = self._entries[key]
                if limit < following:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    if isinstance(value, Image.Image):
                        return pts, value
                    image = value()  # kept lazily: scaled now that it is asked for
                    scaled = _cost(image)
                    self._entries[key] = (following, image, scaled)
                    self.used += scaled - cost
                    self._evict(keep=key)
                    return pts, image
        return None

    def has(self, source: Any, size: tuple[int, int], pts: int) -> bool:
        return (source, size, pts) in self._entries

    def put(
        self,
        source: Any,
        size: tuple[int, int],
        pts: int,
        following: float | int,
        image: Picture,
        cost: int | None = None,
    ) -> None:
        """Keep ``image`` (frame ``pts`` at ``size``), shown until ``following`` (the next frame's pts, or inf); a
        lazy one (a callable) with ``cost``, the bytes it holds until it is scaled."""
        if cost is None:
            assert isinstance(image, Image.Image)
            cost = _cost(image)
        if cost > self.capacity // 4 or following <= pts:
            return
        key = (source, size, pts)
        old = self._entries.pop(key, None)
        if old is not None:
            self.used -= old[2]
        self._entries[key] = (following, image, cost)
        self._by_view.setdefault((source, size), set()).add(pts)
        self.used += cost
        self.stored += 1
        self._evict()

    def _evict(self, keep: Any = None) -> None:
        while self.used > self.capacity and self._entries:
            if keep is not None and next(iter(self._entries)) == keep:
                break  # the frame just given out stays, even over budget for a moment
            (src, view, old_pts), (_, _, old_cost) = self._entries.popitem(last=False)
            self.used -= old_cost
            pts_set = self._by_view.get((src, view))
            if pts_set is not None:
                pts_set.discard(old_pts)
                if not pts_set:
                    del self._by_view[(src, view)]

    def span(self, source: Any, size: tuple[int, int]) -> tuple[int, float | int] | None:
        """(first pts, end) of the frames kept for this view, for locality; None when none are."""
        kept = self._by_view.get((source, size))
        if not kept:
            return None
        low = min(kept)
        high = max(kept)
        return low, self._entries[(source, size, high)][0]

    def clear(self) -> None:
        self._entries.clear()
        self._by_view.clear()
        self.used = 0


def _cost(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())


def following_of(run: list[Any], index: int, ahead: Any, ended: bool) -> float | int | None:
    """The pts of the frame after ``run[index]`` in its decode: the next in the run, else the frame read ahead,
    else inf at the end of the file; None when unknown (nothing is kept for such a frame)."""
    if index + 1 < len(run):
        return int(run[index + 1].pts)
    if ahead is not None:
        return int(ahead.pts)
    return math.inf if ended else None

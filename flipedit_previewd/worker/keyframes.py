"""Where a video's keyframes are, learned while decoding it: what MPEG-TS and MPEG-PS do not carry.

MP4 and Matroska have an index, and FFmpeg seeks in them exactly. A transport stream has none:
FFmpeg bisects the file by timestamps (up to ~110 ms per seek on a long GOP, measured) and starts
reading mid-way through a keyframe's packets, so the first whole keyframe it yields is one or two
GOPs after the target. Every keyframe packet the worker demuxes is noted here with its byte
position; a later request in a GOP already seen seeks to that byte, which lands exactly (2-4 ms).
"""

from __future__ import annotations

import bisect
from fractions import Fraction

MAX_KEYFRAMES = 100_000  # ~4 MB at most per open source: a two-hour recording with a keyframe a second


class KeyframeIndex:
    """Keyframe presentation times with their byte positions, and which neighbours are known to be adjacent."""

    def __init__(self) -> None:
        self._pts: list[int] = []
        self._pos: dict[int, int] = {}
        self._next: dict[int, int] = {}  # keyframe -> the keyframe after it, seen in one run of decoding

    def __len__(self) -> int:
        return len(self._pts)

    def add(self, pts: int, pos: int, previous: int | None) -> None:
        """A keyframe at ``pts`` starts at byte ``pos``; ``previous`` is the keyframe demuxed just before it, if any."""
        if pts not in self._pos:
            if len(self._pts) >= MAX_KEYFRAMES:
                return
            bisect.insort(self._pts, pts)
        self._pos[pts] = pos
        if previous is not None and previous < pts:
            self._next[previous] = pts

    def before(self, limit: Fraction) -> tuple[int, int] | None:
        """The last known keyframe at or before ``limit``: (pts, byte position)."""
        at = bisect.bisect_right(self._pts, limit)
        if at == 0:
            return None
        pts = self._pts[at - 1]
        return pts, self._pos[pts]

    def after(self, pts: int) -> int | None:
        """The first known keyframe after ``pts``, if the keyframe before it is known to be followed by it."""
        at = bisect.bisect_right(self._pts, pts)
        if at == len(self._pts):
            return None
        if at == 0:
            return self._pts[0]
        following = self._next.get(self._pts[at - 1])
        return following if following == self._pts[at] else None

    def covers(self, pts: int, limit: Fraction) -> bool:
        """True when ``pts`` is known to be the last keyframe at or before ``limit`` (its successor is after it)."""
        following = self._next.get(pts)
        return following is not None and following > limit

    def widest_gap(self) -> int | None:
        """The longest distance between two keyframes seen one after the other (None before two were).

        With a regular GOP, a jump at least this long forward has a keyframe on its way: seeking to it
        skips the frames before it. Scene-cut keyframes shorten some gaps, never the widest.
        """
        return max((after - before for before, after in self._next.items()), default=None)

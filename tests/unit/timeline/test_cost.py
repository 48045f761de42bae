"""Limits on what a timeline may ask of a render (timeline/cost.py)."""

from __future__ import annotations

from typing import Any

import pytest

from flipedit_previewd.common.errors import PayloadTooLarge
from flipedit_previewd.timeline.cost import check_timeline, max_overlap
from flipedit_previewd.timeline.model import timeline_from_json


def _timeline(clips: list[tuple[int, int]], canvas: tuple[int, int] = (1280, 720), path: str = "/m/a.png") -> Any:
    return timeline_from_json(
        {
            "canvas": {"width": canvas[0], "height": canvas[1]},
            "frame_rate": 10,
            "tracks": [
                {"clips": [{"source_path": path, "start_on_track_ms": s, "end_on_track_ms": e} for s, e in clips]}
            ],
        },
        canvas,
        10,
    )


def test_max_overlap_counts_layers_drawn_at_one_frame() -> None:
    assert max_overlap(_timeline([])) == 0
    assert max_overlap(_timeline([(0, 1000), (1000, 2000)])) == 1  # one ends where the next starts
    assert max_overlap(_timeline([(0, 1000), (500, 2000), (900, 1000), (1900, 3000)])) == 3


def test_check_timeline_names_the_limit() -> None:
    heavy = _timeline([(0, 1000)] * 8, (8192, 8192))
    with pytest.raises(PayloadTooLarge) as info:
        check_timeline(heavy, 7 * 8192 * 8192, 100)
    assert info.value.extra["limit"] == "max_layer_pixels" and "max_layer_pixels" in info.value.detail
    check_timeline(heavy, 8 * 8192 * 8192, 100)
    with pytest.raises(PayloadTooLarge) as info:
        check_timeline(heavy, 8 * 8192 * 8192, 7)
    assert info.value.extra["limit"] == "max_timeline_clips"
    with pytest.raises(PayloadTooLarge) as info:
        check_timeline(_timeline([(0, 10)], path="/" + "x/.." * 1100), 10**12, 100)
    assert info.value.extra["limit"] == "path_max" and "tracks[0].clips[0].source_path" in info.value.detail

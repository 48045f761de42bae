"""The frames a decode pass keeps for a scrub turning back (worker/decoded.py, VideoSource.run): bounded in bytes
as well as in count, since they are held at the source's size (a 4K 10-bit frame is 25 MB)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from flipedit_previewd.demo.fixtures import make_indexed_video
from flipedit_previewd.worker import media
from flipedit_previewd.worker.decoded import RUN_FRAMES


def test_a_pass_keeps_at_most_run_bytes_of_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = str(make_indexed_video(tmp_path / "v.mp4", 90, (320, 180), 30, gop=90))
    small = media.VideoSource(video)
    try:
        assert small.run_limit == RUN_FRAMES  # small frames: the count bounds it
        frame_bytes = sum(plane.buffer_size for plane in small.frame_at(Fraction(0)).frame.planes)  # with padding
    finally:
        small.close()
    monkeypatch.setattr(media, "RUN_BYTES", frame_bytes * 5 + frame_bytes // 2)  # room for 5 frames of this size
    source = media.VideoSource(video)
    try:
        assert source.run_limit == 5
        source.run_from = Fraction(0)
        source.frame_at(Fraction(60, 30))  # one pass from the first frame to frame 60, all noted
        assert 1 <= len(source.run) <= source.run_limit + 1  # the target itself may be the one past the limit
        assert source.run[-1].pts == source.position()  # the frames kept are the ones nearest the target
    finally:
        source.close()


def test_a_frame_kept_lazily_is_scaled_once_and_only_when_asked_for() -> None:
    from PIL import Image

    from flipedit_previewd.worker.decoded import DecodedFrames

    made: list[int] = []

    def later(pts: int) -> Image.Image:
        made.append(pts)
        return Image.new("RGB", (8, 4))

    kept = DecodedFrames(capacity=1000)
    for pts in (0, 10, 20):
        kept.put("src", (8, 4), pts, pts + 10, lambda pts=pts: later(pts), cost=100)
    assert made == [] and kept.used == 300  # nothing scaled until a request asks
    found = kept.find("src", (8, 4), Fraction(15))
    assert found is not None and found[0] == 10 and found[1].size == (8, 4)
    assert made == [10] and kept.used == 200 + 8 * 4 * 3  # now held at its scaled size
    assert kept.find("src", (8, 4), Fraction(12)) == found and made == [10]  # scaled once
    for pts in (30, 40, 50):  # over budget: the least recently used go first (0; 10 was just asked for)
        kept.put("src", (8, 4), pts, pts + 10, lambda pts=pts: later(pts), cost=250)
    assert kept.used <= 1000 and not kept.has("src", (8, 4), 0) and kept.has("src", (8, 4), 10)
    assert made == [10]

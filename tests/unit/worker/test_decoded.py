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

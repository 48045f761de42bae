"""A scrub that turns back is answered from the frames its decode passed (worker/decoded.py), and they are the
very frames a fresh decode gives: pixel for pixel, on a long-GOP H.264 file with B-frames made by a stock FFmpeg."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from flipedit_previewd.worker.media import MediaPool
from tests.support.media_corpus import ffmpeg, lavfi

FPS = 30.0
SIZE = (160, 90)


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if ffmpeg() is None:
        pytest.fail("ffmpeg is needed: scripts/setup.sh installs Debian's ffmpeg")
    path = tmp_path_factory.mktemp("scrub") / "gop120.mp4"
    lavfi(
        path,
        "testsrc2=size=320x180:rate=30:duration=10",
        *"-c:v libx264 -preset ultrafast -g 120 -keyint_min 120 -sc_threshold 0 -bf 3 -pix_fmt yuv420p".split(),
    )
    return path


def fresh(path: Path, index: int, size: tuple[int, int] = SIZE) -> bytes:
    """The frame as a new worker decodes it: a pool of its own, nothing kept from anything before."""
    pool = MediaPool(1 << 20, 100_000_000)
    try:
        return pool.video_frame(str(path), None, index, FPS, size).tobytes()
    finally:
        pool.close()


def test_a_reversing_scrub_serves_the_frames_a_fresh_decode_gives(long_gop: Path) -> None:
    pool = MediaPool(1 << 20, 100_000_000)
    # forward into the second GOP, then back across the keyframe at 120 and on into the first GOP, in steps
    # of 1 to 4 frames (a hand on the scrub bar), then forward again over the kept frames
    walk = [*range(100, 171, 5), *range(169, 90, -1), *range(90, 60, -3), *range(61, 80, 2)]
    try:
        for index in walk:
            got = pool.video_frame(str(long_gop), None, index, FPS, SIZE).tobytes()
            assert got == fresh(long_gop, index), f"frame {index} differs from a fresh decode"
        assert pool.decoded.hits >= len(walk) // 2, "the scrub turning back was not answered from kept frames"
        source = next(iter(pool.videos.values()))
        assert source.seeks < len(walk) // 4, f"{source.seeks} seeks for {len(walk)} frames: kept frames not used"
    finally:
        pool.close()


def test_kept_frames_are_per_size_and_follow_the_time_rule_between_frames(long_gop: Path) -> None:
    pool = MediaPool(1 << 20, 100_000_000)
    try:
        for index in (110, 104):  # behind the decoder: the second one's decode is kept
            pool.video_frame(str(long_gop), None, index, FPS, SIZE)
        # another output size is another view: decoded again, never a kept frame of the other size
        assert pool.video_frame(str(long_gop), None, 103, FPS, (128, 72)).size == (128, 72)
        # a timeline at another rate asks for times between the source's frames: the frame before is shown
        for index in (
            207,
            205,
            203,
        ):  # at 60 fps: 3.45, 3.417, 3.383 s, half-way between source frames -> 103, 102, 101
            got = pool.video_frame(str(long_gop), None, index, 60.0, SIZE).tobytes()
            fresh_pool = MediaPool(1 << 20, 100_000_000)
            try:
                assert got == fresh_pool.video_frame(str(long_gop), None, index, 60.0, SIZE).tobytes(), index
            finally:
                fresh_pool.close()
        assert pool.decoded.hits >= 2
        assert all((Fraction(i, 60) * 30).denominator == 2 for i in (207, 205, 203))  # the times do fall between frames
    finally:
        pool.close()

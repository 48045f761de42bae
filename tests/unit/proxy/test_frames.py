"""Proxies made and read for real (stock-ffmpeg sources, libx264, PyAV): the same frame as the renderer, by
its own time rule, within 45 dB of the original scaled the same way; partial proxies serve only what is sure."""

from __future__ import annotations

import math
import os
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from flipedit_previewd.proxy.maker import fit, make
from flipedit_previewd.proxy.reader import ProxyReader, usable
from flipedit_previewd.proxy.store import Manifest, Params, Store, identity_of, key_of
from flipedit_previewd.worker.display import Geometry
from flipedit_previewd.worker.media import MediaPool, VideoSource, picture_of, timeline_rate
from tests.support import media_corpus as corpus

pytestmark = pytest.mark.skipif(corpus.ffmpeg() is None, reason="needs Debian's ffmpeg (scripts/setup.sh)")
ROWS = {row.name: row for row in corpus.ROWS}
CHECKED = (
    "h264_ts_gop250",
    "h264_mp4_gop25_bframes",
    "h264_vfr_mp4",
    "h264_25fps_on_30",
    "h264_30fps_on_25",
    "h264_2997_on_2997",
    "hevc10_mp4_phone",
    "hevc_mkv_opengop",
    "h264_rot90_mp4",
    "h264_mirror_mp4",
    "h264_sar43_mp4",
    "h264_raw",
    "mpeg2_ts_gop15",
    "h264_444_mp4",
    "h264_fullrange_mp4",
    "mjpeg_avi",
    "prores_mov",
    "hevc12_mp4",
)


# testsrc2 at the corpus's 160x96 is edges in every pixel; ProRes 4:2:2 10-bit there measured 44.6-44.8 dB
# at 3/4 size whatever the CRF (4-8), 46+ at 320x192: checked at that size.
LARGER = {"prores_mov": (320, 192)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proxy-corpus")


def luma_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((corpus.luma(a) - corpus.luma(b)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


def shown_from(frame: Any, manifest: Manifest, size: tuple[int, int]) -> np.ndarray:
    """The proxy frame as a worker shows it: by its manifest's geometry alone (the original is not opened)."""
    deep = any(component.bits > 8 for component in frame.format.components)
    return np.asarray(picture_of(frame, manifest.geometry, size, deep))


@pytest.mark.parametrize("name", CHECKED)
def test_every_frame_is_the_renderers_frame(folder: Path, name: str) -> None:
    row = ROWS[name]
    if name in LARGER:
        (folder / "larger").mkdir(exist_ok=True)
        path = corpus.make(row, folder / "larger", LARGER[name])
    else:
        path = corpus.make(row, folder)
    store = Store(folder / f"store-{name}")
    store.create()
    made = make(store, str(path), Params(1280, 720))
    assert made.complete and not made.refused
    source = VideoSource(str(path))
    try:
        key = key_of(identity_of(source), Params(1280, 720))
        assert key == made.key
        reader = ProxyReader(store)
        manifest = reader.for_file(os.stat(path), Params(1280, 720))  # found by the file, as a worker finds it
        assert manifest is not None and manifest.complete and manifest.key == key
        # what a worker would otherwise open the original for
        assert manifest.shown == source.size() and manifest.warning == source.warning
        shown = manifest.displayed
        assert (manifest.width, manifest.height) == fit(source.geometry, (1280, 720))
        assert manifest.geometry.sar == source.geometry.sar and manifest.geometry.transpose == source.geometry.transpose
        rate = timeline_rate(row.timeline_fps)
        total = int(row.seconds * row.timeline_fps) + 3  # a few past the end: the last frame stands
        order = list(range(total))
        order = order[::7] + order[::-1][::5] + order  # jumps both ways, then in order
        worst = 99.0
        for index in order:
            seconds = Fraction(index) / rate
            got = reader.frame_at(manifest, seconds)
            assert got is not None, index
            expected = source.frame_at(seconds)
            assert got[0] == expected.pts, (name, index)
            if index % 4 == 0:
                for size in (
                    shown,
                    (max(2, shown[0] // 2), max(2, shown[1] // 2)),
                    (shown[0] * 3 // 4, shown[1] * 3 // 4),
                ):
                    if not usable(manifest, size):
                        continue
                    worst = min(
                        worst, luma_psnr(shown_from(got[1], manifest, size), np.asarray(source.picture(expected, size)))
                    )
        assert worst >= 45.0, (name, worst)
    finally:
        source.close()


def test_a_worker_draws_from_the_proxy_without_opening_the_original(folder: Path) -> None:
    """Opening a phone's 4K HEVC (probe and first frame) cost ~180 ms per worker; with a proxy it is not opened:
    the clip's displayed size (turned 90 degrees here) and the frame come from the proxy, found by the file."""
    path = str(corpus.make(ROWS["h264_rot90_mp4"], folder))
    store = Store(folder / "store-unopened")
    store.create()
    make(store, path, Params(1280, 720))
    stat = (os.stat(path).st_mtime_ns, os.stat(path).st_size)
    original = VideoSource(path)
    proxied = MediaPool(64 << 20, 1 << 26, proxies=ProxyReader(store), proxy_size=(1280, 720))
    plain = MediaPool(64 << 20, 1 << 26)
    try:
        proxied.begin((1280, 720), lossless=False)
        size = proxied.native_size(path, stat, "video")
        assert size == original.size() and size[0] < size[1]  # portrait, as the display matrix shows it
        drawn = [proxied.video_frame(path, stat, index, 30.0, size) for index in (0, 17, 5, 40)]
        assert proxied.source_used() == "proxy" and not proxied.videos  # the original was never opened
        plain.begin((1280, 720), lossless=False)
        for index, image in zip((0, 17, 5, 40), drawn, strict=True):
            assert image.size == size
            assert luma_psnr(np.asarray(image), np.asarray(plain.video_frame(path, stat, index, 30.0, size))) >= 45
        proxied.begin((1280, 720), lossless=True)  # PNG: the original, always
        proxied.video_frame(path, stat, 17, 30.0, size)
        assert proxied.source_used() == "original" and proxied.videos
    finally:
        original.close()
        proxied.close()
        plain.close()


def test_a_partial_proxy_serves_only_frames_it_surely_has(folder: Path) -> None:
    path = corpus.make(ROWS["h264_ts_gop250"], folder)
    store = Store(folder / "store-partial")
    store.create()
    one = os.path.getsize(path)
    made = make(store, str(path), Params(1280, 720), max_bytes=1)  # stops after the first segment
    assert made.stopped and not made.complete and len(made.segments) == 1
    reader = ProxyReader(store)
    manifest = reader.manifest(made.key)
    assert manifest is not None
    source = VideoSource(str(path))
    try:
        rate = timeline_rate(30)
        last = made.segments[0][2] - 1
        for index in range(0, last):
            got = reader.frame_at(manifest, Fraction(index) / rate)
            assert got is not None and got[0] == source.frame_at(Fraction(index) / rate).pts
        # the segment's last frame, and anything after it: a later frame may exist in a segment not made
        assert reader.frame_at(manifest, Fraction(last) / rate) is None
        assert reader.frame_at(manifest, Fraction(200) / rate) is None
    finally:
        source.close()
    assert one > 0


def test_the_proxy_is_never_larger_than_the_source_and_is_used_only_up_to_its_size() -> None:
    assert fit(Geometry(1920, 1080), (1280, 720)) == (1280, 720)
    assert fit(Geometry(1920, 1080, transpose=Image.Transpose.ROTATE_270), (1280, 720)) == (
        720,
        404,
    )  # stored landscape
    assert fit(Geometry(640, 360), (1280, 720)) == (640, 360)  # never enlarged
    assert fit(Geometry(1440, 1080, Fraction(4, 3)), (1280, 720)) == (960, 720)  # shown 1280x720, pixel shape kept
    assert fit(Geometry(161, 97), (1280, 720)) == (160, 96)  # even sides for 4:2:0


def test_a_damaged_segment_is_dropped_not_served(folder: Path) -> None:
    path = corpus.make(ROWS["h264_mp4_gop25_bframes"], folder)
    store = Store(folder / "store-damaged")
    store.create()
    made = make(store, str(path), Params(1280, 720))
    segment = store.segment_path(made.key, 1)
    data = bytearray(segment.read_bytes())
    data[200:] = bytes(len(data) - 200)  # frames zeroed after the table
    segment.write_bytes(bytes(data))
    reader = ProxyReader(store)
    manifest = reader.manifest(made.key)
    assert manifest is not None
    assert reader.frame_at(manifest, Fraction(1, 30)) is not None
    rate = timeline_rate(30)
    assert reader.frame_at(manifest, Fraction(made.segments[1][2] + 5) / rate) is None
    assert reader.manifest(made.key) is None  # this worker stopped using it
    shutil.rmtree(store.root)


def test_a_changed_file_has_another_key(folder: Path) -> None:
    path = corpus.make(ROWS["h264_25fps_on_30"], folder)
    copy = folder / "changing.mp4"
    shutil.copy(path, copy)
    store = Store(folder / "store-changed")
    store.create()
    made = make(store, str(copy), Params(1280, 720))
    os.utime(copy, ns=(os.stat(copy).st_atime_ns, os.stat(copy).st_mtime_ns + 1_000_000))
    source = VideoSource(str(copy))
    try:
        assert key_of(identity_of(source), Params(1280, 720)) != made.key
    finally:
        source.close()
    assert usable(made, made.displayed) and not usable(made, (made.displayed[0] + 1, made.displayed[1]))


def test_an_interrupted_proxy_goes_on_from_its_last_segment(folder: Path) -> None:
    path = corpus.make(ROWS["h264_ts_gop250"], folder)
    store = Store(folder / "store-resumed")
    store.create()
    first = make(store, str(path), Params(1280, 720), max_bytes=1)  # one segment, then stopped
    assert first is not None and len(first.segments) == 1
    first.stopped = ""  # as a maker killed after its first segment leaves it
    store.write_manifest(first)
    segment = store.segment_path(first.key, 0)
    before = (segment.stat().st_ino, segment.stat().st_mtime_ns)
    events: list[dict[str, object]] = []
    done = make(store, str(path), Params(1280, 720), report=events.append)
    assert done is not None and done.complete and events[0]["resumed_at"] == first.frames
    assert (segment.stat().st_ino, segment.stat().st_mtime_ns) == before  # the first segment was not made again
    whole = Store(folder / "store-whole")
    whole.create()
    again = make(whole, str(path), Params(1280, 720))
    assert again is not None and done.segments == again.segments  # the same frames, the same original times
    reader = ProxyReader(store)
    manifest = reader.manifest(done.key)
    source = VideoSource(str(path))
    try:
        for index in (0, 29, 30, 31, 150, 299):
            seconds = Fraction(index) / timeline_rate(30)
            got = reader.frame_at(manifest, seconds)  # type: ignore[arg-type]
            assert got is not None and got[0] == source.frame_at(seconds).pts
    finally:
        source.close()

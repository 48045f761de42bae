"""Exact frames on the media people have, checked against a decoder that is not ours.

Each file of the corpus (tests/support/media_corpus.py) is made by a stock FFmpeg and decoded by it
from the first frame to the last; frames are then asked of the renderer in random order, through
several media pools (as several workers hold them) and through a real daemon, as PNG at the
picture's displayed size. The frame shown must be the one the time rule names, matched against
every frame of the file: the best match, luma PSNR >= 40 dB, mean colour bias <= 1.5 levels.
"""

from __future__ import annotations

import io
import random
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import requests
from PIL import Image

from flipedit_previewd.proxy.store import params_for
from flipedit_previewd.timeline.model import Timeline, timeline_from_json
from flipedit_previewd.worker.compositor import OutputSpec, compose
from flipedit_previewd.worker.media import MediaPool, timeline_rate
from tests.support.helpers import build_project
from tests.support.media_corpus import ROWS, Reference, Row, apply_matrix, ffmpeg, lavfi, make, match, reference

MIN_PSNR, MAX_BIAS = 40.0, 1.5
PURE_ROTATIONS = {(0, 1, -1, 0), (-1, 0, 0, -1), (0, -1, 1, 0)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if ffmpeg() is None:
        pytest.fail("ffmpeg and ffprobe are needed for the media corpus: scripts/setup.sh installs Debian's ffmpeg")
    return tmp_path_factory.mktemp("corpus")


def expected_frames(row: Row, path: Path) -> tuple[Reference, np.ndarray]:
    """The reference of a row as the viewer sees it: rotation from FFmpeg itself where it can, else the matrix rule."""
    if row.matrix in PURE_ROTATIONS:
        ref = reference(path, autorotate=True, rotated=row.matrix[0] == 0)
        return ref, ref.frames
    scale = Fraction(4, 3) if "setsar=4/3" in row.vf else Fraction(1)
    ref = reference(path, scale=scale)
    if row.matrix is not None:
        return ref, np.array([apply_matrix(frame, row.matrix) for frame in ref.frames])
    return ref, ref.frames


def png(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def clip_json(path: Path, seconds: float) -> dict[str, object]:
    return {
        "source_path": str(path),
        "start_on_track_ms": 0,
        "end_on_track_ms": int(seconds * 1000) + 2000,
        "start_in_source_ms": 0,
    }


class Alone(NamedTuple):
    """A corpus file, its frames as FFmpeg decodes them, and a timeline of its displayed size showing it alone."""

    path: Path
    ref: Reference
    frames: np.ndarray
    width: int
    height: int
    rate: Fraction  # the timeline's, exact
    count: int  # the timeline's frames that show the file
    timeline: Timeline


def shown_alone(row: Row, corpus: Path) -> Alone:
    """What both tests start from, so the frames they check against are the same ones."""
    path = make(row, corpus)
    ref, frames = expected_frames(row, path)
    height, width = frames.shape[1:3]
    rate = timeline_rate(row.timeline_fps)
    count = int((ref.seconds[-1] + Fraction(1, 30)) * rate)
    timeline = timeline_from_json(
        {"tracks": [{"clips": [clip_json(path, float(ref.seconds[-1]))]}]}, (width, height), row.timeline_fps
    )
    return Alone(path, ref, frames, width, height, rate, count, timeline)


def asked(count: int, rng: random.Random) -> list[int]:
    """Random frames, plus the first, the last two and every frame around a 25/30-frame GOP boundary."""
    frames = rng.sample(range(count), min(12, count)) + [count - 1, count - 2, 0]
    frames += [f for f in (1, 2, 4, 5, 24, 29, 57, 58, 59, 60, 74, 249) if f < count]
    rng.shuffle(frames)
    return frames


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_frames_match_an_independent_decoder(corpus: Path, row: Row) -> None:
    _, ref, frames, width, height, rate, count, timeline = shown_alone(row, corpus)
    pools = [MediaPool(64 << 20, 50_000_000) for _ in range(3)]  # as three workers hold their decoders
    rng = random.Random(row.name)
    wrong = []
    for n in asked(count, rng):
        result = compose(timeline, n, OutputSpec(width, height, 0, "png"), rng.choice(pools))
        expected = ref.expected(Fraction(n) / rate)
        found = match(png(result.body), frames, expected)
        if result.problems or found.best != expected or found.expected_psnr < MIN_PSNR or found.bias > MAX_BIAS:
            wrong.append(
                f"frame {n}: expected source frame {expected}, shown {found.best} "
                f"({found.expected_psnr:.1f} dB, bias {found.bias:.2f}) {result.problems}"
            )
    assert not wrong, f"{row.name} ({width}x{height}):\n" + "\n".join(wrong)


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_with_proxies_on_the_frames_are_the_same(corpus: Path, row: Row) -> None:
    """Proxies made for every file (proxy/): PNG still decodes the originals (the test above, unchanged), and
    a JPEG, which uses the proxy, shows the frame the time rule names, as close to the reference as the
    original's own JPEG is."""
    from flipedit_previewd.proxy.maker import make as make_proxy
    from flipedit_previewd.proxy.reader import ProxyReader, usable
    from flipedit_previewd.proxy.store import Store

    path, ref, frames, width, height, rate, count, timeline = shown_alone(row, corpus)
    store = Store(corpus / f"proxies-{row.name}")
    store.create()
    made = make_proxy(store, str(path), params_for((0, 0), (width, height)))
    assert made is not None and made.complete and not made.refused, row.name
    pools = [MediaPool(64 << 20, 50_000_000, proxies=ProxyReader(store)) for _ in range(2)]
    plain = MediaPool(64 << 20, 50_000_000)
    rng = random.Random(row.name)
    wrong = []
    used = set()
    for n in asked(count, rng)[:12]:
        expected = ref.expected(Fraction(n) / rate)
        lossless = compose(timeline, n, OutputSpec(width, height, 0, "png"), rng.choice(pools))
        assert lossless.source == "original", (row.name, n)
        shown = compose(timeline, n, OutputSpec(width, height, 95, "jpeg"), rng.choice(pools))
        used.add(shown.source)
        own = match(png(compose(timeline, n, OutputSpec(width, height, 95, "jpeg"), plain).body), frames, expected)
        found = match(png(shown.body), frames, expected)
        if found.best != expected or found.expected_psnr < min(MIN_PSNR, own.expected_psnr - 1.5):
            wrong.append(
                f"frame {n}: expected source frame {expected}, shown {found.best} from the {shown.source} "
                f"({found.expected_psnr:.1f} dB; the original's JPEG {own.expected_psnr:.1f} dB)"
            )
    assert not wrong, f"{row.name} ({width}x{height}):\n" + "\n".join(wrong)
    assert usable(made, (width, height)) and used == {"proxy"}, (row.name, used, made.displayed)


def test_the_matrix_rule_agrees_with_ffmpegs_autorotation(corpus: Path) -> None:
    """The yardstick of the mirrored rows (apply_matrix) gives what FFmpeg gives for pure rotations."""
    for row in ROWS:
        if row.matrix in PURE_ROTATIONS:
            path = make(row, corpus)
            stored = reference(path).frames[:3]
            upright = reference(path, autorotate=True, rotated=row.matrix[0] == 0).frames[:3]
            assert all(np.array_equal(apply_matrix(s, row.matrix), u) for s, u in zip(stored, upright, strict=True)), (
                row.name
            )


def ffmpeg_to(path: Path, *args: str) -> Path:
    lavfi(path, "testsrc2=size=160x96:rate=30:duration=1", *args, timeout=60)
    return path


def ffmpeg_decode(path: Path, pix_fmt: str, channels: int) -> np.ndarray:
    raw = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            pix_fmt,
            "-",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(96, 160, channels)


def render_still(path: Path, clip_type: str = "image") -> tuple[np.ndarray, list[tuple[str, str]]]:
    clip = {**clip_json(path, 1.0), "type": clip_type}
    timeline = timeline_from_json({"tracks": [{"clips": [clip]}]}, (160, 96), 30)
    result = compose(timeline, 3, OutputSpec(160, 96, 0, "png"), MediaPool(64 << 20, 50_000_000))
    return png(result.body), result.problems


@pytest.mark.parametrize("pix_fmt", ["gray16be", "gray", "ya8", "ya16be", "rgb48be", "rgba", "pal8", "monob"])
def test_still_pixel_formats_keep_their_levels(corpus: Path, pix_fmt: str) -> None:
    """16-bit grey PNG was shown all white (Pillow's I;16 clipped); every PNG mode against FFmpeg's decoding."""
    path = ffmpeg_to(corpus / f"still_{pix_fmt}.png", "-frames:v", "1", "-pix_fmt", pix_fmt)
    rgba = ffmpeg_decode(path, "rgba", 4).astype(np.float64)
    expected = rgba[..., :3] * (rgba[..., 3:] / 255)  # composited on the black canvas
    shown, problems = render_still(path)
    assert not problems
    found = match(shown, expected[None].round().astype(np.uint8), 0)
    assert found.expected_psnr >= MIN_PSNR and found.bias <= MAX_BIAS, (pix_fmt, found)


@pytest.mark.parametrize(
    ("name", "args", "says"),
    [
        (
            "tiff.tif",
            ("-frames:v", "1", "-c:v", "tiff"),
            "TIFF is not an allowed still format; allowed: JPEG, PNG, WebP, BMP, GIF",
        ),
        ("tiff-named.png", ("-frames:v", "1", "-c:v", "tiff", "-f", "image2"), "TIFF is not an allowed still format"),
        (
            "clip.y4m",
            ("-frames:v", "5", "-f", "yuv4mpegpipe"),
            "YUV4MPEG is not an allowed video container; allowed: MP4/MOV",
        ),
        ("tiff-track.mov", ("-frames:v", "5", "-c:v", "tiff"), "the tiff codec is not an allowed video codec"),
    ],
)
def test_refusals_name_the_format(corpus: Path, name: str, args: tuple[str, ...], says: str) -> None:
    path = ffmpeg_to(corpus / name, *args)
    shown, problems = render_still(path, "video")
    assert problems and says in problems[0][1], problems
    assert shown.std() > 0  # a placeholder tile, not a black frame


def test_the_decision_is_by_content_not_extension(corpus: Path) -> None:
    """An MP4 named .jpg is decoded as video; a PNG named .mp4 as a still."""
    video = make(ROWS[0], corpus)
    disguised = corpus / "video.jpg"
    disguised.write_bytes(video.read_bytes())
    shown, problems = render_still(disguised)
    assert not problems and match(shown, reference(video).frames, 3).best == 3
    still = ffmpeg_to(corpus / "still.png", "-frames:v", "1")
    named = corpus / "still.mp4"
    named.write_bytes(still.read_bytes())
    shown, problems = render_still(named, "video")
    assert not problems and match(shown, ffmpeg_decode(still, "rgb24", 3)[None], 0).expected_psnr >= MIN_PSNR


def test_a_stream_that_grows_past_the_pixel_limit_is_refused_per_frame(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MPEG-TS may switch to a larger size mid-stream (a new SPS): checked on every decoded frame, not only the "
    "probe."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # MediaPool sets it for its (worker) process
    small = ffmpeg_to(corpus / "small.ts", "-c:v", "libx264", "-g", "10", "-vf", "scale=64:64")
    big = ffmpeg_to(corpus / "big.ts", "-c:v", "libx264", "-g", "10", "-vf", "scale=1024:1024")
    joined = corpus / "switch.ts"
    joined.write_bytes(small.read_bytes() + big.read_bytes())
    timeline = timeline_from_json({"tracks": [{"clips": [clip_json(joined, 2.0)]}]}, (64, 64), 30)
    media = MediaPool(64 << 20, 100_000)
    before = compose(timeline, 5, OutputSpec(64, 64, 0, "png"), media)
    assert not before.problems
    after = compose(timeline, 45, OutputSpec(64, 64, 0, "png"), media)
    assert after.problems and "1024x1024 exceeds 100000 pixels" in after.problems[0][1], after.problems


def test_a_daemon_with_two_workers_serves_the_exact_frames(corpus: Path, start_daemon: object, tmp_path: Path) -> None:
    """Through HTTP, in random order, whichever worker answers: clips one after another on one track."""
    rows = [
        r
        for r in ROWS
        if r.name in ("h264_ts_gop25", "mpeg2_mpg_gop15", "hevc_mp4_opengop", "h264_rot180_mp4", "h264_vfr_mp4")
    ]
    clips, expect = [], []
    for i, row in enumerate(rows):
        path = make(row, corpus)
        ref, frames = expected_frames(row, path)
        clips.append({"source": path, "type": "video", "start": i * 3000, "end": i * 3000 + 3000})
        expect.append((ref, frames))
    db = tmp_path / "project.sqlite"
    build_project(db, 2, [{"name": "v", "order": 0, "clips": clips}])
    daemon = start_daemon(
        "--project",
        str(db),
        "--workers",
        "2",
        "--canvas-width",
        "160",
        "--canvas-height",
        "96",  # type: ignore[operator]
        "--allowed-roots",
        str(corpus),
    )
    rng = random.Random(5)
    wrong = []
    for n in rng.sample(range(90 * len(rows)), 60):
        index, local = divmod(n, 90)
        ref, frames = expect[index]
        answer = requests.get(f"{daemon.url}/get_frame/{n}?format=png", timeout=30)
        assert answer.status_code == 200
        expected = ref.expected(Fraction(local, 30))
        found = match(png(answer.content), frames, expected)
        if found.best != expected or found.expected_psnr < MIN_PSNR or found.bias > MAX_BIAS:
            wrong.append(
                f"{rows[index].name} frame {local}: shown {found.best}, expected {expected} ({found.expected_psnr:.1f} "
                f"dB)"
            )
    assert not wrong, "\n".join(wrong)
    assert daemon.health()["media_problems"] == []


def test_a_transport_stream_is_sought_by_the_keyframes_it_showed(corpus: Path) -> None:
    """MPEG-TS has no index: after the first late landing, targets in GOPs already seen go to a keyframe's byte."""
    from flipedit_previewd.worker.media import VideoSource

    row = next(r for r in ROWS if r.name == "h264_ts_gop250")
    path = make(row, corpus)
    ref = reference(path)
    source = VideoSource(str(path))
    for n in (280, 100, 270, 20, 260, 249, 0, 299):
        decoded = source.frame_at(Fraction(n, 30))
        assert match(np.asarray(source.picture(decoded, (160, 96))), ref.frames, n).best == n
    assert source.restarts == 0 and len(source.keyframes) == 2  # keyframes at 0 and 250, learned
    source.close()


def test_a_free_rotation_is_shown_as_stored_and_said(corpus: Path) -> None:
    """Only quarter turns and mirroring are applied; any other matrix is reported per source, never silent."""
    import math
    import struct

    path = corpus / "rot30.mp4"
    path.write_bytes(make(ROWS[0], corpus).read_bytes())
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    offset = at + 8 + (32 if data[at + 4] == 1 else 20) + 16
    c, s = (round(v * 65536) for v in (math.cos(math.radians(30)), math.sin(math.radians(30))))
    data[offset : offset + 36] = struct.pack(">9i", c, s, 0, -s, c, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    ref = reference(path)
    timeline = timeline_from_json({"tracks": [{"clips": [clip_json(path, 3.0)]}]}, (160, 96), 30)
    media = MediaPool(64 << 20, 50_000_000)
    first = compose(timeline, 7, OutputSpec(160, 96, 0, "png"), media)
    assert match(png(first.body), ref.frames, 7).best == 7  # as stored
    assert first.problems and "rotation of 30 degrees" in first.problems[0][1], first.problems
    assert compose(timeline, 8, OutputSpec(160, 96, 0, "png"), media).problems == []  # said once

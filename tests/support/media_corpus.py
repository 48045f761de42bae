"""A corpus of media made by a stock FFmpeg, and reference frames decoded by it, not by us.

The renderer is checked against a decoder that is not ours: the ``ffmpeg`` command (Debian's
package, installed by scripts/setup.sh) decodes every frame of each file sequentially from the
start, so a reference never depends on seeking, and ``ffprobe`` gives each frame's presentation
time. Each row is a kind of footage people have: cameras' and screen recorders' MPEG-TS with
long GOPs, phones' open-GOP HEVC (10-bit) with a rotation matrix, DVD-era MPEG-2, odd pixel
shapes and formats, variable frame rate.

Rotation and mirroring are written into the MP4 track header (``tkhd``) by ``set_matrix`` as a
phone writes them (FFmpeg 5.1's ``-display_rotation`` does not exist yet). Their expected pictures
come from the QuickTime rule for that matrix, applied to the stored reference frames here
(``apply_matrix``), and for pure rotations also from FFmpeg's own autorotation.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

W, H = 160, 96  # small: the corpus is made and checked in every make test


@dataclass(frozen=True)
class Row:
    """One file of the corpus: how ffmpeg makes it, and how it is to be shown."""

    name: str
    ext: str
    encode: tuple[str, ...]  # ffmpeg output options
    rate: str = "30"  # testsrc2's rate (the source's frame rate)
    seconds: float = 3.0
    vf: str = ""  # filters before encoding (setsar, setpts for VFR)
    matrix: tuple[int, int, int, int] | None = None  # display matrix a, b, c, d written into tkhd
    timeline_fps: float = 30.0
    notes: str = ""


H264 = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")
X265 = ("-c:v", "libx265", "-preset", "ultrafast")


def _x265(params: str) -> tuple[str, ...]:
    return X265 + ("-x265-params", f"log-level=error:{params}")


ROWS: tuple[Row, ...] = (
    Row("h264_mp4_gop25_bframes", "mp4", H264 + ("-g", "25", "-bf", "2")),
    Row("h264_ts_gop25", "ts", H264 + ("-g", "25", "-bf", "2")),
    Row("h264_m2ts_gop25", "m2ts", H264 + ("-g", "25", "-f", "mpegts", "-mpegts_m2ts_mode", "1")),
    Row("h264_ts_gop250", "ts", H264 + ("-g", "250", "-bf", "3", "-sc_threshold", "0"), seconds=10.0),
    Row("mpeg2_mpg_gop15", "mpg", ("-c:v", "mpeg2video", "-g", "15", "-bf", "2", "-q:v", "4")),
    Row("mpeg2_ts_gop15", "ts", ("-c:v", "mpeg2video", "-g", "15", "-bf", "2", "-q:v", "4")),
    Row("hevc_mp4_opengop", "mp4", _x265("keyint=30:min-keyint=30:open-gop=1:bframes=3") + ("-pix_fmt", "yuv420p")),
    Row("hevc_mkv_opengop", "mkv", _x265("keyint=30:min-keyint=30:open-gop=1:bframes=3") + ("-pix_fmt", "yuv420p")),
    Row("hevc10_mp4_phone", "mp4", _x265("keyint=30:open-gop=1") + ("-pix_fmt", "yuv420p10le", "-tag:v", "hvc1")),
    Row("hevc12_mp4", "mp4", _x265("keyint=30") + ("-pix_fmt", "yuv420p12le")),
    Row("vp9_webm", "webm", ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "30")),
    Row("av1_mkv", "mkv", ("-c:v", "libsvtav1", "-preset", "12", "-g", "30")),
    Row("mjpeg_avi", "avi", ("-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p")),
    Row("prores_mov", "mov", ("-c:v", "prores_ks", "-profile:v", "1")),
    Row("h264_444_mp4", "mp4", ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv444p", "-g", "25")),
    Row("h264_fullrange_mp4", "mp4", ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuvj420p", "-g", "25")),
    Row("h264_rot90_mp4", "mp4", H264 + ("-g", "25"), matrix=(0, 1, -1, 0)),
    Row("h264_rot180_mp4", "mp4", H264 + ("-g", "25"), matrix=(-1, 0, 0, -1)),
    Row("h264_rot270_mp4", "mp4", H264 + ("-g", "25"), matrix=(0, -1, 1, 0)),
    Row("h264_mirror_mp4", "mp4", H264 + ("-g", "25"), matrix=(-1, 0, 0, 1)),
    Row("h264_rot90_mirror_mp4", "mp4", H264 + ("-g", "25"), matrix=(0, 1, 1, 0)),
    Row("h264_sar43_mp4", "mp4", H264 + ("-g", "25"), vf="setsar=4/3"),
    # A phone's variable frame rate: frame times jitter by up to 16 ms around 30 fps.
    Row(
        "h264_vfr_mp4",
        "mp4",
        H264 + ("-g", "30", "-fps_mode", "passthrough", "-enc_time_base", "1/90000", "-video_track_timescale", "90000"),
        vf="settb=1/90000,setpts=(N/30+mod(N\\,3)*0.008)/TB",
    ),
    Row("h264_25fps_on_30", "mp4", H264 + ("-g", "25"), rate="25"),
    Row("h264_30fps_on_25", "mp4", H264 + ("-g", "30"), timeline_fps=25.0),
    Row("h264_2997_on_2997", "mp4", H264 + ("-g", "30"), rate="30000/1001", timeline_fps=29.97),
    Row("h264_raw", "h264", H264 + ("-g", "25", "-f", "h264"), rate="25", timeline_fps=25.0),
)


@dataclass
class Reference:
    """Every frame of a file as FFmpeg decodes it from the start (RGB), and when each is shown."""

    frames: np.ndarray  # (n, height, width, 3) uint8
    seconds: list[Fraction]  # presentation time of each frame, from the first frame's
    tolerance: Fraction  # half a tick of the stream's time base

    def expected(self, t: Fraction) -> int:
        """The frame on screen at ``t``: the last whose time is <= t (half a tick allowed)."""
        index = 0
        for i, start in enumerate(self.seconds):
            if start <= t + self.tolerance:
                index = i
        return index


def ffmpeg() -> str | None:
    return shutil.which("ffmpeg") if shutil.which("ffprobe") else None


def lavfi(path: Path, source: str, *encode: str, timeout: float | None = 120) -> Path:
    """``path`` made by the stock ffmpeg from a lavfi ``source`` (``testsrc2=size=...``) with the ``encode`` options:
    how every test and benchmark makes a clip of its own."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, *encode, str(path)]
    subprocess.run(cmd, check=True, timeout=timeout)
    return path


def make(row: Row, folder: Path, size: tuple[int, int] = (W, H)) -> Path:
    path = folder / f"{row.name}.{row.ext}"
    if path.exists():
        return path
    source = f"testsrc2=size={size[0]}x{size[1]}:rate={row.rate}:duration={row.seconds}"
    lavfi(path, source, *(["-vf", row.vf] if row.vf else []), *row.encode)
    if row.matrix is not None:
        set_matrix(path, row.matrix)
    return path


def set_matrix(path: Path, matrix: tuple[int, int, int, int]) -> None:
    """Write a display matrix into the first track header, as a phone's recorder does."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0, "no tkhd box"
    version = data[at + 4]
    offset = at + 8 + (32 if version == 1 else 20) + 16
    a, b, c, d = matrix
    data[offset : offset + 36] = struct.pack(">9i", a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))


def reference(path: Path, autorotate: bool = False, rotated: bool = False, scale: Fraction = Fraction(1)) -> Reference:
    """``autorotate``: FFmpeg applies the display matrix (``rotated``: it swaps width and height);
    ``scale``: the width scaled by FFmpeg's (bilinear) scaler, as a player shows a pixel aspect."""
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height,time_base,r_frame_rate,sample_aspect_ratio:frame=pts,best_effort_timestamp",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    info = json.loads(probe)
    stream = info["streams"][0]
    width, height = int(stream["width"]), int(stream["height"])
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error"] + ([] if autorotate else ["-noautorotate"])
    if scale != 1:
        width = round(width * scale)
        cmd += ["-i", str(path), "-vf", f"scale={width}:{height}:flags=bilinear"]
    else:
        cmd += ["-i", str(path)]
    raw = subprocess.run(
        cmd + ["-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    count = len(raw) // (width * height * 3)
    if autorotate and rotated:
        width, height = height, width
    frames = np.frombuffer(raw, np.uint8).reshape(count, height, width, 3)
    tb = Fraction(stream["time_base"])
    stamps = [f.get("pts", f.get("best_effort_timestamp")) for f in info["frames"]]
    if any(s in (None, "N/A") for s in stamps):  # a raw stream: numbered at its rate
        rate = Fraction(stream["r_frame_rate"])
        seconds = [Fraction(i) / rate for i in range(count)]
    else:
        ticks = [int(s) for s in stamps]
        seconds = [(s - ticks[0]) * tb for s in ticks]
    assert len(seconds) == count, (path, len(seconds), count)
    return Reference(frames, seconds, tb / 2)


def apply_matrix(frame: np.ndarray, matrix: tuple[int, int, int, int]) -> np.ndarray:
    """The stored picture moved as the QuickTime rule says: (x, y) -> (a*x + c*y, b*x + d*y), shifted into view."""
    a, b, c, d = matrix
    height, width = frame.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    nx, ny = a * xs + c * ys, b * xs + d * ys
    nx -= nx.min()
    ny -= ny.min()
    out = np.zeros((ny.max() + 1, nx.max() + 1, 3), np.uint8)
    out[ny, nx] = frame[ys, xs]
    return out


def luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


@dataclass
class Match:
    best: int
    best_psnr: float
    expected_psnr: float
    bias: float  # the largest mean difference of one colour channel, in levels


def match(shown: np.ndarray, frames: np.ndarray, expected: int) -> Match:
    """Which reference frame ``shown`` is: luma PSNR against every frame of the file."""
    ours = luma(shown)
    scores = [psnr(ours, luma(frame)) for frame in frames]
    best = int(np.argmax(scores))
    diff = shown.astype(np.float64) - frames[expected].astype(np.float64)
    bias = float(max(abs(diff[..., ch].mean()) for ch in range(3)))
    return Match(best, scores[best], scores[expected], bias)

"""Which codec a proxy is made in: quality, disk per minute, cost of a random frame, speed of making.

A quick measurement for the proxy store's format choice (flipedit_previewd/proxy/store.py); the
fuller footage bench lives with the bench scenes. For each candidate: the source (given on the
command line, e.g. a 1080p H.264 GOP 250 clip made by stock ffmpeg) is decoded sequentially,
scaled to the proxy size (default 1280x720) in yuv420p and encoded on one thread; then

- luma PSNR of the proxy frame scaled to the output size against the original frame scaled
  there directly (FFmpeg's scaler both ways, rgb24, ITU-R 601 luma), at 1280x720 and 640x360,
  the worst frame of a sample;
- MB per minute of source;
- ms to decode one random frame from a cold decoder (all-intra: one packet; short GOP: from the
  GOP's keyframe), as the reader does;
- generation speed as a multiple of real time (decode of the original included).

    .venv/bin/python bench/proxy_format.py SOURCE.mp4 [--size 1280x720] [--frames 150]
"""

from __future__ import annotations

import argparse
import io
import math
import random
import time
from fractions import Fraction
from typing import Any

import av
from PIL import Image, ImageChops, ImageStat

CANDIDATES: dict[str, dict[str, Any]] = {
    "jpeg-q95 (Pillow, 4:2:0)": {"kind": "jpeg", "quality": 95},
    "x264 intra crf 13 veryfast": {"kind": "x264", "gop": 1, "crf": "13"},
    "x264 intra crf 10 ultrafast": {"kind": "x264", "gop": 1, "crf": "10", "preset": "ultrafast"},
    "x264 intra crf 8 ultrafast": {"kind": "x264", "gop": 1, "crf": "8", "preset": "ultrafast"},
    "x264 intra crf 6 ultrafast (chosen)": {"kind": "x264", "gop": 1, "crf": "6", "preset": "ultrafast"},
    "x264 gop 8 no-B crf 13 veryfast": {"kind": "x264", "gop": 8, "crf": "13"},
    "x264 gop 4 no-B crf 6 ultrafast": {"kind": "x264", "gop": 4, "crf": "6", "preset": "ultrafast"},
}


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("L"), b.convert("L"))
    mse = ImageStat.Stat(diff).sum2[0] / (a.width * a.height)
    return 99.0 if mse == 0 else 10 * math.log10(255 * 255 / mse)


def make(
    source: str, size: tuple[int, int], frames: int, cand: dict[str, Any]
) -> tuple[list[tuple[bytes, bool]], float, list[Any], Fraction]:
    container = av.open(source)
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"
    stream.thread_count = 1
    rate = Fraction(stream.average_rate or 30)
    enc = None
    if cand["kind"] == "x264":
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = size[0], size[1], "yuv420p"
        enc.time_base = Fraction(1, 1000)
        enc.thread_count = 1
        enc.options = {
            "crf": cand["crf"],
            "preset": cand.get("preset", "veryfast"),
            "g": str(cand["gop"]),
            "bf": "0",
            "keyint_min": str(cand["gop"]),
            "sc_threshold": "0",
            "tune": "fastdecode",
        }
    packets: list[tuple[bytes, bool]] = []
    originals: list[Any] = []
    start = time.perf_counter()
    for index, frame in enumerate(container.decode(stream)):
        if index >= frames:
            break
        small = frame.reformat(width=size[0], height=size[1], format="yuv420p")
        if index % 10 == 0:
            originals.append((index, frame))
        if enc is None:
            buffer = io.BytesIO()
            small.to_image().save(buffer, "JPEG", quality=cand["quality"], subsampling=2)
            packets.append((buffer.getvalue(), True))
        else:
            small.pts = index
            for packet in enc.encode(small):
                packets.append((bytes(packet), packet.is_keyframe))
    if enc is not None:
        for packet in enc.encode(None):
            packets.append((bytes(packet), packet.is_keyframe))
    elapsed = time.perf_counter() - start
    container.close()
    return packets, elapsed, originals, rate


def decode(packets: list[tuple[bytes, bool]], index: int, cand: dict[str, Any]) -> Any:
    if cand["kind"] == "jpeg":
        return av.VideoFrame.from_image(Image.open(io.BytesIO(packets[index][0])).convert("RGB"))
    key = index
    while not packets[key][1]:
        key -= 1
    ctx = av.CodecContext.create("h264", "r")
    ctx.thread_count = 1
    got = None
    for at in range(key, index + 1):
        out = ctx.decode(av.Packet(packets[at][0]))
        if at == index:
            got = out[0] if out else None
    if got is None:
        out = ctx.decode(None)
        got = out[-1]
    return got


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--frames", type=int, default=150)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    print(f"source {args.source}, proxy {size[0]}x{size[1]}, {args.frames} frames")
    for name, cand in CANDIDATES.items():
        packets, elapsed, originals, rate = make(args.source, size, args.frames, cand)  # type: ignore[arg-type]
        total = sum(len(p) for p, _ in packets)
        mb_per_min = total / len(packets) * float(rate) * 60 / 1e6
        worst = {}
        for out in ((1280, 720), (640, 360)):
            values = []
            for index, original in originals:
                ref = original.reformat(width=out[0], height=out[1], format="rgb24").to_image()
                got = decode(packets, index, cand).reformat(width=out[0], height=out[1], format="rgb24").to_image()
                values.append(psnr(ref, got))
            worst[out] = min(values)
        rng = random.Random(1)
        times = []
        for _ in range(30):
            index = rng.randrange(len(packets))
            t0 = time.perf_counter()
            decode(packets, index, cand).reformat(width=1280, height=720, format="rgb24")
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        speed = len(packets) / float(rate) / elapsed
        print(
            f"{name:36s} PSNR min {worst[(1280, 720)]:.1f} dB @1280x720, {worst[(640, 360)]:.1f} dB @640x360; "
            f"{mb_per_min:7.1f} MB/min; random frame p50 {times[15]:.1f} ms p95 {times[28]:.1f} ms; make {speed:.2f}x "
            f"real time"
        )


if __name__ == "__main__":
    main()

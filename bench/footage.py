"""Real-footage-like scenes made at bench time by the stock FFmpeg, and the access patterns an editor makes.

Not a test. Every other scene of the benchmarks is friendly (H.264, a keyframe every 30 frames, flat
pictures). The footage editors scrub is not (issue 24): screen recorders and many cameras write a
keyframe every 250 frames, phones write 10-bit HEVC, and editors' intermediates are 4K all-intra.
The scenes here are made by the ``ffmpeg`` command (Debian's package, as tests/media_corpus.py does),
not by PyAV, so the files are what a stock encoder writes. Pictures have real motion and detail:
testsrc2 (moving pattern, text, gradients) under temporal grain (``noise allf=t``, as a sensor's), with
a Mandelbrot zoom overlaid and moving across the frame; the bit rates are those of real devices,
so decoding costs what it costs on real files (a flat colour would decode in no time).

  gop250-1080p   1920x1080 30 fps H.264 High, x264 preset fast, keyframe every 250 frames exactly
                 (-g 250 -sc_threshold 0), 3 B-frames, 10 Mb/s (an OBS recording, a camera), 20 s
  hevc10-2160p   3840x2160 30 fps HEVC Main 10 (yuv420p10le), x265 ultrafast, keyframe every 60,
                 3 B-frames, 24 Mb/s (a phone's 4K30 HEVC), 8 s (shorter than a phone clip: x265 makes
                 4K at about a tenth of real time on 2 cores)
  dnxhr-2160p    3840x2160 30 fps DNxHR SQ (yuv422p, all-intra, about 290 Mb/s) in a .mov, 4 s (an
                 editor's intermediate; DNxHR rather than ProRes because prores_ks makes 4K at 1/20
                 of real time here, dnxhd at 1/6)

Files are cached by their parameters (the ffmpeg command line and the ffmpeg version) under
$FLIPEDIT_BENCH_FOOTAGE or <tmp>/flipedit-bench-footage, written to a temporary name and renamed, so
a rerun (or another benchmark) finds them at once and an interrupted one leaves nothing half-made.
Generation on this 2-core machine (load 2-3 from others): about 40 s + 45 s + 25 s the first time.
  gop250-1080p-clean  (not in the "footage" group) the same GOP structure on a friendly picture: testsrc2
                 alone, no grain, x264 veryfast crf 23 (about 1 Mb/s): what decoding costs on a flat picture

Patterns (frame numbers on a 30 fps timeline, deterministic for a seed):
  sequential  0, 1, 2, ... (playback)
  random      uniformly random frames (a click anywhere on the timeline)
  scrub       the playhead dragged back and forth: 10-30 requests a second, each a few frames from
              the last (the drag's speed varies, 1-12 frames a request), direction reversed every
              0.3-1.5 s, and now and then (about 1 request in 25) a jump elsewhere (>= 2 s away); each request has a
              send time (seconds from the start), so a client can replay it at the editor's pace.

Usage: .venv/bin/python -m bench.footage [--scenes NAME,...] [--info]  (makes them and prints ffprobe facts)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FFMPEG = os.environ.get("FFMPEG", "/usr/bin/ffmpeg")
FFPROBE = os.environ.get("FFPROBE", "/usr/bin/ffprobe")
# ffmpeg as every benchmark runs it: errors only (the benchmark's own output stays readable) and never reading
# stdin (under a script it would otherwise wait for keys, or eat the input meant for another command).
QUIET_FFMPEG = (FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin")
CANVAS = (1280, 720)
FPS = 30


@dataclass(frozen=True)
class Footage:
    """One scene: how the stock ffmpeg makes it."""

    name: str
    size: tuple[int, int]
    seconds: float
    ext: str
    encode: tuple[str, ...]  # ffmpeg output options
    pix_fmt: str
    grain: int = 5  # noise strength (temporal): sensor grain
    gop: int = 1  # keyframe interval in frames (for the report; the encode options set it)
    notes: str = ""
    detail: bool = True  # the Mandelbrot overlay (False with grain 0: testsrc2 alone, a friendly picture)

    @property
    def frames(self) -> int:
        return round(self.seconds * FPS)

    def graph(self) -> str:
        """lavfi graph: testsrc2 under grain, a Mandelbrot zoom (a quarter of the width) moving across it."""
        w, h = self.size
        if not self.detail:
            return (
                f"testsrc2=s={w}x{h}:r={FPS}:d={self.seconds}"
                + (f",noise=alls={self.grain}:allf=t" if self.grain else "")
                + f",format={self.pix_fmt}"
            )
        mw, mh = w // 4 // 2 * 2, h // 4 // 2 * 2
        return (
            f"testsrc2=s={w}x{h}:r={FPS}:d={self.seconds},noise=alls={self.grain}:allf=t[bg];"
            f"mandelbrot=s={mw}x{mh}:r={FPS}[m];"
            f"[bg][m]overlay=x='mod(t*{w // 12},{w - mw})':y='{h // 5}+{h // 10}*sin(t)':shortest=1,"
            f"format={self.pix_fmt}"
        )

    def argv(self, out: Path) -> list[str]:
        return [
            *QUIET_FFMPEG,
            "-y",
            "-filter_complex",
            self.graph(),
            "-frames:v",
            str(self.frames),
            *self.encode,
            str(out),
        ]


# What a screen recorder or a camera writes (OBS's default): a keyframe every 250 frames exactly, never one at a
# scene cut, 3 B-frames, 8-bit 4:2:0. Every long-GOP H.264 scene of the benchmarks encodes with these.
LONG_GOP_X264 = ("-g", "250", "-keyint_min", "250", "-sc_threshold", "0", "-bf", "3", "-pix_fmt", "yuv420p")
X265_PHONE = (
    "log-level=error:keyint=60:min-keyint=60:scenecut=0:bframes=3:bitrate=24000:vbv-maxrate=30000:vbv-bufsize=48000"
)
SCENES: dict[str, Footage] = {
    f.name: f
    for f in (
        Footage(
            "gop250-1080p",
            (1920, 1080),
            20.0,
            "mp4",
            (
                *"-c:v libx264 -profile:v high -preset fast -b:v 10M -maxrate 14M -bufsize 20M".split(),
                *LONG_GOP_X264,
                *"-movflags +faststart".split(),
            ),
            "yuv420p",
            gop=250,
            notes="1080p30 H.264 High, GOP 250, 3 B-frames, 10 Mb/s",
        ),
        Footage(
            "hevc10-2160p",
            (3840, 2160),
            8.0,
            "mp4",
            (
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                X265_PHONE,
                "-pix_fmt",
                "yuv420p10le",
                "-tag:v",
                "hvc1",
            ),
            "yuv420p10le",
            grain=4,
            gop=60,
            notes="2160p30 HEVC Main 10, GOP 60, 3 B-frames, 24 Mb/s",
        ),
        Footage(
            "dnxhr-2160p",
            (3840, 2160),
            4.0,
            "mov",
            ("-c:v", "dnxhd", "-profile:v", "dnxhr_sq", "-pix_fmt", "yuv422p"),
            "yuv422p",
            grain=4,
            gop=1,
            notes="2160p30 DNxHR SQ 4:2:2 8-bit, all-intra",
        ),
        # Not in "footage": the same GOP without grain or detail (testsrc2 alone, x264 veryfast, crf 23, about 1 Mb/s),
        # like tests/media_corpus.py's h264_ts_gop250 -- the friendly kind of file the first figures may come
        # from.
        Footage(
            "gop250-1080p-clean",
            (1920, 1080),
            20.0,
            "mp4",
            (
                *"-c:v libx264 -profile:v high -preset veryfast -crf 23".split(),
                *LONG_GOP_X264,
                *"-movflags +faststart".split(),
            ),
            "yuv420p",
            grain=0,
            gop=250,
            detail=False,
            notes="1080p30 H.264 High, GOP 250, testsrc2 alone",
        ),
    )
}
# --scenes names: "footage" is the three real-footage scenes.
GROUPS = {"footage": ("gop250-1080p", "hevc10-2160p", "dnxhr-2160p")}


def cache_dir() -> Path:
    path = Path(os.environ.get("FLIPEDIT_BENCH_FOOTAGE") or Path(tempfile.gettempdir()) / "flipedit-bench-footage")
    path.mkdir(parents=True, exist_ok=True)
    return path


def ffmpeg_version() -> str:
    return subprocess.run([FFMPEG, "-version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]


def make(scene: Footage | str, directory: Path | None = None, quiet: bool = False) -> Path:
    """The scene's file, made by ffmpeg unless a file made with the same parameters is already cached."""
    footage = SCENES[scene] if isinstance(scene, str) else scene
    directory = directory or cache_dir()
    key = hashlib.sha1(json.dumps([footage.argv(Path("OUT")), ffmpeg_version()]).encode()).hexdigest()[:12]
    out = directory / f"{footage.name}-{key}.{footage.ext}"
    if out.exists():
        return out
    part = out.with_name(f".{out.stem}.{os.getpid()}.part.{footage.ext}")
    if not quiet:
        print(f"making {out.name} with {FFMPEG} ({footage.notes}, {footage.seconds:g} s) ...", end=" ", flush=True)
    t0 = time.perf_counter()
    try:
        subprocess.run(footage.argv(part), check=True, timeout=1800)
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    if not quiet:
        print(f"{time.perf_counter() - t0:.0f} s")
    return out


def scene_names(spec: str) -> list[str]:
    """'footage' -> every footage scene; 'gop250-1080p,hevc10-2160p' -> those."""
    names: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        for name in GROUPS.get(part, (part,)):
            if name not in SCENES:
                raise SystemExit(f"unknown footage scene {name!r} (known: {', '.join(SCENES)}, or 'footage' for all)")
            if name not in names:
                names.append(name)
    return names


def probe(path: Path) -> dict[str, str]:
    out = subprocess.run(
        [
            FFPROBE,
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,profile,pix_fmt,width,height,r_frame_rate,nb_frames,bit_rate,has_b_frames",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {k: str(v) for k, v in json.loads(out)["streams"][0].items()}


# --- a project with the clip filling the canvas -------------------------------------------------


def make_project(directory: Path, source: Path, seconds: float) -> Path:
    """A FlipEdit project database (schema 3): one video track, one clip of ``source`` filling the 1280x720 canvas.

    The clip names a hard link (a copy across file systems) of ``source`` in ``directory``: the daemon reads
    media only under its allowed roots, by default the project's directory, and renders a placeholder (in
    no time) for a clip outside them."""
    from flipedit_previewd.demo.fixtures import add_clip, add_track, create_project_db

    local = directory / source.name
    if not local.exists():
        try:
            os.link(source, local)
        except OSError:
            shutil.copyfile(source, local)
    source = local
    db = directory / f"footage-{source.stem}.sqlite"
    db.unlink(missing_ok=True)
    create_project_db(db, 3)
    conn = sqlite3.connect(str(db))
    with conn:
        track = add_track(conn, "footage", 0)
        add_clip(conn, 3, track, str(source), "video", 0, int(seconds * 1000), rect=(0, 0, *CANVAS))
    conn.close()
    return db


def timeline_json(source: Path, seconds: float) -> dict[str, object]:
    """The same as a timeline JSON (timeline_from_json's shape), for in-process renders."""
    return {
        "tracks": [
            {
                "order": 0,
                "clips": [
                    {
                        "source_path": str(source),
                        "type": "video",
                        "start_on_track_ms": 0,
                        "end_on_track_ms": int(seconds * 1000),
                        "rect": {"left": 0, "top": 0, "width": CANVAS[0], "height": CANVAS[1]},
                    }
                ],
            }
        ]
    }


def check_served(url: str, source: Path, frame: int = 0) -> float:
    """Mean absolute difference (0-255) between a server's frame and the source's, both at 1280x720; raises when the
    server shows something else (a placeholder for a refused source renders in no time and would flatter it)."""
    import io
    import urllib.request

    import av
    import numpy as np
    from PIL import Image

    with urllib.request.urlopen(f"{url}/get_frame/{frame}", timeout=60) as answer:
        served = np.asarray(Image.open(io.BytesIO(answer.read())).convert("RGB"), dtype=np.int16)
    with av.open(str(source)) as container:
        for index, picture in enumerate(container.decode(video=0)):
            if index == frame:
                wanted = np.asarray(picture.to_image().resize(CANVAS), dtype=np.int16)
                break
    difference = float(np.abs(served - wanted).mean())
    if difference > 12:
        raise RuntimeError(
            f"{url} does not show {source.name} at frame {frame} (mean difference {difference:.1f}): "
            "a refused source (media roots?) or a wrong clip"
        )
    return difference


# --- access patterns ----------------------------------------------------------------------------

PATTERNS = ("random", "sequential", "scrub")


def pattern(name: str, frames: int, count: int, seed: int = 1) -> list[tuple[float, int]]:
    """``count`` requests as (send time in seconds from the start, frame), on a timeline of ``frames`` frames.

    random and sequential have no pace of their own (time 0: a closed loop sends each when the last
    is answered); scrub has the editor's pace."""
    last = frames - 1
    rng = random.Random(f"{name}:{seed}")
    if name == "sequential":
        start = rng.randrange(0, max(1, frames - count))
        return [(0.0, min(last, start + i)) for i in range(count)]
    if name == "random":
        return [(0.0, rng.randrange(0, frames)) for _ in range(count)]
    if name != "scrub":
        raise ValueError(f"unknown pattern {name!r}")
    out: list[tuple[float, int]] = []
    t, position, direction = 0.0, rng.randrange(0, frames), rng.choice((-1, 1))
    rate, step = rng.uniform(10, 30), rng.randint(1, 12)
    leg_ends = rng.uniform(0.3, 1.5)
    while len(out) < count:
        out.append((round(t, 4), position))
        t += 1 / rate
        if rng.random() < 0.04:  # a jump: the user clicks elsewhere (at least 2 s away if it can) and drags from there
            away = [f for f in (rng.randrange(0, frames) for _ in range(20)) if abs(f - position) >= 2 * FPS]
            position = away[0] if away else rng.randrange(0, frames)
            leg_ends = t + rng.uniform(0.3, 1.5)
            continue
        if t >= leg_ends:  # the hand turns round, at a new speed
            direction = -direction
            rate, step = rng.uniform(10, 30), rng.randint(1, 12)
            leg_ends = t + rng.uniform(0.3, 1.5)
        position += direction * step
        if position < 0 or position > last:
            direction = -direction
            position = max(0, min(last, position))
    return out


def decode_work(jobs: list[tuple[float, int]], gop: int, forward_limit: int = 90) -> list[int]:
    """Frames one decoder decodes per request, by flipedit_previewd/media.py's rule as of this writing: forward from
    where it stands when the target is at most ``forward_limit`` frames ahead, otherwise a seek to the target's
    keyframe and forward from there (B-frame reordering and the other worker ignored: a model, not a measurement)."""
    out, at = [], None
    for _, target in jobs:
        if at is not None and at <= target <= at + forward_limit:
            out.append(target - at)
        else:
            out.append(target - target // gop * gop + 1)
        at = target
    return out


def describe(jobs: list[tuple[float, int]]) -> str:
    steps = [abs(b[1] - a[1]) for a, b in zip(jobs, jobs[1:], strict=False)]
    span = jobs[-1][0] - jobs[0][0]
    reversals = sum(1 for a, b, c in zip(jobs, jobs[1:], jobs[2:], strict=False) if (b[1] - a[1]) * (c[1] - b[1]) < 0)
    rate = f"{(len(jobs) - 1) / span:.1f} requests/s, " if span else ""
    return (
        f"{len(jobs)} requests, {rate}median step {sorted(steps)[len(steps) // 2] if steps else 0} frames, "
        f"{reversals} reversals, {sum(1 for s in steps if s > 40)} jumps > 40 frames"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", default="footage")
    parser.add_argument("--info", action="store_true", help="print ffprobe facts and the patterns too")
    args = parser.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores); cache {cache_dir()}")
    for name in scene_names(args.scenes):
        path = make(name)
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
        if args.info:
            print("  ", probe(path))
            for p in PATTERNS:
                jobs = pattern(p, SCENES[name].frames, 120)
                work = sorted(decode_work(jobs, SCENES[name].gop))
                print(
                    f"   {p}: {describe(jobs)}; frames decoded per request (model, one decoder): "
                    f"median {work[len(work) // 2]}, p95 {work[int(0.95 * (len(work) - 1))]}, mean "
                    f"{sum(work) / len(work):.0f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

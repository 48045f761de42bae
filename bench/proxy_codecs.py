"""Which codec for proxy media: candidates made by the stock ffmpeg from the real-footage scenes, measured.

Not a test. For each source (bench/footage.py: the 1080p H.264 GOP-250 clip and the 2160p HEVC 10-bit
clip; --seconds limits how much of each is used) and each candidate format, a 1280x720 proxy is made
by ``ffmpeg -threads 1`` (decoding, scaling and encoding on one core) and measured:
  speed      seconds of source per second of CPU time of the ffmpeg process (user + sys: a shared machine
             steals wall time, not CPU time), and per second of wall time; the "source only" row is the
             same command writing nothing (decode + scale alone: what every candidate pays first)
  MB/min     disk per minute of source
  PSNR-Y     luma PSNR per frame against the original decoded by ffmpeg and scaled to 1280x720 by the same
             scaler (the daemon's: bilinear for 8-bit, bicubic + accurate rounding + full chroma for deeper
             sources, flipedit_previewd/media.py), mean and the worst frame; MJPEG is stored in
             limited range (-strict unofficial) so that no range conversion enters the comparison
  decode     one random frame through PyAV, opened once (slice threads, as the daemon opens), seek
             backward to the frame's keyframe and decode up to it: median and p95 over --frames random
             frames (seeded)
  compose    the same frames rendered by the daemon's own render function (compositor.compose, the proxy as
             a clip filling the 1280x720 canvas, JPEG out): what a worker spends per request; "seeking" is the
             same with media.py's FORWARD_DECODE_LIMIT set to 1 in this process (a what-if: media.py decodes up
             to 90 frames forward rather than seek, even through keyframes, which all-intra media never needs)
With --daemon, the chosen candidates (--daemon-candidates) are also served by the daemon itself (one clip,
the proxy, filling the canvas; frame cache off) and asked for random and scrub patterns as bench/peers.py
does: per-request latency through the whole daemon.
Prints a table and checks the issue's constraints (PSNR-Y >= 45 dB, generation >= 2x real time on one core
for the 1080p source, random-frame p95 through the daemon <= 40 ms). Load average printed: a shared machine.
Usage: .venv/bin/python -m bench.proxy_codecs [--candidates a,b] [--sources gop250-1080p,hevc10-2160p] [--seconds 10]
       [--frames 50] [--daemon]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import footage
from flipedit_previewd.common.percentiles import percentile

HERE = Path(__file__).resolve().parent

W, H = footage.CANVAS


@dataclass(frozen=True)
class Candidate:
    name: str
    ext: str
    encode: tuple[str, ...]
    pix_fmt: str = "yuv420p"


X264 = ("-c:v", "libx264", "-pix_fmt", "yuv420p")
CANDIDATES: dict[str, Candidate] = {
    c.name: c
    for c in (
        Candidate("mjpeg-q2", "mov", ("-c:v", "mjpeg", "-q:v", "2", "-strict", "unofficial", "-pix_fmt", "yuv420p")),
        Candidate("mjpeg-q3", "mov", ("-c:v", "mjpeg", "-q:v", "3", "-strict", "unofficial", "-pix_fmt", "yuv420p")),
        Candidate("h264-intra-ultrafast-crf16", "mp4", (*X264, "-preset", "ultrafast", "-g", "1", "-crf", "16")),
        Candidate("h264-intra-veryfast-crf16", "mp4", (*X264, "-preset", "veryfast", "-g", "1", "-crf", "16")),
        Candidate("h264-intra-veryfast-crf18", "mp4", (*X264, "-preset", "veryfast", "-g", "1", "-crf", "18")),
        Candidate(
            "h264-gop8-veryfast-crf16", "mp4", (*X264, "-preset", "veryfast", "-g", "8", "-bf", "0", "-crf", "16")
        ),
        Candidate(
            "h264-gop15-veryfast-crf16", "mp4", (*X264, "-preset", "veryfast", "-g", "15", "-bf", "0", "-crf", "16")
        ),
        Candidate(
            "h264-gop15-ultrafast-crf16", "mp4", (*X264, "-preset", "ultrafast", "-g", "15", "-bf", "0", "-crf", "16")
        ),
        Candidate(
            "prores-proxy", "mov", ("-c:v", "prores_ks", "-profile:v", "0", "-pix_fmt", "yuv422p10le"), "yuv422p10le"
        ),
    )
}


def scaler(source: Path) -> str:
    """The daemon's scaler for this source (flipedit_previewd/media.py: 8-bit default bilinear, deeper bicubic+)."""
    deep = "10" in footage.probe(source)["pix_fmt"] or "12" in footage.probe(source)["pix_fmt"]
    return "bicubic+accurate_rnd+full_chroma_int" if deep else "bilinear"


def ffmpeg_timed(argv: list[str]) -> tuple[float, float]:
    """Run ffmpeg; (wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, timeout=900)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def base_argv(source: Path, seconds: float, vf: str) -> list[str]:
    return [
        *footage.QUIET_FFMPEG,
        "-y",
        "-threads",
        "1",
        "-t",
        f"{seconds}",
        "-i",
        str(source),
        "-filter_threads",
        "1",
        "-vf",
        vf,
        "-an",
    ]


def make_proxy(source: Path, seconds: float, candidate: Candidate | None, out: Path) -> tuple[float, float]:
    vf = f"scale={W}:{H}:flags={scaler(source)}"
    if candidate is None:  # the source alone: decode and scale, nothing written
        return ffmpeg_timed([*base_argv(source, seconds, vf), "-f", "null", "-"])
    return ffmpeg_timed(
        [*base_argv(source, seconds, f"{vf},format={candidate.pix_fmt}"), "-threads", "1", *candidate.encode, str(out)]
    )


def make_reference(source: Path, seconds: float, out: Path) -> None:
    """The original decoded by ffmpeg, scaled as the proxies are, 8-bit 4:2:0, uncompressed."""
    subprocess.run(
        [
            *footage.QUIET_FFMPEG,
            "-y",
            "-t",
            f"{seconds}",
            "-i",
            str(source),
            "-vf",
            f"scale={W}:{H}:flags={scaler(source)},format=yuv420p",
            "-an",
            "-c:v",
            "rawvideo",
            str(out),
        ],
        check=True,
        timeout=900,
    )


def psnr_y(proxy: Path, reference: Path, stats: Path) -> tuple[float, float, int]:
    """Mean and worst per-frame luma PSNR of the proxy against the reference, and the frame count."""
    subprocess.run(
        [
            *footage.QUIET_FFMPEG,
            "-i",
            str(proxy),
            "-i",
            str(reference),
            "-filter_complex",
            f"[0]format=yuv420p[a];[1]format=yuv420p[b];[a][b]psnr=stats_file={stats}",
            "-f",
            "null",
            "-",
        ],
        check=True,
        timeout=900,
    )
    values = []
    for line in stats.read_text().splitlines():
        fields = dict(f.split(":", 1) for f in line.split() if ":" in f)
        values.append(min(float(fields["psnr_y"]), 100.0) if fields["psnr_y"] != "inf" else 100.0)
    return statistics.fmean(values), min(values), len(values)


def random_decode(proxy: Path, count: int, seed: int = 7) -> tuple[float, float]:
    """ms to seek to and decode one random frame, PyAV, container opened once: median, p95."""
    import av

    with av.open(str(proxy)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        total = stream.frames or int(float(stream.duration * stream.time_base) * footage.FPS)
        tick = 1 / (footage.FPS * stream.time_base)
        start = stream.start_time or 0
        rng = random.Random(seed)
        times = []
        for _ in range(count):
            target = start + round(rng.randrange(total) * tick)
            t0 = time.perf_counter()
            container.seek(target, stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts is not None and frame.pts >= target - tick / 2:
                    break
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), percentile(times, 95) or 0.0


def compose_random(
    proxy: Path, seconds: float, count: int, seed: int = 7, forward_limit: int | None = None
) -> tuple[float, float]:
    """ms per random frame through the daemon's render function (one clip, the proxy, filling the canvas).

    ``forward_limit`` (a what-if, set in this process only): media.py's FORWARD_DECODE_LIMIT, the number of frames
    it decodes forward rather than seek; 1 = seek for anything but the next frame (right for all-intra media)."""
    from flipedit_previewd.timeline.model import timeline_from_json
    from flipedit_previewd.worker import media as media_module
    from flipedit_previewd.worker.compositor import OutputSpec, compose
    from flipedit_previewd.worker.media import MediaPool

    shipped = media_module.FORWARD_DECODE_LIMIT
    if forward_limit is not None:
        media_module.FORWARD_DECODE_LIMIT = forward_limit
    try:
        timeline = timeline_from_json(footage.timeline_json(proxy, seconds), footage.CANVAS, footage.FPS)
        media = MediaPool(64 << 20, 100_000_000)
        compose(timeline, 0, OutputSpec(W, H), media)
        times = []
        for _, frame in footage.pattern("random", round(seconds * footage.FPS), count, seed):
            t0 = time.perf_counter()
            compose(timeline, frame, OutputSpec(W, H), media)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        media_module.FORWARD_DECODE_LIMIT = shipped
    return statistics.median(times), percentile(times, 95) or 0.0


def through_daemon(
    proxy: Path, seconds: float, directory: Path, requests_per_pattern: int
) -> dict[str, dict[str, float]]:
    """Random and scrub through the whole daemon (bench/peers.py's Server and paced client), frame cache off."""
    from bench.harness import uncached_daemon
    from bench.peers import paced

    db = footage.make_project(directory, proxy, seconds)  # in ``directory``: the daemon's settings are looked for there
    daemon = uncached_daemon(db)
    daemon.start()
    out = {}
    try:
        footage.check_served(daemon.url, proxy, 45)
        frames = round(seconds * footage.FPS)
        for name, count in (("random", requests_per_pattern), ("scrub", 3 * requests_per_pattern)):
            result = paced(daemon.url, footage.pattern(name, frames, count, seed=1), 30.0)
            out[name] = result["latency_ms"]
    finally:
        daemon.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--sources", default="gop250-1080p,hevc10-2160p")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of each source used (at most its length)")
    parser.add_argument("--frames", type=int, default=50, help="random frames per decode measurement")
    parser.add_argument("--daemon", action="store_true", help="also serve some proxies by the daemon (random, scrub)")
    parser.add_argument("--daemon-candidates", default="mjpeg-q2,h264-intra-ultrafast-crf16,h264-gop8-veryfast-crf16")
    args = parser.parse_args()
    names = [n for n in args.candidates.split(",") if n]
    for n in names:
        if n not in CANDIDATES:
            raise SystemExit(f"unknown candidate {n!r} (known: {', '.join(CANDIDATES)})")
    started = time.monotonic()
    loads = [os.getloadavg()[0]]
    print(
        f"load average at the start {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)",
        flush=True,
    )
    header = (
        "| source | proxy | x real time (CPU) | x real time (wall) | MB/min | PSNR-Y mean dB | PSNR-Y worst dB | "
        "decode p50 ms | decode p95 ms | compose p50 ms | compose p95 ms | compose p95, seeking ms | load |"
    )
    rows = [header, "|---" * (header.count("|") - 1) + "|"]
    daemon_rows = [
        "| source | proxy | random p50 ms | random p95 ms | random max ms | scrub p50 ms | scrub p95 ms | scrub max ms "
        "|",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts: dict[str, list[str]] = {}

    def row(cells: str) -> None:
        """A row of the table, printed as soon as it is measured, ended by the load average at that moment."""
        loads.append(os.getloadavg()[0])
        rows.append(f"{cells} {loads[-1]:.2f} |")
        print(rows[-1], flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for source_name in [s for s in args.sources.split(",") if s]:
            scene = footage.SCENES[source_name]
            source = footage.make(scene)
            seconds = min(args.seconds, scene.seconds)
            reference = work / f"{source_name}-ref.nut"
            make_reference(source, seconds, reference)
            wall, cpu = make_proxy(source, seconds, None, work / "null")
            row(
                f"| {source_name} ({seconds:g} s) | source only: decode + scale | {seconds / cpu:.2f} | "
                f"{seconds / wall:.2f} | - | - | - | - | - | - | - | - |"
            )
            for name in names:
                candidate = CANDIDATES[name]
                proxy = work / f"{source_name}-{name}.{candidate.ext}"
                wall, cpu = make_proxy(source, seconds, candidate, proxy)
                mb_min = proxy.stat().st_size / 1e6 / seconds * 60
                mean, worst, count = psnr_y(proxy, reference, work / "psnr.log")
                if count != round(seconds * footage.FPS):
                    print(f"  note: {count} frames compared, {round(seconds * footage.FPS)} expected")
                d50, d95 = random_decode(proxy, args.frames)
                c50, c95 = compose_random(proxy, seconds, args.frames)
                _, s95 = compose_random(proxy, seconds, args.frames, forward_limit=1)
                row(
                    f"| {source_name} | {name} | {seconds / cpu:.2f} | {seconds / wall:.2f} | {mb_min:.0f} | "
                    f"{mean:.2f} | {worst:.2f} | {d50:.1f} | {d95:.1f} | {c50:.1f} | {c95:.1f} | {s95:.1f} |"
                )
                problems = verdicts.setdefault(name, [])
                if mean < 45 or worst < 45:
                    problems.append(f"{source_name}: PSNR-Y mean {mean:.1f} / worst {worst:.1f} dB < 45")
                if source_name == "gop250-1080p" and seconds / cpu < 2:
                    problems.append(f"{source_name}: {seconds / cpu:.2f}x real time on one core < 2x")
                if args.daemon and name in args.daemon_candidates.split(","):
                    got = through_daemon(proxy, seconds, work, 30)
                    daemon_rows.append(
                        f"| {source_name} | {name} | {got['random']['p50']:.1f} | {got['random']['p95']:.1f} | "
                        f"{got['random']['max']:.1f} | {got['scrub']['p50']:.1f} | {got['scrub']['p95']:.1f} | "
                        f"{got['scrub']['max']:.1f} |"
                    )
                    print(daemon_rows[-1], flush=True)
                    if max(got["random"]["p95"], got["scrub"]["p95"]) > 40:
                        problems.append(f"{source_name}: p95 through the daemon > 40 ms")
    loads.append(os.getloadavg()[0])
    print(
        f"\n1280x720 proxies, ffmpeg -threads 1; {time.monotonic() - started:.0f} s; 1-minute load average "
        f"{min(loads):.2f}-{max(loads):.2f}\n"
    )
    print("\n".join(rows))
    if len(daemon_rows) > 2:
        print("\nThrough the daemon (frame cache off, one client; random: closed loop; scrub: the editor's pace):\n")
        print("\n".join(daemon_rows))
    print(
        "\nconstraints (PSNR-Y >= 45 dB on every frame; >= 2x real time on one core for the 1080p source"
        + ("; p95 <= 40 ms through the daemon" if args.daemon else "")
        + "):"
    )
    for name in names:
        problems = verdicts.get(name, [])
        untried = (
            " (not served by the daemon in this run)"
            if args.daemon and name not in args.daemon_candidates.split(",")
            else ""
        )
        print(f"  {name:<28} {'meets them' + untried if not problems else 'FAILS: ' + '; '.join(problems)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

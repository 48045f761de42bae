"""Random frames through a real daemon before and after its proxy is made, and how fast it is made.

The issue's source: 1080p30 H.264 with B-frames and a keyframe every 250 frames (OBS's default), made by
stock ffmpeg, one clip filling a 1280x720 canvas, JPEG output. The daemon (proxies on, defaults) makes
the proxy by itself; this reports random-frame p50/p95 from the original (before), the time the maker
took (as a multiple of real time), disk per minute of source, and random-frame p50/p95 from the proxy.

    .venv/bin/python -m bench.proxy_daemon [--seconds 20] [--frames 25]
"""

from __future__ import annotations

import argparse
import random
import re
import tempfile
import time
from pathlib import Path

import requests

from flipedit_previewd.common.percentiles import percentile
from tests.support.helpers import Daemon, one_track_project, wait_for
from tests.support.media_corpus import lavfi


def timed(daemon: Daemon, frames: list[int]) -> tuple[list[float], set[str]]:
    session = requests.Session()
    times, sources = [], set()
    for n in frames:
        begun = time.perf_counter()
        answer = session.get(f"{daemon.url}/get_frame/{n}", timeout=10)
        times.append((time.perf_counter() - begun) * 1000)
        sources.add(answer.headers.get("X-Preview-Source", ""))
    return times, sources


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--frames", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        source = tmp / "obs-like.mp4"
        lavfi(
            source,
            f"testsrc2=size=1920x1080:rate=30:duration={args.seconds},noise=alls=4:allf=t",
            *"-c:v libx264 -preset veryfast -g 250 -bf 3 -pix_fmt yuv420p".split(),
            timeout=None,
        )
        db = tmp / "project.sqlite"
        one_track_project(
            db, [{"source": source, "type": "video", "rect": (0, 0, 1280, 720), "start": 0, "end": args.seconds * 1000}]
        )
        rng = random.Random(1)
        count = args.seconds * 30
        # before: a daemon with proxies off, so no maker runs while it is measured
        daemon = Daemon(
            [
                "--project",
                str(db),
                "--allowed-roots",
                str(tmp),
                "--proxies",
                "false",
                "--frame-cache-bytes",
                "0",
                "--render-ahead",
                "false",
            ],
            tmp=tmp,
        ).start()
        try:
            timed(daemon, [0, 1])
            before, seen = timed(daemon, [rng.randrange(count) for _ in range(args.frames)])
        finally:
            daemon.stop()
        print(
            f"original: random frame p50 {percentile(before, 50):.0f} ms, p95 {percentile(before, 95):.0f} ms ({seen})"
        )
        daemon = Daemon(
            ["--project", str(db), "--allowed-roots", str(tmp), "--frame-cache-bytes", "0", "--render-ahead", "false"],
            tmp=tmp,
        ).start()
        try:
            made = wait_for(lambda: daemon.get("/health").json()["proxies"]["made"], 600, 0.5)
            assert made, daemon.log()
            log = daemon.log_once("proxy_done")
            seconds = float(re.search(r"SECONDS=([0-9.]+)", log).group(1))  # type: ignore[union-attr]
            disk = daemon.get("/health").json()["proxies"]["disk_bytes"]
            print(
                f"proxy made in {seconds:.1f} s for {args.seconds} s of source: {args.seconds / seconds:.2f}x real "
                f"time "
                f"(SCHED_IDLE, one decoder and one encoder thread); {disk / 1e6 / args.seconds * 60:.0f} MB per minute "
                f"of source"
            )
            timed(daemon, [0, 1])
            after, seen = timed(daemon, [rng.randrange(count) for _ in range(args.frames)])
        finally:
            daemon.stop()
        print(f"proxy: random frame p50 {percentile(after, 50):.0f} ms, p95 {percentile(after, 95):.0f} ms ({seen})")


if __name__ == "__main__":
    main()

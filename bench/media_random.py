"""Random access on the media corpus: this tree against another checkout, side by side in one run.

Not a test. The corpus rows of tests/support/media_corpus.py (made here by a stock ffmpeg, at --size) are
asked for the same random frames, at their displayed size as JPEG, by this tree's renderer and by
--baseline-tree's (e.g. `git worktree add --detach /tmp/base REV`), each in a child process of its
own, alternating tree by tree in every round. Prints per row the median and p95 milliseconds per
frame of both and their ratio (current / baseline): "no slower than before" measured in the same run.
The baseline may show a wrong frame faster (a seek that lands late decodes less): the exactness
is tests/integration/test_media_exact.py's to check, this only times.

Usage: .venv/bin/python -m bench.media_random --baseline-tree DIR [--size 640x360] [--frames 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import ROOT
from tests.support.media_corpus import ROWS, make

NAMES = (
    "h264_mp4_gop25_bframes",
    "h264_ts_gop25",
    "h264_ts_gop250",
    "mpeg2_mpg_gop15",
    "hevc_mp4_opengop",
    "hevc10_mp4_phone",
    "vp9_webm",
    "h264_rot90_mp4",
    "h264_vfr_mp4",
)

CHILD = r"""
import json, random, sys, time
sys.path.insert(0, sys.argv[1])
try:
    from flipedit_previewd.worker.compositor import OutputSpec, compose
    from flipedit_previewd.worker.media import MediaPool
    from flipedit_previewd.timeline.model import timeline_from_json
except ImportError:  # a tree from before the packages by role
    from flipedit_previewd.compositor import OutputSpec, compose
    from flipedit_previewd.media import MediaPool
    from flipedit_previewd.timeline import timeline_from_json
rows, frames = json.loads(sys.argv[2]), int(sys.argv[3])
out = {}
for name, path, seconds in rows:
    clip = {"source_path": path, "start_on_track_ms": 0, "end_on_track_ms": int(seconds * 1000), "start_in_source_ms": 0}
    media = MediaPool(64 << 20, 100_000_000)
    size = media.native_size(path, None, "video")
    timeline = timeline_from_json({"tracks": [{"clips": [clip]}]}, size, 30)
    rng = random.Random(name)
    asks = [rng.randrange(int(seconds * 30) - 1) for _ in range(frames)]
    times = []
    for n in asks:
        t0 = time.perf_counter()
        compose(timeline, n, OutputSpec(size[0], size[1], 85), media)
        times.append((time.perf_counter() - t0) * 1000)
    out[name] = times
print(json.dumps(out))
"""  # noqa: E501 (the text of another language, kept as written)


def run(tree: Path, rows: list[tuple[str, str, float]], frames: int) -> dict[str, list[float]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), json.dumps(rows), str(frames)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
        timeout=1800,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-tree", type=Path, required=True)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    size = tuple(int(x) for x in options.size.split("x"))
    print(f"load average at the start {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [(row.name, str(make(row, Path(tmp), size)), row.seconds) for row in ROWS if row.name in NAMES]  # type: ignore[arg-type]
        results: dict[str, dict[str, list[float]]] = {"current": {}, "baseline": {}}
        for _ in range(options.rounds):
            for label, tree in (("baseline", options.baseline_tree.resolve()), ("current", ROOT)):
                for name, times in run(tree, rows, options.frames).items():
                    results[label].setdefault(name, []).extend(times)
    print(
        f"random frames at the source's displayed size ({options.size} stored), JPEG, ms per frame, "
        f"{options.frames} x {options.rounds} per row and tree"
    )
    print(
        f"{'row':26s} {'base p50':>9s} {'base p95':>9s} {'now p50':>9s} {'now p95':>9s} {'p50 ratio':>9s} "
        f"{'p95 ratio':>9s}"
    )
    ratios = []
    for name, *_ in rows:
        base, now = results["baseline"][name], results["current"][name]
        r50, r95 = statistics.median(now) / statistics.median(base), p95(now) / p95(base)
        ratios.append(r50)
        print(
            f"{name:26s} {statistics.median(base):9.1f} {p95(base):9.1f} {statistics.median(now):9.1f} {p95(now):9.1f} "
            f"{r50:9.2f} {r95:9.2f}"
        )
    print(
        f"geometric mean of the p50 ratios: {statistics.geometric_mean(ratios):.2f} (current / baseline; < 1 is faster)"
    )


if __name__ == "__main__":
    main()

"""What the workers' confinement costs: worker start and render latency, this tree against another.

Not a test. Each tree runs in a child process of its own (alternating, --rounds times) that starts a
real one-worker WorkerPool, times the first job (spawn, imports, seccomp, the hello and the
warm-up render, which also takes the Landlock rules in this tree), then renders --frames random
frames of a timeline with a 640x360 H.264 clip and a still at 640x360 JPEG. The baseline is any
checkout without the sandbox, e.g. ``git archive 51aacd3 flipedit_previewd | tar -x -C /tmp/base``.

Usage: .venv/bin/python -m bench.sandbox_cost --baseline-tree DIR [--frames 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import ROOT

CHILD = r"""
import json, random, sys, time
sys.path.insert(0, sys.argv[1])
from flipedit_previewd.worker.output import OutputSpec
from flipedit_previewd.timeline.model import timeline_from_json, empty_timeline
from flipedit_previewd.render.pool import WorkerPool
try:
    from flipedit_previewd.worker.wire import WorkerSettings
except ImportError:  # a tree from before the typed wire format (worker/wire.py)
    from flipedit_previewd.render.pool import WorkerSettings
import flipedit_previewd
assert flipedit_previewd.__file__.startswith(sys.argv[1]), flipedit_previewd.__file__
media, frames = sys.argv[2], int(sys.argv[3])
doc = {"tracks": [{"clips": [
    {"source_path": media + "/clip.mp4", "type": "video", "start_on_track_ms": 0, "end_on_track_ms": 10_000,
     "rect": {"left": 0, "top": 0, "width": 1280, "height": 720}},
    {"source_path": media + "/still.png", "type": "image", "start_on_track_ms": 0, "end_on_track_ms": 10_000,
     "rect": {"left": 100, "top": 100, "width": 320, "height": 180}}]}]}
timeline = timeline_from_json(doc, (1280, 720), 30)
pool = WorkerPool(1, WorkerSettings(64 << 20, 40_000_000), 60)
began = time.perf_counter()
pool.start()
pool.render(0, 0, OutputSpec(64, 36), empty_timeline((64, 36), 30, "warm-up"), None, (media,))
start_ms = (time.perf_counter() - began) * 1000
times = []
for frame in random.Random(1).sample(range(300), frames):
    t = time.perf_counter()
    outcome = pool.render(0, frame, OutputSpec(640, 360), timeline, None, (media,))
    assert not outcome.result.problems and len(outcome.result.body) > 5000, outcome.result.problems  # no placeholder
    times.append((time.perf_counter() - t) * 1000)
pool.stop()
print(json.dumps({"start_ms": start_ms, "render_ms": times}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline-tree", required=True)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from flipedit_previewd.demo.fixtures import make_indexed_video, make_still

    with tempfile.TemporaryDirectory() as tmp:
        media = str(Path(tmp).resolve())
        make_indexed_video(Path(media) / "clip.mp4", 300, (640, 360))
        make_still(Path(media) / "still.png", (640, 360))
        results: dict[str, dict[str, list[float]]] = {}
        for _ in range(args.rounds):
            for name, tree in (("sandboxed", str(ROOT)), ("baseline", str(Path(args.baseline_tree).resolve()))):
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, tree, media, str(args.frames)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                got = json.loads(out.stdout)
                entry = results.setdefault(name, {"start_ms": [], "render_ms": []})
                entry["start_ms"].append(got["start_ms"])
                entry["render_ms"] += got["render_ms"]
    for name, entry in results.items():
        render = sorted(entry["render_ms"])
        print(
            f"{name:9}  worker start + first job: median {statistics.median(entry['start_ms']):6.1f} ms  "
            f"render 640x360: p50 {render[len(render) // 2]:5.1f} ms  p90 {render[int(len(render) * 0.9)]:5.1f} ms"
        )


if __name__ == "__main__":
    main()

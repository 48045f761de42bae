"""Render benchmark: the daemon's pipeline against a raw floor and a naive pipeline, same run, same scene.

Not a test. Generates a standard scene with PyAV (a 1080p H.264 clip with a keyframe every 30
frames, a 720p clip, a 3000x2000 JPEG still, 1280x720 canvas) and measures frames/s and the
per-frame median for:
  (a) sequential frames, (b) random frames, (c) one frame repeated while a rectangle changes,
each for
  pipeline-1w / pipeline-2w : flipedit_previewd.worker.compositor.compose in 1 or 2 worker processes,
  pipeline-2t               : the same in 2 threads of one process (why the daemon uses processes),
  floor                     : decode, scale (FFmpeg), paste, encode in a tight loop, nothing else,
  naive                     : the old server's way: open the video, seek, decode, full-size
                              to_image(), Pillow resize, save() to BytesIO, for every frame.
  ceiling                   : a plain CPU-bound Python loop in 1 and 2 processes: what two cores give
                              on this machine in this run (shared machines give less than 2.0x);
                              every 2-worker ratio is also reported as a fraction of it.
  media ceiling             : the floor with one decoder thread in 1 and 2 processes: what two cores give
                              media work (decoding and scaling share caches and memory bandwidth).
  pipeline-*-t1             : the same with one decoder thread per worker (PyAV thread_count=1)
                              instead of FFmpeg's default (one slice thread per core in each worker).
Prints ratios against the goals in the README, and the load average (the machine may be shared).
  baseline-1w / current-1w  : with --baseline-tree DIR (another checkout, e.g. `git worktree add --detach
                              /tmp/base REV`): pipeline-1w of that tree and of this one, each in a child
                              process of its own, one after the other in every round: "no slower than
                              before" as a ratio measured side by side, not against an old figure.
  --scenes footage          : instead, real-footage scenes made by the stock ffmpeg (bench/footage.py: 1080p
                              H.264 GOP 250, 2160p HEVC 10-bit GOP 60, 2160p DNxHR; or names, comma-separated),
                              one clip filling the 1280x720 canvas, in the random, sequential and scrub patterns:
                              per-frame p50/p95/max of pipeline-1w (compose in this process, one decoder pool) and
                              of naive, each run bounded by --pattern-seconds. The standard scene is not run.
Usage: .venv/bin/python -m bench.render [--frames N] [--rounds N] [--baseline-tree DIR] [--scenes footage]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
from PIL import Image

from bench import footage
from bench.harness import make_scene
from flipedit_previewd.timeline.model import Rect, Timeline, timeline_from_json
from flipedit_previewd.worker.compositor import OutputSpec, compose
from flipedit_previewd.worker.media import MediaPool

CANVAS = (1280, 720)
SMALL_RECT = (640, 360, 600, 338)
STILL_RECT = (40, 40, 300, 200)


def scene_timeline(scene: dict[str, Path], rect_left: float = SMALL_RECT[0]) -> Timeline:
    def clip(path: Path, rect: tuple[float, ...], kind: str) -> dict[str, Any]:
        return {
            "source_path": str(path),
            "type": kind,
            "start_on_track_ms": 0,
            "end_on_track_ms": 8000,
            "rect": dict(zip(("left", "top", "width", "height"), rect, strict=True)),
        }

    return timeline_from_json(
        {
            "tracks": [
                {"order": 0, "clips": [clip(scene["big"], (0, 0, *CANVAS), "video")]},
                {"order": 1, "clips": [clip(scene["small"], (rect_left, *SMALL_RECT[1:]), "video")]},
                {"order": 2, "clips": [clip(scene["still"], STILL_RECT, "image")]},
            ]
        },
        CANVAS,
        30,
    )


# --- the three pipelines, each rendering one frame -------------------------------------------------


class Pipeline:
    decoder_threads = 0  # 0: the daemon's setting as shipped (FFmpeg's default: a slice thread per core)

    def __init__(self, scene: dict[str, Path]) -> None:
        self.scene = scene
        self.media = MediaPool(256 * 1024 * 1024, 100_000_000)
        if self.decoder_threads:
            from flipedit_previewd.worker import media as media_module

            threads = self.decoder_threads
            opened = media_module.VideoSource._open_container

            def open_container(source: Any) -> None:  # each (re)opened container, before its first decode
                opened(source)
                source.container.streams.video[0].thread_count = threads

            media_module.VideoSource._open_container = open_container  # type: ignore[method-assign]
        self.timeline = scene_timeline(scene)

    def render(self, frame: int, rect_left: float | None = None) -> int:
        timeline = self.timeline
        if rect_left is not None:
            tracks = list(timeline.tracks)
            moved = replace(tracks[1].clips[0], rect=Rect(rect_left, *SMALL_RECT[1:]))
            tracks[1] = replace(tracks[1], clips=(moved,))
            timeline = Timeline(timeline.canvas_width, timeline.canvas_height, timeline.frame_rate, tuple(tracks))
        return len(compose(timeline, frame, OutputSpec(*CANVAS), self.media).body)


class Floor:
    """The least work a frame needs: sequential decode, FFmpeg scale, paste, encode."""

    def __init__(self, scene: dict[str, Path]) -> None:
        self.containers = [av.open(str(scene["big"])), av.open(str(scene["small"]))]
        self.iters = [c.decode(video=0) for c in self.containers]
        self.still = Image.open(scene["still"]).convert("RGB").resize(STILL_RECT[2:])
        self.last: list[Any] = [None, None]

    def render(self, frame: int, rect_left: float | None = None) -> int:
        canvas = Image.new("RGB", CANVAS)
        sizes = [CANVAS, SMALL_RECT[2:]]
        boxes = [(0, 0), (int(rect_left if rect_left is not None else SMALL_RECT[0]), SMALL_RECT[1])]
        for i in range(2):
            if rect_left is None or self.last[i] is None:
                self.last[i] = next(self.iters[i])
            canvas.paste(
                self.last[i].reformat(width=sizes[i][0], height=sizes[i][1], format="rgb24").to_image(), boxes[i]
            )
        canvas.paste(self.still, STILL_RECT[:2])
        buffer = io.BytesIO()
        canvas.save(buffer, "JPEG", quality=85)
        return buffer.tell()


class FloorOneThread(Floor):
    """The floor with one decoder thread: in 1 and 2 processes, the machine's ceiling for media work (decoding and
    scaling stream through caches and memory both cores share, which the pure-CPU ceiling does not measure)."""

    def __init__(self, scene: dict[str, Path]) -> None:
        super().__init__(scene)
        for container in self.containers:
            container.streams.video[0].thread_count = 1


class Naive:
    """The old server's way: per request open, seek, decode, full-size to_image, Pillow resize, save."""

    def __init__(self, scene: dict[str, Path]) -> None:
        self.scene = scene

    def frame_image(self, path: Path, index: int) -> Image.Image:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            target = int(index / 30 / stream.time_base)
            container.seek(target, stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts >= target:
                    return frame.to_image()
        raise RuntimeError("no frame")

    def render(self, frame: int, rect_left: float | None = None) -> int:
        canvas = Image.new("RGB", CANVAS)
        canvas.paste(self.frame_image(self.scene["big"], frame).resize(CANVAS), (0, 0))
        left = int(rect_left if rect_left is not None else SMALL_RECT[0])
        canvas.paste(self.frame_image(self.scene["small"], frame).resize(SMALL_RECT[2:]), (left, SMALL_RECT[1]))
        canvas.paste(Image.open(self.scene["still"]).convert("RGB").resize(STILL_RECT[2:]), STILL_RECT[:2])
        buffer = io.BytesIO()
        canvas.save(buffer, "JPEG", quality=85)
        return buffer.tell()


class PipelineOneThread(Pipeline):
    decoder_threads = 1


class Spin:
    """The machine's ceiling: pure CPU, no memory traffic, no I/O; one 'frame' is a fixed amount of work."""

    def __init__(self, scene: dict[str, Path]) -> None:
        pass

    def render(self, frame: int, rect_left: float | None = None) -> int:
        total = 0
        for i in range(400_000):
            total += i * i % 7
        return total


KINDS = {
    "pipeline": Pipeline,
    "pipeline-t1": PipelineOneThread,
    "floor": Floor,
    "floor-t1": FloorOneThread,
    "naive": Naive,
    "spin": Spin,
}


def workload(name: str, count: int, seed: int = 1) -> list[tuple[int, float | None]]:
    if name == "sequential":
        return [(i, None) for i in range(count)]
    if name == "random":
        rng = random.Random(seed)
        return [(rng.randrange(0, 239), None) for _ in range(count)]
    return [(100, 300.0 + 3 * i) for i in range(count)]  # drag: same frame, moving rectangle


def run_chunk(
    args: tuple[str, dict[str, Path], list[tuple[int, float | None]], float],
) -> tuple[list[float], float, float]:
    """Render the jobs after a warm-up; with ``start_at`` (CLOCK_MONOTONIC, shared by all processes)
    every worker starts its timed loop at the same instant, so setup never counts as throughput."""
    kind, scene, jobs, start_at = args
    renderer = KINDS[kind](scene)
    renderer.render(*jobs[0])  # warm: open files, first decode
    while time.monotonic() < start_at:
        time.sleep(0.001)
    times = []
    began = time.monotonic()
    for frame, rect in jobs:
        started = time.perf_counter()
        renderer.render(frame, rect)
        times.append(time.perf_counter() - started)
    return times, began, time.monotonic()


def measure(
    kind: str, workers: int, scene: dict[str, Path], jobs: list[tuple[int, float | None]], pool: Any
) -> tuple[float, float]:
    """frames/s over the whole batch (wall clock) and the per-frame median."""
    if workers == 1 and pool is None:
        times, began, ended = run_chunk((kind, scene, jobs, 0.0))
        wall = ended - began
    elif workers == 1:  # one child process (--baseline-tree: the same conditions for both trees)
        times, began, ended = pool.apply(run_chunk, ((kind, scene, jobs, 0.0),))
        wall = ended - began
    elif pool is None:  # two threads in one process: what a thread pool would give
        from concurrent.futures import ThreadPoolExecutor

        half = len(jobs) // 2
        start_at = time.monotonic() + 2.0
        with ThreadPoolExecutor(2) as threads:
            results = list(
                threads.map(run_chunk, [(kind, scene, chunk, start_at) for chunk in (jobs[:half], jobs[half:])])
            )
        wall = max(r[2] for r in results) - min(r[1] for r in results)
        times = [t for r in results for t in r[0]]
    else:
        half = len(jobs) // 2
        chunks = [jobs[:half], jobs[half:]]
        start_at = time.monotonic() + 2.0
        results = pool.map(run_chunk, [(kind, scene, chunk, start_at) for chunk in chunks])
        wall = max(r[2] for r in results) - min(r[1] for r in results)
        times = [t for r in results for t in r[0]]
    return len(jobs) / wall, statistics.median(times) * 1000


@contextlib.contextmanager
def side_by_side(ctx: Any, tree: Path | None) -> Iterator[tuple[Any, Any]]:
    """Two one-process pools, this tree's and the baseline's, or (None, None) without a baseline.

    Both are children started the same way, so the only difference is the tree they render with."""
    if tree is None:
        yield None, None
        return
    with ctx.Pool(1) as current, ctx.Pool(1, initializer=_use_tree, initargs=(str(tree.resolve()),)) as baseline:
        where = baseline.apply(_package_dir)
        if not where.startswith(str(tree.resolve())):
            raise SystemExit(f"the baseline child imported {where}, not the tree {tree}")
        yield current, baseline


def _use_tree(tree: str) -> None:
    """In a baseline child: the package again, from ``tree``, and this script's names rebound to it.

    A spawned child gets its parent's sys.path and imports this script (and so the package)
    before any initializer runs; PYTHONPATH cannot help, so the imports are redone here."""
    import importlib

    for name in [m for m in sys.modules if m == "flipedit_previewd" or m.startswith("flipedit_previewd.")]:
        del sys.modules[name]
    sys.path.insert(0, tree)
    try:
        compositor = importlib.import_module("flipedit_previewd.worker.compositor")
        media = importlib.import_module("flipedit_previewd.worker.media")
        timeline = importlib.import_module("flipedit_previewd.timeline.model")
    except ImportError:  # a tree from before the packages by role
        compositor = importlib.import_module("flipedit_previewd.compositor")
        media = importlib.import_module("flipedit_previewd.media")
        timeline = importlib.import_module("flipedit_previewd.timeline")
    globals().update(
        OutputSpec=compositor.OutputSpec,
        compose=compositor.compose,
        MediaPool=media.MediaPool,
        Rect=timeline.Rect,
        Timeline=timeline.Timeline,
        timeline_from_json=timeline.timeline_from_json,
    )


def _package_dir() -> str:
    import flipedit_previewd

    return str(Path(flipedit_previewd.__file__).parent)


def footage_run(source: Path, seconds: float, kind: str, jobs: list[tuple[float, int]], bound: float) -> list[float]:
    """Milliseconds per frame of one pipeline on one footage clip, warm (opened, first frame decoded), in order."""
    timeline = timeline_from_json(footage.timeline_json(source, seconds), CANVAS, 30)
    media = MediaPool(256 * 1024 * 1024, 100_000_000)
    naive = Naive({})

    def render(frame: int) -> None:
        if kind == "naive":
            image = naive.frame_image(source, frame).resize(CANVAS)
            image.save(io.BytesIO(), "JPEG", quality=85)
        else:
            compose(timeline, frame, OutputSpec(*CANVAS), media)

    render(jobs[0][1])
    times: list[float] = []
    end = time.monotonic() + bound
    for _, frame in jobs:
        if time.monotonic() > end:
            break
        t0 = time.perf_counter()
        render(frame)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def footage_main(options: argparse.Namespace) -> None:
    from flipedit_previewd.percentiles import percentile

    print(f"load average at the start {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    t0 = time.perf_counter()
    rows = []
    for name in footage.scene_names(options.scenes):
        scene = footage.SCENES[name]
        source = footage.make(scene)
        for pattern in footage.PATTERNS:
            for kind in ("pipeline-1w", "naive"):
                count = options.frames if kind != "naive" else max(5, options.frames // 4)
                times: list[float] = []
                for round_index in range(options.rounds):
                    jobs = footage.pattern(pattern, scene.frames, count, seed=round_index + 1)
                    times += footage_run(source, scene.seconds, kind, jobs, options.pattern_seconds)
                load = os.getloadavg()[0]
                rows.append(
                    (name, pattern, kind, len(times), percentile(times, 50), percentile(times, 95), max(times), load)
                )
                print(
                    f"{name:<13} {pattern:<10} {kind:<12} n={len(times):<4} p50 {rows[-1][4]:7.1f} p95 "
                    f"{rows[-1][5]:7.1f} "
                    f"max {rows[-1][6]:7.1f} ms (load {load:.2f})",
                    flush=True,
                )
    print(
        "\n| scene | pattern | pipeline | frames | p50 ms | p95 ms | max ms | load |\n|---|---|---|---|---|---|---|---|"
    )
    for name, pattern, kind, n, p50, p95, top, load in rows:
        print(f"| {name} | {pattern} | {kind} | {n} | {p50:.1f} | {p95:.1f} | {top:.1f} | {load:.2f} |")
    print(
        f"\ntotal {time.perf_counter() - t0:.0f} s; load average at the end "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-tree", type=Path, help="another checkout whose pipeline-1w runs beside this one's")
    parser.add_argument(
        "--scenes",
        default="standard",
        help=f"'standard', or 'footage' / footage scene names, comma-separated ({', '.join(footage.SCENES)})",
    )
    parser.add_argument(
        "--pattern-seconds", type=float, default=30.0, help="footage scenes: time bound per pattern and pipeline"
    )
    options = parser.parse_args()
    if options.scenes != "standard":
        footage_main(options)
        return
    print(f"load average at the start {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        scene = make_scene(Path(tmp))
        print(f"scene generated in {time.perf_counter() - t0:.1f} s")
        ctx = multiprocessing.get_context("spawn")
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        with ctx.Pool(2) as pool, side_by_side(ctx, options.baseline_tree) as (current, baseline):
            for _ in range(options.rounds):
                for name in ("sequential", "random", "drag"):
                    jobs = workload(name, options.frames)
                    naive_jobs = jobs[: max(10, options.frames // 4)]
                    for label, kind, workers, batch in (
                        ("ceiling-1p", "spin", 1, jobs),
                        ("ceiling-2p", "spin", 2, jobs),
                        ("media-1p", "floor-t1", 1, jobs),
                        ("media-2p", "floor-t1", 2, jobs),
                        ("pipeline-1w", "pipeline", 1, jobs),
                        ("pipeline-2w", "pipeline", 2, jobs),
                        ("pipeline-1w-t1", "pipeline-t1", 1, jobs),
                        ("pipeline-2w-t1", "pipeline-t1", 2, jobs),
                        ("pipeline-2t", "pipeline", 2, jobs),
                        ("floor", "floor", 1, jobs),
                        ("naive", "naive", 1, naive_jobs),
                    ):
                        if kind == "floor" and name == "random":
                            continue  # the floor is sequential decoding by definition
                        if kind in ("spin", "floor-t1") and name == "drag":
                            # measured next to each 2-worker ratio it judges: contention on a shared machine varies
                            continue
                        if kind == "pipeline-t1" and name == "drag":
                            continue  # drag decodes nothing new
                        results.setdefault((name, label), []).append(
                            measure(
                                kind, workers, scene, batch, None if label in ("pipeline-1w", "pipeline-2t") else pool
                            )
                        )
                    if baseline is not None:
                        for label, one in (("baseline-1w", baseline), ("current-1w", current)):
                            results.setdefault((name, label), []).append(measure("pipeline", 1, scene, jobs, one))
        print(f"\n{'scenario':<11} {'pipeline':<15} {'frames/s':>9} {'median ms':>10}")
        fps: dict[tuple[str, str], float] = {}
        for (name, label), runs in results.items():
            fps[(name, label)] = statistics.median(r[0] for r in runs)
            print(f"{name:<11} {label:<15} {fps[(name, label)]:>9.1f} {statistics.median(r[1] for r in runs):>10.1f}")

        def per_round(name: str, two: str, one: str) -> list[float]:
            return [a[0] / b[0] for a, b in zip(results[(name, two)], results[(name, one)], strict=True)]

        def listed(values: list[float]) -> str:
            return ", ".join(f"{v:.2f}" for v in values)

        print()
        # Per scenario, per round: the CPU ceiling and the media ceiling measured beside its 2-worker runs.
        ceiling = {
            name: (per_round(name, "ceiling-2p", "ceiling-1p"), per_round(name, "media-2p", "media-1p"))
            for name in ("sequential", "random")
        }
        for name, (cpu, media) in ceiling.items():
            print(
                f"machine ceiling next to the {name} runs: 2 CPU-bound processes / 1 = {statistics.median(cpu):.2f}x "
                f"(rounds {listed(cpu)})"
            )
            print(
                f"  media ceiling beside it: the floor (sequential decode, scale, encode; 1 decoder thread) in 2 "
                f"processes / 1 "
                f"= {statistics.median(media):.2f}x (rounds {listed(media)})"
            )
        print("ratios (goal in brackets):")
        seq_floor = fps[("sequential", "floor")] / fps[("sequential", "pipeline-1w")]
        print(
            f"  sequential: floor / pipeline-1w = {seq_floor:.2f}x  [<= 1.25x]  "
            f"{'PASS' if seq_floor <= 1.25 else 'FAIL'}"
        )
        for name in ("sequential", "random", "drag"):
            vs_naive = fps[(name, "pipeline-1w")] / fps[(name, "naive")]
            scale = fps[(name, "pipeline-2w")] / fps[(name, "pipeline-1w")]
            threads = fps[(name, "pipeline-2t")] / fps[(name, "pipeline-1w")]
            print(
                f"  {name:<10}: pipeline-1w / naive = {vs_naive:.1f}x [>= 4x] {'PASS' if vs_naive >= 4 else 'FAIL'};"
                f"  2 worker processes / 1 = {scale:.2f}x [>= 1.85x] {'PASS' if scale >= 1.85 else 'FAIL'};"
                f"  2 threads / 1 = {threads:.2f}x"
            )
            if name == "drag":
                continue
            ceilings, media = ceiling[name]
            for suffix, what in (("", "decoders as shipped"), ("-t1", "1 decoder thread per worker")):
                ratios = per_round(name, "pipeline-2w" + suffix, "pipeline-1w" + suffix)
                fractions = [r / c for r, c in zip(ratios, ceilings, strict=True)]
                fraction = statistics.median(fractions)
                of_media = [r / c for r, c in zip(ratios, media, strict=True)]
                vs_shipped = fps[(name, "pipeline-2w" + suffix)] / fps[(name, "pipeline-1w")]
                print(
                    f"      {what:<27}: 2w/1w = {statistics.median(ratios):.2f}x; per round as a fraction of the "
                    f"ceiling "
                    f"measured beside it: {listed(fractions)}, median {fraction:.2f} [>= 0.95] "
                    f"{'PASS' if fraction >= 0.95 else 'FAIL'}; of the media ceiling: {listed(of_media)}, "
                    f"median {statistics.median(of_media):.2f}; 2w vs shipped 1w = {vs_shipped:.2f}x"
                )
        if options.baseline_tree:
            print(f"against {options.baseline_tree} (same run, each round; > 1 means this tree is faster):")
            for name in ("sequential", "random", "drag"):
                ratios = per_round(name, "current-1w", "baseline-1w")
                print(
                    f"  {name:<10}: current-1w / baseline-1w = {statistics.median(ratios):.2f}x "
                    f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})"
                )
        print(
            f"\ntotal {time.perf_counter() - t0:.0f} s; load average at the end "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )


if __name__ == "__main__":
    main()

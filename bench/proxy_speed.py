"""How fast the proxy maker makes a proxy on one core, this tree against a baseline in the same run (issue 24).

Not a test. The goal: "proxy generation of the 1080p source at >= 2x real time on one core while nothing else
runs". For each footage scene (bench/footage.py; default the 1080p30 H.264 GOP-250 clip, 20 s) and each round,
this tree's maker and the baseline's make the proxy in alternation, each in a child process of its own tree
pinned to one core (``taskset -c CORE``), with ``flipedit_previewd.proxy.maker``'s own ``main`` (argument parsing,
store, budget, segments, fsyncs: everything the daemon's child does) except that it does not lower its priority:
SCHED_IDLE on a shared machine measures the others' load, not the maker. Measured per run:

  x RT (CPU)   seconds of source per CPU second of the child (user + sys, from its start to its exit: Python's
               start, PyAV's load and the whole making). On a shared machine the wall time includes the time the
               core was given to others; CPU time is what "nothing else runs" would take (I/O waits aside: the
               fsyncs, ~3-7 ms per 1 s segment here, are in the wall column only)
  x RT (wall)  seconds of source per wall second, and the load average when the run ended
  MB/min       the proxy's bytes (segments + manifest, as the store counts them) per minute of source
  read         the workers' side: ms to read and decode one random frame of the proxy with ProxyReader.frame_at
               (a fresh reader, one decoder, ``--reads`` random frames, seeded), median and p95, in the same child
               after the making; all-intra decode cost is what makes scrubbing fast
  same bytes   whether the two trees' proxies are byte-identical (the same frames: the quality checks of
               tests/unit/proxy/test_frames.py hold for one as for the other)

The baseline is ``--baseline-tree DIR`` (another checkout, e.g. ``git worktree add --detach /tmp/base REV``) or
``--baseline-rev REV`` (exported with ``git archive`` into a temporary folder; default 5f7e7ff, main before this
measurement's changes). Ratios are this tree's against the baseline's, per round and of the medians.

Usage: .venv/bin/python -m bench.proxy_speed [--rounds 3] [--core 1] [--scenes gop250-1080p] [--baseline-tree DIR |
       --baseline-rev REV] [--reads 60]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import footage

ROOT = Path(__file__).resolve().parent.parent

# Run in the child, in the tree measured (its own maker, store and reader): make the proxy as the daemon's child
# does, minus the priority lowering; then time random frames through the workers' reader.
CHILD = r"""
import json, os, random, statistics, sys, time
from fractions import Fraction
from flipedit_previewd.proxy import maker
from flipedit_previewd.proxy.reader import ProxyReader
from flipedit_previewd.proxy.store import Store

source, store_dir, size, reads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
maker.lower_priority = lambda: []
code = maker.main([source, "--store", store_dir, "--size", size, "--no-confine", "--budget", str(4 << 30)])
usage = os.times()
made = {"code": code, "cpu": usage.user + usage.system}
store = Store(store_dir)
entries = list(store.entries())
if code == 0 and len(entries) == 1 and entries[0].manifest is not None:
    manifest = entries[0].manifest
    made["bytes"] = entries[0].bytes
    made["frames"] = manifest.frames
    reader = ProxyReader(store)
    rng = random.Random(7)
    times = []
    span = manifest.segments[-1][1] - manifest.origin
    for _ in range(reads):
        seconds = Fraction(rng.randrange(max(1, int(span))), 1) * manifest.time_base
        t0 = time.perf_counter()
        got = reader.frame_at(manifest, seconds)
        times.append((time.perf_counter() - t0) * 1000)
        assert got is not None
    times.sort()
    made["read_p50"] = statistics.median(times)
    made["read_p95"] = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
print("RESULT " + json.dumps(made))
"""


def export(rev: str, into: Path) -> Path:
    """``git archive REV`` of this repository, unpacked into ``into`` (no worktree, nothing written to .git)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run(tree: Path, source: Path, store: Path, core: str, size: str, reads: int) -> dict[str, float]:
    """One making in a child process of ``tree`` pinned to ``core`` ("none": not pinned): its figures, wall seconds."""
    shutil.rmtree(store, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        [*([] if core == "none" else ["taskset", "-c", core]), sys.executable, "-c", CHILD]
        + [str(source), str(store), size, str(reads)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"the maker of {tree} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(lines[-1][len("RESULT ") :])
    if result.get("code") != 0 or "bytes" not in result:
        raise SystemExit(f"the maker of {tree} made no complete proxy: {out.stdout[-2000:]}")
    result["cpu_rusage"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["wall"] = wall
    result["load"] = os.getloadavg()[0]
    return result


def digest(store: Path) -> str:
    """A hash of the proxy's segment files (the manifest holds paths and times, so it is left out)."""
    h = hashlib.sha256()
    for path in sorted(store.glob("*/seg-*.bin")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", default="gop250-1080p")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--core", default="1", help="the one core both makers run on; 'none': not pinned (as in the daemon)"
    )
    parser.add_argument(
        "--size", default=f"{footage.CANVAS[0]}x{footage.CANVAS[1]}", help="the proxy box (the canvas by default)"
    )
    parser.add_argument("--reads", type=int, default=60, help="random proxy frames read after each making")
    given = parser.add_mutually_exclusive_group()
    given.add_argument("--baseline-tree", type=Path, help="another checkout of the project")
    given.add_argument("--baseline-rev", default="5f7e7ff", help="a revision exported with git archive")
    args = parser.parse_args()
    print(
        f"load average at the start {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores); "
        + ("makers not pinned" if args.core == "none" else f"makers pinned to core {args.core}"),
        flush=True,
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.baseline_tree:
            baseline, label = args.baseline_tree.resolve(), str(args.baseline_tree)
        else:
            baseline, label = export(args.baseline_rev, work / "baseline"), f"rev {args.baseline_rev}"
        trees = {"this tree": ROOT, f"baseline ({label})": baseline}
        header = (
            "| scene | round | tree | x RT (CPU) | x RT (wall) | CPU s | wall s | MB/min | read p50 ms | read p95 ms "
            "| load |"
        )
        rows = [header, "|---" * (header.count("|") - 1) + "|"]
        summary = []
        for name in footage.scene_names(args.scenes):
            scene = footage.SCENES[name]
            source = footage.make(scene)
            got: dict[str, list[dict[str, float]]] = {tree: [] for tree in trees}
            same = []
            for round_ in range(args.rounds):
                order = list(trees.items())
                if round_ % 2:
                    order.reverse()  # who goes first alternates: a change of load hits both
                digests = {}
                for tree_name, tree in order:
                    store = work / f"store-{len(digests)}"
                    r = run(tree, source, store, args.core, args.size, args.reads)
                    seconds = r["frames"] / footage.FPS
                    r["seconds"] = seconds
                    got[tree_name].append(r)
                    digests[tree_name] = digest(store)
                    rows.append(
                        f"| {name} | {round_ + 1} | {tree_name} | {seconds / r['cpu_rusage']:.2f} | "
                        f"{seconds / r['wall']:.2f} | {r['cpu_rusage']:.2f} | {r['wall']:.2f} | "
                        f"{r['bytes'] / 1e6 / seconds * 60:.0f} | {r['read_p50']:.2f} | {r['read_p95']:.2f} | "
                        f"{r['load']:.2f} |"
                    )
                    print(rows[-1], flush=True)
                same.append(len(set(digests.values())) == 1)
            (this_name, this), (base_name, base) = got.items()
            ratios = [b["cpu_rusage"] / t["cpu_rusage"] for t, b in zip(this, base, strict=True)]
            med = {k: statistics.median(r["cpu_rusage"] for r in v) for k, v in got.items()}
            seconds = this[0]["seconds"]
            summary.append(
                f"{name} ({seconds:g} s of source): this tree {seconds / med[this_name]:.2f}x real time on one core "
                f"(CPU, median of {args.rounds}), baseline {seconds / med[base_name]:.2f}x; speed-up "
                f"{med[base_name] / med[this_name]:.2f}x (rounds: {', '.join(f'{x:.2f}' for x in ratios)}); "
                f"MB/min {statistics.median(r['bytes'] for r in this) / 1e6 / seconds * 60:.0f} vs "
                f"{statistics.median(r['bytes'] for r in base) / 1e6 / seconds * 60:.0f}; read p50 "
                f"{statistics.median(r['read_p50'] for r in this):.2f} vs "
                f"{statistics.median(r['read_p50'] for r in base):.2f} ms; proxies byte-identical in "
                f"{sum(same)} of {len(same)} rounds"
                + (
                    ""
                    if name != "gop250-1080p"
                    else f"; goal >= 2x: {'met' if seconds / med[this_name] >= 2 else 'NOT met'}"
                )
            )
    loads = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n{time.monotonic() - started:.0f} s; load average at the end {loads}")
    print("\n".join(rows))
    print()
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

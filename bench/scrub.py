"""Long-GOP footage through a real daemon: random frames and a scrub that turns back, this tree against another.

Not a test. A stock /usr/bin/ffmpeg makes a 1080p30 H.264 clip with a keyframe every 250 frames and B-frames
(what screen recorders and many cameras write); one clip fills a 1280x720 canvas. Each daemon (this tree's,
and with --baseline-tree another checkout's, e.g. `git worktree add --detach /tmp/base REV`) runs with its
rendered-frame cache off, default workers and (this tree's) proxies off; in every round, daemons alternate and
each is asked:
  random    25 random frames, one at a time
  reverse   a scrub that turns back inside one GOP: forward from frame 400 to 460 in steps of 3, then
            back to 400 in steps of 2 (the backward requests are timed: the ones a scrub turning back makes)
Prints p50/p95 per daemon and the same-run ratios baseline/this, and the load average (a shared machine).
  .venv/bin/python -m bench.scrub [--rounds 3] [--baseline-tree /tmp/base]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.footage import LONG_GOP_X264
from bench.harness import VENV, Server, tree_daemon, uncached_args
from flipedit_previewd.demo.fixtures import add_clip, add_track, create_project_db

HERE = Path(__file__).resolve().parent

FRAMES = 600  # 20 s at 30 fps: GOPs at 0, 250, 500


def make_clip(path: Path) -> Path:
    subprocess.run(
        [
            "/usr/bin/ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=1920x1080:rate=30:duration={FRAMES / 30}",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            *LONG_GOP_X264,
            str(path),
        ],
        check=True,
        timeout=600,
    )
    return path


def make_project(directory: Path, clip: Path) -> Path:
    db = directory / "scrub.sqlite"
    create_project_db(db, 3)
    conn = sqlite3.connect(str(db))
    with conn:
        track = add_track(conn, "footage", 0)
        add_clip(conn, 3, track, str(clip), "video", 0, FRAMES * 1000 // 30, rect=(0, 0, 1280, 720))
    conn.close()
    return db


def timed(session: requests.Session, url: str, frame: int) -> float:
    t0 = time.perf_counter()
    response = session.get(f"{url}/get_frame/{frame}", timeout=60)
    response.raise_for_status()
    return (time.perf_counter() - t0) * 1000


def run_patterns(server: Server, seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    out: dict[str, list[float]] = {"random": [], "reverse": []}
    with requests.Session() as session:
        for frame in rng.sample(range(FRAMES), 25):
            out["random"].append(timed(session, server.url, frame))
        for frame in range(400, 461, 3):
            timed(session, server.url, frame)
        for frame in range(460, 399, -2):
            out["reverse"].append(timed(session, server.url, frame))
    return out


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-tree", default="")
    args = parser.parse_args()
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        db = make_project(Path(tmp), make_clip(Path(tmp) / "gop250.mp4"))
        common = uncached_args(db)
        env = {"XDG_CONFIG_HOME": tmp}
        servers = [
            Server(
                "this",
                # proxies off: the decoder side, as before a proxy exists (the base predates them)
                [str(VENV / "python"), "-m", "flipedit_previewd", *common, "--proxies", "false"],
                {**env, "PYTHONPATH": str(HERE.parent)},
            )
        ]
        if args.baseline_tree:
            servers.append(tree_daemon("base", args.baseline_tree, common, env))
        results: dict[str, dict[str, list[float]]] = {s.name: {"random": [], "reverse": []} for s in servers}
        per_round: list[dict[str, dict[str, float]]] = []
        try:
            for server in servers:
                server.start()
            for round_index in range(args.rounds):
                row: dict[str, dict[str, float]] = {}
                order = servers if round_index % 2 == 0 else servers[::-1]
                for server in order:
                    got = run_patterns(server, seed=round_index)
                    row[server.name] = {k: statistics.median(v) for k, v in got.items()} | {
                        f"{k}_p95": p95(v) for k, v in got.items()
                    }
                    for kind, values in got.items():
                        results[server.name][kind].extend(values)
                    print(
                        f"round {round_index + 1} {server.name:<5} random p50 {row[server.name]['random']:.0f} p95 "
                        f"{row[server.name]['random_p95']:.0f} ms; reverse p50 {row[server.name]['reverse']:.0f} "
                        f"p95 {row[server.name]['reverse_p95']:.0f} ms",
                        flush=True,
                    )
                per_round.append(row)
                loads.append(os.getloadavg()[0])
        finally:
            for server in servers:
                server.stop()
    print(f"load average (1 min) at start and after each round: {', '.join(f'{x:.2f}' for x in loads)}")
    print("| pattern | daemon | p50 ms | p95 ms |")
    print("|---|---|---|---|")
    for name, kinds in results.items():
        for kind, values in kinds.items():
            print(f"| {kind} | {name} | {statistics.median(values):.0f} | {p95(values):.0f} |")
    if "base" in results:
        for kind in ("random", "reverse"):
            for stat, pick in (("p50", statistics.median), ("p95", p95)):
                ratio = pick(results["base"][kind]) / pick(results["this"][kind])
                rounds = ", ".join(
                    f"{r['base'][key] / r['this'][key]:.2f}"
                    for r in per_round
                    for key in [kind if stat == "p50" else kind + "_p95"]
                )
                print(f"{kind} {stat}: base/this = {ratio:.2f}x (rounds {rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

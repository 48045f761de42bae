"""The drag's settles one by one: which request waited for what.

Not a test. Starts one daemon as bench/peers.py does (rendered-frame cache off, the same scene), runs
the drag (60 requests/s for one frame in the background, the still moved in the database) and, for each
change, records every request the prober made until the new picture came back: when it was sent
after the change, its client-side time, and the daemon's own X-Queue-Ms / X-Render-Ms. Prints the
slowest settles with their breakdown and the medians of each part:
  stale    answers after the change that still showed the old picture (a render of the old revision)
  queue    the settling request's wait for a worker (X-Queue-Ms)
  render   its render in the worker (X-Render-Ms)
  other    client time minus queue and render: HTTP, the loop, the database read, the pipe
  .venv/bin/python -m bench.drag_trace [--changes 30] [--daemon-args '--loop-nice 0'] [--tree DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.harness import ROOT, Server, make_project, make_scene, tree_daemon, uncached_args
from bench.peers import DRAG_FRAME, drag_load
from flipedit_previewd.demo.fixtures import set_clip_rect

HERE = Path(__file__).resolve().parent


def trace(server: Server, db: Path, changes: int, gap: float) -> list[dict[str, Any]]:
    """The settles under the same background load as bench/peers.py's drag, so the two trace the same thing."""
    with drag_load(server.url):
        return traced_settles(server, db, changes, gap)


def traced_settles(server: Server, db: Path, changes: int, gap: float) -> list[dict[str, Any]]:
    """The still moved ``changes`` times, ``gap`` s apart: every request made until each move showed."""
    conn = sqlite3.connect(str(db), timeout=5)
    clip_id = conn.execute("SELECT id FROM clips WHERE type='image'").fetchone()[0]
    settles: list[dict[str, Any]] = []
    with requests.Session() as session:
        before = hashlib.sha1(session.get(f"{server.url}/get_frame/{DRAG_FRAME}", timeout=10).content).digest()
        for trial in range(changes):
            with conn:
                set_clip_rect(conn, 3, clip_id, (40.0 + 30 * ((trial % 20) + 1), 40.0, 300.0, 200.0))
            changed = time.perf_counter()
            tries: list[dict[str, Any]] = []
            while time.perf_counter() - changed < 10:
                sent = time.perf_counter()
                response = session.get(f"{server.url}/get_frame/{DRAG_FRAME}", timeout=10)
                got = time.perf_counter()
                digest = hashlib.sha1(response.content).digest()
                tries.append(
                    {
                        "sent_ms": (sent - changed) * 1000,
                        "client_ms": (got - sent) * 1000,
                        "queue_ms": float(response.headers.get("X-Queue-Ms", "nan")),
                        "render_ms": float(response.headers.get("X-Render-Ms", "nan")),
                        "new": digest != before,
                    }
                )
                if digest != before:
                    before = digest
                    settles.append({"settle_ms": (got - changed) * 1000, "tries": tries})
                    break
            time.sleep(gap)
    conn.close()
    return settles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--gap", type=float, default=5.0 / 30, help="seconds between changes (peers.py: 5 s / 30)")
    parser.add_argument("--daemon-args", default="")
    parser.add_argument("--tree", default="", help="run the daemon of another checkout (e.g. the baseline)")
    parser.add_argument("--show", type=int, default=8, help="how many of the slowest settles to print")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scene = make_scene(Path(tmp))
        db = make_project(Path(tmp), scene)
        server = tree_daemon(
            "daemon",
            args.tree or ROOT,
            uncached_args(db, *args.daemon_args.split()),
            {"XDG_CONFIG_HOME": str(db.parent)},
        )
        server.start()
        try:
            load = os.getloadavg()[0]
            settles = trace(server, db, args.changes, args.gap)
        finally:
            server.stop()
    last = [s["tries"][-1] for s in settles]
    values = sorted(s["settle_ms"] for s in settles)
    print(
        f"load {load:.2f}; {len(settles)} settles: p50 {statistics.median(values):.1f} ms, "
        f"p95 {values[min(len(values) - 1, int(len(values) * 0.95))]:.1f} ms"
    )
    stale = [len(s["tries"]) - 1 for s in settles]
    print(f"stale answers per settle: mean {statistics.mean(stale):.2f}, settles with any {sum(1 for n in stale if n)}")
    for part in ("queue_ms", "render_ms"):
        print(f"settling request {part}: median {statistics.median(t[part] for t in last):.1f}")
    other = [t["client_ms"] - t["queue_ms"] - t["render_ms"] for t in last]
    print(
        f"settling request other (HTTP, loop, db read, pipe): median {statistics.median(other):.1f}, max "
        f"{max(other):.1f}"
    )
    print("slowest:")
    for s in sorted(settles, key=lambda s: -s["settle_ms"])[: args.show]:
        parts = "; ".join(
            f"{'NEW' if t['new'] else 'old'} sent +{t['sent_ms']:.1f} took {t['client_ms']:.1f} "
            f"(queue {t['queue_ms']:.1f} render {t['render_ms']:.1f})"
            for t in s["tries"]
        )
        print(f"  {s['settle_ms']:6.1f} ms: {parts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

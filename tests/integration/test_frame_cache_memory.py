"""The frame cache's setting bounds what it costs the main process, whatever size the frames asked for.

Any local user may ask for frames (no token): 20,000 distinct 1x1 frames were 20,000 entries of a few
hundred image bytes each, counted as those bytes only. Measured on a real daemon's main process (RSS
and PSS from /proc/<pid>/smaps_rollup), after a warm-up that fills the daemon's bounded per-request
records (the latency window of 2,000, the lag samples) without filling the cache. 4 MiB: besides its
entries, a cache that churns costs ~1.7 MB of allocator slack whatever its setting (framecache.py), which
alone is 0.8x a 2 MiB setting (there: 3.34 MB of growth, 1.6x; 5.2 MB before entries were charged).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import requests

from tests.support.helpers import still_project

CACHE = 4 * 1024 * 1024
RENDERS = 20_000
CLIENTS = 4


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process, in kB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])


def ask(url: str, frames: range) -> None:
    with requests.Session() as session:
        for frame in frames:
            response = session.get(f"{url}/get_frame/{frame}?width=1&height=1", timeout=30)
            assert response.status_code == 200, response.status_code


def test_20000_tiny_renders_grow_the_main_process_by_at_most_one_and_a_half_times_the_cache(
    start_daemon: Any, tmp_path: Path
) -> None:
    db = still_project(tmp_path, (255, 0, 0), (0, 0, 64, 64), (32, 32), db="p.sqlite")
    daemon = start_daemon("--project", str(db), "--frame-cache-bytes", str(CACHE), "--render-ahead", "false")
    with requests.Session() as session:  # warm-up: cache hits of one frame, then a few hundred renders
        for _ in range(3000):
            assert session.get(f"{daemon.url}/get_frame/0?width=1&height=1", timeout=30).status_code == 200
    ask(daemon.url, range(1, 300))
    before = memory_kb(daemon.proc.pid)
    share = RENDERS // CLIENTS
    threads = [
        threading.Thread(target=ask, args=(daemon.url, range(300 + i * share, 300 + (i + 1) * share)))
        for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = memory_kb(daemon.proc.pid)
    cache = daemon.health()["cache"]
    assert cache["misses"] >= RENDERS and cache["bytes"] <= CACHE
    rss_mb, pss_mb = ((a - b) / 1024 for a, b in zip(after, before, strict=True))
    print(f"growth over {RENDERS} renders: RSS {rss_mb:.2f} MB, PSS {pss_mb:.2f} MB; {cache['frames']} frames cached")
    assert max(rss_mb, pss_mb) <= 1.5 * CACHE / 2**20, (rss_mb, pss_mb, cache)

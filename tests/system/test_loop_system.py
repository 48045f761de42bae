"""Issue 12 under real systemd (WatchdogSec=5): hostile input costs its sender an answer, never a restart.

``pytest -s`` prints the figures the README's reliability table quotes.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from flipedit_previewd.common.percentiles import percentile
from tests.support.helpers import ROOT, failpoint, many_stills_timeline, overload_with_health_watch, report, wait_for
from tests.system.deploy import Deployed, wait_active

PREVIEWCTL = str(ROOT / ".venv/bin/previewctl")


def restarts(d: Deployed) -> int:
    return int(d.show("NRestarts")["NRestarts"])


class Probe:
    """/health every 50 ms on a keep-alive connection, for as long as the test runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.times: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        with requests.Session() as session:
            while not self.stop.is_set():
                t0 = time.monotonic()
                try:
                    session.get(self.url + "/health", timeout=10).raise_for_status()
                except requests.RequestException as exc:
                    self.failures.append(repr(exc))
                self.times.append(time.monotonic() - t0)
                self.stop.wait(max(0.0, 0.05 - (time.monotonic() - t0)))

    def __enter__(self) -> Probe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def p99(self) -> float:
        return percentile(self.times, 99) or 0.0


@pytest.mark.solo
def test_hostile_inputs_under_systemd_no_restart(deployed: Any, tmp_path: Path) -> None:
    media = tmp_path / "many"
    media.mkdir()
    for i in range(50_000):
        (media / f"{i}.png").touch()
    d = deployed(args=f"--allowed-roots {tmp_path} --max-body-bytes {16 << 20}")
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    before = restarts(d)
    figures: dict[str, Any] = {}
    with Probe(d.url) as probe:
        # 1. a 3.6 MB path of x/.. components
        path = str(tmp_path) + "/" + "x/.." * 900_000 + "/red.png"
        body = json.dumps(
            {"tracks": [{"clips": [{"source_path": path, "start_on_track_ms": 0, "end_on_track_ms": 1000}]}]}
        )
        figures["path_timeline"] = requests.put(d.url + "/timeline", data=body, headers=d.auth, timeout=120).status_code
        # 2. 4096 full-canvas clips at the largest canvas
        clips = [
            {
                "source_path": str(tmp_path / "red.png"),
                "start_on_track_ms": 0,
                "end_on_track_ms": 10_000,
                "rect": {"left": 0, "top": 0, "width": 8192, "height": 8192},
            }
            for _ in range(4096)
        ]
        body = json.dumps({"canvas": {"width": 8192, "height": 8192}, "tracks": [{"clips": clips}]})
        figures["heavy_timeline"] = requests.put(
            d.url + "/timeline", data=body, headers=d.auth, timeout=120
        ).status_code
        # 3. 50,000 files
        r = requests.put(d.url + "/timeline", data=json.dumps(many_stills_timeline(media)), headers=d.auth, timeout=120)
        figures["files_timeline"] = r.status_code
        figures["files_frames"] = sorted(
            {requests.get(f"{d.url}/get_frame/{f}", timeout=60).status_code for f in (0, 777, 49_999)}
        )
        requests.delete(d.url + "/timeline", headers=d.auth, timeout=60)
        # 4. the project database locked by a writer for 10 s, SIGHUP during the lock
        locked = threading.Event()

        def writer() -> None:
            conn = sqlite3.connect(str(d.project), isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("UPDATE clips SET preview_width = preview_width + 1")
            locked.set()
            time.sleep(10)
            conn.execute("ROLLBACK")
            conn.close()

        thread = threading.Thread(target=writer)
        thread.start()
        assert locked.wait(5)
        os.utime(d.project)
        frames = []
        end = time.monotonic() + 10
        hupped = False
        while time.monotonic() < end:
            if not hupped and time.monotonic() > end - 7:
                os.kill(d.main_pid(), signal.SIGHUP)
                hupped = True
            frames.append(requests.get(f"{d.url}/get_frame/{len(frames) % 7}", timeout=30).status_code)
            time.sleep(0.2)
        thread.join()
        figures["locked_frames"] = sorted(set(frames))
    lag = requests.get(d.url + "/health", timeout=10).json()["loop_lag"]
    after = restarts(d)
    report(
        "loop-system",
        "hostile inputs, WatchdogSec=5",
        **figures,
        health_samples=len(probe.times),
        health_p99_ms=round(probe.p99() * 1000, 1),
        health_max_ms=round(max(probe.times) * 1000, 1),
        lag_p99_ms=lag["p99_ms"],
        lag_max_ms=lag["max_ms"],
        nrestarts=f"{before}->{after}",
    )
    assert figures["path_timeline"] == 413 and figures["heavy_timeline"] == 413 and figures["files_timeline"] == 200
    assert figures["files_frames"] == [200] and figures["locked_frames"] == [200]
    assert after == before and d.show("ActiveState")["ActiveState"] == "active"
    assert not probe.failures, probe.failures[:3]
    # The goals (100 ms, 50 ms) hold on a quiet machine (printed above); 2.5x here for a noisy one.
    assert probe.p99() < 0.250
    assert lag["p99_ms"] < 125


@pytest.mark.solo
def test_stuck_render_on_every_worker_504_within_budget_no_restart(deployed: Any) -> None:
    d = deployed(
        env={**failpoint("hang"), "FLIPEDIT_PREVIEWD_HANG_THRESHOLD": "2", "FLIPEDIT_PREVIEWD_RENDER_BUDGET": "1"}
    )
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    before = restarts(d)
    results: list[tuple[int, float]] = []

    def fetch(frame: int) -> None:
        t0 = time.monotonic()
        r = requests.get(f"{d.url}/get_frame/{frame}", timeout=60)
        results.append((r.status_code, time.monotonic() - t0))

    with Probe(d.url) as probe:
        for round_ in range(5):
            threads = [threading.Thread(target=fetch, args=(10 * round_ + k,)) for k in (1, 2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        time.sleep(WATCHDOG_WAIT)  # longer than WatchdogSec: a withheld heartbeat would have killed it by now
    after = restarts(d)
    withheld = d.journal(EVENT="watchdog_withheld")
    report(
        "loop-system",
        "stuck render on every worker, 5 rounds",
        statuses=sorted({s for s, _ in results}),
        worst_s=round(max(t for _, t in results), 2),
        health_p99_ms=round(probe.p99() * 1000, 1),
        nrestarts=f"{before}->{after}",
    )
    assert [s for s, _ in results] == [504] * 10
    assert max(t for _, t in results) < 1 + 1.5  # the budget, plus killing the worker on a busy machine
    assert not probe.failures and probe.p99() < 0.250
    assert after == before and d.show("ActiveState")["ActiveState"] == "active" and not withheld
    assert len(d.journal(EVENT="render_budget")) >= 10


WATCHDOG_WAIT = 7


def stamp(seconds_ago: float = 0) -> str:
    return datetime.fromtimestamp(time.time() - seconds_ago).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.solo
def test_rejection_flood_is_summarised_and_stats_counts_every_rejection(deployed: Any) -> None:
    # queue_size 0: every render request that is not a cache hit is refused at once (503, limit queue)
    d = deployed(args="--workers 1 --queue-size 0")
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    time.sleep(1.5)
    since = stamp(0)
    t_since = time.time()
    time.sleep(1.0)
    stats = overload_with_health_watch(d.url, connections=64, seconds=10, path=lambda n: f"/get_frame/{n % 1_000_000}")
    time.sleep(3.0)  # the last summary (once a second) and the journal writer
    counted = requests.get(d.url + "/health", timeout=10).json()["rejections"]["by_reason"].get("queue", 0)
    until = stamp(-1)
    entries = [e for e in d.journal() if int(e["__REALTIME_TIMESTAMP"]) / 1e6 >= t_since]
    result = d.box.run(PREVIEWCTL, "stats", "--since", since, "--until", until, "--json", check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    n503 = stats["statuses"].get("503", 0)
    kinds: dict[str, int] = {}
    for e in entries:
        kinds[e.get("EVENT", "?")] = kinds.get(e.get("EVENT", "?"), 0) + 1
    report(
        "loop-system",
        "10 s rejection flood",
        rejections=n503,
        rate_per_s=round(n503 / 10, 1),
        journal_entries=len(entries),
        kinds=kinds,
        stats_rejected=summary["outcomes"].get("rejected"),
        daemon_counted=counted,
        connection_errors=stats["connection_errors"],
    )
    assert stats["connection_errors"] == 0 and n503 > 1000
    assert len(entries) < 30, kinds
    # The daemon counts every refusal it answered; the client may have stopped before reading the last
    # answers on each of its connections.
    assert summary["outcomes"].get("rejected", 0) == counted
    assert n503 <= counted <= n503 + 64
    assert wait_for(lambda: restarts(d) == 0, 1)

"""Proxy media through a real daemon: made in the background, used where it may be (X-Preview-Source), never
for PNG or a clip larger than the proxy, never stale after the source is replaced, evicted by the budget,
left unused when a maker dies mid-write, and never in the way of real requests."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import requests
from PIL import Image

from flipedit_previewd.common.percentiles import percentile
from flipedit_previewd.ctl import main
from flipedit_previewd.ctl.cmd_monitor import MonitorState, monitor_line
from flipedit_previewd.ctl.context import Env
from tests.support.helpers import Daemon, one_track_project, still_project, wait_for
from tests.support.media_corpus import ffmpeg, lavfi

pytestmark = pytest.mark.skipif(ffmpeg() is None, reason="needs Debian's ffmpeg (scripts/setup.sh)")


def video(path: Path, seconds: float = 4, pattern: str = "testsrc2", size: str = "640x360", gop: int = 250) -> Path:
    """A source whose random frames are expensive: H.264 with B-frames, a keyframe every ``gop`` frames."""
    lavfi(
        path,
        f"{pattern}=size={size}:rate=30:duration={seconds}",
        *f"-c:v libx264 -preset veryfast -g {gop} -bf 3 -pix_fmt yuv420p".split(),
    )
    return path


def project(
    folder: Path, clips: list[tuple[Path, tuple[int, int, int, int], int, int]], name: str = "project.sqlite"
) -> Path:
    """One track; each clip (source, rect, start ms, end ms)."""
    db = folder / name
    db.unlink(missing_ok=True)
    one_track_project(
        db,
        [
            {
                "source": source,
                "type": "image" if source.suffix == ".png" else "video",
                "rect": rect,
                "start": start,
                "end": end,
            }
            for source, rect, start, end in clips
        ],
    )
    return db


def proxies(daemon: Daemon) -> dict[str, Any]:
    return dict(daemon.health()["proxies"])


def settled(daemon: Daemon, made: int, timeout: float = 60) -> dict[str, Any]:
    """/health's proxies once ``made`` proxies are made and nothing is queued or in progress."""

    def done() -> dict[str, Any] | None:
        p = proxies(daemon)
        return p if p["made"] >= made and not p["queued"] and p["in_progress"] is None else None

    found = wait_for(done, timeout, 0.2)
    assert found, f"proxies not made: {proxies(daemon)}\n{daemon.log()[-3000:]}"
    return dict(found)


def picture(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("L"), dtype=np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


def test_a_proxy_is_made_and_used_but_never_for_png_nor_for_a_larger_clip(start_daemon: Any, tmp_path: Path) -> None:
    source = video(tmp_path / "long-gop.mp4")
    db = project(tmp_path, [(source, (0, 0, 640, 360), 0, 4000)])  # shown at 640x360 on the 1280x720 canvas
    daemon = start_daemon("--project", str(db), "--allowed-roots", str(tmp_path), "--proxy-min-cost", "1")
    made = settled(daemon, 1)
    assert (
        made["disk_bytes"] > 0 and made["failed"] == 0 and made["dir"] == str(tmp_path / "flipedit-preview" / "proxies")
    )
    log = daemon.log_once("proxy_done")
    assert "proxy_started: making a proxy of" in log and f"proxy of {source} made: 120 frames" in log
    listing = daemon.get("/proxies").json()["entries"]
    assert (
        len(listing) == 1
        and listing[0]["complete"]
        and listing[0]["size"] == [640, 360]
        and listing[0]["frames"] == 120
    )

    jpeg = daemon.get("/get_frame/37")
    assert jpeg.status_code == 200 and jpeg.headers["X-Preview-Source"] == "proxy"
    png = daemon.get("/get_frame/37?format=png")
    assert png.headers["X-Preview-Source"] == "original"  # lossless output: the original, always
    # the same frame: the JPEG of the proxy against the PNG of the original (JPEG's own loss included)
    assert psnr(picture(jpeg.content)[:360, :640], picture(png.content)[:360, :640]) >= 35
    assert daemon.get("/get_frame/37").headers["X-Preview-Source"] == "proxy"  # a cache hit says it too
    smaller = daemon.get("/get_frame/50?width=640&height=360")
    assert smaller.headers["X-Preview-Source"] == "proxy"

    # the same source filling the canvas: 1280x720 is larger than the 640x360 proxy, so the original
    timeline = {
        "tracks": [
            {
                "clips": [
                    {
                        "source_path": str(source),
                        "start_on_track_ms": 0,
                        "end_on_track_ms": 4000,
                        "rect": {"left": 0, "top": 0, "width": 1280, "height": 720},
                    }
                ]
            }
        ]
    }
    assert requests.put(daemon.url + "/timeline", json=timeline, headers=daemon.auth, timeout=10).status_code == 200
    assert daemon.get("/get_frame/37").headers["X-Preview-Source"] == "original"
    assert (
        daemon.get("/get_frame/37?width=640&height=360").headers["X-Preview-Source"] == "proxy"
    )  # smaller output: fits again


def test_proxies_off_decode_the_originals(start_daemon: Any, tmp_path: Path) -> None:
    source = video(tmp_path / "long-gop.mp4", seconds=1)
    db = project(tmp_path, [(source, (0, 0, 640, 360), 0, 1000)])
    daemon = start_daemon("--project", str(db), "--allowed-roots", str(tmp_path), "--proxies", "false")
    assert daemon.get("/get_frame/5").headers["X-Preview-Source"] == "original"
    time.sleep(2.5)  # two health ticks: nothing is queued, nothing made
    assert proxies(daemon)["made"] == 0 and not (tmp_path / "flipedit-preview").exists()


def test_a_replaced_source_never_serves_its_old_proxy(start_daemon: Any, tmp_path: Path) -> None:
    source = video(tmp_path / "clip.mp4")
    other = video(tmp_path / "other.mp4", pattern="smptebars")
    db = project(tmp_path, [(source, (0, 0, 640, 360), 0, 4000)])
    daemon = start_daemon("--project", str(db), "--allowed-roots", str(tmp_path), "--proxy-min-cost", "1")
    settled(daemon, 1)
    before = daemon.get("/get_frame/30")
    assert before.headers["X-Preview-Source"] == "proxy"
    reference = picture(daemon.get("/get_frame/30?format=png").content)

    os.replace(other, source)  # another file under the same name: new inode, size and mtime
    bars = picture(
        subprocess.run(
            [
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-i",
                str(source),
                "-vf",
                "select=eq(n\\,30)",
                "-frames:v",
                "1",
                "-f",
                "image2pipe",
                "-vcodec",
                "png",
                "-",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        ).stdout
    )

    def changed() -> requests.Response | None:
        answer = daemon.get("/get_frame/30")
        return answer if psnr(picture(answer.content)[:360, :640], reference[:360, :640]) < 30 else None

    after = wait_for(changed, 10, 0.2)
    assert after, "the replaced file was not noticed"
    # whatever it came from, it is the new file's frame 30, never the old proxy's
    assert psnr(picture(after.content)[:360, :640], bars) >= 30
    assert after.headers["X-Preview-Source"] in ("original", "proxy")
    made = settled(daemon, 2)  # the new file gets a proxy of its own
    assert made["made"] == 2
    again = daemon.get("/get_frame/31")
    assert again.headers["X-Preview-Source"] == "proxy"
    assert psnr(picture(again.content)[:360, :640], bars) >= 30  # smptebars barely move: frame 31 is bars too


def test_the_budget_evicts_the_least_recently_used_and_proxies_survive_restarts(
    start_daemon: Any, tmp_path: Path
) -> None:
    first, second = video(tmp_path / "first.mp4"), video(tmp_path / "second.mp4")  # two files, proxies of one size
    daemon = start_daemon(
        "--project",
        str(project(tmp_path, [(first, (0, 0, 640, 360), 0, 4000)])),
        "--allowed-roots",
        str(tmp_path),
        "--proxy-min-cost",
        "1",
    )
    one = settled(daemon, 1)["disk_bytes"]
    daemon.stop()

    # a restart finds it (no new maker), with a budget for about one proxy and a timeline of the other source
    budget = one + one // 2
    daemon = start_daemon(
        "--project",
        str(project(tmp_path, [(second, (0, 0, 640, 360), 0, 4000)], "second.sqlite")),
        "--allowed-roots",
        str(tmp_path),
        "--proxy-min-cost",
        "1",
        "--proxy-budget-bytes",
        str(budget),
    )
    assert proxies(daemon)["disk_bytes"] >= one or daemon.get("/proxies").json()["entries"]
    made = settled(daemon, 1)
    assert made["evicted"] == 1 and made["stored"] == 1 and made["disk_bytes"] <= budget, made
    entries = daemon.get("/proxies").json()["entries"]
    assert [e["source"] for e in entries] == [str(second)]
    assert "proxy_evicted" in daemon.log_once("proxy_evicted")
    assert daemon.get("/get_frame/20").headers["X-Preview-Source"] == "proxy"


def small_proxies(db: Path, folder: Path, min_cost: str, *more: str) -> tuple[str, ...]:
    """A daemon serving ``db`` whose proxies are 640x360, made of any source that costs ``min_cost`` or more: what
    the daemons one after another on the same proxy store share, so that only what a test changes differs."""
    return (
        "--project",
        str(db),
        "--allowed-roots",
        str(folder),
        "--proxy-min-cost",
        min_cost,
        "--proxy-width",
        "640",
        "--proxy-height",
        "360",
        *more,
    )


def test_a_maker_killed_mid_write_leaves_nothing_that_is_used(start_daemon: Any, tmp_path: Path) -> None:
    source = video(tmp_path / "long.mp4", seconds=40, size="1280x720")
    db = project(tmp_path, [(source, (0, 0, 640, 360), 0, 40000)])
    daemon = start_daemon(*small_proxies(db, tmp_path, "1"))
    running = wait_for(
        lambda: (proxies(daemon)["in_progress"] or {}).get("frames_done", 0) >= 60 and proxies(daemon)["in_progress"],
        60,
        0.05,
    )
    assert running, proxies(daemon)
    os.kill(running["pid"], signal.SIGKILL)  # the maker: the daemon's child, started by it for this test
    failed = wait_for(lambda: proxies(daemon)["failed"] and proxies(daemon), 10, 0.1)
    assert failed and "signal 9" in failed["last_error"], failed
    assert "proxy_failed" in daemon.log_once("proxy_failed")

    store = tmp_path / "flipedit-preview" / "proxies"
    (entry,) = [p for p in store.iterdir()]
    manifest = json.loads((entry / "manifest.json").read_text())
    listed = {f"seg-{i:06d}.bin" for i in range(len(manifest["segments"]))}
    assert listed and not manifest["complete"]
    # what a kill between two writes leaves: a temp file, and a segment written but not yet listed
    (entry / ".tmp-seg-000999.bin-1").write_bytes(b"half a segment")
    unlisted = entry / f"seg-{len(listed):06d}.bin"
    if not unlisted.exists():
        shutil.copy(entry / "seg-000000.bin", unlisted)
    last_made = sum(count for _, _, count in manifest["segments"])
    for frame in (0, 20, last_made - 5):
        assert daemon.get(f"/get_frame/{frame}").headers["X-Preview-Source"] == "proxy"  # the frames made are served
    for frame in (last_made + 1, last_made + 35, 1100):  # in the unlisted segment, or never made
        assert daemon.get(f"/get_frame/{frame}").headers["X-Preview-Source"] == "original"
    daemon.stop()

    again = start_daemon(*small_proxies(db, tmp_path, "1", "--proxies", "false"))
    assert again.get("/get_frame/3").status_code == 200
    again.stop()
    restarted = start_daemon(*small_proxies(db, tmp_path, "1000"))
    assert "proxy_cleaned" in restarted.log_once("proxy_cleaned")
    names = {p.name for p in entry.iterdir()} if entry.exists() else set()
    assert not any(name.startswith(".tmp-") for name in names) and unlisted.name not in names


def timed(daemon: Daemon, frames: list[int]) -> list[float]:
    session = requests.Session()
    times = []
    for n in frames:
        begun = time.perf_counter()
        answer = session.get(f"{daemon.url}/get_frame/{n}?quality=80", timeout=10)
        times.append((time.perf_counter() - begun) * 1000)
        assert answer.status_code == 200
    session.close()
    return times


@pytest.mark.solo
def test_a_proxy_being_made_does_not_delay_real_requests(start_daemon: Any, tmp_path: Path) -> None:
    """Real requests' p95 while a maker runs stays within 1.2x of their p95 without one.

    A/B in alternating blocks, so that a change of the machine's other load falls on both sides: each
    round clears the proxies (DELETE /proxies ends the maker) for the "without" block, then starts a
    maker again (POST /proxies?all=1) for the "with" block."""
    still = tmp_path / "still.png"
    Image.effect_mandelbrot((1280, 720), (-2, -1.2, 1, 1.2), 60).convert("RGB").save(still)
    long = video(tmp_path / "long.mp4", seconds=30, size="1280x720")
    db = project(tmp_path, [(still, (0, 0, 1280, 720), 0, 600_000), (long, (0, 0, 640, 360), 600_000, 630_000)])
    # the long source is not made at start (its cost is below this threshold): POST /proxies?all=1 starts it
    daemon = start_daemon(
        "--project",
        str(db),
        "--allowed-roots",
        str(tmp_path),
        "--proxy-min-cost",
        "100000",
        "--frame-cache-bytes",
        "0",
        "--render-ahead",
        "false",
    )
    frames = iter(list(range(0, 18000, 7)))
    timed(daemon, [next(frames) for _ in range(20)])  # warm
    without: list[float] = []
    during: list[float] = []
    for _ in range(8):
        assert requests.delete(daemon.url + "/proxies", headers=daemon.auth, timeout=10).status_code == 200
        assert wait_for(lambda: proxies(daemon)["in_progress"] is None, 10, 0.02)
        without += timed(daemon, [next(frames) for _ in range(40)])
        assert requests.post(daemon.url + "/proxies?all=1", headers=daemon.auth, timeout=10).json()["queued"] == 1
        assert wait_for(lambda: (proxies(daemon)["in_progress"] or {}).get("frames_done"), 20, 0.02), proxies(daemon)
        during += timed(daemon, [next(frames) for _ in range(40)])
        assert proxies(daemon)["in_progress"] is not None, "the maker finished within the block: use a longer source"
    baseline, p95 = percentile(without, 95), percentile(during, 95)
    assert baseline is not None and p95 is not None
    print(
        f"p95 without a maker {baseline:.1f} ms, with one {p95:.1f} ms ({p95 / baseline:.2f}x); "
        f"p50 {percentile(without, 50):.1f} / {percentile(during, 50):.1f} ms"
    )
    assert p95 <= 1.2 * baseline, (p95, baseline)


def test_previewctl_shows_lists_builds_and_clears_proxies(start_daemon: Any, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    (runtime / "flipedit-preview").mkdir(parents=True, mode=0o700)
    source = video(tmp_path / "cheap.mp4", seconds=2, gop=10)
    db = project(tmp_path, [(source, (0, 0, 640, 360), 0, 2000)])
    daemon = start_daemon(
        "--project",
        str(db),
        "--allowed-roots",
        str(tmp_path),
        env={"FLIPEDIT_PREVIEWD_TOKEN_FILE": str(runtime / "flipedit-preview" / "token")},
    )
    owner = {"XDG_RUNTIME_DIR": str(runtime)}

    def previewctl(environ: dict[str, str], *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        return main(["--url", daemon.url, *argv], Env(out, err, environ, False, False)), out.getvalue(), err.getvalue()

    assert wait_for(lambda: proxies(daemon)["skipped"] == 1, 30, 0.2), proxies(
        daemon
    )  # cheap: a keyframe every 10 frames
    code, out, _ = previewctl(owner, "proxies")
    assert code == 0 and out.startswith("proxies: 0 made, 0 queued; disk 0 MB of 8.6 GB"), out
    code, out, err = previewctl({}, "proxies", "build", "--all")  # changes state: the token is needed over TCP
    assert code == 1 and "HTTP 401" in err, err
    code, out, _ = previewctl(owner, "proxies", "build", "--all")
    assert code == 0 and out.startswith("1 source(s) queued"), out
    settled(daemon, 1)
    code, out, _ = previewctl(owner, "proxies", "list")
    assert code == 0 and "1 made" in out and f"{source}  640x360  60/60 frames" in out and "complete" in out, out
    code, out, _ = previewctl(owner, "status")
    assert "proxies     1 made, 0 queued; disk" in out, out
    code, out, _ = previewctl(owner, "health")
    assert "proxies" in out and "1 made" in out, out
    code, out, _ = previewctl(owner, "proxies", "clear", "-o", "json")
    answer = json.loads(out)
    assert code == 0 and answer["removed"] == 1 and answer["proxies"]["disk_bytes"] == 0, answer
    assert daemon.get("/get_frame/3").headers["X-Preview-Source"] == "original"


def test_monitor_shows_a_progress_bar_while_a_proxy_is_made() -> None:
    health = {
        "status": "ok",
        "proxies": {
            "enabled": True,
            "made": 2,
            "queued": 1,
            "failed": 0,
            "disk_bytes": 250_000_000,
            "budget_bytes": 8 << 30,
            "in_progress": {"source": "/m/long.mp4", "frames_done": 300, "frames_total": 1200},
        },
    }
    line = monitor_line(health, MonitorState())
    assert "proxies 2 made, making long.mp4 [#####...............] 300/1200, 1 queued; disk 250 MB of 8.6 GB" in line, (
        line
    )
    assert "proxies" not in monitor_line({"status": "ok", "proxies": {"enabled": True, "made": 2}}, MonitorState())


def owned_daemon(start_daemon: Any, tmp_path: Path, *args: str) -> tuple[Daemon, dict[str, str]]:
    """A daemon whose token is where previewctl looks for it, and the environment that finds it."""
    runtime = tmp_path / "runtime"
    (runtime / "flipedit-preview").mkdir(parents=True, mode=0o700, exist_ok=True)
    daemon = start_daemon(*args, env={"FLIPEDIT_PREVIEWD_TOKEN_FILE": str(runtime / "flipedit-preview" / "token")})
    return daemon, {"XDG_RUNTIME_DIR": str(runtime)}


def run_previewctl(daemon: Daemon, environ: dict[str, str], *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(["--url", daemon.url, *argv], Env(out, err, environ, False, False)), out.getvalue(), err.getvalue()


def test_proxies_built_ahead_for_a_project_not_served_are_used_once_it_is_served(
    start_daemon: Any, tmp_path: Path
) -> None:
    (tmp_path / "served").mkdir()
    served = still_project(tmp_path / "served")
    (tmp_path / "other").mkdir()
    source = video(tmp_path / "other" / "long-gop.mp4", seconds=2)
    other = project(tmp_path / "other", [(source, (0, 0, 640, 360), 0, 2000)])
    # No --allowed-roots: each project's roots are its own folder, so a maker confined to the served project's
    # (tmp_path/served) could not read this source at all.
    daemon, owner = owned_daemon(start_daemon, tmp_path, "--project", str(served), "--proxy-min-cost", "1")
    code, out, err = run_previewctl(daemon, owner, "proxies", "build", "--project", str(other))
    assert code == 0 and out.startswith(f"1 source(s) queued for project {other}; proxies: "), (out, err)
    assert f"\n  {source}\n" in out, out
    made = settled(daemon, 1)
    assert made["failed"] == 0 and made["stored"] == 1, made
    log = daemon.log_once("proxy_done")
    assert f"building proxies ahead for project '{other}': 1 source(s) queued" in log, log[-2000:]
    assert daemon.health()["project"]["path"] == str(served)  # still serving its own project
    assert daemon.get("/get_frame/0").status_code == 200
    code, out, _ = run_previewctl(daemon, owner, "proxies", "build", "--project", str(other), "-o", "json")
    answer = json.loads(out)
    assert code == 0 and answer["project"] == str(other) and answer["queued"] == 0 and answer["sources"] == [], answer
    assert answer["roots"] == [str(tmp_path / "other")], answer  # that project's own roots, the ones its maker had
    daemon.stop()

    # The editor opens that project: its proxy is there, made at the parameters it is served with.
    second = start_daemon("--project", str(other), "--proxy-min-cost", "1")
    assert second.get("/get_frame/37").headers["X-Preview-Source"] == "proxy"
    found = wait_for(lambda: (p := proxies(second))["in_progress"] is None and not p["queued"] and p, 30, 0.2)
    assert found and found["made"] == 0 and found["failed"] == 0, found  # found made, not made again
    assert "proxy_started" not in second.log(), second.log()[-2000:]


def hostile_projects(folder: Path) -> dict[str, tuple[Path | str, int, str]]:
    """name: (PATH, status, what the refusal says), each made for real."""
    folder.mkdir()
    (folder / "good").mkdir()
    good = still_project(folder / "good", db="p.sqlite")
    os.mkfifo(folder / "fifo.sqlite")
    (folder / "link.sqlite").symlink_to(good)
    (folder / "junk.sqlite").write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    rows = still_project(folder / "good", db="rows.sqlite")
    with sqlite3.connect(rows) as conn:
        conn.execute("UPDATE clips SET end_time_on_track_ms = -5, metadata = ?", ("[" * 100_000,))
    outside = still_project(folder / "good", db="outside.sqlite")
    with sqlite3.connect(outside) as conn:
        conn.execute("UPDATE clips SET source_path = '/etc/passwd'")
    huge = still_project(folder / "good", db="huge.sqlite")
    with sqlite3.connect(huge) as conn:
        row = conn.execute("SELECT * FROM clips").fetchone()
        conn.executemany(f"INSERT INTO clips VALUES (NULL{', ?' * (len(row) - 1)})", [row[1:]] * 60)
    endless = folder / "endless.sqlite"  # a view as clips that never yields a row: only the read's deadline ends it
    with sqlite3.connect(endless) as conn:
        conn.execute('CREATE TABLE tracks (id INTEGER PRIMARY KEY, "order" INTEGER, is_visible INTEGER, type TEXT)')
        conn.execute(
            "CREATE VIEW clips AS WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT x AS id, "
            "1 AS track_id, 'video' AS type, '' AS source_path, 0 AS start_time_on_track_ms, "
            "1 AS end_time_on_track_ms, 0 AS start_time_in_source_ms, 1 AS end_time_in_source_ms, "
            "NULL AS metadata FROM n WHERE x < 0"
        )
    return {
        "fifo": (folder / "fifo.sqlite", 422, "a FIFO, not a regular file"),
        "symlink": (folder / "link.sqlite", 422, "a symlink"),
        "directory": (folder, 422, "a directory, not a regular file"),
        "missing": (folder / "none.sqlite", 422, "no such file"),
        "relative": ("good/p.sqlite", 422, "not an absolute path"),
        "not a database": (folder / "junk.sqlite", 422, "cannot be read"),
        "hostile rows": (rows, 422, "1 row(s) break the rules"),
        "media outside its roots": (outside, 403, "'/etc/passwd' is outside the allowed roots"),
        "more clips than the limit": (huge, 422, "more than 50 rows in clips"),
        "a read that never ends": (endless, 422, "cannot be read"),
        "a path longer than the request line": ("/" + "a" * 9000, 414, "request"),
    }


def test_a_hostile_project_is_refused_with_its_reason_and_the_daemon_keeps_serving(
    start_daemon: Any, tmp_path: Path
) -> None:
    (tmp_path / "served").mkdir()
    served = still_project(tmp_path / "served")
    daemon, owner = owned_daemon(
        start_daemon, tmp_path, "--project", str(served), "--max-timeline-clips", "50", "--db-read-timeout", "1"
    )
    auth = daemon.auth
    for name, (path, status, says) in hostile_projects(tmp_path / "hostile").items():
        slow: list[float] = []
        answer: list[requests.Response] = []

        def post(path: Path | str = path, answer: list[requests.Response] = answer) -> None:
            url = f"{daemon.url}/proxies?project={quote(str(path), safe='/')}"
            answer.append(requests.post(url, headers=auth, timeout=30))

        poster = threading.Thread(target=post)
        started = time.monotonic()
        poster.start()
        while poster.is_alive():  # the loop answers while the read goes on (off the loop, as the served one's)
            began = time.monotonic()
            assert daemon.get("/health", timeout=5).status_code == 200
            slow.append(time.monotonic() - began)
            time.sleep(0.05)
        poster.join()
        took = time.monotonic() - started
        got = answer[0]
        assert got.status_code == status and says in got.json()["detail"], (name, got.status_code, got.text)
        assert took < 4, (name, took)  # the read's deadline (1 s) and its grace, never longer
        assert max(slow, default=0) < 0.5, (name, slow)
        assert daemon.get("/get_frame/0").status_code == 200, name
    log = daemon.log_once("no proxies built ahead for project", count=10)
    assert "HTTP 422 project" in log and "HTTP 403 project" in log, log[-3000:]
    assert proxies(daemon)["queued"] == 0 and daemon.health()["project"]["state"] == "ok"

    fifo = str(tmp_path / "hostile" / "fifo.sqlite")
    code, out, err = run_previewctl(daemon, {}, "proxies", "build", "--project", fifo)  # no token over TCP
    assert code == 1 and "HTTP 401" in err, err
    code, out, err = run_previewctl(daemon, owner, "proxies", "build", "--project", fifo)
    assert code == 1 and "HTTP 422" in err and "a FIFO, not a regular file" in err and out == "", err

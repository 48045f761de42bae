"""The event loop never stalls, memory stays bounded, no request can get the daemon killed (issue 12).

A real daemon on a real socket. While hostile input is handled, a probe asks ``/health`` every 50 ms;
its p99 and the daemon's own loop-lag p99 are asserted at 2.5x the issue's figures (100 ms and 50 ms, met on a quiet
machine), a stall bound.
``pytest -s`` prints the figures the README's reliability table quotes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from flipedit_previewd.common.percentiles import percentile
from tests.support.helpers import (
    Daemon,
    endless_clips_view,
    failpoint,
    many_stills_timeline,
    one_track_project,
    repeated,
    report,
    solid_png,
    still_project,
    wait_for,
)

# The goals are /health p99 < 100 ms and loop lag p99 < 50 ms; they hold on a quiet machine
# (figures printed and kept in the README). The asserts allow 2.5x for a shared, noisy CI machine: the
# bugs they guard against stalled the loop for seconds (60 s for the 4 MB path, 3.2 s for a recursive view).
HEALTH_P99_S = 0.250
LAG_P99_MS = 125.0


@contextmanager
def health_probe(daemon: Daemon, interval: float = 0.05) -> Iterator[dict[str, Any]]:
    """Ask /health every ``interval`` on a keep-alive connection; yields the figures when done."""
    times: list[float] = []
    failures: list[str] = []

    def ask(session: requests.Session) -> None:
        t0 = time.monotonic()
        try:
            session.get(daemon.url + "/health", timeout=10).raise_for_status()
        except requests.RequestException as exc:
            failures.append(repr(exc))
        times.append(time.monotonic() - t0)

    figures: dict[str, Any] = {}
    try:
        with repeated(ask, interval):
            yield figures
    finally:
        figures.update(
            samples=len(times), failures=failures, p99_s=percentile(times, 99), max_s=max(times, default=None)
        )
        figures["lag"] = requests.get(daemon.url + "/health", timeout=10).json()["loop_lag"]


def assert_responsive(figures: dict[str, Any]) -> None:
    assert not figures["failures"], figures["failures"][:3]
    assert figures["samples"] >= 10
    assert figures["p99_s"] < HEALTH_P99_S, figures
    assert figures["lag"]["p99_ms"] < LAG_P99_MS, figures["lag"]


@pytest.fixture
def red_project(tmp_path: Path) -> Path:
    return still_project(tmp_path)


# --- hostile timelines over PUT --------------------------------------------------------------


@pytest.mark.solo
def test_4mb_path_timeline_is_refused_without_stalling_the_loop(
    start_daemon: Any, red_project: Path, tmp_path: Path
) -> None:
    daemon = start_daemon("--project", str(red_project))
    path = str(tmp_path) + "/" + "x/.." * 900_000 + "/red.png"  # 3.6 MB: resolving it took the old loop a minute
    body = json.dumps({"tracks": [{"clips": [{"source_path": path, "start_on_track_ms": 0, "end_on_track_ms": 1000}]}]})
    assert len(body) > 3_500_000
    with health_probe(daemon) as figures:
        t0 = time.monotonic()
        r = requests.put(daemon.url + "/timeline", data=body, headers=daemon.auth, timeout=60)
        put_s = time.monotonic() - t0
        time.sleep(0.5)
    report(
        "loop",
        "4 MB path timeline",
        status=r.status_code,
        put_s=round(put_s, 2),
        health_p99_ms=round(figures["p99_s"] * 1000, 1),
        lag_p99_ms=figures["lag"]["p99_ms"],
    )
    assert r.status_code == 413 and r.json()["limit"] == "path_max", r.text[:300]
    assert_responsive(figures)
    assert daemon.get("/get_frame/0").status_code == 200


@pytest.mark.solo
def test_4096_clips_at_largest_canvas_are_refused_naming_the_limit(
    start_daemon: Any, red_project: Path, tmp_path: Path
) -> None:
    daemon = start_daemon("--project", str(red_project))
    red = str(tmp_path / "red.png")
    clips = [
        {
            "source_path": red,
            "start_on_track_ms": 0,
            "end_on_track_ms": 10_000,
            "rect": {"left": 0, "top": 0, "width": 8192, "height": 8192},
        }
        for _ in range(4096)
    ]
    body = json.dumps({"canvas": {"width": 8192, "height": 8192}, "tracks": [{"clips": clips}]})
    with health_probe(daemon) as figures:
        r = requests.put(daemon.url + "/timeline", data=body, headers=daemon.auth, timeout=60)
        frame = daemon.get("/get_frame/0")
        time.sleep(0.5)
    report(
        "loop",
        "4096 clips at 8192x8192",
        status=r.status_code,
        health_p99_ms=round(figures["p99_s"] * 1000, 1),
        lag_p99_ms=figures["lag"]["p99_ms"],
    )
    assert r.status_code == 413 and r.json()["limit"] == "max_layer_pixels" and "max_layer_pixels" in r.json()["detail"]
    assert frame.status_code == 200  # the database's timeline still serves
    assert_responsive(figures)


@pytest.mark.solo
def test_timeline_naming_50000_files(start_daemon: Any, red_project: Path, tmp_path: Path) -> None:
    media = tmp_path / "many"
    media.mkdir()
    for i in range(50_000):
        (media / f"{i}.png").touch()
    daemon = start_daemon(
        "--project", str(red_project), "--allowed-roots", str(tmp_path), "--max-body-bytes", str(16 << 20)
    )
    body = json.dumps(many_stills_timeline(media))
    statuses: list[int] = []
    with health_probe(daemon) as figures:
        r = requests.put(daemon.url + "/timeline", data=body, headers=daemon.auth, timeout=120)
        for frame in (0, 10_000, 49_999, 1, 2):
            statuses.append(daemon.get(f"/get_frame/{frame}", timeout=30).status_code)
        debug = daemon.get("/debug/timeline", timeout=60)
        time.sleep(1.0)  # a media re-stat of 50,000 files happens meanwhile
        statuses.append(daemon.get("/get_frame/3", timeout=30).status_code)
    report(
        "loop",
        "50,000 files",
        put=r.status_code,
        frames=statuses,
        health_p99_ms=round(figures["p99_s"] * 1000, 1),
        lag_p99_ms=figures["lag"]["p99_ms"],
    )
    assert r.status_code == 200 and r.json()["clips"] == 50_000, r.text[:300]
    assert statuses == [200] * 6  # empty files: placeholders
    assert debug.status_code == 200 and debug.json()["clips_count"] == 50_000
    assert_responsive(figures)


# --- project databases as untrusted input ------------------------------------------------------


def _locking_writer(db: Path, seconds: float, locked: threading.Event) -> None:
    conn = sqlite3.connect(str(db), isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("UPDATE clips SET preview_width = preview_width + 1")
    locked.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


@pytest.mark.solo
def test_database_locked_10s_and_sighup_during_the_lock(start_daemon: Any, red_project: Path) -> None:
    daemon = start_daemon("--project", str(red_project))
    assert daemon.get("/get_frame/0").status_code == 200
    locked = threading.Event()
    writer = threading.Thread(target=_locking_writer, args=(red_project, 10.0, locked))
    statuses: list[int] = []
    states: set[str] = set()
    with health_probe(daemon) as figures:
        writer.start()
        assert locked.wait(5)
        os.utime(red_project)  # the file changed: the daemon must try to read it, and meet the lock
        end = time.monotonic() + 10
        hup = False
        while time.monotonic() < end:
            if not hup and time.monotonic() > end - 7:
                daemon.signal(signal.SIGHUP)
                hup = True
            statuses.append(daemon.get(f"/get_frame/{len(statuses) % 5}", timeout=30).status_code)
            states.add(daemon.health()["project"]["state"])
            time.sleep(0.2)
        writer.join()
    report(
        "loop",
        "database locked 10 s + SIGHUP",
        frames=len(statuses),
        states=sorted(states),
        health_p99_ms=round(figures["p99_s"] * 1000, 1),
        lag_p99_ms=figures["lag"]["p99_ms"],
    )
    assert set(statuses) == {200}
    assert "locked" in states  # /health tells the truth meanwhile
    assert wait_for(lambda: daemon.health()["project"]["state"] == "ok", 10)
    assert_responsive(figures)


def _many_clips(db: Path, count: int = 100_000) -> None:
    conn = sqlite3.connect(str(db))
    with conn:
        row = conn.execute("SELECT track_id, name, type, source_path FROM clips LIMIT 1").fetchone()
        conn.executemany(
            "INSERT INTO clips (track_id, name, type, source_path, start_time_in_source_ms, end_time_in_source_ms, "
            "start_time_on_track_ms, end_time_on_track_ms, metadata) VALUES (?, ?, ?, ?, 0, 40, ?, ?, '{}')",
            ((row[0], row[1], row[2], row[3], i * 40, i * 40 + 40) for i in range(count)),
        )
    conn.close()


def _text_in_number(db: Path) -> None:
    conn = sqlite3.connect(str(db))
    with conn:
        conn.execute(
            "INSERT INTO clips (track_id, name, type, source_path, start_time_in_source_ms, end_time_in_source_ms, "
            "start_time_on_track_ms, end_time_on_track_ms, metadata) SELECT track_id, name, type, source_path, 0, "
            "1000, "
            "'abc', 2000, '{}' FROM clips LIMIT 1"
        )
    conn.close()


def _bad_rects(db: Path) -> None:
    conn = sqlite3.connect(str(db))
    with conn:
        base = (
            "INSERT INTO clips (track_id, name, type, source_path, start_time_in_source_ms, end_time_in_source_ms, "
            "start_time_on_track_ms, end_time_on_track_ms, metadata, preview_position_x, preview_position_y, "
            "preview_width, "
            "preview_height) SELECT track_id, name, type, source_path, 0, 1000, 0, 100000, ?, 0, 0, ?, 100 FROM clips "
            "LIMIT 1"
        )
        conn.execute(base, ('{"previewRect": {"left": NaN, "top": 0, "width": 10, "height": 10}}', 100.0))
        conn.execute(base, ("{}", 9e999))  # SQLite stores 9e999 as Inf (and NaN as NULL, hence NaN in the JSON)
    conn.close()


BAD_DATABASES: dict[str, tuple[Callable[[Path], None], set[str]]] = {
    "recursive view as clips": (endless_clips_view, {"timeout"}),
    "100k clips": (_many_clips, {"refused"}),
    "text in a number column": (_text_in_number, {"partial"}),
    "NaN and 9e999 rectangles": (_bad_rects, {"partial"}),
}


@pytest.mark.solo
@pytest.mark.parametrize("case", sorted(BAD_DATABASES))
def test_bad_project_database(start_daemon: Any, red_project: Path, case: str) -> None:
    spoil, expected_states = BAD_DATABASES[case]
    spoil(red_project)
    t0 = time.monotonic()
    daemon = start_daemon("--project", str(red_project))
    started_s = time.monotonic() - t0
    with health_probe(daemon) as figures:
        health = daemon.health()
        frames = [daemon.get(f"/get_frame/{f}", timeout=30).status_code for f in range(3)]
        os.utime(red_project)  # changed again: read again, still no stall
        frames += [daemon.get(f"/get_frame/{f}", timeout=30).status_code for f in range(3, 6)]
        time.sleep(0.5)
    project = health["project"]
    report(
        "loop",
        f"bad database: {case}",
        started_s=round(started_s, 2),
        state=project["state"],
        error=project["error"][:120],
        health_p99_ms=round(figures["p99_s"] * 1000, 1),
        lag_p99_ms=figures["lag"]["p99_ms"],
    )
    assert project["state"] in expected_states, project
    assert health["status"] == "degraded"
    assert frames == [200] * 6
    assert_responsive(figures)


@pytest.mark.solo
def test_fifo_as_project_path(start_daemon: Any, tmp_path: Path) -> None:
    fifo = tmp_path / "project.sqlite"
    os.mkfifo(fifo)
    daemon = start_daemon("--project", str(fifo))
    with health_probe(daemon) as figures:
        health = daemon.health()
        frame = daemon.get("/get_frame/0")
        time.sleep(0.5)
    report("loop", "FIFO as project", state=health["project"]["state"], error=health["project"]["error"])
    assert health["project"]["state"] == "unreadable" and "not a regular file" in health["project"]["error"]
    assert frame.status_code == 200
    assert_responsive(figures)
    assert daemon.stop() == 0  # SIGTERM is obeyed


# --- deadlines, budgets, worker faults ----------------------------------------------------------


@pytest.mark.solo
def test_queued_renders_answered_503_at_their_deadline(start_daemon: Any, red_project: Path) -> None:
    daemon = start_daemon(
        "--project", str(red_project), "--workers", "1", "--queue-timeout", "0.5", env=failpoint("sleep:1")
    )
    results: list[tuple[int, float]] = []

    def fetch(frame: int) -> None:
        t0 = time.monotonic()
        r = requests.get(f"{daemon.url}/get_frame/{frame}", timeout=30)
        results.append((r.status_code, time.monotonic() - t0))

    with ThreadPoolExecutor(max_workers=30) as pool:
        list(pool.map(fetch, range(200, 230)))
    late = [round(t, 3) for s, t in results if s == 503]
    report("loop", "deadline by timer", statuses=sorted({s for s, _ in results}), n503=len(late), worst_503_s=max(late))
    assert {s for s, _ in results} <= {200, 503} and len(late) >= 25
    assert max(late) < 0.6, sorted(late)[-5:]


@pytest.mark.solo
def test_stuck_renders_get_504_within_budget_and_the_frame_is_refused_at_once(
    start_daemon: Any, red_project: Path
) -> None:
    daemon = start_daemon(
        "--project", str(red_project), "--render-budget", "1", "--hang-threshold", "3", env=failpoint("hang")
    )
    results: list[tuple[int, float, str]] = []

    def fetch(frame: int) -> None:
        t0 = time.monotonic()
        r = requests.get(f"{daemon.url}/get_frame/{frame}", timeout=60)
        results.append((r.status_code, time.monotonic() - t0, r.text[:200]))

    with health_probe(daemon) as figures:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(fetch, (1, 2)))
        t0 = time.monotonic()
        again = daemon.get("/get_frame/1")
        again_s = time.monotonic() - t0
        health = daemon.health()
    report(
        "loop",
        "stuck render on every worker",
        results=[(s, round(t, 2)) for s, t, _ in results],
        again_s=round(again_s, 3),
        health_p99_ms=round(figures["p99_s"] * 1000, 1),
        replaced=health["counters"]["workers_replaced"],
    )
    assert [s for s, _, _ in results] == [504, 504], results
    assert max(t for _, t, _ in results) < 1 + 1.0  # the budget, plus the kill and a slow machine's slack
    assert again.status_code == 504 and again.json()["limit"] == "render_budget" and again_s < 0.5
    assert health["counters"]["workers_replaced"] >= 2 and health["status"] != "degraded" or health["capacity"] == 2
    assert not figures["failures"] and figures["p99_s"] < HEALTH_P99_S
    assert "render_budget" in daemon.log_once("render_budget")


def test_worker_killed_while_idle_next_request_200(start_daemon: Any, red_project: Path) -> None:
    daemon = start_daemon("--project", str(red_project), "--workers", "1")
    assert daemon.get("/get_frame/0").status_code == 200
    pid = daemon.health()["workers"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    r = daemon.get("/get_frame/1")
    assert r.status_code == 200, r.text
    assert daemon.health()["workers"][0]["pid"] != pid
    assert "found dead while idle" in daemon.log_once("found dead while idle")


def test_source_that_crashes_its_worker_becomes_a_placeholder(start_daemon: Any, tmp_path: Path) -> None:
    bad = solid_png(tmp_path / "crashy.png", (64, 64), (0, 0, 255))
    good = solid_png(tmp_path / "good.png", (64, 64), (0, 255, 0))
    db = tmp_path / "project.sqlite"
    one_track_project(
        db,
        [
            {"source": bad, "rect": (0, 0, 640, 360), "start": 0, "end": 1000},
            {"source": good, "rect": (0, 0, 640, 360), "start": 1000, "end": 2000},
        ],
    )
    daemon = start_daemon("--project", str(db), env=failpoint("crash:crashy"))
    statuses = {f: daemon.get(f"/get_frame/{f}").status_code for f in (0, 1, 2, 40, 41, 3, 4, 42)}
    log = daemon.log_settled()
    deaths = log.count("died rendering frame")
    report("loop", "crashing source", statuses=statuses, worker_deaths=deaths)
    assert set(statuses.values()) == {200}
    assert deaths == 2, log[-3000:]
    assert "crashed the renderer twice" in log
    os.utime(bad, ns=(time.time_ns(), time.time_ns() + 10**9))  # the file changed: another chance (and two crashes)
    time.sleep(0.6)  # media are re-stat'ed at most every 0.5 s
    assert daemon.get("/get_frame/5").status_code == 200
    assert daemon.log_settled().count("died rendering frame") == 4


# --- back-pressure and connection limits ---------------------------------------------------------


def _pss_kb(pid: int) -> int:
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    pids += [int(c) for c in children]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def _p95(daemon: Daemon, seconds: float) -> float:
    times: list[float] = []
    end = time.monotonic() + seconds
    n = 0
    with requests.Session() as session:
        while time.monotonic() < end:
            n += 1
            t0 = time.monotonic()
            assert session.get(f"{daemon.url}/get_frame/{n % 50}?width={320 + n % 7}", timeout=30).status_code == 200
            times.append(time.monotonic() - t0)
    return percentile(times, 95) or 0.0


@pytest.mark.solo
def test_2000_pipelined_requests_read_by_nobody(start_daemon: Any, red_project: Path) -> None:
    # Caches are bounded by their own settings (frame_cache_bytes, source_cache_bytes per worker), whatever
    # the clients do; kept small here so that what is measured is what the connection costs.
    daemon = start_daemon(
        "--project", str(red_project), "--frame-cache-bytes", str(4 << 20), "--source-cache-bytes", str(4 << 20)
    )
    assert daemon.proc is not None
    _p95(daemon, 2)  # warm
    unloaded = _p95(daemon, 5)
    before = _pss_kb(daemon.proc.pid)
    hog = socket.create_connection(("127.0.0.1", daemon.port))
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    requests_blob = b"".join(
        f"GET /get_frame/{i % 300}?width={1000 + i} HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\n\r\n".encode()
        for i in range(2000)
    )
    sender = threading.Thread(target=lambda: _send_quietly(hog, requests_blob))
    sender.start()
    time.sleep(3)
    paused_at = daemon.health()["counters"]["completed"]
    time.sleep(2)
    # Nobody else asks: without back-pressure the daemon would still be rendering the hog's requests.
    renders_while_paused = daemon.health()["counters"]["completed"] - paused_at
    loaded = _p95(daemon, 5)
    after = _pss_kb(daemon.proc.pid)
    hog.close()
    sender.join(10)
    unloaded = (unloaded + _p95(daemon, 5)) / 2  # before and after: one quiet moment on a shared machine is no baseline
    growth_mb = (after - before) / 1024
    report(
        "loop",
        "2,000 pipelined, never read",
        pss_before_mb=round(before / 1024, 1),
        growth_mb=round(growth_mb, 1),
        renders_while_paused=renders_while_paused,
        p95_unloaded_ms=round(unloaded * 1000, 1),
        p95_loaded_ms=round(loaded * 1000, 1),
        ratio=round(loaded / unloaded, 2),
    )
    assert growth_mb < 64
    assert renders_while_paused <= 1  # reading and serving stopped once the answers backed up
    assert loaded <= max(2 * unloaded, unloaded + 0.025)  # 2x, or 25 ms on a noisy machine: a stall is far more


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def test_max_connections_plus_100_get_503_and_no_emfile(tmp_path: Path, red_project: Path) -> None:
    import resource

    def low_nofile() -> None:  # the usual soft limit is 1024; start lower than max_connections needs
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    daemon = Daemon(["--project", str(red_project), "--max-connections", "300"], None, tmp_path)
    try:
        daemon.start(preexec_fn=low_nofile)
        held = []
        for _ in range(300):  # each in the middle of a request: no slot can be freed for a newcomer (intake.py)
            held.append(socket.create_connection(("127.0.0.1", daemon.port)))
            held[-1].sendall(b"GET /health HTTP/1.1\r\n")
            if len(held) % 25 == 0:
                time.sleep(
                    0.02
                )  # the daemon reads them before it accepts far more (a silent batch > half the slots is trimmed)
        time.sleep(0.5)
        extra = [socket.create_connection(("127.0.0.1", daemon.port), timeout=5) for _ in range(100)]
        answers = []
        for sock in extra:
            data = b""
            try:
                while chunk := sock.recv(4096):
                    data += chunk
            except OSError as exc:
                data += repr(exc).encode()
            answers.append(data)
            sock.close()
        statuses = [a.split(b" ", 2)[1] if a.startswith(b"HTTP/1.1 ") else a[:40] for a in answers]
        served = []
        for sock in held[:20]:
            sock.sendall(b"Host: 127.0.0.1:%d\r\n\r\n" % daemon.port)
            served.append(sock.recv(200).split(b" ", 2)[1])
        held.pop().close()  # a free slot for the health request below
        time.sleep(0.3)
        health = daemon.health()
        report(
            "loop",
            "max_connections + 100",
            statuses=sorted(set(statuses)),
            held_served=sorted(set(served)),
            connections=health["connections"],
            refused=health["rejections"]["by_reason"],
        )
        assert statuses == [b"503"] * 100
        assert served == [b"200"] * 20
        assert health["rejections"]["by_reason"].get("connections") == 100
        for sock in held:
            sock.close()
        assert wait_for(lambda: daemon.health()["connections"] <= 1, 5)
        fds = len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))
        assert fds < 100, fds  # no descriptor kept for refused or closed connections
    finally:
        daemon.stop()
    text = daemon.log()
    assert "Too many open files" not in text and "EMFILE" not in text and "Traceback" not in text, text[-2000:]

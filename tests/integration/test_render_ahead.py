"""Render-ahead on a real daemon: playback is followed, speculation stops when it stops paying,
and real requests never wait behind it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from flipedit_previewd.demo.fixtures import set_clip_rect
from tests.support.helpers import closed_loop, failpoint, still_project, wait_for


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return still_project(tmp_path, rect=(100, 100, 200, 100), clip="c")


def ahead(daemon: Any) -> dict[str, Any]:
    return dict(daemon.health()["render_ahead"])


def play(
    session: requests.Session, url: str, frames: range, fps: float = 30.0, query: str = "?width=320"
) -> list[requests.Response]:
    """Like the editor's playback: one request per frame at the frame rate, never two at once."""
    answers = []
    for frame in frames:
        started = time.monotonic()
        answers.append(session.get(f"{url}/get_frame/{frame}{query}", timeout=10))
        time.sleep(max(0.0, 1 / fps - (time.monotonic() - started)))
    return answers


def closed_loop_players(url: str, clients: int, seconds: float) -> list[int]:
    """``clients`` players, each at its own width, asking consecutive frames back to back; every status."""
    return closed_loop(url, clients, seconds, lambda client, frame: f"/get_frame/{frame}?width={320 + 16 * client}")


def test_playback_is_served_from_frames_rendered_ahead(start_daemon: Any, project: Path) -> None:
    daemon = start_daemon("--project", str(project), "--workers", "2")
    with requests.Session() as session:
        answers = play(session, daemon.url, range(0, 60))
    assert all(a.status_code == 200 for a in answers)
    hits = [a.headers["X-Cache"] == "hit" for a in answers]
    assert not any(hits[:3])  # nothing can be predicted before the pattern exists
    assert sum(hits[10:]) >= 25, hits  # the rest of the playback comes from the cache, not from renders
    stats = ahead(daemon)
    assert stats["rendered"] >= 25 and stats["hits"] >= 25 and stats["enabled"]
    metrics = daemon.get("/metrics").text
    assert "flipedit_preview_render_ahead_hits" in metrics


def test_render_ahead_off_renders_every_frame_on_demand(start_daemon: Any, project: Path) -> None:
    daemon = start_daemon("--project", str(project), "--render-ahead", "false")
    with requests.Session() as session:
        answers = play(session, daemon.url, range(0, 20))
    assert all(a.headers["X-Cache"] == "miss" for a in answers)
    assert ahead(daemon)["rendered"] == 0 and not ahead(daemon)["enabled"]


def test_speculation_stops_when_the_timeline_revision_changes(start_daemon: Any, project: Path) -> None:
    # Slow renders (0.3 s: still a walk, requests under 0.5 s apart) so guesses are queued at the change.
    daemon = start_daemon(
        "--project", str(project), "--workers", "2", "--render-ahead-frames", "8", env=failpoint("sleep:0.3")
    )
    with requests.Session() as session:
        old_revision = play(session, daemon.url, range(0, 3))[-1].headers["ETag"].split("-")[0]
        assert wait_for(lambda: ahead(daemon)["running"] >= 1, 3, 0.02)
        before = ahead(daemon)
        assert before["queued"] >= 2, before
        conn = sqlite3.connect(project)
        set_clip_rect(conn, 3, 1, (0, 0, 50, 50))
        conn.commit()
        conn.close()

        # The first request that sees the new revision drops every queued guess for the old one.
        def new_revision_seen() -> bool:
            answer = session.get(f"{daemon.url}/get_frame/500?width=320", timeout=10)
            return answer.status_code == 200 and answer.headers["ETag"].split("-")[0] != old_revision

        assert wait_for(new_revision_seen, 5, 0.01)
    after_change = ahead(daemon)
    # Each guess queued before the change was started before the change was seen, or dropped (by the
    # change, or by its TTL while another ran); none is left queued.
    left = sum(after_change[k] - before[k] for k in ("started", "dropped", "taken_over"))
    assert after_change["queued"] == 0, (before, after_change)
    assert left >= before["queued"], (before, after_change)
    time.sleep(0.5)
    settled = ahead(daemon)["rendered"] + ahead(daemon)["stale"]
    time.sleep(1.0)
    final = ahead(daemon)
    assert final["rendered"] + final["stale"] == settled  # no more speculative work of the old revision


def test_speculation_stops_when_playback_stops(start_daemon: Any, project: Path) -> None:
    daemon = start_daemon(
        "--project", str(project), "--workers", "2", "--render-ahead-frames", "30", env=failpoint("sleep:0.1")
    )
    with requests.Session() as session:
        play(session, daemon.url, range(0, 4))
    # Guesses not started within their 1 s lifetime are dropped; at most the running one finishes.
    assert wait_for(lambda: ahead(daemon)["queued"] == 0 and ahead(daemon)["running"] == 0, 5, 0.1)
    rendered = ahead(daemon)["rendered"]
    assert rendered < 30 - 4
    time.sleep(1.5)
    assert ahead(daemon)["rendered"] == rendered


@pytest.mark.solo
def test_a_real_request_never_waits_behind_more_than_one_guess(start_daemon: Any, project: Path) -> None:
    # One worker, and it may render ahead: the worst case for a real request.
    daemon = start_daemon(
        "--project",
        str(project),
        "--workers",
        "1",
        "--render-ahead-workers",
        "1",
        "--render-ahead-frames",
        "8",
        env=failpoint("sleep:0.3"),
    )
    with requests.Session() as session:
        play(session, daemon.url, range(0, 3))
        assert wait_for(lambda: ahead(daemon)["running"] == 1, 2, 0.02)
        response = session.get(f"{daemon.url}/get_frame/700?width=320", timeout=10)
    assert response.status_code == 200 and response.headers["X-Cache"] == "miss"
    # Behind all eight guesses it would wait 2.4 s; behind the one running at most 0.3 s.
    assert float(response.headers["X-Queue-Ms"]) < 600
    assert ahead(daemon)["queued"] < 8


def test_no_speculative_work_under_overload(start_daemon: Any, project: Path) -> None:
    daemon = start_daemon("--project", str(project), "--workers", "1", "--queue-size", "1", env=failpoint("sleep:0.05"))
    # First one player alone: the detector recognises a playback here and guesses (so that "no guess" below
    # is the overload's doing, not a detector that sees nothing).
    with requests.Session() as session:
        play(session, daemon.url, range(0, 10))
    assert wait_for(lambda: ahead(daemon)["planned"] > 0, 3, 0.05)
    assert wait_for(lambda: ahead(daemon)["running"] == 0 and ahead(daemon)["queued"] == 0, 10, 0.05)
    before = ahead(daemon)
    # Then eight, each at its own panel size, back to back: a flood. Most are refused in data_received,
    # before render-ahead sees them; the few let through find the daemon overloaded and plan nothing.
    statuses = closed_loop_players(daemon.url, 8, 3.0)
    assert statuses.count(503) > 50 and statuses.count(200) > 5
    stats = ahead(daemon)
    assert stats["started"] == before["started"] and stats["rendered"] == before["rendered"], (before, stats)
    assert stats["planned"] == before["planned"], (before, stats)


def test_output_parameters_that_do_not_change_the_bytes_share_one_render(start_daemon: Any, project: Path) -> None:
    daemon = start_daemon("--project", str(project), "--render-ahead", "false")
    with requests.Session() as session:
        pngs = [session.get(f"{daemon.url}/get_frame/3?format=png&quality={q}", timeout=10) for q in range(1, 96)]
        assert {r.status_code for r in pngs} == {200} and len({r.headers["ETag"] for r in pngs}) == 1
        assert [r.headers["X-Cache"] for r in pngs].count("miss") == 1  # one render for 95 qualities
        # Explicit defaults (canvas size, default quality) are the same frame as none at all.
        plain = session.get(f"{daemon.url}/get_frame/4", timeout=10)
        explicit = session.get(f"{daemon.url}/get_frame/4?width=1280&height=720&quality=85&format=jpeg", timeout=10)
        assert plain.headers["ETag"] == explicit.headers["ETag"] and explicit.headers["X-Cache"] == "hit"


def test_guesses_render_below_the_priority_of_real_renders(start_daemon: Any, project: Path, tmp_path: Path) -> None:
    # A guess at the same priority as the event loop's answers and the other worker's real render takes
    # their CPU (bench/render_ahead.py: playback hits waiting for a core); it runs on a lowered thread.
    record = tmp_path / "nice.log"
    daemon = start_daemon("--project", str(project), "--workers", "2", env=failpoint(f"nice:{record}"))
    with requests.Session() as session:
        play(session, daemon.url, range(0, 30))
    assert wait_for(lambda: ahead(daemon)["running"] == 0, 5, 0.05)
    seen: dict[str, set[int]] = {}
    for kind, nice in (line.split() for line in record.read_text().splitlines()):
        seen.setdefault(kind, set()).add(int(nice))
    assert seen["ahead"] and seen["real"], seen
    assert min(seen["ahead"]) >= max(seen["real"]) + 10, seen


def test_no_guessing_while_real_clients_keep_every_worker_busy(start_daemon: Any, project: Path) -> None:
    # Three editors each playing at its own size on two workers, without any refusal: every worker is
    # needed for real frames, so a guess could only take one from them (191 -> 154 frames/s measured).
    daemon = start_daemon("--project", str(project), "--workers", "2", env=failpoint("sleep:0.05"))
    statuses = closed_loop_players(daemon.url, 3, 3.0)
    assert statuses.count(200) == len(statuses) > 30
    stats = ahead(daemon)
    assert stats["suppressed"] > 0
    assert stats["started"] <= len(statuses) // 10, (stats, len(statuses))

"""app/health.py driven directly: the /health document's fields, read from the parts it is handed, and
each cause of "degraded" shown with what to do about it. No worker process: the pool is never started
(a hung worker is a ``Worker`` record put in it); no socket."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from flipedit_previewd.config.schema import ConfigError
from flipedit_previewd.http.lifecycle import Lifecycle
from flipedit_previewd.render.pool import Worker, WorkerState
from tests.support.app_parts import AppParts
from tests.support.helpers import run, still_project

FIELDS = {
    "status",
    "queue_size",
    "active_requests",
    "max_concurrent",
    "queue_capacity",
    "in_flight",
    "capacity",
    "connections",
    "max_connections",
    "rate_per_s",
    "rejected_last_minute",
    "counters",
    "latency_ms",
    "workers",
    "sandbox",
    "project",
    "cache",
    "render_ahead",
    "proxies",
    "keepalive_timeout_s",
    "restart_pending",
    "config_error",
    "loop_lag",
    "rejections",
    "client_errors",
    "offload",
    "media_problems",
    "media_roots",
    "media_roots_skipped",
    "media_roots_missing",
    "uptime_s",
    "version",
    "pid",
}


class Process:
    """What /health reads of a worker's process (and what the pool's stop calls: its pipe is this too)."""

    pid = 4242

    def is_alive(self) -> bool:
        return True

    def join(self, timeout: float | None = None) -> None: ...

    def kill(self) -> None: ...

    def send(self, message: object) -> None: ...

    def close(self) -> None: ...


def hung_worker(parts: AppParts, index: int = 0) -> Worker:
    worker = Worker(
        index,
        Process(),
        Process(),
        state=WorkerState.RENDERING,  # type: ignore[arg-type]
        since=time.monotonic() - 2 * parts.config.hang_threshold,
        frame=17,
    )
    parts.pool.workers.append(worker)
    return worker


def test_the_document_has_every_field_the_editor_and_previewctl_read(parts: AppParts) -> None:
    document = parts.health.report()
    assert set(document) == FIELDS
    assert document["status"] == "ok" and document["config_error"] is None and document["restart_pending"] == []
    assert (document["max_concurrent"], document["capacity"], document["queue_capacity"]) == (2, 2, 20)
    assert document["project"]["path"] == parts.project.source.path and document["project"]["state"] == "ok"
    assert document["project"]["clips"] == 1 and document["project"]["following"] is None
    assert document["latency_ms"]["samples"] == 0 and document["workers"] == [] and document["media_problems"] == []


def test_the_document_reads_the_parts_it_is_handed(parts: AppParts) -> None:
    parts.stats.count("rendered")
    parts.stats.latencies.extend([10.0, 20.0, 30.0])
    parts.cache.put("etag", (b"12345", "image/jpeg", ""), 5)
    parts.cache.get("etag")
    parts.client_errors.note(404, "GET /nope")
    parts.rejections.add("rejected", "queue")
    parts.health.open_connections = lambda: 3
    document = parts.health.report()
    assert document["counters"]["outcome_rendered"] == 1 and document["counters"]["admitted"] == 0
    assert document["latency_ms"]["samples"] == 3 and document["latency_ms"]["p50"] == 20.0
    assert document["cache"] == {"frames": 1, "bytes": parts.cache.size, "hits": 1, "misses": 0}
    assert document["client_errors"] == {"404": 1} and document["rejections"] == {"total": 1, "by_reason": {"queue": 1}}
    assert document["connections"] == 3


def test_queue_counts_come_from_the_dispatchers_snapshot(parts: AppParts) -> None:
    async def scenario() -> dict[str, Any]:
        parts.admission.bind(asyncio.get_running_loop())
        parts.admission.submit((1, "spec"))
        parts.admission.submit((2, "spec"))
        return parts.health.report()

    document = run(scenario())
    assert document["queue_size"] == 2 and document["active_requests"] == 0 and document["counters"]["admitted"] == 2


# --- degraded, and why ----------------------------------------------------------------------------


def test_no_project_is_degraded_and_says_how_to_open_one(tmp_path: Path) -> None:
    parts = AppParts("")
    try:
        document = parts.health.report()
        assert document["status"] == "degraded" and document["project"]["state"] == "none"
        assert "Open a project in FlipEdit, or pass --project FILE." in document["project"]["error"]
    finally:
        parts.close()


def test_an_unreadable_project_is_degraded_with_its_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"this is not a database" * 100)
    parts = AppParts(broken)
    try:
        project = parts.health.report()["project"]
        assert parts.health.report()["status"] == "degraded"
        assert project["state"] == "unreadable" and project["error"] and project["path"] == str(broken)
    finally:
        parts.close()


def test_a_configuration_refused_on_reload_is_degraded_and_names_key_file_and_line(parts: AppParts) -> None:
    parts.running.rejected = ConfigError(
        "previewd.toml line 2: queue_size: not a string",
        source="file",
        key="queue_size",
        file="/etc/previewd.toml",
        line=2,
    )
    document = parts.health.report()
    assert document["status"] == "degraded"
    assert document["config_error"] == {
        "message": "previewd.toml line 2: queue_size: not a string",
        "source": "file",
        "key": "queue_size",
        "file": "/etc/previewd.toml",
        "line": 2,
    }
    parts.running.rejected = None  # a good reload
    assert parts.health.report()["status"] == "ok" and parts.health.report()["config_error"] is None


def test_a_hung_worker_is_degraded_lowers_the_capacity_and_is_shown_hung(parts: AppParts) -> None:
    hung_worker(parts)
    document = parts.health.report()
    assert document["status"] == "degraded" and document["capacity"] == parts.config.workers - 1
    assert document["workers"][0]["state"] == "hung" and document["workers"][0]["frame"] == 17


def test_a_worker_rendering_within_the_threshold_is_not_hung(parts: AppParts) -> None:
    worker = hung_worker(parts)
    worker.since = time.monotonic()
    document = parts.health.report()
    assert document["status"] == "ok" and document["capacity"] == 2 and document["workers"][0]["state"] == "rendering"


def test_a_configured_media_root_that_does_not_exist_is_listed(tmp_path: Path) -> None:
    missing = str(tmp_path / "gone")
    parts = AppParts(still_project(tmp_path), allowed_roots=(missing,))
    try:
        parts.project.allowed_roots()
        assert missing in parts.health.report()["media_roots_missing"]
    finally:
        parts.close()


# --- the other words ------------------------------------------------------------------------------


def test_an_overload_outranks_degraded_and_stopping_outranks_both(parts: AppParts) -> None:
    hung_worker(parts)
    parts.stats.note_rejection()
    assert parts.health.report()["status"] == "overloaded"
    parts.lifecycle.enter(Lifecycle.DRAINING)
    assert parts.health.report()["status"] == "stopping"


@pytest.mark.parametrize("restart", [("workers",), ()])
def test_restart_only_settings_changed_are_listed(parts: AppParts, restart: tuple[str, ...]) -> None:
    parts.running.config = dataclasses.replace(parts.config, restart_pending=restart)
    assert parts.health.report()["restart_pending"] == list(restart)


# --- the per-minute summary -----------------------------------------------------------------------


def test_the_summary_reports_the_cheap_requests_and_client_errors_once(parts: AppParts) -> None:
    for outcome in ("cached", "cached", "not_modified", "rendered"):
        parts.stats.count(outcome)
    parts.client_errors.note(404, "GET /nope")
    parts.health.flush_summary()
    summaries = [e for e in parts.log.recent if e["event"] == "summary"]
    assert len(summaries) == 1
    text = summaries[0]["message"]
    assert "cached=2" in text and "not_modified=1" in text and "http_404=1" in text and "rendered" not in text
    parts.health.flush_summary()  # nothing new: nothing said
    assert len([e for e in parts.log.recent if e["event"] == "summary"]) == 1

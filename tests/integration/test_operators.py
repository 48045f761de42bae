"""What an operator sees (issue 26), on a real daemon: a configuration refused on reload shows as
``degraded`` with its reason until a good reload (before, only a journal warning: /health, STATUS= and
previewctl stayed "ok" and the next restart failed with exit 2); /metrics named by Prometheus' rules;
caching headers that keep /health and /metrics out of caches and make frames ETag-validated; a
configured media root that does not exist named in a warning.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from flipedit_previewd import __version__
from tests.support.helpers import ROOT, Daemon, still_project


def project(tmp_path: Path) -> Path:
    return still_project(tmp_path, (0, 255, 0), (0, 0, 100, 100), (32, 32), clip="c", name="green.png")


def reload(daemon: Daemon, conf: Path, text: str) -> dict[str, Any]:
    """Write the configuration file, SIGHUP, and wait (bounded) for the reload's journal line."""
    conf.write_text(text)
    reloads = daemon.log().count("reloaded configuration")
    daemon.signal(signal.SIGHUP)
    daemon.log_once("reloaded configuration", reloads + 1, timeout=10)
    return daemon.health()


def statuses(notify: socket.socket) -> list[str]:
    """The STATUS= values sent to the notification socket so far."""
    found = []
    while True:
        try:
            datagram = notify.recv(65536).decode()
        except BlockingIOError:
            return found
        found += [line[len("STATUS=") :] for line in datagram.splitlines() if line.startswith("STATUS=")]


def test_a_configuration_refused_on_reload_is_degraded_until_a_good_reload(tmp_path: Path) -> None:
    conf = tmp_path / "flipedit-preview" / "previewd.toml"
    conf.parent.mkdir()
    conf.write_text("jpeg_quality = 80\n")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    daemon = Daemon(
        ["--project", str(project(tmp_path)), "--fdstore", "false"], {"XDG_CONFIG_HOME": str(tmp_path)}, tmp_path
    )
    daemon.env["NOTIFY_SOCKET"] = str(tmp_path / "notify")  # to read STATUS= as systemd would
    try:
        daemon.start()
        health = daemon.health()
        assert health["status"] == "ok" and health["config_error"] is None

        health = reload(daemon, conf, 'jpeg_quality = 80\nqueue_size = "x"\n')
        assert health["status"] == "degraded", health
        error = health["config_error"]
        assert (error["key"], error["file"], error["line"]) == ("queue_size", str(conf), 2), error
        assert f"{conf} line 2: queue_size" in error["message"] and "not a string" in error["message"]
        assert health["queue_capacity"] == 20  # the old configuration stays in force
        shown = statuses(notify)
        assert any(
            s.startswith("degraded: ") and f"configuration rejected on reload (queue_size in {conf} line 2)" in s
            for s in shown
        ), shown
        ctl = subprocess.run(
            [str(ROOT / ".venv/bin/previewctl"), "--url", daemon.url, "health"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ctl.returncode == 1 and "rejected on reload" in ctl.stdout and "queue_size" in ctl.stdout, (
            ctl.stdout + ctl.stderr
        )
        doctor = subprocess.run(
            [
                str(ROOT / ".venv/bin/previewctl"),
                "--url",
                daemon.url,
                "doctor",
                "--directory",
                str(tmp_path / "journal"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert doctor.returncode == 1 and "[FAIL] configuration in force: rejected on reload" in doctor.stdout, (
            doctor.stdout
        )

        time.sleep(0.1)
        health = reload(daemon, conf, "queue_size = 7\n")  # a good one: degraded no more
        assert health["status"] == "ok" and health["config_error"] is None and health["queue_capacity"] == 7, health
        assert "configuration error of an earlier reload is fixed" in daemon.log()
        assert any(s.startswith("ok: ") for s in statuses(notify))
    finally:
        daemon.stop()
        notify.close()


def test_metrics_follow_the_prometheus_naming_rules(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)))
    assert daemon.get("/get_frame/0").status_code == 200
    for _ in range(3):
        daemon.get("/health")
    assert requests.get(daemon.url + "/get_frame/-1", timeout=5).status_code == 400
    assert requests.get(daemon.url + "/get_frame/0?width=abc", timeout=5).status_code == 400
    text = daemon.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    ours = {name: f.type for name, f in families.items() if name.startswith("flipedit_preview")}
    # A count since start is a counter (the parser shows a counter's name without its _total) ...
    for name in (
        "requests",
        "timeline_reads",
        "rejections",
        "render_ahead_rendered",
        "render_ahead_hits",
        "render_ahead_wasted",
    ):
        assert ours.get(f"flipedit_preview_{name}") == "counter", (name, ours)
        assert f"flipedit_preview_{name}_total " in text or f"flipedit_preview_{name}_total{{" in text
    # ... and the gauges are values that go down as well as up.
    gauges = {name for name, kind in ours.items() if kind == "gauge"}
    assert gauges == {
        "flipedit_preview_queue_depth",
        "flipedit_preview_in_flight",
        "flipedit_preview_workers_busy",
        "flipedit_preview_connections",
        "flipedit_preview_loop_lag_seconds",
        "flipedit_preview_loop_lag_p99_seconds",
        "flipedit_previewd_build_info",
    }, gauges
    assert f'flipedit_previewd_build_info{{version="{__version__}"}} 1.0' in text
    assert "_created" not in text
    assert {
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    } <= set(families)
    # requests_total counts what its HELP says: frame requests, the 4xx among them, not /health.
    outcomes = {
        s.labels["outcome"]: s.value for s in families["flipedit_preview_requests"].samples if s.name.endswith("_total")
    }
    assert "health" not in outcomes and outcomes.get("client_error") == 2 and outcomes.get("rendered", 0) >= 1, outcomes
    assert "/get_frame" in families["flipedit_preview_requests"].documentation
    for name, family in families.items():  # a duration is in seconds, a size in bytes, and says so in its name
        words = family.documentation.lower()
        if name.startswith("flipedit_preview") and ("time " in words or "lag" in words):
            assert name.endswith("_seconds"), name


def test_health_and_metrics_are_not_stored_and_frames_are_validated_by_etag(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)))
    for path in ("/health", "/metrics"):
        assert daemon.get(path).headers.get("Cache-Control") == "no-store", path
    first = daemon.get("/get_frame/0")
    etag = first.headers["ETag"]
    assert first.status_code == 200 and first.headers.get("Cache-Control") == "no-cache" and etag.startswith('"')
    hit = daemon.get("/get_frame/0")
    assert hit.headers.get("X-Cache") == "hit" and hit.headers.get("Cache-Control") == "no-cache"
    again = requests.get(daemon.url + "/get_frame/0", headers={"If-None-Match": etag}, timeout=5)
    assert again.status_code == 304 and again.content == b""
    assert again.headers.get("ETag") == etag and again.headers.get("Cache-Control") == "no-cache"


def test_a_configured_media_root_that_does_not_exist_is_warned_by_name(start_daemon: Any, tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    # The documented list syntax: comma-separated (before, "/a,/b" given as a flag was one root named "/a,/b").
    daemon = start_daemon("--project", str(project(tmp_path)), "--allowed-roots", f"/nonexistent/typo,{media}")
    health = daemon.health()
    assert os.path.realpath(media) in health["media_roots"] and health["media_roots_missing"] == [
        "/nonexistent/typo"
    ], health
    assert "configured media root does not exist: /nonexistent/typo" in daemon.log_once("/nonexistent/typo")

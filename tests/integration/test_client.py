"""The client library against a real daemon."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import build_project, solid_png

from flipedit_previewd.client import CircuitOpen, LatestFrame, PreviewClient, PreviewError, make_retry


def project(tmp_path: Path) -> Path:
    red = solid_png(tmp_path / "red.png", (64, 64), (255, 0, 0))
    db = tmp_path / "p.sqlite"
    build_project(db, 3, [{"name": "t", "order": 0, "clips": [{"source": red, "rect": (0, 0, 100, 100), "end": 100_000}]}])
    return db


def test_latest_wins_sends_at_most_two_requests_for_a_burst_of_50(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)), "--test-render-hook", "sleep:0.3")
    client = PreviewClient(daemon.url)
    got: list[int] = []
    latest = LatestFrame(client, lambda frame: got.append(frame.index))
    before = daemon.health()["counters"]["admitted"]
    for index in range(50):
        latest.submit(index)
    assert latest.wait(10)
    assert latest.sent <= 2 and latest.replaced >= 47
    assert got[-1] == 49  # the newest submission is the one that was answered last
    assert daemon.health()["counters"]["admitted"] - before <= 2
    client.close()


def test_retry_after_is_honoured(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)), "--queue-size", "0")  # every render is refused
    client = PreviewClient(daemon.url, retry=make_retry(attempts=2))
    started = time.monotonic()
    with pytest.raises(PreviewError) as info:
        client.frame(1)
    elapsed = time.monotonic() - started
    assert info.value.status == 503
    assert daemon.health()["counters"]["rejected"] == 3  # the first try and two retries
    assert elapsed >= 2 * 1.0  # each retry waited the daemon's Retry-After (1 s here)
    client.close()


def test_unix_socket_and_etag(start_daemon: Any, tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    daemon = start_daemon("--project", str(project(tmp_path)), "--listen", f"unix:{sock}")
    client = PreviewClient(str(sock))
    frame = client.frame(2, width=320)
    assert frame is not None and frame.body[:2] == b"\xff\xd8" and frame.etag
    assert client.frame(2, width=320, etag=frame.etag) is None
    assert client.health()["status"] == "ok"
    client.close()
    assert daemon.proc.poll() is None


def test_circuit_opens_after_failures_and_probes_health_before_closing(tmp_path: Path, start_daemon: Any) -> None:
    db = project(tmp_path)
    daemon = start_daemon("--project", str(db))
    client = PreviewClient(daemon.url, retry=make_retry(attempts=0))
    client.breaker.threshold, client.breaker.cooldown = 3, 0.5
    daemon.stop()
    for _ in range(3):
        with pytest.raises(requests.ConnectionError):
            client.frame(0)
    with pytest.raises(CircuitOpen):
        client.frame(0)  # fails fast, nothing sent
    time.sleep(0.6)
    with pytest.raises(CircuitOpen):
        client.frame(0)  # half-open: the /health probe fails, stays open
    restarted = start_daemon("--project", str(db))
    client.base = restarted.url
    time.sleep(0.6)
    assert client.frame(0) is not None and client.breaker.state == "closed"
    client.close()


def test_retries_cover_a_dropped_connection(start_daemon: Any, tmp_path: Path) -> None:
    """A pooled connection the server closed while idle is retried, never surfaced."""
    daemon = start_daemon("--project", str(project(tmp_path)), "--keepalive-timeout", "1")
    client = PreviewClient(daemon.url)
    errors: list[BaseException] = []
    for index in range(5):
        try:
            client.frame(index)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        time.sleep(1.2)  # the daemon has closed the pooled connection meanwhile
    assert not errors
    client.close()

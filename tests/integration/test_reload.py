"""SIGHUP applies the live settings to the running daemon and reports the restart-only ones pending.

Before ``reconfigure.apply()`` a reload changed ``/health``'s numbers but not the HTTP limits or
the request deadline the connections used, and a PUT timeline took the new canvas while the project
database kept the old one.
"""

from __future__ import annotations

import io
import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import requests

from flipedit_previewd.ctl import main
from flipedit_previewd.ctl.context import Env
from tests.support.helpers import decode, still_project


def reloaded(daemon: Any, conf: Path, text: str, until: Any) -> dict[str, Any]:
    """Write the configuration file, SIGHUP, and wait (bounded) for /health to show the reload."""
    conf.write_text(text)
    reloads = daemon.log().count("reloaded configuration")
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if daemon.log().count("reloaded configuration") > reloads:
            break
        time.sleep(0.05)
    health = daemon.health()
    assert until(health), (health, daemon.log()[-2000:])
    return health


def many_headers(daemon: Any, count: int) -> int:
    headers = {f"X-Extra-{i}": "1" for i in range(count)}
    return requests.get(daemon.url + "/health", headers=headers, timeout=5).status_code


def partial_request_answer(port: int, wait: float) -> bytes:
    """Send a request head that never ends; what (if anything) arrives within ``wait`` seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Slow: 1\r\n" % port)
        try:
            return sock.recv(65536)
        except TimeoutError:
            return b""


def test_sighup_applies_http_limits_and_request_timeout_and_reports_restart_only_settings(
    start_daemon: Any, tmp_path: Path
) -> None:
    db = still_project(tmp_path, (0, 255, 0), (0, 0, 100, 100), (32, 32), clip="c", name="green.png")
    green = tmp_path / "green.png"
    conf = tmp_path / "flipedit-preview" / "previewd.toml"
    conf.parent.mkdir(exist_ok=True)
    conf.write_text("max_headers = 50\nrequest_timeout = 30\nmax_timeline_clips = 100\n")
    daemon = start_daemon("--project", str(db), env={"XDG_CONFIG_HOME": str(tmp_path)})
    health = daemon.health()
    assert health["restart_pending"] == []
    assert many_headers(daemon, 20) == 200
    canvas = decode(daemon.get("/get_frame/0").content).size

    def put(clips: int) -> requests.Response:
        clip = {"source_path": str(green), "start_on_track_ms": 0, "end_on_track_ms": 1000}
        return requests.put(
            daemon.url + "/timeline",
            data=json.dumps({"tracks": [{"clips": [clip] * clips}]}),
            timeout=5,
            headers=daemon.auth,
        )

    assert put(3).status_code == 200
    assert requests.delete(daemon.url + "/timeline", headers=daemon.auth, timeout=5).status_code == 200

    health = reloaded(
        daemon,
        conf,
        "max_headers = 10\nrequest_timeout = 1\nmax_timeline_clips = 2\n"
        "canvas_width = 640\nframe_rate = 25.0\nworkers = 3\n",
        lambda h: h["restart_pending"] == ["workers", "canvas_width", "frame_rate"],
    )
    assert health["max_concurrent"] == 2 and len(health["workers"]) == 2  # the running value, not the file's
    out = io.StringIO()
    main(["--url", daemon.url, "health"], Env(out, io.StringIO(), {}, False, False, sleep=lambda s: None))
    assert "restart     pending for workers, canvas_width, frame_rate" in out.getvalue()  # previewctl says so too
    # Live: a new connection is parsed with the new limits, and a request that never ends meets the new deadline.
    assert many_headers(daemon, 20) == 431
    assert many_headers(daemon, 5) == 200
    answer = partial_request_answer(daemon.port, 8.0)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert put(3).status_code == 413
    # Restart-only: the canvas in force stays the running one for the database and for a PUT timeline alike.
    assert decode(daemon.get("/get_frame/0").content).size == canvas
    assert put(1).status_code == 200
    assert decode(daemon.get("/get_frame/0").content).size == canvas
    assert "restart to apply: workers, canvas_width, frame_rate" in daemon.log_once("restart to apply")

    # Configured back to the running values: nothing pending; the live ones follow the file again.
    health = reloaded(daemon, conf, "max_headers = 50\nrequest_timeout = 30\n", lambda h: h["restart_pending"] == [])
    assert many_headers(daemon, 20) == 200

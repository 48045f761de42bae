"""The daemon under a real systemd user manager and journald, with the unit files from systemd/."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from flipedit_previewd.common.journal import MESSAGE_IDS
from tests.support.helpers import ROOT, exposure_level, failpoint, overload_with_health_watch, wait_for
from tests.support.media_corpus import lavfi
from tests.support.sandbox import Sandbox
from tests.system.deploy import SOCKET, UNIT, wait_active

WATCHDOG_SEC, RESTART_SEC = 5, 1


def test_units_pass_systemd_analyze_verify(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.install_units(
        ROOT / "systemd", {UNIT: f"[Service]\nExecStart=\nExecStart={ROOT}/.venv/bin/flipedit-previewd\n"}
    )
    for unit in (SOCKET, UNIT):
        result = sandbox.run("systemd-analyze", "--user", "verify", "--man=no", unit, check=False)
        assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # The system-wide units, with only ExecStart pointed at this checkout's daemon.
    system_dir = tmp_path / "system"
    system_dir.mkdir()
    for unit in (ROOT / "systemd/system").glob("flipedit-preview.*"):
        (system_dir / unit.name).write_text(
            unit.read_text().replace("/usr/bin/flipedit-previewd", f"{ROOT}/.venv/bin/flipedit-previewd")
        )
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(system_dir / SOCKET), str(system_dir / UNIT)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_socket_activation_ready_and_status(deployed: Any) -> None:
    d = deployed(env=failpoint("sleep:0.05"))
    assert d.show("ActiveState")["ActiveState"] == "inactive"  # nothing runs until the first connection
    states: list[tuple[float, str]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            states.append((time.time(), d.show("ActiveState")["ActiveState"]))
            time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    response = requests.get(d.url + "/get_frame/0", timeout=30)
    stop.set()
    poller.join()
    assert response.status_code == 200 and response.content[:2] == b"\xff\xd8"
    seen = [s for _, s in states]
    assert "activating" in seen and seen[-1] == "active"
    first_active = next(t for t, s in states if s == "active")
    ready = d.journal(MESSAGE_ID=MESSAGE_IDS["ready"])
    assert ready and int(ready[-1]["__REALTIME_TIMESTAMP"]) / 1e6 <= first_active + 0.05
    unix = d.box.run("curl", "-s", "--unix-socket", "/run/user/0/flipedit-preview.sock", "http://x/health").stdout
    assert json.loads(unix)["status"] in ("ok", "degraded")
    status_text = wait_for(lambda: d.show("StatusText")["StatusText"], 5)
    assert "rendering" in status_text and "queued" in status_text
    assert 'Status: "' in d.box.systemctl("status", UNIT, check=False).stdout


def test_journal_has_one_entry_per_render_and_lifecycle_events(deployed: Any) -> None:
    d = deployed()
    for frame in (0, 10, 20, 30, 40):  # 10 apart: not a playback, so none of them is rendered ahead
        assert requests.get(f"{d.url}/get_frame/{frame}", timeout=30).status_code == 200
    requests.get(f"{d.url}/get_frame/-1", timeout=5)
    d.box.systemctl("reload", UNIT)
    wait_for(lambda: d.journal(MESSAGE_ID=MESSAGE_IDS["reload"]), 10)
    d.box.systemctl("stop", UNIT)
    entries = d.journal(MESSAGE_ID=MESSAGE_IDS["request"])
    rendered = [e for e in entries if e.get("OUTCOME") == "rendered"]
    assert sorted(int(e["FRAME"]) for e in rendered) == [0, 10, 20, 30, 40]
    for entry in rendered:
        for field in (
            "REQUEST_ID",
            "METHOD",
            "PATH",
            "FRAME",
            "STATUS",
            "OUTCOME",
            "QUEUE_MS",
            "RENDER_MS",
            "TOTAL_MS",
            "QUEUE_DEPTH",
            "IN_FLIGHT",
            "BYTES",
            "CLIENT",
        ):
            assert field in entry, field
    for event in ("start", "ready", "reload", "stopping", "stopped"):
        assert d.journal(MESSAGE_ID=MESSAGE_IDS[event]), event


def test_sigstop_is_restarted_by_the_watchdog(deployed: Any) -> None:
    d = deployed()
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    before = int(d.show("NRestarts")["NRestarts"])
    pid = d.main_pid()
    os.kill(pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    assert wait_for(lambda: int(d.show("NRestarts")["NRestarts"]) > before, WATCHDOG_SEC + RESTART_SEC + 5, 0.05)
    restarted_in = time.monotonic() - stopped_at
    wait_active(d)
    print(f"\nSIGSTOP -> restart in {restarted_in:.2f} s (bound {WATCHDOG_SEC + RESTART_SEC + 2} s)")
    assert restarted_in <= WATCHDOG_SEC + RESTART_SEC + 2
    assert d.main_pid() != pid
    assert requests.get(d.url + "/health", timeout=30).json()["status"] == "ok"
    manager = [e for e in d.box.journal(f"USER_UNIT={UNIT}") if int(e["__REALTIME_TIMESTAMP"]) / 1e6 >= d.since]
    assert any("watchdog" in str(e.get("MESSAGE", "")).lower() for e in manager)


# A render stuck on every worker no longer stops the heartbeat: it is cancelled at the render budget,
# answered 504, and the daemon keeps running (tests/system/test_loop_system.py, issue 12).


def test_kill9_refuses_no_connection(deployed: Any) -> None:
    d = deployed()
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    outcomes: list[str] = []  # every request's outcome, judged in the main thread (a thread's assert would vanish)
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                r = requests.get(d.url + "/get_frame/1", timeout=30, headers={"Connection": "close"})
                outcomes.append(str(r.status_code))
            except requests.ConnectionError as exc:
                outcomes.append(("refused: " if "refused" in str(exc).lower() else "lost: ") + repr(exc))
            except Exception as exc:  # noqa: BLE001 - a timeout or anything else is an outcome too
                outcomes.append(f"error: {exc!r}")
            time.sleep(0.02)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    assert wait_for(lambda: outcomes.count("200") >= 8, 10)
    pid = d.main_pid()
    os.kill(pid, signal.SIGKILL)
    killed_at = len(outcomes)
    time.sleep(6)
    stop.set()
    for t in threads:
        t.join()
    ok, after = outcomes.count("200"), outcomes[killed_at:].count("200")
    refused = [o for o in outcomes if o.startswith("refused")]
    lost = [o for o in outcomes if o.startswith("lost")]
    other = [o for o in outcomes if o != "200" and not o.startswith(("refused", "lost"))]
    print(
        f"\nkill -9: {ok} ok ({after} after the kill), {len(lost)} in-flight losses, {len(refused)} refused, other "
        f"{other[:3]}"
    )
    assert not refused
    assert not other  # no 503, no timeout, no other status
    assert len(lost) <= len(threads)  # at most the requests in flight at the kill
    assert after > 0  # waiting connections were answered by the restarted daemon
    assert d.main_pid() not in (0, pid)


def test_stop_under_load_finishes_in_flight_and_exits_cleanly(deployed: Any) -> None:
    d = deployed(env=failpoint("sleep:0.5"), args="--workers 1")
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    results: list[int] = []
    threads = [
        threading.Thread(
            target=lambda f=f: results.append(requests.get(f"{d.url}/get_frame/{40 + f}", timeout=30).status_code)
        )
        for f in range(3)
    ]
    for t in threads:
        t.start()
    time.sleep(0.3)
    d.box.systemctl("stop", UNIT)
    for t in threads:
        t.join()
    assert results == [200, 200, 200]
    props = d.show("Result", "ExecMainStatus", "ActiveState")
    assert props["Result"] == "success" and props["ExecMainStatus"] == "0"
    assert d.journal(MESSAGE_ID=MESSAGE_IDS["stopped"])


@pytest.mark.solo
def test_overload_of_400_connections_gets_only_complete_answers(deployed: Any) -> None:
    d = deployed()
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    stats = overload_with_health_watch(d.url, connections=400, seconds=10, path=lambda n: f"/get_frame/{n % 300}")
    print(f"\n400 connections x 10 s: {stats}")
    assert stats["connection_errors"] == 0, stats
    assert set(stats["statuses"]) <= {"200", "503"}
    assert stats["503_without_retry_after"] == 0
    assert stats["health_max_s"] < 1.0
    assert "overloaded" in stats["health_states"]


def test_units_are_hardened_to_exposure_2_or_lower(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.install_units(
        ROOT / "systemd", {UNIT: f"[Service]\nExecStart=\nExecStart={ROOT}/.venv/bin/flipedit-previewd\n"}
    )
    user = exposure_level(sandbox.run("systemd-analyze", "--user", "security", "--no-pager", UNIT, check=False).stdout)
    system_unit = tmp_path / UNIT
    system_unit.write_text(
        (ROOT / "systemd/system" / UNIT)
        .read_text()
        .replace("/usr/bin/flipedit-previewd", f"{ROOT}/.venv/bin/flipedit-previewd")
    )
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(system_unit)],
        capture_output=True,
        text=True,
    )
    system = exposure_level(result.stdout)
    print(f"\nexposure: user unit {user}, system unit {system}")
    assert user <= 2.0 and system <= 2.0


def test_proxies_are_made_in_the_units_cache_directory(deployed: Any, tmp_path: Path) -> None:
    """CacheDirectory= gives the hardened unit (ProtectSystem=strict) the one place it writes; the maker starts
    idle (chrt, ionice) under the unit's system call filter, inside the unit's cgroup, and is confined."""
    cache = Path("/root/.cache/flipedit-preview")  # root's manager's CacheDirectory=, on the sandbox's own tmpfs
    # The host's own /root/.cache may hold a real user's proxies (a `make demo` run as root): what the sandboxed
    # unit makes must not be added to them.
    on_host = sorted(p.name for p in (cache / "proxies").glob("*")) if (cache / "proxies").is_dir() else []
    source = tmp_path / "long-gop.mp4"
    lavfi(
        source,
        "testsrc2=size=640x360:rate=30:duration=2",
        *"-c:v libx264 -preset veryfast -g 250 -bf 3 -pix_fmt yuv420p".split(),
        timeout=60,
    )
    d = deployed(args="--proxy-min-cost 0")
    try:
        timeline = {
            "tracks": [
                {
                    "clips": [
                        {
                            "source_path": str(source),
                            "start_on_track_ms": 0,
                            "end_on_track_ms": 2000,
                            "rect": {"left": 0, "top": 0, "width": 640, "height": 360},
                        }
                    ]
                }
            ]
        }
        assert requests.get(d.url + "/health", timeout=30).status_code == 200
        put = requests.put(d.url + "/timeline", json=timeline, headers=d.auth, timeout=10)
        assert put.status_code == 200, put.text

        def made() -> dict[str, Any] | None:
            p = requests.get(d.url + "/health", timeout=5).json()["proxies"]
            return p if p["made"] or p["failed"] else None

        proxies = wait_for(made, 60, 0.5)
        assert proxies and proxies["made"] == 1 and proxies["dir"] == str(cache / "proxies"), (
            proxies,
            d.journal(MESSAGE_ID=MESSAGE_IDS["proxy_failed"]),
        )
        assert requests.get(d.url + "/get_frame/20", timeout=10).headers["X-Preview-Source"] == "proxy"
        started = d.journal(MESSAGE_ID=MESSAGE_IDS["proxy_started"])
        assert started and started[-1]["SOURCE"] == str(source) and d.journal(MESSAGE_ID=MESSAGE_IDS["proxy_done"])
    finally:
        requests.delete(d.url + "/proxies", headers=d.auth, timeout=10)
        d.box.systemctl("stop", SOCKET, UNIT, check=False)
    after = sorted(p.name for p in (cache / "proxies").glob("*")) if (cache / "proxies").is_dir() else []
    assert after == on_host, "the unit's proxies were made outside the sandbox"

"""previewctl against the daemon under real systemd, reading the real journal."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from deploy import UNIT, Deployed, wait_active
from helpers import ROOT, wait_for

PREVIEWCTL = str(ROOT / ".venv/bin/previewctl")


def ctl(d: Deployed, *args: str) -> subprocess.CompletedProcess[str]:
    """previewctl inside the sandbox, finding the daemon by itself ($XDG_RUNTIME_DIR socket)."""
    return d.box.run(PREVIEWCTL, *args, check=False, timeout=60)


def stamp(seconds_ago: float = 0) -> str:
    return datetime.fromtimestamp(time.time() - seconds_ago).strftime("%Y-%m-%d %H:%M:%S")


def burst(d: Deployed, frames: range) -> dict[str, int]:
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def one(frame: int) -> None:
        r = requests.get(f"{d.url}/get_frame/{frame}", timeout=30)
        key = str(r.status_code) if r.status_code == 200 else r.json()["limit"]
        with lock:
            outcomes[key] = outcomes.get(key, 0) + 1

    threads = [threading.Thread(target=one, args=(f,)) for f in frames]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_health_and_status_find_the_daemon_and_see_a_watchdog_restart(deployed: Any) -> None:
    d = deployed()
    result = ctl(d, "health")
    assert result.returncode == 0 and "unix:/run/user/0/flipedit-preview.sock" in result.stdout, result.stderr
    before = ctl(d, "status")
    assert before.returncode == 0 and "restarts    0" in before.stdout, before.stdout
    os.kill(d.main_pid(), signal.SIGSTOP)
    assert wait_for(lambda: d.show("NRestarts")["NRestarts"] != "0", 15)
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    after = ctl(d, "status")
    assert "restarts    1" in after.stdout and "active (running)" in after.stdout, after.stdout
    d.box.systemctl("stop", UNIT)
    stopped = ctl(d, "status")  # the socket still listens: status works, health comes back on demand
    assert "service     " in stopped.stdout and "socket      active" in stopped.stdout


def test_logs_filters_json_and_copied_journal(deployed: Any, tmp_path: Path) -> None:
    d = deployed(env={"FLIPEDIT_PREVIEWD_TEST_RENDER_HOOK": "sleep:0.3"}, args="--workers 1 --queue-size 2")
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    since = stamp(1)
    outcomes = burst(d, range(200, 212))
    rejected = outcomes.get("queue", 0)
    assert rejected > 0
    time.sleep(1.0)
    result = ctl(d, "logs", "--outcome", "rejected", "--since", since, "-o", "json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == rejected and all(e["OUTCOME"] == "rejected" and e["STATUS"] == "503" for e in lines)
    one = ctl(d, "logs", "--request-id", lines[0]["REQUEST_ID"], "-o", "json").stdout.splitlines()
    assert len(one) == 1
    slow = [json.loads(x) for x in ctl(d, "logs", "--since", since, "--slower-than", "250", "-o", "json").stdout.splitlines()]
    assert slow and all(float(e["TOTAL_MS"]) > 250 for e in slow)
    last = ctl(d, "logs", "-n", "3").stdout.splitlines()
    assert len(last) == 3 and all("flipedit-preview.service" in line for line in last)
    copy = f"/tmp/journal-copy-{uuid.uuid4().hex[:6]}"
    d.box.run("cp", "-r", "/run/log/journal", copy)
    try:
        copied = subprocess.run([PREVIEWCTL, "logs", "--directory", next(Path(copy).iterdir()).as_posix(), "--outcome", "rejected",
                                 "--since", since, "-o", "json"], capture_output=True, text=True, timeout=60)
        assert len(copied.stdout.splitlines()) == rejected, copied.stderr
    finally:
        subprocess.run(["rm", "-rf", copy], check=True)


def test_stats_reports_exact_counts_and_percentiles(deployed: Any) -> None:
    d = deployed(env={"FLIPEDIT_PREVIEWD_TEST_RENDER_HOOK": "sleep:0.2"}, args="--workers 1 --queue-size 3")
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    since = stamp(1)
    outcomes = burst(d, range(300, 310))
    time.sleep(2.5)  # refusals are summarised once a second, and written by the journal thread
    until = stamp(-1)
    result = ctl(d, "stats", "--since", since, "--until", until, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["outcomes"].get("rendered", 0) == outcomes.get("200", 0)
    assert summary["outcomes"].get("rejected", 0) == outcomes.get("queue", 0)
    assert summary["outcomes"].get("timeout", 0) == outcomes.get("deadline", 0)
    entries = [e for e in d.journal(MESSAGE_ID="8d84a69d80a4429f80e9c3d90e799d59")
               if since <= datetime.fromtimestamp(int(e["__REALTIME_TIMESTAMP"]) / 1e6).strftime("%Y-%m-%d %H:%M:%S") <= until]
    totals = sorted(float(e["TOTAL_MS"]) for e in entries)
    cuts = statistics.quantiles(totals, n=100, method="inclusive")
    for key, expected in (("p50", cuts[49]), ("p95", cuts[94]), ("p99", cuts[98])):
        assert abs(summary["total_ms"][key] - expected) <= 0.05 * expected + 0.01, (key, summary["total_ms"][key], expected)


def test_doctor_finds_each_seeded_problem_and_passes_when_none(deployed: Any, tmp_path: Path) -> None:
    d = deployed()
    requests.get(d.url + "/get_frame/0", timeout=30)
    wait_active(d)
    clean = ctl(d, "doctor")
    assert clean.returncode == 0, clean.stdout
    # missing media
    media = tmp_path / "red.png"
    media.rename(tmp_path / "moved.png")
    result = ctl(d, "doctor")
    assert result.returncode == 1 and "[FAIL] all media present" in result.stdout and "fix:" in result.stdout
    (tmp_path / "moved.png").rename(media)
    # unreadable project database
    good = d.project.read_bytes()
    d.project.write_bytes(b"garbage" * 500)
    time.sleep(0.2)
    requests.get(d.url + "/get_frame/1", timeout=30)
    assert "[FAIL] project database readable and fresh" in ctl(d, "doctor").stdout
    d.project.write_bytes(good)
    # recent watchdog restart
    os.kill(d.main_pid(), signal.SIGSTOP)
    assert wait_for(lambda: d.show("NRestarts")["NRestarts"] != "0", 15)
    assert "[FAIL] no watchdog or restarts in the last hour" in ctl(d, "doctor").stdout
    # socket not listening
    d.box.systemctl("stop", "flipedit-preview.socket", UNIT)
    assert "[FAIL] socket listening" in ctl(d, "doctor").stdout
    # service failed
    d.box.write_file("/root/.config/systemd/user/flipedit-preview.service.d/60-broken.conf",
                     "[Service]\nExecStart=\nExecStart=/bin/false\nRestart=no\n")
    d.box.systemctl("daemon-reload")
    d.box.systemctl("start", UNIT, check=False)
    assert wait_for(lambda: d.show("ActiveState")["ActiveState"] == "failed", 10)
    assert "[FAIL] service not failed" in ctl(d, "doctor").stdout
    d.box.run("rm", "/root/.config/systemd/user/flipedit-preview.service.d/60-broken.conf")
    d.box.systemctl("daemon-reload")


def test_monitor_in_tmux_shows_changing_numbers_survives_restart_and_exits_on_ctrl_c(deployed: Any) -> None:
    d = deployed(env={"FLIPEDIT_PREVIEWD_TEST_RENDER_HOOK": "sleep:0.05"})
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    session = f"monitor-{uuid.uuid4().hex[:6]}"
    stop = threading.Event()

    def load() -> None:
        frame = 0
        while not stop.is_set():
            frame += 1
            try:
                requests.get(f"{d.url}/get_frame/{frame}", timeout=5)
            except requests.RequestException:
                time.sleep(0.1)

    loader = threading.Thread(target=load)
    loader.start()
    tmux = ["tmux", "-L", session]
    try:
        subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", "140", "-y", "30",
                        f"{PREVIEWCTL} --url {d.url} monitor --interval 0.5; echo EXIT=$?; sleep 30"], check=True)
        screens = []
        for _ in range(10):
            time.sleep(0.5)
            screens.append(subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout)
        assert "flipedit-previewd" in screens[-1] and "status" in screens[-1]
        assert len({s for s in screens if "status" in s}) > 1  # the numbers change
        os.kill(d.main_pid(), signal.SIGKILL)
        assert wait_for(lambda: "restarts" in (s := subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True,
                                                                     text=True).stdout) and "│ 1" in s.split("restarts", 1)[1][:20], 20, 0.5)
        subprocess.run([*tmux, "send-keys", "-t", session, "C-c"], check=True)
        assert wait_for(lambda: "EXIT=0" in subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True,
                                                           text=True).stdout, 10, 0.3)
    finally:
        stop.set()
        loader.join()
        subprocess.run([*tmux, "kill-server"], capture_output=True)

"""previewctl against the daemon under real systemd, reading the real journal."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from flipedit_previewd.common.percentiles import summary as percentile_summary
from tests.support.helpers import ROOT, failpoint, wait_for
from tests.system.deploy import UNIT, Deployed, wait_active

PREVIEWCTL = str(ROOT / ".venv/bin/previewctl")
COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # any SGR sequence: colour or other styling
REPRS = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|datetime\.|timedelta|Monotonic\(|UUID\(|Traceback")


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
    d = deployed(env=failpoint("sleep:0.3"), args="--workers 1 --queue-size 2")
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    since = stamp(1)
    outcomes = burst(d, range(200, 212))
    rejected = outcomes.get("queue", 0)
    assert rejected > 0
    rendered = outcomes.get("200", 0)
    time.sleep(2.5)  # refusals are summarised once a second (issue 12), renders are one entry each
    result = ctl(d, "logs", "--outcome", "rendered", "--since", since, "-o", "json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == rendered and all(e["OUTCOME"] == "rendered" and e["STATUS"] == "200" for e in lines)
    summaries = [
        json.loads(x)
        for x in ctl(d, "logs", "--event", "rejections", "--since", since, "-o", "json").stdout.splitlines()
    ]
    assert (
        sum(int(e.get("COUNT_REJECTED", 0)) for e in summaries) == rejected
    )  # every refusal counted, none per request
    one = ctl(d, "logs", "--request-id", lines[0]["REQUEST_ID"], "-o", "json").stdout.splitlines()
    assert len(one) == 1
    slow = [
        json.loads(x)
        for x in ctl(d, "logs", "--since", since, "--slower-than", "250", "-o", "json").stdout.splitlines()
    ]
    assert slow and all(float(e["TOTAL_MS"]) > 250 for e in slow)
    last = ctl(d, "logs", "-n", "3").stdout.splitlines()
    assert len(last) == 3 and all("flipedit-preview.service" in line for line in last)
    copy = f"/tmp/journal-copy-{uuid.uuid4().hex[:6]}"
    d.box.run("cp", "-r", "/run/log/journal", copy)
    try:
        copied = subprocess.run(
            [
                PREVIEWCTL,
                "logs",
                "--directory",
                next(Path(copy).iterdir()).as_posix(),
                "--outcome",
                "rendered",
                "--since",
                since,
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert len(copied.stdout.splitlines()) == rendered, copied.stderr
    finally:
        subprocess.run(["rm", "-rf", copy], check=True)


def test_stats_reports_exact_counts_and_percentiles(deployed: Any) -> None:
    d = deployed(env=failpoint("sleep:0.2"), args="--workers 1 --queue-size 3")
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
    entries = [
        e
        for e in d.journal(MESSAGE_ID="8d84a69d80a4429f80e9c3d90e799d59")
        if since <= datetime.fromtimestamp(int(e["__REALTIME_TIMESTAMP"]) / 1e6).strftime("%Y-%m-%d %H:%M:%S") <= until
    ]
    totals = sorted(float(e["TOTAL_MS"]) for e in entries)
    for key, expected in percentile_summary(totals, digits=None).items():
        assert expected is not None
        assert abs(summary["total_ms"][key] - expected) <= 0.05 * expected + 0.01, (
            key,
            summary["total_ms"][key],
            expected,
        )


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
    # A finding wraps at 80 columns: its detail goes on in the indented lines after its "[FAIL]" line.
    findings = re.split(r"\n(?=\[)", ctl(d, "doctor").stdout)
    failed = [" ".join(f.split()) for f in findings if f.startswith("[FAIL] no faults")]
    assert failed and "watchdog at" in failed[0], failed  # the cause is named
    # socket not listening
    d.box.systemctl("stop", "flipedit-preview.socket", UNIT)
    assert "[FAIL] socket listening" in ctl(d, "doctor").stdout
    # service failed
    d.box.write_file(
        "/root/.config/systemd/user/flipedit-preview.service.d/60-broken.conf",
        "[Service]\nExecStart=\nExecStart=/bin/false\nRestart=no\n",
    )
    d.box.systemctl("daemon-reload")
    d.box.systemctl("start", UNIT, check=False)
    assert wait_for(lambda: d.show("ActiveState")["ActiveState"] == "failed", 10)
    assert "[FAIL] service not failed" in ctl(d, "doctor").stdout
    d.box.run("rm", "/root/.config/systemd/user/flipedit-preview.service.d/60-broken.conf")
    d.box.systemctl("daemon-reload")


class Tmux:
    """A tmux server of the test's own (-L) with one 140x30 session: previewctl monitor drawn on a terminal as an
    operator sees it, read back with capture-pane."""

    def __init__(self, name: str) -> None:
        self.session = f"{name}-{uuid.uuid4().hex[:6]}"
        self.argv = ["tmux", "-L", self.session]

    def screen(self, colour: bool = False) -> str:
        """What the pane shows; with ``colour``, its escape sequences too (-e)."""
        return subprocess.run(
            [*self.argv, "capture-pane", "-p", *(["-e"] if colour else []), "-t", self.session],
            capture_output=True,
            text=True,
        ).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.argv, "send-keys", "-t", self.session, *keys], check=True)


@contextmanager
def tmux(name: str, command: str) -> Iterator[Tmux]:
    """``command`` running in a new tmux session; the tmux server is killed at the end, whatever happened."""
    term = Tmux(name)
    try:
        subprocess.run(
            [*term.argv, "new-session", "-d", "-s", term.session, "-x", "140", "-y", "30", command], check=True
        )
        yield term
    finally:
        subprocess.run([*term.argv, "kill-server"], capture_output=True)


def test_monitor_in_tmux_shows_changing_numbers_survives_restart_and_exits_on_ctrl_c(deployed: Any) -> None:
    d = deployed(env=failpoint("sleep:0.05"))
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
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
    try:
        with tmux("monitor", f"{PREVIEWCTL} --url {d.url} monitor --interval 0.5; echo EXIT=$?; sleep 30") as term:
            screens = []
            for _ in range(10):
                time.sleep(0.5)
                screens.append(term.screen())
            assert "flipedit-previewd" in screens[-1] and "status" in screens[-1]
            assert len({s for s in screens if "status" in s}) > 1  # the numbers change
            assert "│ in flight " in screens[-1] and "│ in │" not in screens[-1], screens[-1]  # whole labels
            coloured = term.screen(colour=True)
            assert COLOUR.search(coloured), coloured  # the status word is coloured on a terminal
            os.kill(d.main_pid(), signal.SIGKILL)
            assert wait_for(
                lambda: "restarts" in (s := term.screen()) and "│ 1" in s.split("restarts", 1)[1][:20], 20, 0.5
            )
            term.keys("C-c")
            assert wait_for(lambda: "EXIT=0" in term.screen(), 10, 0.3)
    finally:
        stop.set()
        loader.join()


def test_monitor_in_tmux_without_colour_when_no_color_is_set(deployed: Any) -> None:
    d = deployed()
    requests.get(d.url + "/health", timeout=30)
    with tmux("nocolor", f"NO_COLOR=1 {PREVIEWCTL} --url {d.url} monitor --interval 0.5; sleep 30") as term:
        assert wait_for(lambda: "in flight" in term.screen(), 20, 0.3)
        time.sleep(1.0)
        screen = term.screen(colour=True)
        assert "status" in screen and "│ in flight " in screen and not COLOUR.search(screen), screen


def test_journal_words_follow_no_entries_4xx_summary_and_json_for_every_command(deployed: Any, tmp_path: Path) -> None:
    d = deployed()
    requests.get(d.url + "/get_frame/1", timeout=30)
    wait_active(d)
    for _ in range(3):
        assert requests.get(d.url + "/get_frame/1?quality=200", timeout=30).status_code == 400
    # logs -f: the last 10 entries, then new ones as they come (as journalctl -f)
    follow = subprocess.Popen(
        ["nsenter", "-t", str(d.box.proc.pid), "-m", "--", PREVIEWCTL, "logs", "-f", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": "/run/user/0"},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in follow.stdout or []], daemon=True).start()
    try:
        first = [json.loads(lines.get(timeout=30)) for _ in range(10)]
        assert all("MESSAGE" in e and isinstance(e["__MONOTONIC_TIMESTAMP"], float) for e in first)
        time.sleep(1.0)
        assert lines.empty()  # the last 10, not the whole history
        d.box.systemctl("stop", UNIT)  # writes the stop entries and the 4xx summary
        later = [json.loads(lines.get(timeout=30)) for _ in range(3)]
        assert all(e["__REALTIME_TIMESTAMP"] > first[-1]["__REALTIME_TIMESTAMP"] for e in later)
    finally:
        follow.send_signal(signal.SIGINT)
        follow.wait(timeout=10)
    assert wait_for(lambda: ctl(d, "logs", "--event", "summary", "-n", "1", "-o", "json").returncode == 0, 10)
    summary = json.loads(ctl(d, "logs", "--event", "summary", "-n", "1", "-o", "json").stdout)
    assert summary["COUNT_HTTP_400"] == "3" and "quality must be between 1 and 95" in summary["LAST_ERROR_400"]
    # say plainly when a window has no entries, and where they looked
    empty = ctl(d, "logs", "--since", f"@{int(time.time()) + 3600}")
    assert (
        empty.returncode == 1
        and "no entries of flipedit-previewd in the journal (/var/log/journal, /run/log/journal)" in empty.stderr
    )
    assert ctl(d, "stats", "--since", f"@{int(time.time()) + 3600}").returncode == 1
    # every data command: human output without reprs, -o json parses
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    for args in (["health"], ["status"], ["logs", "-n", "5"], ["stats"], ["doctor"], ["monitor", "--count", "1"]):
        human = ctl(d, *args)
        assert human.stdout and not REPRS.search(human.stdout + human.stderr), (args, human.stdout, human.stderr)
        machine = ctl(d, *args, "-o", "json")
        lines = machine.stdout.splitlines() if args[0] in ("logs", "monitor") else [machine.stdout]
        assert lines and all(isinstance(json.loads(line), dict) for line in lines), (
            args,
            machine.stdout,
            machine.stderr,
        )
    stats = json.loads(ctl(d, "stats", "--json").stdout)
    assert stats["outcomes"].get("http_400", 0) >= 3

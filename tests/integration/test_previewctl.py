"""previewctl against a real daemon process."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

from helpers import Daemon, build_project, solid_png

from flipedit_previewd.ctl import main
from flipedit_previewd.ctl.commands import Env


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), Env(out, err, {}, False, False, sleep=lambda s: None))
    return code, out.getvalue(), err.getvalue()


def project(tmp_path: Path) -> Path:
    red = solid_png(tmp_path / "red.png", (64, 64), (255, 0, 0))
    db = tmp_path / "p.sqlite"
    build_project(db, 3, [{"name": "t", "order": 0, "clips": [{"source": red, "rect": (0, 0, 100, 100), "end": 100_000}]}])
    return db


def test_health_exit_codes_ok_overloaded_unreachable(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)), "--workers", "1", "--queue-size", "1",
                          "--test-render-hook", "sleep:1.5")
    code, out, _ = run("--url", daemon.url, "health")
    assert code == 0 and "status      ok" in out and "worker 0" in out
    code, out, _ = run("--url", daemon.url, "health", "--json")
    assert code == 0 and json.loads(out)["status"] == "ok"
    threads = [threading.Thread(target=lambda f=f: daemon.get(f"/get_frame/{f}")) for f in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    code, out, _ = run("--url", daemon.url, "health")
    assert code == 1 and "overloaded" in out
    daemon.stop()
    code, _, err = run("--url", daemon.url, "health")
    assert code == 2 and "unreachable" in err


def test_render_reports_timing_and_cache(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)))
    target = tmp_path / "out.jpg"
    code, out, _ = run("--url", daemon.url, "render", "3", "-o", str(target), "--width", "320")
    assert code == 0 and "cache miss" in out and target.read_bytes()[:2] == b"\xff\xd8"
    code, out, _ = run("--url", daemon.url, "render", "3", "-o", str(target), "--width", "320")
    assert code == 0 and "cache hit" in out


def test_monitor_prints_lines_off_a_tty_and_survives_a_restart(start_daemon: Any, tmp_path: Path) -> None:
    """The daemon is stopped, then a new one starts on the same port: monitor goes on and counts the restart."""
    daemon = start_daemon("--project", str(project(tmp_path)))
    out, err = io.StringIO(), io.StringIO()
    calls = [0]
    restarted: list[Daemon] = []

    def fake_sleep(_: float) -> None:
        calls[0] += 1
        if calls[0] == 1:
            daemon.stop()
        elif calls[0] == 2:
            again = Daemon(daemon.args, None, tmp_path)
            again.port, again.url = daemon.port, daemon.url  # the same address, a new process
            again.log_path = tmp_path / "restarted.log"
            restarted.append(again)
            again.start()

    try:
        code = main(["--url", daemon.url, "monitor", "--count", "3"], Env(out, err, {}, False, False, sleep=fake_sleep))
    finally:
        for again in restarted:
            again.stop()
    lines = out.getvalue().splitlines()
    assert code == 0 and len(lines) == 3, out.getvalue() + err.getvalue()
    assert " ok " in lines[0] and "restarts 0" in lines[0]
    assert "unreachable" in lines[1]
    assert " ok " in lines[2] and "restarts 1" in lines[2], lines[2]  # the new daemon (another pid) answered
    assert restarted and restarted[0].proc is not None and restarted[0].proc.pid != daemon.proc.pid
    assert "Traceback" not in restarted[0].log()

"""previewctl against a real daemon process."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

from flipedit_previewd.ctl import main
from flipedit_previewd.ctl.context import Env
from tests.support.helpers import Daemon, failpoint, still_project


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), Env(out, err, {}, False, False, sleep=lambda s: None))
    return code, out.getvalue(), err.getvalue()


def project(tmp_path: Path) -> Path:
    return still_project(tmp_path, rect=(0, 0, 100, 100), db="p.sqlite")


def test_health_exit_codes_ok_overloaded_unreachable(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon(
        "--project", str(project(tmp_path)), "--workers", "1", "--queue-size", "1", env=failpoint("sleep:1.5")
    )
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
    code, out, _ = run("--url", daemon.url, "render", "3", "-O", str(target), "--width", "320")
    assert code == 0 and "cache miss" in out and target.read_bytes()[:2] == b"\xff\xd8"
    code, out, _ = run("--url", daemon.url, "render", "3", "-O", str(target), "--width", "320")
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


# --- issue 26 -------------------------------------------------------------------------------------


def test_frame_index_not_a_number_or_negative_is_one_400(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)))
    answers = {raw: daemon.get(f"/get_frame/{raw}") for raw in ("abc", "-1", "1.5")}
    assert {r.status_code for r in answers.values()} == {400}, {k: r.status_code for k, r in answers.items()}
    details = {raw: r.json()["detail"] for raw, r in answers.items()}
    assert details["abc"] == "frame index must be a whole number from 0, not 'abc'", details
    assert details["-1"] == "frame index must be a whole number from 0, not '-1'", details


def test_render_format_from_the_file_json_report_and_past_the_end(
    start_daemon: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)))  # 100 s at 30 fps: frames 0-2999
    png = tmp_path / "x.png"
    code, out, _ = run("--url", daemon.url, "render", "5", "-O", str(png))
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", out
    monkeypatch.chdir(tmp_path)
    code, out, _ = run("--url", daemon.url, "render", "5", "-o", "json", "-O", "f.jpg")
    report = json.loads(out)
    assert (
        code == 0
        and report["format"] == "jpeg"
        and not (tmp_path / "json").exists()
        and (tmp_path / "f.jpg").read_bytes()[:2] == b"\xff\xd8"
    )
    code, out, err = run("--url", daemon.url, "render", "99999", "-O", str(tmp_path / "end.jpg"))
    assert code == 1 and "frame 99999 is past the end of the timeline (frames 0-2999)" in err, err
    assert "frame 99999 ->" in out  # the image is still written, as the daemon rendered it
    code, out, err = run("--url", daemon.url, "render", "2999", "-O", str(tmp_path / "last.jpg"))
    assert code == 0 and "past the end" not in err


def test_timeline_put_get_clear_with_the_token(start_daemon: Any, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    (runtime / "flipedit-preview").mkdir(parents=True, mode=0o700)
    daemon = start_daemon(
        "--project",
        str(project(tmp_path)),
        env={"FLIPEDIT_PREVIEWD_TOKEN_FILE": str(runtime / "flipedit-preview" / "token")},
    )
    owner = {"XDG_RUNTIME_DIR": str(runtime)}

    def ctl_as(environ: dict[str, str], *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        return main(["--url", daemon.url, *argv], Env(out, err, environ, False, False)), out.getvalue(), err.getvalue()

    saved = tmp_path / "saved.json"
    code, out, _ = ctl_as(owner, "timeline", "get", str(saved))
    assert code == 0 and "1 clips" in out
    timeline = json.loads(saved.read_text())
    timeline["tracks"][0]["clips"][0]["end_on_track_ms"] = 1000.0  # 30 frames instead of 3000
    saved.write_text(json.dumps(timeline))
    code, out, err = ctl_as({}, "timeline", "put", str(saved))  # no token: refused, and told why
    assert code == 1 and "HTTP 401" in err and "token" in err, err
    code, out, err = ctl_as(owner, "timeline", "put", str(saved), "-o", "json")
    assert code == 0 and json.loads(out)["total_frames"] == 30, out + err
    assert daemon.get("/debug/timeline").json()["total_frames"] == 30
    code, out, _ = ctl_as(owner, "timeline", "clear")
    assert code == 0 and "back to the project database" in out
    assert daemon.get("/debug/timeline").json()["total_frames"] == 3000
    code, _, err = ctl_as(owner, "timeline", "put")
    assert code == 3 and "needs a FILE" in err


def test_profile_of_an_idle_daemon_writes_no_empty_flame_graph(start_daemon: Any, tmp_path: Path) -> None:
    """py-spy (inferno) draws "ERROR: No valid input" when it sampled nothing: previewctl says so and keeps no file."""
    daemon = start_daemon("--project", str(project(tmp_path)))
    fake = tmp_path / "bin"
    fake.mkdir()
    spy = fake / "py-spy"
    spy.write_text(
        '#!/bin/sh\nwhile [ "$1" != "--output" ]; do shift; done\n'
        'printf \'<?xml version="1.0"?><svg><text>ERROR: No valid input provided to flamegraph</text></svg>\' > "$2"\n'
    )
    spy.chmod(0o755)
    out_file = tmp_path / "p.svg"
    err = io.StringIO()
    code = main(
        ["--url", daemon.url, "profile", "--seconds", "1", "-O", str(out_file)],
        Env(io.StringIO(), err, {"PATH": str(fake)}, False, False),
    )
    assert code == 1 and "nothing to sample" in err.getvalue() and "no file written" in err.getvalue(), err.getvalue()
    assert not out_file.exists()

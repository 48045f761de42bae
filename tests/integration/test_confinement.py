"""Render workers confined as a browser confines its decoders, checked on a real daemon and a real kernel.

The failpoints (docs/tests.md, "Failpoints"; ``worker/failpoints.py``) used here:

- ``escape:PATH``: at its first job, after confining itself, each worker tries to open PATH, connect
  to 127.0.0.1 and run /bin/sh, and reports each attempt; the daemon logs one ``sandbox_violation``
  per attempt, saying refused (with the errno) or NOT refused.
- ``badreply:FRAME``: the worker answers FRAME with a pickled tuple (the reply format before
  wire.py), as a taken-over worker might: the daemon must refuse it without unpickling it.

Landlock is checked where the kernel has it (this project's VMs: 6.18, ABI 7); without it the
daemon must say so in /health and the journal, and seccomp still holds.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from flipedit_previewd.demo.fixtures import create_metadata_db
from flipedit_previewd.worker import confine
from tests.support.helpers import close_to, decode, failpoint, still_project, wait_for

RED, GREEN = (220, 20, 20), (20, 200, 20)


def landlock_here() -> bool:
    try:
        return confine.landlock_abi() > 0
    except confine.LandlockUnavailable:
        return False


def _project(folder: Path, colour: tuple[int, int, int]) -> Path:
    folder.mkdir()
    return still_project(folder, colour, (0, 0, 1280, 720), (64, 36), name="still.png", db="p.sqlite")


def _centre(daemon: Any, frame: int) -> tuple[int, ...]:
    response = daemon.get(f"/get_frame/{frame}?width=128")
    assert response.status_code == 200, response.text
    return decode(response.content).getpixel((64, 36))  # type: ignore[no-any-return]


def test_a_worker_trying_to_escape_is_refused_each_time_reported_and_the_daemon_serves(
    start_daemon: Any, tmp_path: Path
) -> None:
    db = _project(tmp_path / "project", GREEN)
    secret = tmp_path / "outside" / "secret.txt"  # readable by the daemon's user, outside the roots
    secret.parent.mkdir()
    secret.write_text("not for workers")
    daemon = start_daemon("--project", str(db), "--workers", "2", env=failpoint(f"escape:{secret}"))
    for frame in range(4):  # worker 0's first job is the warm-up; worker 1's is a frame, if the dispatcher gives it one
        assert close_to(_centre(daemon, frame), GREEN)
    log = daemon.log_once("sandbox_violation", 3, timeout=10)
    violations = [line for line in log.splitlines() if "sandbox_violation" in line]
    for attempt, error in (
        (f"open {secret}", "EACCES" if landlock_here() else None),
        ("connect 127.0.0.1:9", "EPERM"),
        ("exec /bin/sh", "EPERM"),
    ):
        lines = [line for line in violations if f"ATTEMPT={attempt} " in line]
        assert lines, (attempt, violations)  # one per worker that had a job
        if error is not None:
            assert all(f"refused ({error})" in line and "REFUSED=1" in line for line in lines), lines
    health = daemon.health()
    assert health["sandbox"]["seccomp"] is True
    assert health["sandbox"]["landlock"] is landlock_here()
    assert health["status"] == "ok" and health["counters"]["workers_replaced"] == 0
    sandbox_lines = [line for line in daemon.log().splitlines() if " sandbox: " in line]
    assert len(sandbox_lines) == 1 and "seccomp on" in sandbox_lines[0]  # said once
    assert close_to(_centre(daemon, 10), GREEN)  # still serving


def test_a_project_switch_replaces_confined_workers_and_renders_media_under_the_new_roots(
    start_daemon: Any, tmp_path: Path
) -> None:
    a, b = _project(tmp_path / "a", RED), _project(tmp_path / "b", GREEN)  # roots: tmp/a, then tmp/b
    meta = tmp_path / "projects.sqlite"
    create_metadata_db(meta, [("a", str(a), 1000)])
    # One worker: which of two would get a given frame is the dispatcher's choice, not this test's.
    daemon = start_daemon("--metadata-db", str(meta), "--workers", "1", "--render-ahead", "false")
    for frame in range(4):
        assert close_to(_centre(daemon, frame), RED)
    before = daemon.health()["workers"]
    assert [w["media_roots"] for w in before] == [[str(a.parent)]]
    conn = sqlite3.connect(meta)
    with conn:
        conn.execute(
            "INSERT INTO project_metadata_table (name, database_path, created_at, last_modified_at) "
            "VALUES (?, ?, ?, ?)",
            ("b", str(b), 2000, 2000),
        )
    conn.close()
    # A worker confined to tmp/a cannot open tmp/b/still.png (Landlock): only a fresh worker draws it.
    assert wait_for(lambda: _centre(daemon, 5) and daemon.health()["project"]["path"] == str(b), 5)
    for frame in range(20, 24):  # frames not cached
        assert close_to(_centre(daemon, frame), GREEN), daemon.log()[-2000:]
    after = daemon.health()["workers"]
    assert [w["media_roots"] for w in after] == [[str(b.parent)]]
    assert after[0]["pid"] != before[0]["pid"] and daemon.health()["counters"]["workers_replaced"] == 1
    assert "replaced for other media roots" in daemon.log_once("replaced for other media roots")
    assert not any("media_problem" in line for line in daemon.log().splitlines())  # no placeholder on the way


def test_under_memory_pressure_the_oom_killer_prefers_a_worker_to_the_daemon(start_daemon: Any, tmp_path: Path) -> None:
    """The units bound memory (MemoryMax=, OOMPolicy=continue); whichever process the kernel then ends should be a
    worker, which the pool replaces, not the process serving the socket."""
    daemon = start_daemon("--project", str(_project(tmp_path / "a", RED)), "--workers", "2")
    assert close_to(_centre(daemon, 0), RED)
    workers = [w["pid"] for w in daemon.health()["workers"]]
    assert len(workers) == 2
    own = int(Path(f"/proc/{daemon.proc.pid}/oom_score_adj").read_text())
    for pid in workers:  # a worker writes it as it starts: one started a moment ago may not have yet
        assert wait_for(lambda pid=pid: int(Path(f"/proc/{pid}/oom_score_adj").read_text()) == min(1000, own + 300), 5)


def test_a_pickled_reply_is_never_loaded_the_worker_is_replaced_and_the_next_frame_served(
    start_daemon: Any, tmp_path: Path
) -> None:
    db = _project(tmp_path / "project", GREEN)
    daemon = start_daemon(
        "--project", str(db), "--workers", "1", "--render-ahead", "false", env=failpoint("badreply:7")
    )
    pid = daemon.health()["workers"][0]["pid"]
    response = daemon.get("/get_frame/7")
    assert response.status_code == 500
    assert "malformed reply" in daemon.log_once("worker_bad_reply")
    assert close_to(_centre(daemon, 8), GREEN)
    health = daemon.health()
    assert health["workers"][0]["pid"] != pid and health["counters"]["workers_replaced"] == 1
    assert health["status"] == "ok"


CONFINED = textwrap.dedent("""
    import os, socket, sys
    from flipedit_previewd.worker import confine
    arch, status = confine.confine_process()
    assert status.seccomp, status
    if status.landlock:
        confine.lock_filesystem(arch, status.landlock_abi, [sys.argv[1]])
    print(open(os.path.join(sys.argv[1], "inside.txt")).read())
    for what, call in (("outside", lambda: open(sys.argv[2])), ("socket", socket.socket),
                       ("exec", lambda: os.execv("/bin/true", ["true"])), ("write", lambda: open(os.path.join(sys.argv[1], "new"), "w"))):
        try:
            call()
            print(what, "ALLOWED")
        except OSError as exc:
            print(what, exc.errno)
""")  # noqa: E501 (the text of another language, kept as written)


def test_a_confined_process_reads_its_roots_and_nothing_else(tmp_path: Path) -> None:
    inside, outside = tmp_path / "inside", tmp_path / "outside.txt"
    inside.mkdir()
    (inside / "inside.txt").write_text("media")
    outside.write_text("secret")
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CONFINED, str(inside), str(outside)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "media" and "socket 1" in lines and "exec 1" in lines  # EPERM from seccomp
    if landlock_here():
        assert "outside 13" in lines and "write 13" in lines  # EACCES from Landlock
    print(
        f"confined process ran in {time.perf_counter() - started:.2f} s; {os.uname().release}: "
        f"landlock={landlock_here()}"
    )

"""Who may read frames (private_reads), and which roots a project may suggest (issue 25's decision).

By default frames are readable by every local program, as the editor (which sends no token)
needs; ``private_reads`` asks the owner's token (or uid on the unix socket) for everything that
shows the user's media. A project from someone else cannot make a home-like folder (one holding
dot-directories) or the runtime directory a media root.
"""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path
from typing import Any

from flipedit_previewd.timeline.safety import derived_root_problem
from tests.support.helpers import build_project, close_to, decode, solid_png, still_project

GREEN = (0, 255, 0)


def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return still_project(root, GREEN, None, (16, 16), name="green.png", db="p.sqlite", version=2)


def unix_get(path: str, target: str) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_private_reads_ask_the_owners_token_for_frames_and_timelines(start_daemon: Any, tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    daemon = start_daemon("--project", str(project(tmp_path)), "--private-reads", "--listen", f"unix:{sock}")
    for path in ("/get_frame/1", "/timeline", "/debug/timeline", "/debug/events"):
        refused = daemon.get(path)
        assert refused.status_code == 401 and "private_reads" in refused.json()["detail"], (path, refused.text)
        assert daemon.get(path, headers=daemon.auth).status_code == 200, path
    assert daemon.get("/get_frame/1", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert (
        daemon.get("/health").status_code == 200 and daemon.get("/metrics").status_code == 200
    )  # monitoring stays open
    assert unix_get(str(sock), "/get_frame/1").startswith(b"HTTP/1.1 200")  # the owner's uid on the unix socket


def test_frames_are_readable_without_a_token_by_default(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)))
    answer = daemon.get("/get_frame/1")
    assert answer.status_code == 200 and close_to(decode(answer.content).getpixel((640, 360)), GREEN)


def test_a_project_cannot_make_a_home_like_folder_a_root(start_daemon: Any, tmp_path: Path) -> None:
    home_like = tmp_path / "someone"
    (home_like / ".ssh").mkdir(parents=True)
    secret = solid_png(home_like / "holiday.png", (16, 16), (0, 0, 255))
    (tmp_path / "project").mkdir()
    db = tmp_path / "project" / "p.sqlite"
    build_project(db, 2, [{"name": "t", "order": 0, "clips": [{"source": secret, "end": 100_000}]}])
    with sqlite3.connect(db) as conn:  # the project lists the picture as an asset: its folder is suggested as a root
        conn.execute(
            "INSERT INTO project_assets (name, source_path, type, created_at) VALUES (?, ?, 'image', 0)",
            ("holiday", str(secret)),
        )
    conn.close()
    daemon = start_daemon("--project", str(db))
    frame = decode(daemon.get("/get_frame/1").content)
    assert not close_to(frame.getpixel((640, 360)), (0, 0, 255))  # a placeholder, not the picture
    health = daemon.health()
    assert str(home_like) not in health["media_roots"]
    assert any(str(home_like) in s and "dot-directories (.ssh)" in s for s in health["media_roots_skipped"]), health
    assert daemon.log_once("outside the allowed media roots")


def test_derived_root_rules(tmp_path: Path) -> None:
    plain = tmp_path / "media"
    plain.mkdir()
    (plain / ".DS_Store").write_text("")  # a dot-file is not a dot-directory
    assert derived_root_problem(str(plain), runtime_dir=str(tmp_path / "run")) == ""
    (plain / ".git").mkdir()
    assert "dot-directories (.git)" in derived_root_problem(str(plain), runtime_dir=str(tmp_path / "run"))
    runtime = tmp_path / "run" / "user"
    runtime.mkdir(parents=True)
    assert "runtime directory" in derived_root_problem(str(tmp_path / "run"), runtime_dir=str(runtime))
    assert "runtime directory" in derived_root_problem(str(runtime / "x"), runtime_dir=str(runtime))

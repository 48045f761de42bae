"""Misconfiguration shows everywhere: the frame's own text, /health, previewctl health and doctor.

No project, or a project file that does not exist, used to look like an empty timeline ("No videos
in timeline", /health ok); now each says what is wrong and what fixes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import requests

from tests.support.helpers import Daemon, ctl, decode


def frame_then_empty(daemon: Daemon) -> tuple[np.ndarray, np.ndarray]:
    """Frame 0 in grey as the daemon draws it now, then as it draws an empty timeline (PUT /timeline): the two a
    test compares to see that the frame says more than "No videos in timeline"."""
    frame = np.asarray(decode(daemon.get("/get_frame/0").content).convert("L"))
    assert (
        requests.put(
            daemon.url + "/timeline", data=json.dumps({"tracks": []}), headers=daemon.auth, timeout=10
        ).status_code
        == 200
    )
    return frame, np.asarray(decode(daemon.get("/get_frame/0").content).convert("L"))


def test_no_project_is_degraded_and_every_place_says_how_to_fix_it(start_daemon: Any, tmp_path: Path) -> None:
    metadata = tmp_path / "nowhere" / "flipedit_projects_metadata.sqlite"
    daemon = start_daemon("--metadata-db", str(metadata))
    health = daemon.health()
    assert health["status"] == "degraded" and health["project"]["state"] == "none"
    assert f"looked in {metadata}" in health["project"]["error"] and "--project" in health["project"]["error"]
    frame, empty = frame_then_empty(daemon)
    assert (frame != empty).any()  # the frame's text is not "No videos in timeline"
    assert frame.max() > 200 and (frame > 200).sum() > (empty > 200).sum()  # more words than the two of the empty frame
    assert ctl("--url", daemon.url, "health").returncode == 1
    doctor = json.loads(ctl("--url", daemon.url, "doctor", "-o", "json").stdout)
    found = {f["check"]: f for f in doctor["findings"]}
    assert found["project database readable and fresh"]["result"] == "fail"
    assert "open a project in FlipEdit" in found["project database readable and fresh"]["fix"]
    assert found["media roots"]["result"] == "n/a"  # not a knock-on failure with an unrelated fix


def test_a_missing_project_file_is_named_on_the_frame_and_in_health(start_daemon: Any, tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "x.sqlite"
    daemon = start_daemon("--project", str(missing))
    health = daemon.health()
    assert health["status"] == "degraded" and health["project"]["state"] == "missing"
    assert str(missing) in health["project"]["error"]
    frame, empty = frame_then_empty(daemon)
    assert (frame != empty).any()
    doctor = json.loads(ctl("--url", daemon.url, "doctor", "-o", "json").stdout)
    found = {f["check"]: f for f in doctor["findings"]}["project database readable and fresh"]
    assert found["result"] == "fail" and "the file is gone" in found["fix"]


def test_without_a_token_file_the_start_says_where_put_still_works(start_daemon: Any, tmp_path: Path) -> None:
    """No $XDG_RUNTIME_DIR and no token_file: the warning says whether a unix socket is left, not always that one is."""
    no_token = {"FLIPEDIT_PREVIEWD_TOKEN_FILE": "", "XDG_RUNTIME_DIR": ""}
    tcp_only = start_daemon("--metadata-db", str(tmp_path / "m.sqlite"), env=no_token)
    assert tcp_only.log_once("PUT/DELETE /timeline are not possible (no unix socket either)")
    sock = tmp_path / "d.sock"
    with_socket = start_daemon("--metadata-db", str(tmp_path / "m.sqlite"), "--listen", f"unix:{sock}", env=no_token)
    assert with_socket.log_once("PUT/DELETE /timeline over the unix socket only")

"""The trust boundary under real systemd: peer credentials on the unix socket, the token, and a
journal that another local user writes into.

A second uid (nobody, through setpriv) connects to the daemon's unix socket and forges journal
entries with the daemon's SYSLOG_IDENTIFIER and MESSAGE_IDs; neither changes anything.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from flipedit_previewd.common.journal import MESSAGE_IDS
from tests.support.helpers import ROOT, wait_for
from tests.support.sandbox import USER_UNIT_DIR
from tests.system.deploy import SOCKET, UNIT, Deployed, wait_active

PREVIEWCTL = str(ROOT / ".venv/bin/previewctl")
MARK = f"FORGED-{uuid.uuid4().hex[:8]}"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
UNIX_PUT = r"""
import socket, sys
path, doc = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(path)
s.sendall(b"PUT /timeline HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(doc) + doc.encode())
answer = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    answer += chunk
print(answer.split(b" ", 2)[1].decode())
"""  # noqa: E501 (the text of another language, kept as written)


def ctl(d: Deployed, *args: str) -> Any:
    return d.box.run(PREVIEWCTL, *args, check=False, timeout=60)


def unix_put(d: Deployed, path: str, doc: dict[str, Any], as_nobody: bool = False) -> str:
    argv = [*(NOBODY if as_nobody else []), "/usr/bin/python3", "-c", UNIX_PUT, path, json.dumps(doc)]
    result = d.box.run(*argv, check=False)
    return result.stdout.strip() or result.stderr.strip()


def timeline(path: str) -> dict[str, Any]:
    return {
        "tracks": [
            {"clips": [{"source_path": path, "type": "image", "start_on_track_ms": 0, "end_on_track_ms": 100_000}]}
        ]
    }


def test_owner_token_foreign_uid_and_escaped_journal(deployed: Any, tmp_path: Path) -> None:
    shared = Path(f"/tmp/flipedit-sec-{uuid.uuid4().hex[:8]}")
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    d = deployed(args=f"--allowed-roots {tmp_path}")
    try:
        # A second listening socket any uid can reach, to show what the daemon does with a stranger.
        d.box.write_file(
            f"{USER_UNIT_DIR}/{SOCKET}.d/60-shared.conf",
            f"[Socket]\nListenStream={shared}/shared.sock\nSocketMode=0666\n",
        )
        d.box.systemctl("daemon-reload")
        d.box.systemctl("restart", SOCKET)
        requests.get(d.url + "/health", timeout=30)
        wait_active(d)
        ok = timeline(str(tmp_path / "red.png"))
        assert unix_put(d, "/run/user/0/flipedit-preview.sock", ok) == "200"
        assert unix_put(d, f"{shared}/shared.sock", ok) == "200"  # root, on either socket
        assert unix_put(d, f"{shared}/shared.sock", ok, as_nobody=True) == "403"
        # TCP: the token from the unit's RuntimeDirectory, 0600.
        mode = d.box.run("stat", "-c", "%a %U", "/run/user/0/flipedit-preview/token").stdout.split()
        assert mode == ["600", "root"]
        token = d.box.run("cat", "/run/user/0/flipedit-preview/token").stdout.strip()
        assert requests.put(d.url + "/timeline", data=json.dumps(ok), timeout=10).status_code == 401
        assert (
            requests.put(
                d.url + "/timeline", data=json.dumps(ok), timeout=10, headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 200
        )
        # A media path with a newline and ESC: one escaped line in the journal's MESSAGE and in previewctl logs.
        evil = str(tmp_path / "a\n00:00:00 ERR     worker_hung: forged\x1b[2J.png")
        assert unix_put(d, "/run/user/0/flipedit-preview.sock", timeline(evil)) == "200"
        assert requests.get(d.url + "/get_frame/3", timeout=30).status_code == 200
        assert wait_for(lambda: d.journal(MESSAGE_ID=MESSAGE_IDS["media_problem"]), 10)
        entry = d.journal(MESSAGE_ID=MESSAGE_IDS["media_problem"])[-1]
        assert (
            "\n" not in entry["MESSAGE"] and "\x1b" not in entry["MESSAGE"] and "a\\x0a00:00:00 ERR" in entry["MESSAGE"]
        )
        raw = entry["SOURCE_PATH"]  # the structured field keeps the raw value (journalctl shows it as bytes)
        assert (bytes(raw).decode() if isinstance(raw, list) else raw) == evil
        shown = ctl(d, "logs", "--event", "media_problem").stdout
        assert len(shown.splitlines()) == 1 and "\x1b" not in shown and "a\\x0a00:00:00 ERR" in shown, shown
        assert d.box.run("systemctl", "--user", "show", UNIT, "-p", "NRestarts").stdout.strip() == "NRestarts=0"
    finally:
        # The drop-in would outlive this test in the module's sandbox and make systemd recreate the directory.
        d.box.systemctl("stop", SOCKET, UNIT, check=False)
        d.box.run("rm", "-f", f"{USER_UNIT_DIR}/{SOCKET}.d/60-shared.conf", check=False)
        d.box.systemctl("daemon-reload", check=False)
        shutil.rmtree(shared, ignore_errors=True)


def forge(d: Deployed, event: str, **fields: str) -> None:
    lines = {
        "MESSAGE": f"{MARK} {event}",
        "MESSAGE_ID": MESSAGE_IDS[event],
        "SYSLOG_IDENTIFIER": "flipedit-previewd",
        "EVENT": event,
        "PRIORITY": "3",
        **fields,
    }
    d.box.run(*NOBODY, "logger", "--journald", input="".join(f"{k}={v}\n" for k, v in lines.items()))


def test_forged_journal_entries_from_another_uid_change_nothing(deployed: Any) -> None:
    d = deployed()
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    for frame in (0, 10, 20):  # not a playback: no render-ahead work to change the figures in between
        assert requests.get(f"{d.url}/get_frame/{frame}", timeout=30).status_code == 200
    time.sleep(1.0)
    keys = ("requests", "starts", "restarts", "watchdog_withheld", "workers_hung", "total_ms", "overload_periods")

    def view() -> tuple[dict[str, Any], str, str]:
        stats = json.loads(ctl(d, "stats", "--json").stdout)
        doctor = [line for line in ctl(d, "doctor").stdout.splitlines() if "no faults (watchdog" in line]
        return {k: stats[k] for k in keys}, ctl(d, "logs").stdout, "\n".join(doctor)

    before = view()
    assert before[0]["starts"] >= 1 and before[0]["requests"] >= 3 and "[ok  ]" in before[2], (
        before
    )  # the sandbox journal outlives a test
    for _ in range(3):
        forge(d, "start", WORKERS="2")
    forge(d, "watchdog_withheld", REASON="forged")
    forge(d, "worker_hung", WORKER="0", FRAME="1")
    forge(d, "overload_began")
    forge(d, "request", OUTCOME="rendered", STATUS="200", TOTAL_MS="nan", QUEUE_MS="inf", RENDER_MS="1e308")
    forge(d, "summary", COUNT_CACHED="lots", COUNT_HEALTH="99999999")
    assert wait_for(lambda: len(d.box.journal("SYSLOG_IDENTIFIER=flipedit-previewd", "_UID=65534")) >= 8, 10)
    after = view()
    assert after[0] == before[0]
    assert MARK not in after[1] and MARK in "".join(str(e.get("MESSAGE")) for e in d.box.journal("_UID=65534"))
    assert after[2] == before[2]

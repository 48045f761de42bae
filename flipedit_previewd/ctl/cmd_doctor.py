"""previewctl doctor: the troubleshooting checklist, automated (exit 0 all pass, 1 otherwise).

Each check is a ``Finding`` (ok, failed with a fix, or not applicable here, e.g. the systemd checks
for a daemon started by hand). ``doctor_findings`` runs them in order: the units, the journal and
the restarts it records (``restarts.py``), then what the daemon's /health and /debug/timeline say.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import stat
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flipedit_previewd.common.readonlydb import open_readonly

from .arguments import format_args
from .context import EXIT_OK, EXIT_PROBLEM, Command, CtlError, Env, client_for, wants_json
from .discovery import Unreachable
from .journal_read import entries, journal_places, open_reader
from .journal_window import add_journal_args, time_window
from .restarts import JOURNALCTL_USER, classify, is_manager_entry, open_unit_reader, verdict
from .running import how_run
from .safeout import as_dict, as_float, as_int, clean
from .stats import summarise
from .system import SERVICE, SERVICE_PROPS, SOCKET, find_scope, no_manager_reason, systemctl_scope, unit_props
from .words import fit, show

EDITOR_POOL_IDLE_S = 15
MEDIA_PROBLEM_WINDOW_S = 600  # doctor fails on a media problem met this recently (a fixed file stops being met)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_journal_args(p)
    format_args(p)


@dataclass
class Finding:
    check: str
    ok: bool | None  # None: not applicable here (e.g. systemd checks for a daemon started by hand)
    detail: str
    fix: str = ""

    @property
    def result(self) -> str:
        return "n/a" if self.ok is None else "ok" if self.ok else "fail"


def doctor_findings(args: argparse.Namespace, env: Env) -> list[Finding]:
    findings: list[Finding] = []
    scope, any_manager = find_scope(env.environ)
    client = client_for(args, env)
    try:
        health: dict[str, Any] | None = client.health()
        unreachable = ""
    except Unreachable as exc:
        health, unreachable = None, str(exc)
    sock: dict[str, str] = {}
    service: dict[str, str] = {}
    systemd_checks = ("socket listening", "service not failed", "journald rate limit off")
    if scope is None and (not any_manager or health is not None):
        why = no_manager_reason() if not any_manager else f"no {SERVICE} unit, and the daemon answers: it runs by hand"
        findings += [Finding(check, None, f"not applicable: {why}") for check in systemd_checks]
    elif scope is None:
        findings.append(
            Finding(
                "units installed",
                False,
                f"no {SERVICE} for this user or the system",
                "install the units (README, 'Install') and run 'systemctl --user daemon-reload'",
            )
        )
    else:
        sock = unit_props(scope, SOCKET, ["ActiveState", "SubState", "ActiveEnterTimestampMonotonic"], env.environ)
        service = unit_props(scope, SERVICE, SERVICE_PROPS, env.environ)
        user = "--user " if scope else ""
        findings.append(
            Finding(
                "socket listening",
                sock.get("ActiveState") == "active",
                f"{SOCKET} is {show(sock.get('ActiveState'))} ({show(sock.get('SubState'))})",
                f"systemctl {user}enable --now {SOCKET}",
            )
        )
        failed = service.get("ActiveState") == "failed"
        findings.append(
            Finding(
                "service not failed",
                not failed,
                f"{SERVICE} is {show(service.get('ActiveState'))} (result {show(service.get('Result'))})",
                f"journalctl {user}-u {SERVICE} -n 50; then systemctl {user}reset-failed {SERVICE} && systemctl "
                f"{user}start {SOCKET}",
            )
        )
        limit = service.get("LogRateLimitIntervalUSec", "")
        findings.append(
            Finding(
                "journald rate limit off",
                limit in ("0", ""),
                f"LogRateLimitIntervalUSec={limit}",
                "keep LogRateLimitIntervalSec=0 in the unit, or entries will be dropped",
            )
        )
    since, _ = time_window(args)
    window = since or datetime.now().astimezone() - timedelta(hours=1)
    label = f"since {args.since}" if since else "since the socket started, last hour at most"
    if scope is not None and since is None:
        # Only since the socket last started listening: an operator's deliberate restart starts afresh.
        entered = int(sock.get("ActiveEnterTimestampMonotonic") or 0)
        if entered:
            ago = time.clock_gettime(time.CLOCK_MONOTONIC) - entered / 1e6
            window = max(window, datetime.now().astimezone() - timedelta(seconds=ago))
    places, found = journal_places(args.directory, args.file)
    by_hand = health is not None and how_run(health.get("pid")).manager == "hand" and not (args.directory or args.file)
    if by_hand:  # its log lines go to the terminal that started it: no journal is expected
        findings.append(
            Finding(
                "journal has the daemon's entries",
                None,
                "not applicable: the daemon runs by hand and logs to its terminal",
            )
        )
    elif not found:
        findings.append(
            Finding(
                "journal has the daemon's entries",
                False,
                f"no journal found (looked in {', '.join(places)})",
                "run the daemon under systemd (README, 'Install') so its entries are kept, or pass --directory",
            )
        )
    else:
        try:
            if next(iter(entries(open_reader(args.directory, args.file))), None) is None:
                findings.append(
                    Finding(
                        "journal has the daemon's entries",
                        False,
                        f"no entries of flipedit-previewd in {', '.join(places)}",
                        "a daemon started by hand logs to its stderr; under systemd check 'previewctl status'",
                    )
                )
            else:
                findings.append(
                    Finding(*restarts_finding(args, scope, service if scope is not None else {}, window, label))
                )
        except OSError as exc:
            findings.append(
                Finding(
                    "journal readable",
                    False,
                    f"{', '.join(places)}: {exc.strerror or exc}",
                    "run as a member of the systemd-journal group",
                )
            )
    if health is None:
        findings.append(
            Finding(
                "daemon answers /health",
                False,
                unreachable,
                f"systemctl --user start {SOCKET}; previewctl status"
                if any_manager
                else "start it (README: 'make demo', or flipedit-previewd --listen 127.0.0.1:8081) or pass --url",
            )
        )
        return findings
    findings.append(Finding("daemon answers /health", True, f"{health['status']} via {client.shown}"))
    rejected_config = as_dict(health.get("config_error"))
    if rejected_config:  # only when a reload was refused: the old configuration runs, the next restart would fail
        findings.append(
            Finding(
                "configuration in force",
                False,
                f"rejected on reload: {clean(str(rejected_config.get('message')))}",
                "fix that value (flipedit-previewd --print-config checks the files), then reload the daemon",
            )
        )
    rejected = as_int(health.get("rejected_last_minute", 0))
    queue, capacity = as_int(health.get("queue_size", 0)), as_int(health.get("queue_capacity", 0))
    findings.append(
        Finding(
            "no overload",
            rejected == 0 and (capacity == 0 or queue < capacity),
            f"{rejected} rejected in the last minute, queue {queue}/{capacity}",
            "raise workers or queue_size in previewd.toml, or lower the editor's request rate",
        )
    )
    keepalive = as_float(health.get("keepalive_timeout_s", 0))
    findings.append(
        Finding(
            "keep-alive outlives the editor's pool",
            keepalive > EDITOR_POOL_IDLE_S,
            f"keepalive_timeout {keepalive:g} s vs the editor's {EDITOR_POOL_IDLE_S} s idle pool",
            f"set keepalive_timeout above {EDITOR_POOL_IDLE_S} (default 20)",
        )
    )
    project = as_dict(health.get("project"))
    path = project.get("path") or ""
    readable, why = _db_readable(path if isinstance(path, str) else "", getattr(args, "timeout", 3.0))
    said = f"daemon says {show(project.get('state'))}" + (f" ({project['error']})" if project.get("error") else "")
    state = project.get("state")
    if not path:
        fix = "open a project in FlipEdit (the daemon follows the editor's project list), or pass --project FILE"
    elif state == "missing":
        fix = "the file is gone: open the project again in FlipEdit, or pass --project with an existing file"
    else:
        fix = (
            "check the path (--project or the metadata database), file permissions, and that no "
            "-journal, -wal or -shm beside the database is a FIFO, symlink or device"
        )
    findings.append(
        Finding(
            "project database readable and fresh",
            state == "ok" and readable,
            f"{path or '(no project)'}: {said}; {why}",
            fix,
        )
    )
    try:
        timeline = client.get("/debug/timeline").json()
        clips = timeline.get("clips", []) if isinstance(timeline, dict) else []
        paths = {
            c.get("source_path") for c in (clips if isinstance(clips, list) else [])[:10000] if isinstance(c, dict)
        }
        missing = sorted(clean(p) for p in paths if isinstance(p, str) and "\x00" not in p and not os.path.lexists(p))
    except (Unreachable, ValueError, KeyError, AttributeError):
        missing = ["(could not read /debug/timeline)"]
    findings.append(
        Finding(
            "all media present",
            not missing,
            f"{len(missing)} missing: {', '.join(missing[:5])}" if missing else "every clip's source exists",
            "relink the media in the editor, or restore the files",
        )
    )
    problems = (
        [p for p in health.get("media_problems") or [] if isinstance(p, dict)]
        if isinstance(health.get("media_problems"), list)
        else []
    )
    recent = [p for p in problems if as_float(p.get("age_s", 0)) < MEDIA_PROBLEM_WINDOW_S]
    if "media_problems" in health:
        findings.append(
            Finding(
                "media decodable",
                not recent,
                "; ".join(f"{clean(str(p.get('path')))}: {clean(str(p.get('problem')))}" for p in recent[-5:])
                if recent
                else "no clip met a problem in the last 10 minutes",
                "the placeholder in the frame names the problem: convert the file to an allowed format "
                "(docs/usage.md, 'Formats and containers') or replace it",
            )
        )
    roots = health.get("media_roots")
    skipped = health.get("media_roots_skipped")
    if isinstance(roots, list) and not path and not roots:
        findings.append(
            Finding("media roots", None, "not applicable: no project, so no project folders to read media from")
        )
    elif isinstance(roots, list):
        findings.append(
            Finding(
                "media roots",
                bool(roots) and not skipped,
                "effective: "
                + (", ".join(str(r) for r in roots[:20]) or "(none)")
                + (
                    "; skipped: " + ", ".join(str(r) for r in skipped[:20])
                    if isinstance(skipped, list) and skipped
                    else ""
                ),
                "keep media in project folders, or set allowed_roots to specific directories (never / or ~)",
            )
        )
    return findings


def restarts_finding(
    args: argparse.Namespace,
    scope: list[str] | None,
    service: dict[str, str],
    window: datetime,
    label: str = "since the socket started, last hour at most",
) -> tuple[str, bool, str, str]:
    """Restarts in the window by cause (restarts.py): only a watchdog kill or a crash fails."""
    user_scope = scope != []
    found = list(entries(open_unit_reader(args.directory, args.file, user_scope), window, None))
    restarts = classify(found)
    recent = summarise(found)
    # systemd's own count covers fault restarts whose evidence we cannot read (no manager entries in our journal).
    unexplained = 0
    if scope is not None and not any(is_manager_entry(e) for e in found):
        unexplained = max(0, int(service.get("NRestarts") or 0) - sum(1 for r in restarts if r.fault))
    ok, detail, fix = verdict(restarts, recent["watchdog_withheld"], unexplained, user_scope)
    return f"no faults (watchdog, crash) {label}", ok, detail, fix


def _db_readable(path: str, timeout: float = 3.0) -> tuple[bool, str]:
    """Read-only, and only a regular file, within ``timeout``: the path comes from the server.

    The path goes into a quoted ``file:`` URI with ``mode=ro`` (so '?mode=rwc' in a name is just a
    name), a FIFO or device is never opened, and a database that hangs is given up on.
    """
    if not path:
        return False, "no project configured"
    if "\x00" in path or not os.path.isabs(path):
        return False, "not an absolute path"
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False, "not a regular file"
    except OSError as exc:
        return False, f"cannot stat it: {exc.strerror}"
    result: list[tuple[bool, str]] = []

    def probe() -> None:
        try:
            conn = open_readonly(path, time.monotonic() + timeout)  # the daemon's own opener: quoted URI, mode=ro
            try:
                conn.execute("SELECT count(*) FROM clips").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            result.append((False, f"cannot read it: {clean(exc, 200)}"))
            return
        result.append((True, "readable"))

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    return result[0] if result else (False, f"no answer within {timeout:g} s")


def cmd_doctor(args: argparse.Namespace, env: Env) -> int:
    findings = doctor_findings(args, env)
    failed = sum(1 for f in findings if f.ok is False)
    skipped = sum(1 for f in findings if f.ok is None)
    if wants_json(args):
        env.out(
            json.dumps(
                {
                    "findings": [
                        {
                            "check": f.check,
                            "result": f.result,
                            "detail": f.detail,
                            "fix": (f.fix or None) if f.ok is False else None,
                        }
                        for f in findings
                    ],
                    "passed": len(findings) - failed - skipped,
                    "failed": failed,
                    "not_applicable": skipped,
                },
                indent=2,
            )
        )
        return EXIT_OK if failed == 0 else EXIT_PROBLEM
    for f in findings:
        mark = {"ok": "[ok  ]", "fail": "[FAIL]", "n/a": "[n/a ]"}[f.result]
        first, *rest = fit(f"{mark} {f.check}: {f.detail}", 7, env.columns)
        env.out(env.paint(mark, f.result) + first[len(mark) :])
        for line in rest:
            env.out(line)
        if f.ok is False and f.fix:
            env.say(f"       fix: {f.fix}", 12)
    env.out(
        f"{len(findings) - failed - skipped} passed, {failed} failed"
        + (f", {skipped} not applicable" if skipped else "")
    )
    try:
        user_unit = systemctl_scope(env.environ) == ["--user"]
    except CtlError:
        user_unit = False
    if user_unit:
        env.say(
            f"the unit's journal: {JOURNALCTL_USER} (a user unit: 'journalctl -u' without --user searches system units "
            f"and shows nothing)",
            0,
        )
    return EXIT_OK if failed == 0 else EXIT_PROBLEM


COMMAND = Command(
    "doctor", "the troubleshooting checklist, automated (exit 0 all pass, 1 otherwise)", add_arguments, cmd_doctor
)

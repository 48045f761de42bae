"""Why the daemon restarted, from the journal: a fault (watchdog, crash) or someone's wish (stop/restart, upgrade).

``previewctl doctor`` fails on faults only. The evidence is the service manager's own entries about
the unit (``USER_UNIT=`` from the user manager, ``UNIT=`` from PID 1, with systemd's MESSAGE_IDs) and
the daemon's own: a watchdog kill is "Failed with result 'watchdog'", a crash is a failure with any
other result or a new start with no clean stop before it, an operator's stop or restart is the
manager's "Stopping" entry (or the daemon's own clean "stopped"), and a start whose VERSION differs
from the previous start's is an upgrade.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flipedit_previewd.common.journal import SYSLOG_IDENTIFIER

from .journal_read import event_of, open_reader

SERVICE = "flipedit-preview.service"
# systemd's catalogued MESSAGE_IDs (sd-messages.h)
UNIT_STOPPING = "de5b426a63be47a7b6ac3eaac82e2f6f"
UNIT_PROCESS_EXIT = "98e322203f7a4ed290d09fe03c09fe15"
UNIT_FAILURE_RESULT = "d9b373ed55a64feb8242e02dbe79a49c"
FAULTS = ("watchdog", "crash")
JOURNALCTL_USER = f"journalctl --user -u {SERVICE.removesuffix('.service')}"


@dataclass
class Restart:
    when: datetime | None
    cause: str  # watchdog, crash, operator, upgrade
    detail: str

    @property
    def fault(self) -> bool:
        return self.cause in FAULTS

    def describe(self) -> str:
        stamp = self.when.strftime("%H:%M:%S") if isinstance(self.when, datetime) else "?"
        return f"{self.cause} at {stamp}" + (f" ({self.detail})" if self.detail else "")


def _message_id(entry: dict[str, Any]) -> str:
    raw: Any = entry.get("MESSAGE_ID")
    return raw.hex if isinstance(getattr(raw, "hex", None), str) else str(raw or "").replace("-", "")


def is_manager_entry(entry: dict[str, Any]) -> bool:
    return _message_id(entry) in (UNIT_STOPPING, UNIT_PROCESS_EXIT, UNIT_FAILURE_RESULT) or bool(
        entry.get("USER_UNIT") or entry.get("UNIT")
    )


def classify(entries: Iterable[dict[str, Any]]) -> list[Restart]:
    """Each start of the daemon after the first in ``entries`` (oldest first), with its cause."""
    restarts: list[Restart] = []
    cause: str | None = None
    detail = ""
    exit_detail = ""
    started = False
    version = ""
    failed_at: Any = None
    for entry in entries:
        mid = _message_id(entry)
        if mid == UNIT_STOPPING and cause is None:
            cause, detail = "operator", "systemctl stop or restart"
        elif mid == UNIT_PROCESS_EXIT:
            exit_detail = f"{entry.get('EXIT_CODE', '?')}, status {entry.get('EXIT_STATUS', '?')}"
        elif mid == UNIT_FAILURE_RESULT and cause in (None, "operator"):
            result = str(entry.get("UNIT_RESULT", ""))
            if result == "watchdog":
                cause, detail = "watchdog", "no WATCHDOG=1 within WatchdogSec; killed by systemd"
            elif cause is None:  # a failure while an operator stops it (e.g. the stop timed out) stays the operator's
                cause, detail = "crash", f"result {result}" + (f", {exit_detail}" if exit_detail else "")
            failed_at = entry.get("__REALTIME_TIMESTAMP")
        elif entry.get("SYSLOG_IDENTIFIER") == SYSLOG_IDENTIFIER:
            event = event_of(entry)
            if event == "stopped" and cause is None:
                cause, detail = "operator", "clean stop (SIGTERM)"
            elif event == "start":
                new_version = str(entry.get("VERSION") or "")
                if started:
                    found = cause or "crash"
                    why = (
                        detail
                        if cause
                        else "the daemon ended without a clean stop" + (f" ({exit_detail})" if exit_detail else "")
                    )
                    if found == "operator" and version and new_version and new_version != version:
                        found, why = "upgrade", f"{version} -> {new_version}"
                    restarts.append(Restart(entry.get("__REALTIME_TIMESTAMP"), found, why))
                started, version = True, new_version or version
                cause, detail, exit_detail = None, "", ""
    if cause in FAULTS:  # killed or crashed, and not (yet) started again: a fault all the same
        restarts.append(Restart(failed_at, cause, detail + "; not running again yet"))
    return restarts


def open_unit_reader(directory: str | None, files: list[str] | None, user_scope: bool) -> Any:
    """The daemon's entries OR the manager's entries about the unit (this user's manager, or PID 1).

    Both by fields a local process cannot forge (issue 11): the daemon's own as ``open_reader``
    matches them, the manager's by the uid of this user's manager or by PID 1.
    """
    reader = open_reader(directory, files)
    reader.add_disjunction()
    if user_scope:
        if files or directory:
            reader.add_match(USER_UNIT=SERVICE)  # a copied journal: its uids mean nothing here
        else:
            reader.add_match(USER_UNIT=SERVICE, _UID=str(os.getuid()))
    else:
        reader.add_match(UNIT=SERVICE, _PID="1")
    return reader


def verdict(restarts: list[Restart], withheld: int, unexplained: int, user_scope: bool) -> tuple[bool, str, str]:
    """(ok, detail, fix) for doctor: only faults fail, and the detail names every cause."""
    faults = [r for r in restarts if r.fault]
    parts = [f"{len(restarts)} restarts" + (": " + ", ".join(r.describe() for r in restarts[-5:]) if restarts else "")]
    if unexplained:
        parts.append(f"{unexplained} more counted by systemd that the journal does not explain (crash or watchdog)")
    if withheld:
        parts.append(f"{withheld} watchdog heartbeats withheld")
    ok = not faults and not unexplained and not withheld
    journalctl = JOURNALCTL_USER if user_scope else f"journalctl -u {SERVICE.removesuffix('.service')}"
    if any(r.cause == "watchdog" for r in faults) or withheld:
        fix = (
            f"watchdog: the daemon stopped making progress (hung render, frozen process); "
            f"previewctl logs --since '1 hour ago' --event watchdog_withheld; {journalctl} -n 50; look for hung media "
            f"(FIFOs, network mounts)"
        )
    elif faults or unexplained:
        fix = f"crash: see why it exited with {journalctl} -n 50 (and previewctl logs -n 50)"
    else:
        fix = ""
    return ok, "; ".join(parts), fix

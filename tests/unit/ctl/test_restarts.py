"""previewctl doctor's restart causes, from journal entries shaped like systemd 252's and the daemon's."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flipedit_previewd.common.journal import MESSAGE_IDS
from flipedit_previewd.ctl.restarts import UNIT_FAILURE_RESULT, UNIT_PROCESS_EXIT, UNIT_STOPPING, classify, verdict

T0 = datetime(2026, 11, 29, 6, 0, 0)


def _journal(*events: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, (kind, fields) in enumerate(events):
        stamp = {"__REALTIME_TIMESTAMP": T0 + timedelta(seconds=i)}
        if kind in MESSAGE_IDS:
            out.append({"SYSLOG_IDENTIFIER": "flipedit-previewd", "MESSAGE_ID": MESSAGE_IDS[kind], **stamp, **fields})
        else:
            out.append(
                {
                    "SYSLOG_IDENTIFIER": "systemd",
                    "USER_UNIT": "flipedit-preview.service",
                    "MESSAGE_ID": kind,
                    **stamp,
                    **fields,
                }
            )
    return out


START = ("start", {"VERSION": "0.1.0"})


def test_operator_restart_is_not_a_fault() -> None:
    restarts = classify(
        _journal(START, (UNIT_STOPPING, {"JOB_TYPE": "stop"}), ("stopping", {}), ("stopped", {}), START)
    )
    assert [r.cause for r in restarts] == ["operator"]
    ok, detail, fix = verdict(restarts, 0, 0, True)
    assert ok and "operator" in detail and not fix


def test_watchdog_restart_fails_naming_the_watchdog() -> None:
    restarts = classify(
        _journal(
            START,
            (UNIT_PROCESS_EXIT, {"EXIT_CODE": "killed", "EXIT_STATUS": "9"}),
            (UNIT_FAILURE_RESULT, {"UNIT_RESULT": "watchdog"}),
            START,
        )
    )
    assert [r.cause for r in restarts] == ["watchdog"]
    ok, detail, fix = verdict(restarts, 0, 0, True)
    assert not ok and "watchdog" in detail and "watchdog" in fix and "journalctl --user -u flipedit-preview" in fix


def test_crash_names_the_exit_code_and_a_silent_death_is_a_crash() -> None:
    restarts = classify(
        _journal(
            START,
            (UNIT_PROCESS_EXIT, {"EXIT_CODE": "exited", "EXIT_STATUS": "1"}),
            (UNIT_FAILURE_RESULT, {"UNIT_RESULT": "exit-code"}),
            START,
            START,
        )
    )
    assert [r.cause for r in restarts] == ["crash", "crash"]
    assert "exit-code" in restarts[0].detail and "status 1" in restarts[0].detail
    assert not verdict(restarts, 0, 0, True)[0]


def test_upgrade_is_a_restart_into_a_new_version() -> None:
    restarts = classify(
        _journal(START, (UNIT_STOPPING, {"JOB_TYPE": "stop"}), ("stopped", {}), ("start", {"VERSION": "0.1.1"}))
    )
    assert [(r.cause, r.detail) for r in restarts] == [("upgrade", "0.1.0 -> 0.1.1")]
    assert verdict(restarts, 0, 0, True)[0]


def test_unexplained_restarts_and_withheld_heartbeats_fail() -> None:
    assert not verdict([], 0, 1, False)[0]
    ok, detail, fix = verdict([], 2, 0, False)
    assert not ok and "withheld" in detail and "journalctl -u flipedit-preview" in fix


def test_a_fault_not_yet_followed_by_a_start_counts() -> None:
    restarts = classify(_journal(START, (UNIT_FAILURE_RESULT, {"UNIT_RESULT": "watchdog"})))
    assert [r.cause for r in restarts] == ["watchdog"] and not verdict(restarts, 0, 0, True)[0]

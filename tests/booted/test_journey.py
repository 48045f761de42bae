"""The README's journey on a booted Debian, as an unprivileged user with lingering, with the .deb installed.

One container for the session (conftest.py); the tests run in file order and each is one step of the
journey, building on the previous ones (socket enabled, then the frame, then previewctl, ...).
Nothing here adds a drop-in: the units run exactly as packaged.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.booted.journey import INSIDE_IN_BOX, Booted, newer_build, upgrade_while_editor_asks
from tests.support.helpers import exposure_level

SERVICE, SOCKET = "flipedit-preview.service", "flipedit-preview.socket"
RED, GREEN = (220, 20, 20), (20, 200, 20)

pytestmark = pytest.mark.booted


def _close(pixel: object, colour: tuple[int, int, int]) -> bool:
    return isinstance(pixel, list) and all(abs(a - b) <= 40 for a, b in zip(pixel, colour, strict=False))


def test_packaged_units_start_unchanged_with_exposure_2_or_lower(booted: Booted) -> None:
    booted.systemctl("enable", "--now", SOCKET)
    assert booted.show(SERVICE, "DropInPaths") == ""  # no drop-in from the test, none from anyone
    assert booted.show(SERVICE, "FragmentPath") == "/usr/lib/systemd/user/flipedit-preview.service"
    exposure = exposure_level(
        booted.as_user("systemd-analyze", "--user", "security", SERVICE, "--no-pager", check=False).stdout
    )
    print(f"\nbooted: user unit exposure {exposure}")
    assert exposure <= 2.0


def test_first_frame_socket_activated_as_the_user(booted: Booted) -> None:
    assert booted.show(SERVICE, "ActiveState") == "inactive"  # only the socket listens until the first request
    got = booted.frame(5)
    assert got["status"] == 200 and _close(got["pixel"], RED), got  # the newest project in the user's list
    booted.wait_active()
    pid = booted.show(SERVICE, "MainPID")
    owner = booted.box.run("ps", "-o", "user=", "-p", pid).stdout.strip()
    assert owner == booted.user


def test_no_insecure_memory_warning_at_start(booted: Booted) -> None:
    journal = booted.as_user("journalctl", "--user", "-u", "flipedit-preview", "--no-pager", "-o", "cat").stdout
    assert "\nserving " in journal  # the ready entry: the daemon did start
    assert "insecure memory" not in journal


def test_previewctl_health_status_doctor_logs_stats_render(booted: Booted) -> None:
    health = booted.previewctl("health", "--json")
    assert health.returncode == 0 and json.loads(health.stdout)["status"] == "ok", health
    status = booted.previewctl("status")
    assert status.returncode == 0, status
    assert "user manager" in status.stdout and f"{booted.projects}/red.sqlite" in status.stdout
    doctor = booted.previewctl("doctor")
    assert doctor.returncode == 0, doctor.stdout
    assert "journalctl --user -u flipedit-preview" in doctor.stdout
    logs = booted.previewctl("logs", "-n", "20")
    assert logs.returncode == 0 and "GET /get_frame/5" in logs.stdout, logs
    stats = booted.previewctl("stats", "--json")
    assert stats.returncode == 0 and json.loads(stats.stdout)["requests"] >= 1, stats
    render = booted.previewctl("render", "7", "-O", f"{booted.home}/frame7.jpg")
    assert render.returncode == 0, render
    assert booted.as_user("od", "-An", "-tx1", "-N2", f"{booted.home}/frame7.jpg").stdout.split() == [
        "ff",
        "d8",
    ]  # a JPEG


def test_journalctl_user_u_shows_the_unit_and_plain_u_does_not(booted: Booted) -> None:
    user = booted.as_user("journalctl", "--user", "-u", "flipedit-preview", "--no-pager").stdout
    assert "flipedit-previewd" in user and "GET /get_frame/5" in user
    plain = booted.as_user("journalctl", "-u", "flipedit-preview", "--no-pager", check=False).stdout
    assert "GET /get_frame" not in plain  # what the README's note explains: -u alone means a system unit
    empty = booted.previewctl("logs", "--request-id", "no-such-request")
    assert empty.returncode == 1 and "journalctl --user -u flipedit-preview" in empty.stderr, (
        empty
    )  # none found: exit 1


def test_reload_keeps_the_process_and_serves(booted: Booted) -> None:
    pid = booted.show(SERVICE, "MainPID")
    booted.systemctl("reload", SERVICE)
    assert booted.show(SERVICE, "MainPID") == pid
    assert booted.frame(6)["status"] == 200
    logs = booted.previewctl("logs", "--event", "reload")
    assert "reloaded configuration" in logs.stdout, logs


def test_editor_switches_projects_within_1s_without_restart(booted: Booted) -> None:
    pid = booted.show(SERVICE, "MainPID")
    took = json.loads(booted.inside("switch", booted.projects).stdout)["served_after_s"]
    print(f"\nbooted: newer project served after {took} s")
    assert took is not None and took <= 1.0
    assert booted.show(SERVICE, "MainPID") == pid
    switched = booted.as_user(
        "journalctl",
        "--user",
        "-u",
        "flipedit-preview",
        "--no-pager",
        "-o",
        "cat",
        "MESSAGE_ID=5a3c0e8d9f1b4e67a2d4c6b8e0f21a97",
    ).stdout
    assert f"{booted.projects}/green.sqlite" in switched
    assert f"{booted.projects}/green.sqlite" in booted.previewctl("status").stdout


def test_operator_restart_is_not_a_fault_for_doctor(booted: Booted) -> None:
    booted.systemctl("restart", SERVICE)
    booted.wait_active()
    assert booted.frame(1)["status"] == 200
    doctor = booted.previewctl("doctor")
    print("\n" + doctor.stdout)
    assert doctor.returncode == 0, doctor.stdout
    assert "operator" in doctor.stdout


def test_upgrade_while_the_editor_asks_for_frames(booted: Booted) -> None:
    deb, version = newer_build(booted)
    result = upgrade_while_editor_asks(booted, deb)
    print(f"\nbooted upgrade: {result['ok']} frames, {len(result['failures'])} failures, versions {result['versions']}")  # type: ignore[arg-type]
    assert result["failures"] == [], result["failures"]
    assert version in result["versions"]  # type: ignore[operator]
    # Issue 18: the editor's pooled connections, never retried, live through the upgrade's restart.
    pool = result["pool"]
    print(f"booted upgrade, pooled no-retry client: {pool}")
    assert pool["failures"] == 0 and pool["reconnects"] == 0, pool  # type: ignore[index]
    assert pool["initial_ports"] == pool["final_ports"] and pool["daemon_pids"] >= 2, pool  # type: ignore[index]
    assert booted.box.run("dpkg-query", "-W", "-f=${Version}", "flipedit-previewd").stdout == version
    doctor = booted.previewctl("doctor")
    assert doctor.returncode == 0 and "upgrade" in doctor.stdout, doctor.stdout


def test_watchdog_restarts_a_stopped_daemon_and_doctor_names_it(booted: Booted) -> None:
    booted.wait_active()
    before = int(booted.show(SERVICE, "NRestarts"))
    booted.box.run("kill", "-STOP", booted.show(SERVICE, "MainPID"))
    deadline = time.monotonic() + 20
    while int(booted.show(SERVICE, "NRestarts")) <= before:
        assert time.monotonic() < deadline, "no watchdog restart"
        time.sleep(0.2)
    booted.wait_active()
    assert booted.frame(2)["status"] == 200
    doctor = booted.previewctl("doctor")
    print("\n" + doctor.stdout)
    assert doctor.returncode == 1, doctor.stdout
    failed = [line for line in doctor.stdout.splitlines() if line.startswith("[FAIL]")]
    assert any("watchdog" in line for line in failed), doctor.stdout
    assert "journalctl --user -u flipedit-preview" in doctor.stdout


def test_stop_closes_the_port(booted: Booted) -> None:
    booted.systemctl("stop", SOCKET, SERVICE)
    assert booted.show(SERVICE, "ActiveState") == "inactive"
    refused = booted.as_user(
        "/usr/bin/python3", "-c", "import socket; s = socket.socket(); print(s.connect_ex(('127.0.0.1', 8081)))"
    )
    assert refused.stdout.strip() != "0"


def test_system_wide_unit_and_journalctl_u(booted: Booted) -> None:
    box = booted.box
    exposure = exposure_level(box.run("systemd-analyze", "security", SERVICE, "--no-pager", check=False).stdout)
    print(f"\nbooted: system unit exposure {exposure}")
    assert exposure <= 2.0
    box.run("systemctl", "enable", "--now", SOCKET)
    try:
        got = json.loads(box.run("/usr/bin/python3", INSIDE_IN_BOX, "frame", "0").stdout)
        assert got["status"] == 200, got
        journal = box.run("journalctl", "-u", "flipedit-preview", "--no-pager", "-o", "cat").stdout
        assert "\nserving " in journal and "GET /get_frame/0" in journal
        assert "insecure memory" not in journal
        assert box.run("systemctl", "show", SERVICE, "-pDropInPaths", "--value").stdout.strip() == ""
    finally:
        box.run("systemctl", "disable", "--now", SOCKET, SERVICE, check=False)

"""What previewctl learns about the machine it runs on: PID 1, and the systemd manager that knows the unit.

System facts, beside the presentation in ``words.py``: ``systemctl`` is asked (with the injected
environment, within 5 s) which scope holds flipedit-preview.service and what its units' properties are.
"""

from __future__ import annotations

import os
import subprocess

from .context import CtlError

SERVICE, SOCKET = "flipedit-preview.service", "flipedit-preview.socket"
SERVICE_PROPS = [
    "ActiveState",
    "SubState",
    "MainPID",
    "NRestarts",
    "Result",
    "StatusText",
    "ActiveEnterTimestamp",
    "InactiveEnterTimestamp",
    "ExecMainStatus",
    "WatchdogUSec",
    "LogRateLimitIntervalUSec",
]


def pid1(comm: str = "/proc/1/comm") -> str:
    """PID 1's name ("systemd", "bash", "tini"): "?" when it cannot be read."""
    try:
        with open(comm) as handle:
            return handle.read().strip() or "?"
    except OSError:
        return "?"


def _systemctl(scope: list[str], args: list[str], environ: dict[str, str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["systemctl", *scope, *args], capture_output=True, text=True, timeout=5, env={**os.environ, **environ}
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def find_scope(environ: dict[str, str]) -> tuple[list[str] | None, bool]:
    """(the scope whose manager knows the unit, or None; whether any systemd manager answered at all)."""
    any_manager = False
    for scope in (["--user"], []):
        done = _systemctl(scope, ["show", SERVICE, "-p", "LoadState"], environ)
        if done is None or done.returncode != 0:
            continue
        any_manager = True
        if "LoadState=loaded" in done.stdout:
            return scope, True
    return None, any_manager


def systemctl_scope(environ: dict[str, str]) -> list[str]:
    """``--user`` when the user manager knows the unit, else the system manager."""
    scope, _ = find_scope(environ)
    if scope is None:
        raise CtlError(
            f"no {SERVICE} unit found for this user or the system",
            "install the units (see README, 'Install') and run 'systemctl --user daemon-reload'",
        )
    return scope


def no_manager_reason() -> str:
    return f"no systemd manager answers here (PID 1 is {pid1()})"


def unit_props(scope: list[str], unit: str, props: list[str], environ: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        ["systemctl", *scope, "show", unit, *(f"-p{p}" for p in props)],
        capture_output=True,
        text=True,
        timeout=5,
        env={**os.environ, **environ},
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

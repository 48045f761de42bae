"""previewctl status: the systemd unit's state next to the daemon's health.

A daemon run by hand has no unit: the systemd lines say n/a and its health alone is shown.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .arguments import format_args
from .context import EXIT_OK, EXIT_PROBLEM, EXIT_UNREACHABLE, Command, Env, client_for, wants_json
from .discovery import TimedOut, Unreachable
from .healthview import project_line, proxy_text
from .running import how_run
from .safeout import clean
from .system import SERVICE, SERVICE_PROPS, SOCKET, find_scope, no_manager_reason, unit_props
from .words import duration, show


def cmd_status(args: argparse.Namespace, env: Env) -> int:
    scope, any_manager = find_scope(env.environ)
    report: dict[str, Any] = {"manager": None, "service": None, "socket": None, "health": None, "daemon": None}
    lines: list[str] = []
    if scope is None:
        why = no_manager_reason() if not any_manager else f"no {SERVICE} unit for this user or the system"
        lines.append(f"systemd     {env.paint('n/a')}: {why}; a daemon run by hand is shown by its health alone")
        report["manager"] = "none" if not any_manager else "no unit"
        sock: dict[str, str] = {}
        service: dict[str, str] = {}
    else:
        service = unit_props(scope, SERVICE, SERVICE_PROPS, env.environ)
        sock = unit_props(scope, SOCKET, ["ActiveState", "SubState", "Listen"], env.environ)
        report.update(manager="user" if scope else "system", service=service, socket=sock)
        since = (
            service.get("ActiveEnterTimestamp")
            if service.get("ActiveState") == "active"
            else service.get("InactiveEnterTimestamp")
        )
        state = service.get("ActiveState") or "-"
        lines.append(f"unit        {SERVICE} ({'user' if scope else 'system'} manager)")
        lines.append(
            f"service     {env.paint(state)} ({show(service.get('SubState'))}) since {since or '-'}   MainPID "
            f"{show(service.get('MainPID'))}"
        )
        lines.append(
            f"restarts    {show(service.get('NRestarts'))}   last result {show(service.get('Result'))}   "
            f"exit status {show(service.get('ExecMainStatus'))}"
        )
        lines.append(
            f"socket      {env.paint(sock.get('ActiveState') or '-')} ({show(sock.get('SubState'))})   "
            f"{sock.get('Listen', '')}".rstrip()
        )
        if service.get("StatusText"):
            lines.append(f"status text {clean(service['StatusText'])}")
    client = client_for(args, env)
    code = EXIT_OK
    try:
        health = client.health()
    except Unreachable as exc:
        health = None
        lines.append(f"health      {env.paint('timeout' if isinstance(exc, TimedOut) else 'unreachable')} ({exc})")
        code = EXIT_UNREACHABLE if scope is None or sock.get("ActiveState") != "active" else EXIT_PROBLEM
    if health is not None:
        report.update(health=health, daemon=client.shown)
        lines.append(
            f"health      {env.paint(str(health.get('status', '-')))} via {client.shown}   pid "
            f"{show(health.get('pid'))}, "
            f"up {duration(health.get('uptime_s'))}"
        )
        lines.append(project_line(health.get("project") or {}, how_run(health.get("pid"))))
        lines.append(f"proxies     {proxy_text(health)}")
        ok = (scope is None or service.get("ActiveState") == "active") and health.get("status") == "ok"
        code = EXIT_OK if ok else EXIT_PROBLEM
    if wants_json(args):
        env.out(json.dumps(report, indent=2))
    else:
        for line in lines:
            env.say(line)
    return code


COMMAND = Command(
    "status",
    "the systemd unit's state next to the daemon's health (systemd checks n/a for a daemon run by hand)",
    format_args,
    cmd_status,
)

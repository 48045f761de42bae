"""previewctl health: one readable summary of the daemon's /health (exit 0 ok, 1 degraded/overloaded, 2 unreachable)."""

from __future__ import annotations

import argparse
import json

from .arguments import format_args
from .context import EXIT_OK, EXIT_PROBLEM, Command, Env, client_for, unreachable_error, wants_json
from .discovery import Unreachable
from .healthview import render_health
from .running import how_run
from .safeout import clean


def cmd_health(args: argparse.Namespace, env: Env) -> int:
    client = client_for(args, env)
    try:
        health = client.health()
    except Unreachable as exc:
        error = unreachable_error(exc, client.timeout)
        if wants_json(args):  # the same document shape as when it answers: a status, and why
            env.out(json.dumps({"status": "unreachable", "daemon": client.shown, "error": clean(exc)}, indent=2))
        raise error from None
    if wants_json(args):
        env.out(json.dumps(health, indent=2))
    else:
        env.out(f"daemon      {client.shown}")
        for line in render_health(health, env.color, how_run(health.get("pid")), env.columns):
            env.out(line)
    return EXIT_OK if health.get("status") == "ok" else EXIT_PROBLEM


COMMAND = Command(
    "health",
    "one readable summary of the daemon's health (exit 0 ok, 1 degraded/overloaded, 2 unreachable)",
    format_args,
    cmd_health,
)

"""previewctl proxies list|build|clear: the proxy media the daemon keeps (GET, POST, DELETE /proxies).

``build`` makes proxies now for every video of the timeline being served (the project open in the
editor, or a JSON timeline), as the daemon does by itself for those whose random frames are expensive;
``--all`` includes the others. ``build`` and ``clear`` change the daemon's state, so over TCP they carry
the token the daemon wrote (as ``timeline put`` does); the unix socket needs none from its own user.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .arguments import format_args
from .cmd_timeline import refused
from .context import EXIT_OK, Command, CtlError, Env, client_for, unreachable_error, wants_json
from .discovery import Unreachable
from .healthview import megabytes, proxy_text
from .safeout import as_int, clean, clean_tree


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        choices=("list", "build", "clear"),
        nargs="?",
        default="list",
        help="list: the proxies kept and what is being made (default); build: make proxies now for the videos "
        "of the timeline being served; clear: remove every proxy",
    )
    p.add_argument("--all", action="store_true", help="build: also videos whose random frames are cheap")
    format_args(p)


def cmd_proxies(args: argparse.Namespace, env: Env) -> int:
    client = client_for(args, env)
    method, path = {
        "list": ("GET", "/proxies"),
        "build": ("POST", "/proxies" + ("?all=1" if args.all else "")),
        "clear": ("DELETE", "/proxies"),
    }[args.action]
    try:
        response = client.request(method, path)
    except Unreachable as exc:
        raise unreachable_error(exc, client.timeout) from None
    if response.status_code == 404:
        raise CtlError("this daemon has no /proxies", "it predates proxy media: upgrade flipedit-previewd")
    if response.status_code != 200:
        raise refused(response, f"proxies {args.action}")
    try:
        answer = clean_tree(response.json())
    except ValueError:
        raise CtlError(
            f"proxies {args.action}: the answer is not JSON", "check that --url points at flipedit-previewd"
        ) from None
    if not isinstance(answer, dict):
        raise CtlError(f"proxies {args.action}: unexpected answer", "check that --url points at flipedit-previewd")
    if wants_json(args):
        env.out(json.dumps({"action": args.action, **answer}, indent=2))
        return EXIT_OK
    summary = proxy_text({"proxies": answer.get("proxies")})
    if args.action == "build":
        env.out(f"{as_int(answer.get('queued'))} source(s) queued; proxies: {summary}")
    elif args.action == "clear":
        env.out(f"{as_int(answer.get('removed'))} proxies removed; proxies: {summary}")
    else:
        listed = answer.get("entries")
        entries: list[Any] = listed[:1000] if isinstance(listed, list) else []
        env.out(f"proxies: {summary}")
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            state = (
                "complete"
                if entry.get("complete")
                else f"stopped: {entry.get('stopped')}"
                if entry.get("stopped")
                else f"refused: {entry.get('refused')}"
                if entry.get("refused")
                else "partial"
            )
            raw = entry.get("size")
            size = [str(side) for side in raw[:2]] if isinstance(raw, list) and len(raw) >= 2 else ["?", "?"]
            env.out(
                f"  {clean(entry.get('source') or '(unknown source)', 120)}  {size[0]}x{size[1]}  "
                f"{as_int(entry.get('frames'))}/{as_int(entry.get('frames_total'))} frames  "
                f"{megabytes(entry.get('bytes'))}  "
                f"{clean(state, 80)}  used {clean(entry.get('used_s_ago'), 20)} s ago"
            )
    return EXIT_OK


COMMAND = Command(
    "proxies",
    "list, build (for the timeline served) or clear the proxy media the daemon makes for slow sources",
    add_arguments,
    cmd_proxies,
)

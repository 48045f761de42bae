"""previewctl proxies list|build|clear: the proxy media the daemon keeps (GET, POST, DELETE /proxies).

``build`` makes proxies now for every video of the timeline being served (the project open in the
editor, or a JSON timeline), as the daemon does by itself for those whose random frames are expensive;
``--all`` includes the others. ``build --project FILE`` makes them ahead for another project database (one
not served yet): the daemon reads it as it reads the one it serves, refuses it with the reason if it cannot,
and confines each maker to that project's media roots. ``build`` and ``clear`` change the daemon's state, so
over TCP they carry the token the daemon wrote (as ``timeline put`` does); the unix socket needs none from
its own user.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any
from urllib.parse import quote

from .arguments import format_args
from .cmd_timeline import refused
from .context import EXIT_OK, EXIT_USAGE, Command, CtlError, Env, client_for, unreachable_error, wants_json
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
    p.add_argument(
        "--project",
        metavar="FILE",
        help="build: for this FlipEdit project database instead of the timeline served (ahead of opening it)",
    )
    format_args(p)


def build_target(args: argparse.Namespace) -> str:
    """POST /proxies's target: ``?all=1``, ``?project=`` the absolute path (the daemon's working directory is not
    ours; symlinks are left for the daemon to refuse, never resolved here)."""
    query = []
    if args.all:
        query.append("all=1")
    if args.project is not None:
        query.append("project=" + quote(os.path.abspath(os.path.expanduser(args.project)), safe="/"))
    return "/proxies" + ("?" + "&".join(query) if query else "")


def cmd_proxies(args: argparse.Namespace, env: Env) -> int:
    if args.project is not None and args.action != "build":
        raise CtlError(
            f"--project is for 'proxies build', not '{args.action}'",
            "previewctl proxies build --project FILE",
            EXIT_USAGE,
        )
    if args.project is not None and not args.project:
        raise CtlError("--project needs a FILE", "previewctl proxies build --project FILE", EXIT_USAGE)
    client = client_for(args, env)
    method, path = {
        "list": ("GET", "/proxies"),
        "build": ("POST", build_target(args)),
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
        lines = build_lines(answer, summary)
        for line in lines:
            env.out(line)
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


def build_lines(answer: dict[str, Any], summary: str) -> list[str]:
    """What ``build`` prints: how many sources were queued (for which project, when one was named), the proxies'
    summary, then each source queued that the daemon listed."""
    project = answer.get("project")
    where = f" for project {clean(project, 300)}" if isinstance(project, str) and project else ""
    lines = [f"{as_int(answer.get('queued'))} source(s) queued{where}; proxies: {summary}"]
    listed = answer.get("sources")
    for source in listed[:1000] if isinstance(listed, list) else []:
        lines.append(f"  {clean(source, 300)}")
    return lines


COMMAND = Command(
    "proxies",
    "list, build (for the timeline served, or ahead for another project) or clear the proxy media the daemon "
    "makes for slow sources",
    add_arguments,
    cmd_proxies,
)

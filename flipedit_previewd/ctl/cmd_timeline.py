"""previewctl timeline put|get|clear: a JSON timeline shown instead of the project database.

PUT and DELETE /timeline are the daemon's own user's: over the unix socket by its peer check,
over TCP with the token the daemon writes at start (``client.PreviewClient.fetch`` reads it, as
for any client). ``get`` writes what is served (from the database or a JSON timeline) in the
JSON form ``put`` takes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from flipedit_previewd.client.transport import MAX_JSON_BYTES

from .arguments import format_args
from .context import EXIT_OK, EXIT_USAGE, Command, CtlError, Env, client_for, unreachable_error, wants_json
from .discovery import Unreachable
from .safeout import clean, clean_tree, refusal_reason

MAX_TIMELINE_BYTES = MAX_JSON_BYTES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        choices=("put", "get", "clear"),
        help="put: show the JSON timeline in FILE instead of the project; get: write the timeline served to FILE "
        "(default stdout); clear: back to the project database",
    )
    p.add_argument(
        "file", nargs="?", metavar="FILE", help="the JSON timeline (put: required, - for stdin; get: default stdout)"
    )
    format_args(p)


def _read(path: str) -> bytes:
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_TIMELINE_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_TIMELINE_BYTES + 1)
    except OSError as exc:
        raise CtlError(
            f"cannot read {path}: {exc.strerror}", "name a readable JSON file, or - for stdin", EXIT_USAGE
        ) from None
    if len(data) > MAX_TIMELINE_BYTES:
        raise CtlError(
            f"{path} is over {MAX_TIMELINE_BYTES} bytes",
            "a timeline that large is refused by the daemon too",
            EXIT_USAGE,
        )
    try:
        json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise CtlError(
            f"{path} is not valid JSON: {clean(exc, 200)}",
            "see docs/usage.md, 'JSON timelines', for the format",
            EXIT_USAGE,
        ) from None
    return data


def refused(response: Any, action: str) -> CtlError:
    reason = refusal_reason(response, 300)
    if response.status_code in (401, 403):
        hint = (
            "only the daemon's own user may change the timeline: run previewctl as that user, over the unix socket "
            "(--url /run/user/UID/flipedit-preview.sock) or with the token the daemon wrote "
            "($XDG_RUNTIME_DIR/flipedit-preview/token)"
        )
    elif response.status_code < 500:
        hint = "the daemon refused the timeline as it said; fix the file"
    else:
        hint = "see 'previewctl logs -n 20' for the reason"
    return CtlError(f"timeline {action}: HTTP {response.status_code} {reason}", hint)


def cmd_timeline(args: argparse.Namespace, env: Env) -> int:
    if args.action == "put" and not args.file:
        raise CtlError("timeline put needs a FILE (- for stdin)", "previewctl timeline put timeline.json", EXIT_USAGE)
    if args.action == "clear" and args.file:
        raise CtlError("timeline clear takes no FILE", "previewctl timeline clear", EXIT_USAGE)
    if args.action == "get" and args.file and args.file != "-" and os.path.isdir(args.file):
        raise CtlError(f"{args.file} is a directory", "name a file, or leave it out for stdout", EXIT_USAGE)
    body = _read(args.file) if args.action == "put" else None
    client = client_for(args, env)
    method = {"put": "PUT", "get": "GET", "clear": "DELETE"}[args.action]
    try:
        response = client.request(
            method, "/timeline", body=body, headers={"Content-Type": "application/json"} if body else None
        )
    except Unreachable as exc:
        raise unreachable_error(exc, client.timeout) from None
    if response.status_code != 200:
        raise refused(response, args.action)
    try:
        answer = response.json()
    except ValueError:
        raise CtlError(
            f"timeline {args.action}: the answer is not JSON", "check that --url points at flipedit-previewd"
        ) from None
    if args.action == "get":
        if args.file and args.file != "-":
            try:
                with open(args.file, "w", encoding="utf-8") as handle:
                    json.dump(answer, handle, indent=2)
                    handle.write("\n")
            except OSError as exc:
                raise CtlError(f"cannot write {args.file}: {exc.strerror}", "choose a writable path") from None
            tracks = answer.get("tracks") if isinstance(answer, dict) else None
            clips = (
                sum(len(t["clips"]) for t in tracks if isinstance(t, dict) and isinstance(t.get("clips"), list))
                if isinstance(tracks, list)
                else None
            )
            report = {"action": "get", "file": args.file, "clips": clips}
            env.out(
                json.dumps(report) if wants_json(args) else f"timeline -> {clean(args.file)}: {report['clips']} clips"
            )
        else:
            env.out(json.dumps(answer, indent=2))
        return EXIT_OK
    answer = clean_tree(answer) if isinstance(answer, dict) else {}
    if wants_json(args):
        env.out(json.dumps({"action": args.action, **answer}))
    elif args.action == "put":
        env.out(
            f"timeline from {clean(args.file)} shown instead of the project: {answer.get('clips', '-')} clips, "
            f"{answer.get('total_frames', '-')} frames, revision {answer.get('revision', '-')}"
        )
    else:
        env.out(f"timeline cleared: back to the project database {answer.get('path') or '(none)'}")
    return EXIT_OK


COMMAND = Command(
    "timeline",
    "put, get or clear a JSON timeline shown instead of the project (the daemon's own user only)",
    add_arguments,
    cmd_timeline,
)

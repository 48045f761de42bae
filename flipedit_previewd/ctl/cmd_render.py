"""previewctl render: one frame to a file (-O FILE, - for stdout), its format from the extension or --format.

``-o text|json`` is the report's format, as for every other command. A frame past the end of the
timeline is rendered (black) by the daemon: previewctl says so on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os

from .arguments import format_args, number
from .context import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    Command,
    CtlError,
    Env,
    client_for,
    unreachable_error,
    wants_json,
)
from .discovery import DaemonClient, Unreachable
from .safeout import as_int, clean, refusal_reason
from .words import fit, show

FORMATS = ("jpeg", "png")
EXTENSIONS = {".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".png": "png"}
MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("frame", type=number(int, low=0, high=10_000_000), help="timeline frame index (from 0)")
    p.add_argument(
        "-O",
        "--output-file",
        metavar="FILE",
        help="where to write the image; - for stdout (default frame.jpg, or frame.png with --format png)",
    )
    p.add_argument("--format", choices=FORMATS, help="image format (default: from the file's extension, else jpeg)")
    p.add_argument("--width", type=number(int, low=1, high=16384), help="render at this width (px)")
    p.add_argument(
        "--height",
        type=number(int, low=1, high=16384),
        help="render at this height (px); another aspect ratio is letterboxed",
    )
    p.add_argument("--quality", type=number(int, low=1, high=95), help="JPEG quality 1-95")
    format_args(p)


def target(output_file: str | None, fmt: str | None) -> tuple[str, str]:
    """(the file, the image format): the extension decides unless --format does; they must not disagree."""
    if output_file is None:
        fmt = fmt or "jpeg"
        return ("frame.png" if fmt == "png" else "frame.jpg"), fmt
    if output_file == "-":
        return output_file, fmt or "jpeg"
    ext = os.path.splitext(output_file)[1].lower()
    by_name = EXTENSIONS.get(ext)
    if fmt and by_name and fmt != by_name:
        raise CtlError(
            f"-O {output_file} names a {by_name.upper()} file but --format is {fmt}",
            f"use a .{'png' if fmt == 'png' else 'jpg'} name, or drop --format",
            EXIT_USAGE,
        )
    if not fmt and not by_name:
        raise CtlError(
            f"cannot tell the image format from '{ext or output_file}'",
            "name the file .jpg or .png, or pass --format jpeg|png",
            EXIT_USAGE,
        )
    return output_file, fmt or by_name or "jpeg"


def cmd_render(args: argparse.Namespace, env: Env) -> int:
    if args.output_file not in (None, "-") and os.path.isdir(args.output_file):
        raise CtlError(
            f"-O {args.output_file} is a directory", "name a file, e.g. -O frame.jpg, or -O - for stdout", EXIT_USAGE
        )
    output, fmt = target(args.output_file, args.format)
    to_stdout = output == "-"
    if to_stdout and env.is_tty:
        raise CtlError(
            "refusing to write an image to the terminal", "redirect stdout, or write a file with -O FILE", EXIT_USAGE
        )
    client = client_for(args, env)
    params = (
        ("width", args.width),
        ("height", args.height),
        ("quality", args.quality),
        ("format", "png" if fmt == "png" else None),
    )
    query = "&".join(f"{k}={v}" for k, v in params if v)
    try:
        response, ms = client.timed_get(
            f"/get_frame/{args.frame}" + (f"?{query}" if query else ""), timeout=args.timeout
        )
    except Unreachable as exc:
        raise unreachable_error(exc, client.timeout) from None
    if response.status_code != 200:
        reason = refusal_reason(response, 200)
        if response.status_code == 503:
            hint = (
                f"the daemon is at a limit; retry after {response.headers.get('Retry-After', 'a few')} s "
                f"('previewctl health')"
            )
        elif response.status_code < 500:
            hint = "the request was refused as the daemon said; check the arguments"
        else:
            hint = "see 'previewctl logs -n 20' for the reason"
        raise CtlError(f"frame {args.frame}: HTTP {response.status_code} {reason}", hint)
    if not response.content.startswith(MAGIC[fmt]):
        raise CtlError(
            f"frame {args.frame}: the answer is not a {fmt.upper()} image "
            f"({clean(response.headers.get('Content-Type'), 80)})",
            "check that --url points at flipedit-previewd",
        )
    if to_stdout:
        binary = getattr(env.stdout, "buffer", None)
        if binary is None:
            raise CtlError("this output stream takes no binary data", "write a file with -O FILE", EXIT_USAGE)
        binary.write(response.content)
        binary.flush()
    else:
        try:
            with open(output, "wb") as handle:
                handle.write(response.content)
        except OSError as exc:
            raise CtlError(f"cannot write {output}: {exc.strerror}", "choose a writable path with -O") from None
    total = _total_frames(client)
    past_end = total is not None and args.frame >= total
    headers = response.headers
    report = {
        "frame": args.frame,
        "output": output,
        "format": fmt,
        "bytes": len(response.content),
        "ms": round(ms, 1),
        "cache": clean(headers.get("X-Cache"), 20) or None,
        "render_ms": _float(headers.get("X-Render-Ms")),
        "queue_ms": _float(headers.get("X-Queue-Ms")),
        "etag": clean(headers.get("ETag"), 200) or None,
        "total_frames": total,
        "past_end": past_end,
    }
    stream = env.stderr if to_stdout else env.stdout
    if wants_json(args):
        print(json.dumps(report), file=stream, flush=True)
        env.printed = env.printed or not to_stdout
    else:
        where = "stdout" if to_stdout else output
        timing = (
            f"; render {show(report['render_ms'], 'ms')}, queue {show(report['queue_ms'], 'ms')}"
            if report["cache"] != "hit"
            else ", from the daemon's frame cache"
        )
        line = (
            f"frame {args.frame} -> {clean(where)}: {len(response.content)} bytes in {ms:.1f} ms (cache "
            f"{show(report['cache'])}{timing})"
        )
        print("\n".join(fit(line, 2, env.columns)), file=stream, flush=True)
    if past_end:
        last = f"frames 0-{total - 1}" if total else "no frames: the timeline is empty"
        print(
            f"previewctl: frame {args.frame} is past the end of the timeline ({last}); the image is the empty canvas",
            file=env.stderr,
            flush=True,
        )
        return EXIT_PROBLEM
    return EXIT_OK


def _total_frames(client: DaemonClient) -> int | None:
    """The timeline's length (from /debug/timeline), or None when it cannot be told."""
    try:
        data = client.get("/debug/timeline").json()
    except (Unreachable, ValueError):
        return None
    total = data.get("total_frames") if isinstance(data, dict) else None
    return as_int(total, -1) if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None


def _float(raw: str | None) -> float | None:
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


COMMAND = Command(
    "render",
    "fetch one frame and report timing and cache state (exit 1 past the end of the timeline)",
    add_arguments,
    cmd_render,
)

"""previewctl profile: py-spy on the daemon's main process and its workers, one flame graph (SVG).

Only the process that holds the socket at --url is attached to (``verify.daemon_problem``): /health
is the answer of whatever listens there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from typing import Any

from .arguments import format_args, number
from .context import EXIT_OK, EXIT_USAGE, Command, CtlError, Env, client_for, unreachable_error, wants_json
from .discovery import DaemonClient, Unreachable
from .verify import daemon_problem


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--seconds", type=number(int, low=1, high=3600), default=10, metavar="N", help="how long to record (default 10)"
    )
    p.add_argument(
        "-O",
        "--output-file",
        default="profile.svg",
        metavar="FILE.svg",
        help="the flame graph to write (default profile.svg)",
    )
    p.add_argument(
        "--rate", type=number(int, low=1, high=1000), default=100, metavar="HZ", help="samples per second (default 100)"
    )
    p.add_argument("--idle", action="store_true", help="include threads that are waiting, not only running")
    format_args(p)


def _health_or_exit(client: DaemonClient) -> dict[str, Any]:
    try:
        return client.health()
    except Unreachable as exc:
        raise unreachable_error(exc, client.timeout) from None


def find_py_spy(environ: dict[str, str]) -> str | None:
    """py-spy on PATH, or next to this Python (a virtual environment's bin/)."""
    found = shutil.which("py-spy", path=environ.get("PATH", os.environ.get("PATH")))
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.access(beside, os.X_OK) else None


def cmd_profile(args: argparse.Namespace, env: Env) -> int:
    """The old notes' 'profile the running server' step: py-spy on the main process and its workers, one flame graph."""
    exe = find_py_spy(env.environ)
    if exe is None:
        raise CtlError(
            "py-spy is not installed (an optional dependency of previewctl profile)",
            "install it: 'pip install py-spy' in previewctl's environment, 'make setup', or 'apt install py-spy'",
        )
    if os.path.isdir(args.output_file):
        raise CtlError(f"-O {args.output_file} is a directory", "name a file, e.g. -O profile.svg", EXIT_USAGE)
    client = client_for(args, env)
    health = _health_or_exit(client)
    pid = int(health.get("pid") or 0)
    workers = [int(w["pid"]) for w in health.get("workers") or [] if w.get("pid")]
    if not pid:
        raise CtlError(
            f"the daemon at {client.shown} did not say its pid", "is this flipedit-previewd? see 'previewctl health'"
        )
    if not os.path.exists(f"/proc/{pid}"):
        raise CtlError(
            f"the daemon's pid {pid} is not visible here (another machine, container or PID namespace)",
            "run previewctl profile where the daemon runs",
        )
    target = client.target
    problem = (
        daemon_problem(pid, target.shown if target.unix else target.base)
        if target is not None
        else "no address answered"
    )
    if problem:  # /health is the answer of whatever listens there: ptrace only what holds that socket (ctl/verify.py)
        raise CtlError(
            f"refusing to profile pid {pid}, named by {client.shown}: {problem}",
            "profile the daemon you own by its own address (--url unix:PATH or the port it listens on); "
            "as root, only for the system unit",
        )
    command = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--duration",
        str(args.seconds),
        "--rate",
        str(args.rate),
        "--format",
        "flamegraph",
        "--output",
        args.output_file,
        "--nonblocking",
    ]
    if args.idle:
        command.append("--idle")
    if not wants_json(args):
        print(
            f"recording pid {pid} and workers {', '.join(map(str, workers)) or '-'} for {args.seconds} s ...",
            file=env.stderr,
            flush=True,
        )
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 60)
    except subprocess.TimeoutExpired:
        raise CtlError(
            f"py-spy did not finish within {args.seconds + 60} s", "try again with fewer --seconds"
        ) from None
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    said = next((line for line in lines if line.startswith("Error")), lines[-1] if lines else "")[:300]
    if "No stack counts found" in said:
        raise CtlError(
            f"py-spy saw no Python code running in {args.seconds} s: the daemon was idle",
            "profile while the editor (or bench/load.py) loads it, or add --idle to record waiting threads too",
        )
    if done.returncode != 0 or not os.path.exists(args.output_file):
        if any(word in said.lower() for word in ("permission denied", "operation not permitted", "ptrace")):
            raise CtlError(
                f"no permission to attach to pid {pid}: {said}",
                "py-spy needs ptrace: run as root (sudo previewctl profile ...) or as the daemon's user with "
                "kernel.yama.ptrace_scope=0",
            )
        raise CtlError(
            f"py-spy failed (exit {done.returncode}): {said or 'no output'}",
            "run the py-spy command by hand to see more",
        )
    if not _has_samples(args.output_file):
        os.unlink(args.output_file)  # py-spy's "ERROR: No valid input" picture is not a flame graph
        raise CtlError(
            f"py-spy saw nothing to sample in {args.seconds} s: the daemon was idle; no file written",
            "profile while the editor (or bench/load.py) loads it, or add --idle to record waiting threads too",
        )
    size = os.path.getsize(args.output_file)
    if wants_json(args):
        env.out(
            json.dumps(
                {"output": args.output_file, "bytes": size, "seconds": args.seconds, "pid": pid, "workers": workers}
            )
        )
    else:
        env.say(
            f"flame graph of pid {pid} and workers {', '.join(map(str, workers)) or '-'} ({args.seconds} s) -> "
            f"{args.output_file} "
            f"({size} bytes); open it in a browser",
            2,
        )
    return EXIT_OK


def _has_samples(path: str) -> bool:
    """A flame graph with frames in it; inferno's picture for no input says "No valid input"."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(1 << 20)
    except OSError:
        return False
    return "No valid input" not in text and "<g" in text


COMMAND = Command(
    "profile",
    "record the daemon's main process and workers with py-spy into one flame graph (SVG)",
    add_arguments,
    cmd_profile,
)

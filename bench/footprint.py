"""Footprint: cold start through socket activation, and the idle memory of the whole service. Not a test.

Cold start: `systemd-socket-activate` stands in for systemd's flipedit-preview.socket: it holds the
listening socket and starts the daemon on the first connection, passing the socket (LISTEN_FDS), as
systemd does. Measured from connect() on that socket to the last byte of the first frame, which
includes the interpreter start, imports, the worker processes, the warm-up render and the frame.

Idle PSS: after the first frame and a few idle seconds, the sum of Pss from /proc/PID/smaps_rollup
over the daemon and every descendant (render workers, multiprocessing's resource tracker, if any);
shared libraries are divided among the processes that map them, so the sum is the service's share
of memory. RSS is printed too (it counts shared pages once per process).

  .venv/bin/python -m bench.footprint [--runs 5] [--workers 2] [--idle-seconds S] [--baseline-tree DIR]

With --baseline-tree (another checkout, e.g. `git worktree add --detach /tmp/base REV`) each run measures
that tree's daemon and then this one's, from the same entry point (PYTHONPATH picks the package).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import VENV, free_port, make_project, make_scene

HERE = Path(__file__).resolve().parent

GOAL_PSS_MB, GOAL_COLD_MS = 80.0, 400.0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def rollup(pid: int) -> dict[str, int]:
    """kB values of /proc/PID/smaps_rollup."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0])
    return values


def command(pid: int) -> str:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    if "resource_tracker" in raw:
        return "resource tracker"
    if "proxy.maker" in raw:  # making a proxy (proxy/manager.py): transient, for a few seconds after a project opens
        return "proxy maker"
    if "child_main" in raw or "multiprocessing" in raw:  # multiprocessing: a daemon from before workers.py's _Child
        return "render worker"
    return "main" if "flipedit-previewd" in raw else raw[:40]


def first_frame(port: int) -> tuple[float, int]:
    """connect() to the last byte of GET /get_frame/0; ms and body size."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET /get_frame/0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    elapsed = (time.perf_counter() - started) * 1000
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"first frame failed: {head[:200]!r}")
    return elapsed, len(body)


def raise_if_dead(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"systemd-socket-activate exited with {proc.returncode}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue


def measure(
    db: Path, workers: int, idle_seconds: float, extra: list[str], tree: Path | None = None
) -> dict[str, object]:
    port = free_port()
    # systemd-socket-activate passes the daemon only the variables named with -E, as systemd would.
    passed = {"XDG_CONFIG_HOME": str(db.parent), "XDG_CACHE_HOME": str(db.parent / "cache")}  # proxies: not the user's
    if tree is not None:  # the same entry point, importing the package from another checkout first
        passed["PYTHONPATH"] = str(tree.resolve())
    env = {**os.environ, **passed}
    argv = [
        "systemd-socket-activate",
        "-l",
        f"127.0.0.1:{port}",
        *(f"-E{k}={v}" for k, v in passed.items()),
        str(VENV / "flipedit-previewd"),
        "--project",
        str(db),
        "--workers",
        str(workers),
        *extra,
    ]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # The activator binds before it execs anything; wait until the socket exists (no connection: that
        # would start the daemon), by looking for the listening port in /proc/net/tcp.
        deadline = time.monotonic() + 10
        hexport = f":{port:04X} "
        while time.monotonic() < deadline:
            if any(
                hexport in line and line.split()[3] == "0A"
                for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
            ):
                break
            time.sleep(0.01)
        raise_if_dead(proc)
        cold_ms, size = first_frame(port)
        time.sleep(idle_seconds)
        pids = descendants(proc.pid)
        per = [(command(pid), rollup(pid)) for pid in pids]
        return {
            "cold_ms": cold_ms,
            "bytes": size,
            "pss_mb": sum(r["Pss"] for _, r in per) / 1024,
            "rss_mb": sum(r["Rss"] for _, r in per) / 1024,
            "processes": [(name, round(r["Pss"] / 1024, 1), round(r["Rss"] / 1024, 1)) for name, r in per],
        }
    finally:
        stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--baseline-tree", type=Path, help="another checkout, measured in alternation with this one")
    parser.add_argument("daemon_args", nargs="*", help="extra daemon options (after --)")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        scene = make_scene(Path(tmp))
        db = make_project(Path(tmp), scene)
        runs, baseline = [], []
        for _ in range(args.runs):
            if args.baseline_tree:
                baseline.append(measure(db, args.workers, args.idle_seconds, args.daemon_args, args.baseline_tree))
            runs.append(measure(db, args.workers, args.idle_seconds, args.daemon_args))
    for i, run in enumerate(baseline, 1):
        print(
            f"baseline run {i}: cold start {run['cold_ms']:.0f} ms, idle PSS {run['pss_mb']:.1f} MB (RSS "
            f"{run['rss_mb']:.1f} MB): {run['processes']}"
        )
    if baseline:
        print(
            f"baseline ({args.baseline_tree}) medians: cold start "
            f"{statistics.median(float(r['cold_ms']) for r in baseline):.0f} ms, "  # type: ignore[arg-type]
            f"idle PSS {statistics.median(float(r['pss_mb']) for r in baseline):.1f} MB\n"
        )  # type: ignore[arg-type]
    for i, run in enumerate(runs, 1):
        print(
            f"run {i}: cold start {run['cold_ms']:.0f} ms, idle PSS {run['pss_mb']:.1f} MB (RSS {run['rss_mb']:.1f} "
            f"MB): {run['processes']}"
        )
    cold = statistics.median(float(r["cold_ms"]) for r in runs)  # type: ignore[arg-type]
    pss = statistics.median(float(r["pss_mb"]) for r in runs)  # type: ignore[arg-type]
    print(
        f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} before, {os.getloadavg()[0]:.2f} after "
        f"({os.cpu_count()} cores)"
    )
    print(
        f"cold start (first connection on the activator's socket -> first frame), median of {len(runs)}: {cold:.0f} ms "
        f"[<= {GOAL_COLD_MS:.0f} ms] {'PASS' if cold <= GOAL_COLD_MS else 'FAIL'}"
    )
    print(
        f"idle PSS of the whole service ({args.workers} workers), median: {pss:.1f} MB [<= {GOAL_PSS_MB:.0f} MB] "
        f"{'PASS' if pss <= GOAL_PSS_MB else 'FAIL'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

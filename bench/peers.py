"""The daemon against what users would run instead, side by side in one run, on the same scene.

Servers (all on loopback, each started here and ended by PID):
  daemon     flipedit-previewd (2 worker processes), rendered-frame cache off (the baselines have none)
  daemon-cached  the same with its default cache, for the cached scenarios
  old        baseline 1: the old server's design (Flask dev server, global-lock queue of 20, 2 workers), naive renders
  gunicorn   baseline 2: gunicorn (2 workers, gthread) + Flask, naive renders
  gunicorn+  baseline 3: gunicorn (2 workers, gthread) + Flask, the daemon's own render function
  fixed      baseline 4: uvicorn + httptools answering a fixed 24 KB body (the cached-path ceiling)
Scenarios, every server in alternation, several rounds (medians and per-round ratios):
  steady-2, steady-8  closed-loop clients on distinct frames
  overload            400 connections (raw sockets, no backoff) for --overload-seconds
  drag                60 requests/s for one frame while the clip's rectangle changes; settle latency
  cached, cached-etag one frame again and again, without and with If-None-Match
Writes bench/results/RESULTS.md and bench/results/latency.png.  Usage: .venv/bin/python -m bench.peers [--rounds N]

With --scenes footage (or footage scene names, comma-separated: bench/footage.py), the servers (by
default daemon and gunicorn+; --servers to choose) each serve a project of one clip filling the
canvas, one footage scene at a time, and one client asks for frames in the patterns of
bench/footage.py: random, sequential (closed loop, --requests each) and scrub (the editor's pace,
10-30 requests/s with reversals and jumps; a request is sent at its time or when the last is
answered, whichever is later, so every server renders the same frames). Each (pattern, server) run
is bounded by --pattern-seconds. Prints per-request latency p50/p95/max, 1280x720 JPEG; RESULTS.md
is not touched (--footage-out FILE writes the table there).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench import footage
from bench.harness import RESULTS, Server, make_project, make_scene, pct, tree_daemon, uncached_args, uncached_daemon
from bench.load import overload as raw_overload
from flipedit_previewd.demo.fixtures import set_clip_rect
from tests.support.helpers import repeated

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

VENV = ROOT / ".venv/bin"
KEEP_MARKER = "<!-- Written by hand from here on; bench/peers.py keeps it when it rewrites the tables above. -->"
DRAG_FRAME = 100


def servers(db: Path, daemon_args: tuple[str, ...] = (), baseline_tree: str = "") -> list[Server]:
    flask_env = {"FLIPEDIT_DB": str(db), "PYTHONPATH": str(ROOT)}
    gunicorn = [
        str(VENV / "gunicorn"),
        "-k",
        "gthread",
        "-w",
        "2",
        "--threads",
        "4",
        "-b",
        "127.0.0.1:{port}",
        "bench.baselines.flask_app:app",
    ]
    uncached = uncached_args(db, *daemon_args)
    # Another checkout of the daemon (an older commit), run from the same environment: a change is
    # compared with what it replaced in the same run, not with figures from another day.
    base = (
        [tree_daemon("daemon@base", baseline_tree, uncached, {"XDG_CONFIG_HOME": str(db.parent)})]
        if baseline_tree
        else []
    )
    return [
        # Rendered-frame cache off: the baselines have none, so steady, overload and drag compare renders.
        # Proxies are made in a cache of the run's own (XDG_CACHE_HOME), never the user's.
        uncached_daemon(db, *daemon_args, env={"XDG_CACHE_HOME": str(db.parent / "cache")}),
        # For the footage scenes: the daemon decoding the originals only, and the daemon once its proxies are made.
        uncached_daemon(
            db,
            *daemon_args,
            "--proxies",
            "false",
            name="daemon-originals",
            env={"XDG_CACHE_HOME": str(db.parent / "cache")},
        ),
        uncached_daemon(
            db, *daemon_args, name="daemon+proxies", env={"XDG_CACHE_HOME": str(db.parent / "cache-proxies")}
        ),
        Server(
            "daemon-cached",
            [str(VENV / "flipedit-previewd"), "--project", str(db), "--listen", "127.0.0.1:{port}", *daemon_args],
            {"XDG_CONFIG_HOME": str(db.parent)},
        ),
        *base,
        Server(
            "old",
            [str(VENV / "python"), str(HERE / "baselines/old_server.py"), str(db), "{port}"],
            {"PYTHONPATH": str(ROOT)},
        ),
        Server("gunicorn", gunicorn, {**flask_env, "PIPELINE": "naive"}),
        Server("gunicorn+", gunicorn, {**flask_env, "PIPELINE": "daemon"}),
        Server(
            "fixed",
            [
                str(VENV / "uvicorn"),
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "error",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "bench.baselines.fixed_asgi:app",
            ],
        ),
    ]


def closed_loop(
    url: str, clients: int, seconds: float, path: Callable[[int], str], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    counter = [0]
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = [0]
    end = time.monotonic() + seconds

    def run() -> None:
        with requests.Session() as session:
            while time.monotonic() < end:
                with lock:
                    counter[0] += 1
                    n = counter[0]
                t0 = time.perf_counter()
                try:
                    r = session.get(url + path(n), timeout=10, headers=headers)
                    r.content  # noqa: B018 - read the whole body
                    key = str(r.status_code)
                except requests.RequestException:
                    key = "error"
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    statuses[key] = statuses.get(key, 0) + 1
                    if key == "error":
                        errors[0] += 1
                    else:
                        latencies.append(elapsed)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    ok = statuses.get("200", 0) + statuses.get("304", 0)
    return {"per_s": ok / wall, "latency_ms": pct(sorted(latencies)), "statuses": statuses, "errors": errors[0]}


def drag(server: Server, db: Path, seconds: float, trials: int = 30) -> dict[str, Any]:
    """60 requests/s for one frame in the background while a prober measures settle latencies."""
    background: list[float] = []
    with drag_load(server.url, background):
        settles = drag_settles(server, db, seconds, trials)
    return {"settle_ms": pct(sorted(settles)), "background_ms": pct(sorted(background)), "settles": len(settles)}


@contextmanager
def drag_load(url: str, background: list[float] | None = None) -> Iterator[None]:
    """60 requests/s for DRAG_FRAME while the block runs, as an editor's preview asks for the frame under a clip
    being dragged; the time of each answered request is added to ``background`` if given."""

    def ask(session: requests.Session) -> None:
        t0 = time.perf_counter()
        try:
            session.get(f"{url}/get_frame/{DRAG_FRAME}", timeout=10).content  # noqa: B018
            if background is not None:
                background.append((time.perf_counter() - t0) * 1000)
        except requests.RequestException:
            pass

    with repeated(ask, 1 / 60):
        yield


def drag_settles(server: Server, db: Path, seconds: float, trials: int) -> list[float]:
    """The still moved ``trials`` times over ``seconds``: ms from each move until the frame shows it."""
    conn = sqlite3.connect(str(db), timeout=5)
    clip_id = conn.execute("SELECT id FROM clips WHERE type='image'").fetchone()[0]
    settles: list[float] = []

    def fetch(session: requests.Session) -> bytes:
        try:
            return session.get(f"{server.url}/get_frame/{DRAG_FRAME}", timeout=10).content
        except requests.RequestException:
            return b""

    with requests.Session() as session:
        before = hashlib.sha1(fetch(session)).digest()
        for trial in range(trials):
            with conn:
                set_clip_rect(conn, 3, clip_id, (40.0 + 30 * ((trial % 20) + 1), 40.0, 300.0, 200.0))
            changed = time.perf_counter()
            while time.perf_counter() - changed < 10:
                body = fetch(session)
                if not body:
                    continue
                digest = hashlib.sha1(body).digest()
                if digest != before:
                    settles.append((time.perf_counter() - changed) * 1000)
                    before = digest
                    break
            time.sleep(seconds / trials)
    with conn:
        set_clip_rect(conn, 3, clip_id, (40.0, 40.0, 300.0, 200.0))
    conn.close()
    return settles


def refusal_buckets(server: Server) -> dict[float, float]:
    """The daemon's own histogram of time per 503 (flipedit_preview_refusal_seconds, cumulative buckets) from /metrics;
    empty for a server without it (the peers, an older daemon)."""
    try:
        text = requests.get(server.url + "/metrics", timeout=10).text
    except requests.RequestException:
        return {}
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("flipedit_preview_refusal_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def refusal_p99_ms(before: dict[float, float], after: dict[float, float]) -> tuple[float | None, int]:
    """p99 of the 503s between two scrapes, as the upper bound of the bucket it falls in (ms), and their count."""
    if not after:
        return None, 0
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return None, 0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= 0.99 * total:
            return bound * 1000, int(total)
    return float("inf"), int(total)


def warm_render_ms(server: Server) -> float:
    times = []
    with requests.Session() as session:
        for i in range(15):
            t0 = time.perf_counter()
            session.get(f"{server.url}/get_frame/{DRAG_FRAME}?width={1280 - i}", timeout=10).content  # noqa: B018
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times[3:])


SCENARIOS = ("steady-2", "steady-8", "overload", "drag", "cached", "cached-etag")
RENDERERS = ("daemon", "old", "gunicorn", "gunicorn+")


def run_scenario(name: str, server: Server, db: Path, args: argparse.Namespace, etag: str) -> dict[str, Any] | None:
    # Distinct renders: the quality varies the daemon's cache key (the baselines ignore it and have no
    # cache), so no scenario but "cached" measures cache hits.
    frame = lambda n: f"/get_frame/{n % 240}?quality={80 + (n // 240) % 10}"  # noqa: E731
    renders = server.name not in ("fixed", "daemon-cached")
    if name.startswith("steady") and renders:
        return closed_loop(server.url, int(name.split("-")[1]), args.seconds, frame)
    if name == "overload" and renders:
        before = refusal_buckets(server)
        result = raw_overload(server.url, 400, args.overload_seconds, quiet=True, path=frame)
        own = refusal_p99_ms(before, refusal_buckets(server))
        return {
            "own_503_p99_ms": own[0],
            "own_503_count": own[1],
            "per_s": result["goodput_per_s"],
            "latency_ms": result["latency_ms"],
            "statuses": result["statuses"],
            "errors": result["connection_errors"],
            "503_p99_ms": result.get("latency_503_ms", {}).get("p99"),
            "in_time_per_s": result["in_time_per_s"],
            "answers_per_s": result["per_s"],
        }
    if name == "drag" and renders:
        return drag(server, db, args.seconds)
    if name == "cached" and server.name != "daemon":
        return closed_loop(server.url, 4, args.seconds, lambda n: "/get_frame/7")
    if name == "cached-etag" and server.name == "daemon-cached":
        return closed_loop(server.url, 4, args.seconds, lambda n: "/get_frame/7", {"If-None-Match": etag})
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each steady/drag/cached run")
    parser.add_argument("--overload-seconds", type=float, default=20.0)
    parser.add_argument("--out", default=str(RESULTS / "RESULTS.md"))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset, for a targeted run")
    parser.add_argument("--servers", default="", help="comma-separated subset of server names (default: all)")
    parser.add_argument(
        "--daemon-args", default="", help="extra options for the daemon, e.g. '--loop-nice 0' (an experiment)"
    )
    parser.add_argument(
        "--baseline-tree",
        default="",
        help="another checkout of this repository: its daemon runs as 'daemon@base' "
        "beside this one (e.g. `git worktree add /tmp/base <commit>`)",
    )
    parser.add_argument(
        "--scenes",
        default="standard",
        help="'standard' (the scene of the tables in RESULTS.md), or 'footage' / footage scene names "
        f"({', '.join(footage.SCENES)}), comma-separated: the patterns below on real-footage scenes",
    )
    parser.add_argument("--patterns", default=",".join(footage.PATTERNS), help="footage scenes: comma-separated subset")
    parser.add_argument("--requests", type=int, default=40, help="footage scenes: requests per pattern and server")
    parser.add_argument(
        "--pattern-seconds", type=float, default=40.0, help="footage scenes: time bound per pattern and server"
    )
    parser.add_argument(
        "--footage-out", default="", help="footage scenes: also write the table (markdown) to this file"
    )
    args = parser.parse_args()
    if args.scenes != "standard":
        return footage_main(args)
    started = time.monotonic()
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        scene = make_scene(Path(tmp))
        db = make_project(Path(tmp), scene)
        wanted = set(args.servers.split(",")) if args.servers else None
        all_servers = [
            s
            for s in servers(db, tuple(args.daemon_args.split()), args.baseline_tree)
            if wanted is None or s.name in wanted or s.name == "daemon-cached"
        ]
        try:
            for server in all_servers:
                print(f"starting {server.name}", flush=True)
                server.start()
            daemon = all_servers[0]
            etag = requests.get(all_servers[1].url + "/get_frame/7", timeout=10).headers["ETag"]
            extra["warm_render_ms"] = warm_render_ms(daemon)
            extra["load"] = []
            for round_index in range(args.rounds):
                extra.setdefault("load", []).append(os.getloadavg()[0])
                for name in [n for n in SCENARIOS if n in args.scenarios.split(",")]:
                    for server in all_servers:  # A B C D E, then again next round
                        result = run_scenario(name, server, db, args, etag)
                        if result is not None:
                            results.setdefault((name, server.name), []).append(result)
                            print(f"round {round_index + 1} {name:<12} {server.name:<10} {summary(result)}", flush=True)
        finally:
            for server in all_servers:
                server.stop()
    extra["load"].append(os.getloadavg()[0])
    elapsed = time.monotonic() - started
    report = write_results(results, extra, args, elapsed)
    print(report)
    return 0


def paced(url: str, jobs: list[tuple[float, int]], seconds: float) -> dict[str, Any]:
    """One client, one request in flight: each job sent at its time (from the start) or when the last is answered."""
    latencies: list[float] = []
    late: list[float] = []
    errors = 0
    with requests.Session() as session:
        start = time.perf_counter()
        for at, frame in jobs:
            now = time.perf_counter() - start
            if now >= seconds:
                break
            if at > now:
                time.sleep(at - now)
            else:
                late.append((now - at) * 1000)
            t0 = time.perf_counter()
            try:
                r = session.get(f"{url}/get_frame/{frame}", timeout=30)
                r.content  # noqa: B018 - read the whole body
                ok = r.status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                latencies.append((time.perf_counter() - t0) * 1000)
            else:
                errors += 1
        wall = time.perf_counter() - start
    return {
        "latency_ms": {**pct(sorted(latencies)), "max": max(latencies, default=float("nan"))},
        "n": len(latencies),
        "errors": errors,
        "wall_s": wall,
        "late_p50_ms": statistics.median(late) if late else 0.0,
        "late_n": len(late),
    }


def proxies_ready(url: str, timeout: float = 900.0) -> float:
    """Seconds until the daemon has made its proxies (none queued or in progress, at least one made)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        proxies = requests.get(url + "/health", timeout=10).json().get("proxies", {})
        if (
            proxies.get("made", 0) + proxies.get("stored", 0) > 0
            and not proxies.get("queued")
            and not proxies.get("in_progress")
        ):
            return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(f"no proxy made within {timeout:.0f} s: {proxies}")


def footage_main(args: argparse.Namespace) -> int:
    """Random, sequential and scrub on real-footage scenes (bench/footage.py), every chosen server in alternation."""
    started = time.monotonic()
    names = footage.scene_names(args.scenes)
    patterns = [p for p in args.patterns.split(",") if p]
    wanted = set(args.servers.split(",")) if args.servers else {"daemon-originals", "daemon+proxies", "gunicorn+"}
    print(
        f"load average at the start {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)",
        flush=True,
    )
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    loads: list[float] = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            scene = footage.SCENES[name]
            source = footage.make(scene)
            db = footage.make_project(Path(tmp), source, scene.seconds)
            chosen = [s for s in servers(db, tuple(args.daemon_args.split()), args.baseline_tree) if s.name in wanted]
            try:
                for server in chosen:
                    server.start()
                    footage.check_served(server.url, source, 45)
                    if server.name == "daemon+proxies":
                        print(f"{name}: proxy made in {proxies_ready(server.url):.1f} s", flush=True)
                for round_index in range(args.rounds):
                    for pattern in patterns:
                        jobs = footage.pattern(
                            pattern,
                            scene.frames,
                            args.requests if pattern != "scrub" else 3 * args.requests,
                            seed=round_index + 1,
                        )
                        for server in chosen:
                            loads.append(os.getloadavg()[0])
                            result = paced(server.url, jobs, args.pattern_seconds)
                            results.setdefault((name, pattern, server.name), []).append(result)
                            lat = result["latency_ms"]
                            print(
                                f"round {round_index + 1} {name:<13} {pattern:<10} {server.name:<10} "
                                f"n={result['n']:<4} "
                                f"p50 {lat['p50']:7.1f} p95 {lat['p95']:7.1f} max {lat['max']:7.1f} ms  "
                                f"(load {loads[-1]:.2f}, {result['wall_s']:.0f} s)",
                                flush=True,
                            )
            finally:
                for server in chosen:
                    server.stop()
    loads.append(os.getloadavg()[0])
    lines = [
        f"Footage scenes through each server, 1280x720 JPEG, one client; {args.rounds} round(s), servers in "
        f"alternation; "
        f"{time.monotonic() - started:.0f} s; 1-minute load average {min(loads):.2f}-{max(loads):.2f} "
        f"(start {loads[0]:.2f}, end {loads[-1]:.2f}).",
        "",
        "| scene | pattern | server | requests | p50 ms | p95 ms | max ms | sent late (p50 ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (name, pattern, server_name), runs in results.items():
        lat = [r["latency_ms"] for r in runs]
        lines.append(
            f"| {name} | {pattern} | {server_name} | {sum(r['n'] for r in runs)} | "
            f"{statistics.median(x['p50'] for x in lat):.1f} | {statistics.median(x['p95'] for x in lat):.1f} | "
            f"{max(x['max'] for x in lat):.1f} | "
            + (
                f"{sum(r['late_n'] for r in runs)} ({statistics.median(r['late_p50_ms'] for r in runs):.0f})"
                if pattern == "scrub"
                else "-"
            )
            + " |"
        )
    text = "\n".join(lines)
    print("\n" + text)
    if args.footage_out:
        Path(args.footage_out).write_text(text + "\n")
    return 0


def summary(result: dict[str, Any]) -> str:
    if "settle_ms" in result:
        return f"settle p50 {result['settle_ms']['p50']:.1f} ms p95 {result['settle_ms']['p95']:.1f} ms"
    own = f" own 503 p99 <= {result['own_503_p99_ms']:g} ms" if result.get("own_503_p99_ms") is not None else ""
    return (
        f"{result['per_s']:.1f}/s p50 {result['latency_ms']['p50']:.1f} ms p99 {result['latency_ms']['p99']:.1f} "
        f"ms errors {result['errors']}{own}"
    )


def median_of(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            values.append(float(value))
    return statistics.median(values) if values else float("nan")


def write_results(
    results: dict[tuple[str, str], list[dict[str, Any]]],
    extra: dict[str, Any],
    args: argparse.Namespace,
    elapsed: float,
) -> str:
    import av
    import PIL

    lines = [
        "# Benchmarks against what users would run instead",
        "",
        f"Generated by `bench/peers.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {args.rounds} rounds, servers in "
        f"alternation; "
        f"{elapsed:.0f} s in all.",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.platform()}; Python "
        f"{platform.python_version()}, "
        f"PyAV {av.__version__}, Pillow {PIL.__version__}. 1-minute load average at the start of each round and at the "
        f"end: "
        f"{', '.join(f'{x:.2f}' for x in extra.get('load', []))} (a shared machine: compare the servers within this "
        f"run, not with other runs).",
        "",
        "Servers (all on loopback, the same scene: a 1080p and a 720p H.264 clip and a still, 1280x720 output):",
        "",
        "- **daemon**: flipedit-previewd, 2 render worker processes, its rendered-frame cache off (the peers have "
        "none);",
        "- **daemon-cached**: the same with its default frame cache, for the cached scenarios;",
        "- **old**: the old server's design (Flask development server, a queue of 20 behind a global lock, 2 workers), "
        "naive renders;",
        "- **gunicorn**: gunicorn (2 workers, gthread, 4 threads) + Flask, naive renders (open, seek, decode, "
        "full-size image, resize, per request);",
        "- **gunicorn+**: the same gunicorn + Flask with the daemon's own render function (per-process decoders and "
        "caches): "
        "what a competent conventional server would do, so only the server layer differs;",
        "- **fixed**: uvicorn + httptools answering a fixed 24 KB body: the ceiling of a Python HTTP server's cached "
        "path.",
        "",
        "Scenarios: steady-N = N closed-loop clients on distinct frames; overload = 400 keep-alive connections, no "
        "backoff; "
        "drag = 60 requests/s for one frame while the project's still is moved, settle = from a change in the database "
        "to the first "
        "answer showing it; cached = one frame again and again (cached-etag: with If-None-Match).",
        "",
        "| scenario | server | req/s (median) | p50 ms | p95 ms | p99 ms | statuses (last round) | connection errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (name, server), runs in results.items():
        if name == "drag":
            continue
        lines.append(
            f"| {name} | {server} | {median_of(runs, 'per_s'):.1f} | {median_of(runs, 'latency_ms', 'p50'):.1f} | "
            f"{median_of(runs, 'latency_ms', 'p95'):.1f} | {median_of(runs, 'latency_ms', 'p99'):.1f} | "
            f"{runs[-1]['statuses']} | {sum(r['errors'] for r in runs)} |"
        )
    lines += [
        "",
        "| drag (60 req/s, one frame, moving rectangle) | settle p50 ms | settle p95 ms | background p95 ms |",
        "|---|---|---|---|",
    ]
    for (name, server), runs in results.items():
        if name == "drag":
            lines.append(
                f"| {server} | {median_of(runs, 'settle_ms', 'p50'):.1f} | {median_of(runs, 'settle_ms', 'p95'):.1f} | "
                f"{median_of(runs, 'background_ms', 'p95'):.1f} |"
            )

    def rate(name: str, server: str) -> float:
        return median_of(results.get((name, server), []), "per_s")

    def ratio_rounds(name: str, a: str, b: str) -> str:
        pairs = [
            f"{x['per_s'] / y['per_s']:.2f}"
            for x, y in zip(results.get((name, a), []), results.get((name, b), []), strict=False)
            if y["per_s"]
        ]
        return ", ".join(pairs)

    def have(*keys: tuple[str, str]) -> bool:
        return all(results.get(key) for key in keys)

    goals: list[tuple[str, bool, str]] = []
    for steady in ("steady-2", "steady-8"):
        # the throughput goals: at least as fast as the daemon's own render under gunicorn, 3x the naive one
        for peer, factor, shown in (("gunicorn+", 1.0, "1.0x"), ("gunicorn", 3.0, "3x")):
            if have((steady, "daemon"), (steady, peer)):
                ratio = rate(steady, "daemon") / rate(steady, peer)
                goals.append(
                    (
                        f"{steady}: throughput >= {shown} {peer}",
                        ratio >= factor,
                        f"{ratio:.2f}x (rounds {ratio_rounds(steady, 'daemon', peer)})",
                    )
                )
    over = results.get(("overload", "daemon"), [])
    if over:
        errors = sum(r["errors"] for r in over)
        goals.append(
            (
                "overload: zero connection errors",
                errors == 0,
                f"daemon {errors}; "
                + ", ".join(
                    f"{s} {sum(r['errors'] for r in results.get(('overload', s), []))}"
                    for s in RENDERERS[1:]
                    if results.get(("overload", s))
                ),
            )
        )
        own = [r.get("own_503_p99_ms") for r in over]
        if all(v is not None for v in own):
            worst = max(own)  # type: ignore[type-var]
            goals.append(
                (
                    "overload: the daemon's own time per 503 (first byte read -> answer written, /metrics), "
                    "p99 <= 1 ms",
                    worst <= 1.0,
                    f"<= {worst:g} ms, upper bucket bound (rounds "
                    + ", ".join(f"<= {v:g} ms of {r.get('own_503_count')} 503s" for v, r in zip(own, over, strict=True))
                    + ")",
                )
            )
        p99_503 = median_of(over, "503_p99_ms")
        goals.append(
            (
                "overload (information): 503 p99 in the client (Little's law: the load generator's queue)",
                True,
                f"{p99_503:.1f} ms (rounds "
                + ", ".join(f"{r.get('503_p99_ms') or float('nan'):.1f}" for r in over)
                + ")",
            )
        )
        if have(("overload", "gunicorn+")):
            served = rate("overload", "daemon") / rate("overload", "gunicorn+")
            goals.append(
                (
                    "overload: frames served >= 1.0x gunicorn+",
                    served >= 1.0,
                    f"{served:.2f}x (rounds {ratio_rounds('overload', 'daemon', 'gunicorn+')})",
                )
            )
            ours, theirs = (
                median_of(over, "in_time_per_s"),
                median_of(results[("overload", "gunicorn+")], "in_time_per_s"),
            )
            goals.append(
                (
                    "overload (information): frames answered within the editor's 3 s, vs gunicorn+",
                    ours >= theirs,
                    f"{ours:.1f}/s vs {theirs:.1f}/s",
                )
            )
        answers = median_of(over, "answers_per_s")
        goals.append(
            (
                "overload (information): 503 time in the client vs Little's law (400 connections / answers per s)",
                True,
                f"{answers:.0f} answers/s -> {400 / max(answers, 1e-9) * 1000:.0f} ms mean; p99 <= 10 ms needs >= "
                f"40000/s",
            )
        )
        if have(("steady-8", "daemon")):
            goodput = rate("overload", "daemon") / max(rate("steady-8", "daemon"), 1e-9)
            goals.append(("overload: goodput >= 90% of steady capacity", goodput >= 0.9, f"{goodput:.2f} of steady-8"))
    if have(("drag", "daemon")):
        drags = results[("drag", "daemon")]
        settle = median_of(drags, "settle_ms", "p95")
        changes = min(r["settles"] for r in drags)
        goals.append(
            (
                "drag: settle p95 <= 2x one warm render",
                settle <= 2 * extra["warm_render_ms"],
                f"{settle:.1f} ms vs warm render {extra['warm_render_ms']:.1f} ms",
            )
        )
        if have(("drag", "gunicorn+")):
            for q in ("p50", "p95"):
                ours, theirs = (
                    settle if q == "p95" else median_of(drags, "settle_ms", q),
                    median_of(results[("drag", "gunicorn+")], "settle_ms", q),
                )
                rounds = ", ".join(
                    f"{x['settle_ms'][q]:.1f}/{y['settle_ms'][q]:.1f}"
                    for x, y in zip(drags, results[("drag", "gunicorn+")], strict=False)
                )
                goals.append(
                    (
                        f"drag: settle {q} <= gunicorn+'s (>= 30 changes a round)",
                        ours <= theirs and changes >= 30,
                        f"{ours:.1f} vs {theirs:.1f} ms (rounds daemon/gunicorn+: {rounds}; {changes} changes a round)",
                    )
                )
        if have(("drag", "gunicorn")):
            base2 = median_of(results[("drag", "gunicorn")], "settle_ms", "p95")
            goals.append(
                (
                    "drag: settle p95 >= 5x better than gunicorn",
                    base2 / settle >= 5,
                    f"{base2 / settle:.1f}x ({base2:.1f} ms)",
                )
            )
    if have(("cached", "daemon-cached"), ("cached", "fixed")):
        cached = rate("cached", "daemon-cached") / rate("cached", "fixed")
        goals.append(("cached: >= 0.5x fixed's requests/s", cached >= 0.5, f"{cached:.2f}x"))
    if have(("cached-etag", "daemon-cached"), ("cached", "fixed")):
        etag = rate("cached-etag", "daemon-cached") / rate("cached", "fixed")
        goals.append(("cached with If-None-Match (304): vs fixed", etag >= 0.5, f"{etag:.2f}x"))
    for name in ("steady-2", "steady-8", "overload"):
        if have((name, "daemon"), (name, "daemon@base")):
            goals.append(
                (
                    f"{name} (information): this checkout vs daemon@base, frames/s",
                    True,
                    f"{rate(name, 'daemon') / max(rate(name, 'daemon@base'), 1e-9):.2f}x (rounds "
                    f"{ratio_rounds(name, 'daemon', 'daemon@base')})",
                )
            )
    if have(("drag", "daemon"), ("drag", "daemon@base")):
        goals.append(
            (
                "drag (information): this checkout vs daemon@base, settle p50 / p95",
                True,
                " / ".join(
                    f"{median_of(results[('drag', 'daemon')], 'settle_ms', q):.1f} vs "
                    f"{median_of(results[('drag', 'daemon@base')], 'settle_ms', q):.1f} ms"
                    for q in ("p50", "p95")
                ),
            )
        )
    lines += ["", "| goal | result | measured |", "|---|---|---|"]
    lines += [
        f"| {goal} | {'info' if '(information)' in goal else 'PASS' if ok else 'FAIL'} | {text} |"
        for goal, ok, text in goals
    ]
    lines += ["", "![latency percentiles](latency.png)", ""]
    text = "\n".join(lines)
    out = Path(args.out)
    kept = out.read_text().partition(KEEP_MARKER)[2] if out.exists() else ""
    out.write_text(text + ("\n" + KEEP_MARKER + kept if kept else ""))
    plot(
        results, Path(args.out).with_name("latency.png")
    )  # beside the report: a targeted run to /tmp leaves bench/ alone
    return text


def plot(results: dict[tuple[str, str], list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"p50": "#4c72b0", "p95": "#dd8452", "p99": "#c44e52"}
    panels = [(s, "latency_ms", ("p50", "p95", "p99"), "response time, ms") for s in SCENARIOS if s != "drag"]
    panels.insert(3, ("drag", "settle_ms", ("p50", "p95"), "settle time after a change, ms"))
    panels = [p for p in panels if any(n == p[0] for (n, _) in results)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4), sharey=False, squeeze=False)
    for ax, (name, field, quantiles, ylabel) in zip(axes[0], panels, strict=True):
        names = [s for (n, s) in results if n == name]
        width = 0.8 / len(quantiles)
        for i, server in enumerate(names):
            runs = results[(name, server)]
            for j, q in enumerate(quantiles):
                ax.bar(
                    i + (j - (len(quantiles) - 1) / 2) * width,
                    median_of(runs, field, q),
                    width=width,
                    color=colours[q],
                    label=q if i == 0 else None,
                )
        ax.set_xticks(range(len(names)), names, rotation=30)
        ax.set_title(name)
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.legend(title="percentile", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    sys.exit(main())

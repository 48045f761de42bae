"""Load scenarios against any daemon URL: drag, scrub, overload. Not a test.

  drag      N requests/s for one frame while the project database's clip rectangle changes
            (needs --project, written as the editor does); reports the settle latency: from the
            last change to the client holding a frame that shows it (an ETag seen after it).
  scrub     sequential then random frames through the client library.
  overload  C concurrent keep-alive connections for T seconds, raw sockets in one selector loop.

Each prints throughput, p50/p95/p99, outcomes by status and connection errors, with a progress
bar while it runs; --json prints one JSON object instead.
  .venv/bin/python -m bench.load --url http://127.0.0.1:8081 scrub --frames 200
  .venv/bin/python -m bench.load overload --connections 400 --seconds 20
  .venv/bin/python -m bench.load drag --project ~/.local/share/flipedit-preview/demo/demo_project.sqlite --rate 60
  --seconds 10
"""

from __future__ import annotations

import argparse
import json
import random
import selectors
import socket
import sqlite3
import sys
import threading
import time
from typing import Any
from urllib.parse import urlparse

from rich.progress import Progress

from flipedit_previewd.client.api import PreviewClient, PreviewError
from flipedit_previewd.common.percentiles import summary
from flipedit_previewd.demo.fixtures import set_clip_rect
from flipedit_previewd.timeline.projectdb import schema_version

EDITOR_TIMEOUT_MS = 3000  # the editor abandons a frame request after 3 s (reference/flipedit-client.md)


pct = summary


def scrub(url: str, frames: int, quiet: bool) -> dict[str, Any]:
    client = PreviewClient(url)
    out: dict[str, Any] = {}
    rng = random.Random(1)
    with Progress(disable=quiet, transient=True) as progress:
        for name, order in (
            ("sequential", list(range(frames))),
            ("random", [rng.randrange(0, frames * 4) for _ in range(frames)]),
        ):
            task = progress.add_task(name, total=len(order))
            times: list[float] = []
            statuses: dict[str, int] = {}
            errors = 0
            started = time.perf_counter()
            for index in order:
                t0 = time.perf_counter()
                try:
                    client.frame(index)
                    statuses["200"] = statuses.get("200", 0) + 1
                except PreviewError as exc:
                    statuses[str(exc.status)] = statuses.get(str(exc.status), 0) + 1
                except Exception:  # noqa: BLE001 - counted, reported
                    errors += 1
                times.append((time.perf_counter() - t0) * 1000)
                progress.advance(task)
            wall = time.perf_counter() - started
            out[name] = {
                "requests": len(order),
                "per_s": round(len(order) / wall, 1),
                "latency_ms": pct(sorted(times)),
                "statuses": statuses,
                "connection_errors": errors,
            }
    client.close()
    return out


def overload(
    url: str, connections: int, seconds: float, quiet: bool, frames: int = 100_000, path: Any = None
) -> dict[str, Any]:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    sel = selectors.DefaultSelector()
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    latencies_503: list[float] = []
    errors = {"connect": 0, "reset_or_closed": 0}
    retry_after_missing = 0
    counter = [0]
    in_time = [0]  # frames answered before the editor would have given up on them

    def send(sock: socket.socket, state: dict[str, Any]) -> None:
        counter[0] += 1
        target = path(counter[0]) if path else f"/get_frame/{counter[0] % frames}"
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        state["buf"], state["sent"] = b"", time.perf_counter()

    for _ in range(connections):
        try:
            sock = socket.create_connection((host, port), timeout=10)
        except OSError:
            errors["connect"] += 1
            continue
        sock.setblocking(False)
        state: dict[str, Any] = {}
        sel.register(sock, selectors.EVENT_READ, state)
        send(sock, state)
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    with Progress(disable=quiet, transient=True) as progress:
        task = progress.add_task(f"overload x{connections}", total=seconds)
        while time.monotonic() < deadline:
            progress.update(task, completed=time.monotonic() - started)
            for key, _ in sel.select(timeout=0.2):
                sock, state = key.fileobj, key.data
                assert isinstance(sock, socket.socket)
                try:
                    chunk = sock.recv(65536)
                except ConnectionError:
                    chunk = b""
                if not chunk:
                    errors["reset_or_closed"] += 1
                    sel.unregister(sock)
                    sock.close()
                    continue
                state["buf"] += chunk
                head, sep, body = state["buf"].partition(b"\r\n\r\n")
                if not sep:
                    continue
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                if len(body) < length:
                    continue
                status = head.split(b" ", 2)[1].decode()
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append((time.perf_counter() - state["sent"]) * 1000)
                if status == "503":
                    latencies_503.append(latencies[-1])
                if status == "200" and latencies[-1] <= EDITOR_TIMEOUT_MS:
                    in_time[0] += 1
                if status == "503" and b"\r\nretry-after:" not in head.lower():
                    retry_after_missing += 1
                if time.monotonic() < deadline:
                    send(sock, state)
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    wall = time.monotonic() - started
    return {
        "connections": connections,
        "seconds": round(wall, 1),
        "per_s": round(sum(statuses.values()) / wall, 1),
        "goodput_per_s": round(statuses.get("200", 0) / wall, 1),
        "latency_ms": pct(sorted(latencies)),
        "in_time_per_s": round(in_time[0] / wall, 1),
        "latency_503_ms": pct(sorted(latencies_503)),
        "statuses": statuses,
        "connection_errors": sum(errors.values()),
        "errors": errors,
        "503_without_retry_after": retry_after_missing,
    }


def drag(url: str, project: str, rate: float, seconds: float, quiet: bool, frame: int = 10) -> dict[str, Any]:
    """The editor's drag: write a new rectangle ~rate/2 times a second and ask for the frame `rate` times a second."""
    client = PreviewClient(url)
    conn = sqlite3.connect(project, timeout=5, check_same_thread=False)
    version = schema_version(conn)
    clip_id = conn.execute("SELECT id FROM clips ORDER BY id LIMIT 1").fetchone()[0]
    frames_seen: list[tuple[float, float]] = []  # (request sent, answer received)
    errors = [0]
    statuses: dict[str, int] = {}
    stop = threading.Event()

    def writer() -> None:
        step = 0
        while not stop.is_set():
            step += 1
            with conn:
                set_clip_rect(conn, version, clip_id, (float(step % 200), 40.0, 320.0, 180.0))
            time.sleep(2 / rate)

    thread = threading.Thread(target=writer)
    thread.start()
    end = time.monotonic() + seconds
    with Progress(disable=quiet, transient=True) as progress:
        task = progress.add_task("drag", total=seconds)
        while time.monotonic() < end:
            progress.update(task, completed=seconds - (end - time.monotonic()))
            sent = time.monotonic()
            try:
                client.frame(frame)
                statuses["200"] = statuses.get("200", 0) + 1
                frames_seen.append((sent, time.monotonic()))
            except PreviewError as exc:
                statuses[str(exc.status)] = statuses.get(str(exc.status), 0) + 1
            except Exception:  # noqa: BLE001
                errors[0] += 1
            time.sleep(max(0.0, 1 / rate - (time.monotonic() - sent)))
    stop.set()
    thread.join()
    # Settle: one last change, then ask until we hold a frame of the new timeline (its ETag changes).
    before = client.frame(frame)
    with conn:
        set_clip_rect(conn, version, clip_id, (250.0, 60.0, 320.0, 180.0))
    changed = time.monotonic()
    while True:
        latest = client.frame(frame)
        if latest is not None and before is not None and latest.etag != before.etag:
            break
    settle_ms = (time.monotonic() - changed) * 1000
    conn.close()
    client.close()
    lat = sorted((b - a) * 1000 for a, b in frames_seen)
    return {
        "rate": rate,
        "seconds": seconds,
        "requests": len(frames_seen),
        "latency_ms": pct(lat),
        "statuses": statuses,
        "connection_errors": errors[0],
        "settle_ms": round(settle_ms, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8081")
    parser.add_argument("--json", action="store_true")
    sub = parser.add_subparsers(dest="scenario", required=True)
    p = sub.add_parser("scrub")
    p.add_argument("--frames", type=int, default=120)
    p = sub.add_parser("overload")
    p.add_argument("--connections", type=int, default=400)
    p.add_argument("--seconds", type=float, default=20)
    p = sub.add_parser("drag")
    p.add_argument("--project", required=True)
    p.add_argument("--rate", type=float, default=60)
    p.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args(argv)
    quiet = args.json or not sys.stderr.isatty()
    if args.scenario == "scrub":
        result = scrub(args.url, args.frames, quiet)
    elif args.scenario == "overload":
        result = overload(args.url, args.connections, args.seconds, quiet)
    else:
        result = drag(args.url, args.project, args.rate, args.seconds, quiet)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

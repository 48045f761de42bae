"""Builders for real test inputs: project databases with the editor's schema, generated media."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import socket
import socketserver
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import requests
from PIL import Image

from flipedit_previewd.demo.fixtures import add_clip, add_track, create_project_db
from flipedit_previewd.worker.failpoints import VARIABLE as FAILPOINT_VARIABLE

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one test scenario (a coroutine) on a fresh event loop, closed after it, and return its result."""
    return asyncio.run(coro)


def wait_for(predicate: Any, timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def report(layer: str, name: str, **figures: Any) -> None:
    """Print one measured scenario's figures on a line of their own, ``[layer] name: k=v, ...`` (seen with -s)."""
    print(f"\n[{layer}] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def exposure_level(output: str) -> float:
    """The "Overall exposure level" that ``systemd-analyze security`` printed for a unit (fails if none)."""
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", output)
    assert match, output[-500:]
    return float(match.group(1))


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (through each thread's children; a thread ending while we look is skipped)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def solid_png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def build_project(path: Path, version: int, tracks: list[dict[str, Any]]) -> dict[str, int]:
    """tracks: [{"name", "order", "visible", "clips": [{"source", "type", "start", "end", "rect", "flip", "
    ""src_start"}]}]"""
    create_project_db(path, version)
    ids: dict[str, int] = {}
    conn = sqlite3.connect(str(path))
    with conn:
        for track in tracks:
            track_id = add_track(conn, track["name"], track["order"], track.get("visible", True))
            for clip in track["clips"]:
                clip_id = add_clip(
                    conn,
                    version,
                    track_id,
                    str(clip["source"]),
                    clip.get("type", "image"),
                    clip.get("start", 0),
                    clip.get("end", 1000),
                    clip.get("src_start", 0),
                    clip.get("rect"),
                    clip.get("flip", 0),
                )
                ids[clip.get("name", str(clip_id))] = clip_id
    conn.close()
    return ids


def still_project(
    folder: Path,
    colour: tuple[int, int, int] = (255, 0, 0),
    rect: tuple[int, int, int, int] | None = (0, 0, 640, 360),
    size: tuple[int, int] = (64, 64),
    clip: str = "",
    name: str = "red.png",
    *,
    db: str = "project.sqlite",
    version: int = 3,
    end: int = 100_000,
) -> Path:
    """The smallest real project, the one most tests serve: one track with one still (``folder/name``, ``size``
    pixels of ``colour``) at ``rect`` (None: the editor's default placement) from 0 to ``end`` ms; its clip is
    the database's first (id 1), named ``clip`` if given. Returns the database, ``folder/db`` (schema ``version``)."""
    still = solid_png(folder / name, size, colour)
    path = folder / db
    one_track_project(
        path, [{"source": still, "rect": rect, "start": 0, "end": end, **({"name": clip} if clip else {})}], version
    )
    return path


def one_track_project(path: Path, clips: list[dict[str, Any]], version: int = 3) -> dict[str, int]:
    """The project most tests and benchmarks build: one visible track ("t", order 0) holding ``clips`` (as
    ``build_project`` takes them); the layering of several tracks is what the few others test. Returns the
    clips' ids by name."""
    return build_project(path, version, [{"name": "t", "order": 0, "clips": clips}])


def endless_clips_view(db: Path) -> None:
    """Replaces the project's clips table with a view whose query never ends (a recursive count that never
    yields a row): a database a read can only time out on, however long it is given."""
    conn = sqlite3.connect(str(db))
    with conn:
        conn.execute("DROP TABLE clips")
        conn.execute(
            "CREATE VIEW clips AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
            "SELECT n AS id, 1 AS track_id, 'image' AS type, '' AS source_path, 0 AS start_time_on_track_ms, "
            "1000 AS end_time_on_track_ms, 0 AS start_time_in_source_ms, 0 AS end_time_in_source_ms, '{}' AS metadata, "
            "0.0 AS preview_position_x, 0.0 AS preview_position_y, 1.0 AS preview_width, 1.0 AS preview_height FROM r "
            "WHERE n < 0"
        )
    conn.close()


def decode(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    image.load()
    return image.convert("RGB")


def close_to(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=False))


class FakeHandler(socketserver.BaseRequestHandler):
    """A fake server's connection: reads the request's head, then ``answer(sock, head, mode)`` says anything."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        head = read_head(sock)
        if head:
            try:
                self.answer(sock, head, getattr(self.server, "mode", ""))
            except OSError:
                pass  # the client went away: that is what a hostile server hopes for

    def answer(self, sock: socket.socket, head: bytes, mode: str) -> None:
        raise NotImplementedError


def read_head(sock: socket.socket, timeout: float = 30) -> bytes:
    """A fake server's side: the request's head (up to the blank line), or b"" if the client went away."""
    sock.settimeout(timeout)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            return b""
        head += chunk
    return head


def exchange(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send raw bytes; return (status, bytes received) once one complete response arrived.

    A close with no byte of an answer is (0, b""): no answer at all, which callers never accept as a
    status. A close in the middle of a response (head or body cut short), a reset, or no complete
    answer within ``timeout`` raise AssertionError: a deliberate close comes after a complete answer.
    """
    # "Host: x" in the tests' raw requests stands for the daemon's own name: the daemon refuses foreign Hosts (421).
    data = data.replace(b"\r\nHost: x\r\n", b"\r\nHost: 127.0.0.1:%d\r\n" % port)
    head_request = data.startswith(b"HEAD ")  # its answer has a Content-Length but no body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        complete = False
        while not complete:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError as exc:
                raise AssertionError(f"connection reset by the daemon after {buf[:80]!r}") from exc
            except TimeoutError as exc:
                raise AssertionError(f"no complete answer within {timeout} s, got {buf[:80]!r}") from exc
            if not chunk:
                break
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                complete = len(body) >= length or head_request
    if not buf:
        return 0, b""
    assert complete, f"the daemon closed in the middle of an answer: {buf[:200]!r}"
    assert buf.startswith(b"HTTP/1.1 "), buf[:80]
    return int(buf.split(b" ", 2)[1]), buf


def failpoint(value: str) -> dict[str, str]:
    """The environment that makes the render workers of a daemon started with it misbehave on purpose: slow,
    hung, crashing... (``worker/failpoints.py``; the values: docs/tests.md, "Failpoints")."""
    return {FAILPOINT_VARIABLE: value}


class Daemon:
    """A real flipedit-previewd process on a real socket."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, tmp: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env.pop("LISTEN_FDS", None)
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.setdefault("XDG_CONFIG_HOME", str(tmp or ROOT))
        # Proxies (proxy/) go to the test's folder, never the user's cache
        self.env.setdefault("XDG_CACHE_HOME", str(tmp or ROOT / "build"))
        # Each test daemon writes its own token (PUT/DELETE over TCP need it), never the user's.
        self.env.setdefault("FLIPEDIT_PREVIEWD_TOKEN_FILE", str((tmp or Path("/tmp")) / f"token-{self.port}"))
        self.token_file = Path(self.env["FLIPEDIT_PREVIEWD_TOKEN_FILE"])
        self.log_path = (tmp or Path("/tmp")) / f"daemon-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30, preexec_fn: Callable[[], None] | None = None) -> Daemon:
        """Starts the daemon and waits until it serves; ``preexec_fn`` runs in the child before the daemon does
        (a test that gives it lower resource limits than the test process has)."""
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/flipedit-previewd"), "--listen", f"127.0.0.1:{self.port}", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.log()}")
            try:
                if requests.get(self.url + "/health", timeout=1).ok and "ready:" in self.log():
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"daemon not ready: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_once(self, text: str, count: int = 1, timeout: float = 5.0) -> str:
        """The log once ``text`` is in it ``count`` times: the daemon's log writer is a thread that writes after
        the answer has gone, so a test that reads the log right after a response races it."""

        def ready() -> str:
            log = self.log()
            return log if log.count(text) >= count else ""

        return str(wait_for(ready, timeout) or self.log())

    def log_settled(self) -> str:
        """The whole log once every line logged before this call is in it: the log's writer is one queue, so the
        line of a request made now follows them all (for counts: ``log_once`` returns at the first occurrence)."""
        self._markers = getattr(self, "_markers", 0) + 1
        target = f"/get_frame/0?width={200 + self._markers}"
        self.get(target)
        log = self.log_once(f"GET {target} -> ")
        assert f"GET {target} -> " in log, f"the marker request {target} was not logged"
        return log

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.get(self.url + path, **kwargs)

    def health(self) -> dict[str, Any]:
        return dict(self.get("/health").json())

    @property
    def auth(self) -> dict[str, str]:
        """The header that lets a request change the timeline over TCP (the token the daemon wrote)."""
        return {"Authorization": "Bearer " + self.token_file.read_text().strip()}

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        # The daemon's process group holds its workers: end them by that group's id.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=5)
        return self.proc.returncode


def closed_loop(url: str, clients: int, seconds: float, path: Callable[[int, int], str]) -> list[int]:
    """``clients`` threads, each with its own keep-alive session, asking ``url + path(client, n)`` back to back
    (``n`` counts that client's requests) until ``seconds`` are up: every status, in no particular order."""
    statuses: list[int] = []
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        with requests.Session() as session:
            n = 0
            while time.monotonic() < stop:
                statuses.append(session.get(url + path(index, n), timeout=10).status_code)
                n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


@contextmanager
def repeated(step: Callable[[requests.Session], None], every: float) -> Iterator[None]:
    """``step`` again and again on a thread of its own over one keep-alive session, one begun every ``every``
    seconds (at once after one that took longer), until the block ends: the probe or background load that runs
    beside what a test or benchmark measures, stopped and joined even when the measured part fails."""
    stop = threading.Event()

    def run() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                t0 = time.monotonic()
                step(session)
                stop.wait(max(0.0, every - (time.monotonic() - t0)))

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def overload_with_health_watch(url: str, connections: int, seconds: float, path: Any = None) -> dict[str, Any]:
    """bench/load.py's raw-socket overload (no backoff, keep-alive) while a thread times /health."""
    from bench.load import overload

    health_times: list[float] = []
    health_states: set[str] = set()

    def watch(session: requests.Session) -> None:
        t0 = time.monotonic()
        try:
            health_states.add(session.get(url + "/health", timeout=5).json()["status"])
        except requests.RequestException:
            health_states.add("error")
        health_times.append(time.monotonic() - t0)

    with repeated(watch, 0.1):
        result = overload(url, connections, seconds, quiet=True, path=path)
    ordered = sorted(health_times)
    result["health_max_s"] = round(ordered[-1], 3)
    result["health_p99_s"] = round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3)
    result["health_states"] = sorted(health_states)
    return result


class Recorder:
    """An event log that keeps what is emitted (for parts that take ``EventLog.emit``)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def emit(self, event: str, message: str, priority: str = "info", **fields: Any) -> None:
        self.events.append((event, message, fields))


def ctl(
    *args: str, env: dict[str, str] | None = None, stdin: Any = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """previewctl as a user runs it, without colour settings or a runtime directory of the test runner's."""
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "XDG_RUNTIME_DIR")}
    return subprocess.run(
        [str(ROOT / ".venv/bin/previewctl"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environ, **(env or {})},
        stdin=stdin,
    )


def many_stills_timeline(media: Path, count: int = 50_000, per_track: int = 4000) -> dict[str, Any]:
    """A timeline JSON of ``count`` stills ``media/<n>.png``, 40 ms each, one after another, ``per_track`` to a track:
    the editor's biggest plausible project (the loop must not stall on reading or checking it)."""
    tracks = [
        {
            "id": t + 1,
            "clips": [
                {
                    "id": i + 1,
                    "source_path": f"{media}/{t * per_track + i}.png",
                    "type": "image",
                    "start_on_track_ms": (t * per_track + i) * 40,
                    "end_on_track_ms": (t * per_track + i + 1) * 40,
                }
                for i in range(min(per_track, count - t * per_track))
            ],
        }
        for t in range(-(-count // per_track))
    ]
    return {"frame_rate": 25, "tracks": tracks}

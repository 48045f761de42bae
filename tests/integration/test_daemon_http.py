"""A real daemon process on a real loopback socket."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import select
import signal
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from flipedit_previewd.demo.fixtures import set_clip_rect
from tests.support.helpers import (
    build_project,
    close_to,
    decode,
    exchange,
    failpoint,
    solid_png,
    still_project,
    wait_for,
)

RED = (255, 0, 0)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return still_project(tmp_path, RED, (100, 100, 200, 100), clip="c")


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    data = data.replace(b"\r\nHost: x\r\n", b"\r\nHost: 127.0.0.1:%d\r\n" % port)  # the daemon's own name
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def test_editor_endpoints_and_shapes(start_daemon: Any, project: Path) -> None:
    db = project
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    daemon = start_daemon("--project", str(db))
    health = daemon.health()
    for key in ("status", "queue_size", "active_requests", "max_concurrent"):
        assert key in health
    assert health["status"] == "ok" and health["project"]["path"] == str(db)
    assert all(w["state"] == "idle" for w in health["workers"])
    response = daemon.get("/get_frame/0")
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Keep-Alive"] == "timeout=20"
    image = decode(response.content)
    assert image.size == (1280, 720) and close_to(image.getpixel((150, 150)), RED)
    small = decode(daemon.get("/get_frame/0?width=640").content)
    assert small.size == (640, 360) and close_to(small.getpixel((75, 75)), RED)
    timeline = daemon.get("/debug/timeline").json()
    for key in ("total_frames", "frame_rate", "clips_count", "clips", "queue_stats"):
        assert key in timeline
    clip = timeline["clips"][0]
    assert set(clip) >= {"index", "source_path", "track_time_ms", "source_time_ms"}
    assert set(timeline["queue_stats"]) == {"queue_size", "active_requests"}
    metrics = daemon.get("/metrics").text
    assert "flipedit_preview_requests_total" in metrics and "flipedit_preview_queue_depth" in metrics
    assert daemon.get("/get_frame/-1").status_code == 400
    assert daemon.get("/get_frame/abc").status_code == 400  # the client's mistake, like -1 (issue 26)
    assert daemon.get("/get_frame/0?width=99999").status_code == 400
    assert daemon.get("/nope").status_code == 404
    daemon.stop()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # the daemon never writes the editor's database


def test_if_none_match_is_304_without_rendering(start_daemon: Any, project: Path) -> None:
    db = project
    daemon = start_daemon("--project", str(db))
    first = daemon.get("/get_frame/3")
    etag = first.headers["ETag"]
    completed = daemon.health()["counters"]["completed"]
    again = daemon.get("/get_frame/3", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    assert daemon.health()["counters"]["completed"] == completed
    cached = daemon.get("/get_frame/3")
    assert cached.headers["X-Cache"] == "hit" and cached.content == first.content


def test_drag_changes_next_frame_without_reading_db_per_request(start_daemon: Any, project: Path) -> None:
    db = project
    daemon = start_daemon("--project", str(db))
    before = decode(daemon.get("/get_frame/5").content)
    for _ in range(10):
        daemon.get("/get_frame/5")
    reads = daemon.health()["project"]["reads"]
    conn = sqlite3.connect(str(db))
    with conn:
        set_clip_rect(conn, 3, 1, (600, 400, 200, 100))
    conn.close()
    # The change is noticed from the request path (stat at most every 0.2 s): ask until it shows.
    assert wait_for(lambda: not close_to(decode(daemon.get("/get_frame/5").content).getpixel((150, 150)), RED), 5)
    after = decode(daemon.get("/get_frame/5").content)
    assert close_to(before.getpixel((150, 150)), RED) and not close_to(after.getpixel((150, 150)), RED)
    assert close_to(after.getpixel((650, 450)), RED)
    assert daemon.health()["project"]["reads"] == reads + 1


MALFORMED: list[tuple[bytes, set[int]]] = [
    (b"GARBAGE\r\n\r\n", {400}),
    (b"GET\r\n\r\n", {400}),
    (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", {400, 505}),
    (b"GET / HTTP/1.1\r\n\r\n", {400}),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", {400}),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", {400}),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", {400}),
    (b"PUT /timeline HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n", {413}),
    (b"GET /" + b"x" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {414}),
    (b"GET /" + b"x" * 10000, {414}),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 20000 + b"\r\n\r\n", {431}),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(200)) + b"\r\n", {431}),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(64)) + b"\r\n\r\n", {400}),
    (b"\x00\x01\x02\x03\r\n\r\n", {400}),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", {400, 501}),
    # obs-fold: RFC 9112 lets a server unfold it (h11 does) instead of refusing it.
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Folded: header\r\nConnection: close\r\n\r\n", {200, 400}),
    (b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n", {400}),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad\x00Header: v\r\n\r\n", {400}),
    (b"GET http://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    # without the token: refused at the end of the head (401), the broken chunk is never read (issue 25)
    (b"PUT /timeline HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", {401}),
    (
        b"PUT /timeline HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{bad}",
        {401},
    ),  # no token: refused before the body is read
    (b"PUT /timeline HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]", {401}),
    (b"DELETE /get_frame/1 HTTP/1.1\r\nHost: x\r\n\r\n", {405}),
    (b"GET /get_frame/-5 HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    (b"GET /get_frame/99999999999 HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    (b"GET /get_frame/1?quality=0 HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    (b"GET /get_frame/1?width=abc HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    (b"GET /get_frame/1?format=gif HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    (b"GET /get_frame/1?width=20000&height=20000 HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    (b"\r\n\r\n\r\n", {400}),
]


def test_malformed_requests_get_their_status_and_daemon_keeps_serving(start_daemon: Any, project: Path) -> None:
    db = project
    daemon = start_daemon("--project", str(db), "--request-timeout", "2")
    assert len(MALFORMED) >= 30
    for data, statuses in MALFORMED:
        status, answer = exchange(daemon.port, data, timeout=5)  # 0: no answer at all, never accepted
        assert status in statuses, (data[:60], answer[:200])
        if status:
            head, _, body = answer.partition(b"\r\n\r\n")
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            assert len(body) == length  # complete response, never cut short
        if (
            status >= 400 and status not in (404, 405) and b'"field"' not in answer
        ):  # a query/body mistake keeps the connection
            assert b"connection: close" in answer.lower()
        assert daemon.get("/health").status_code == 200
    # A slow drip never completes a request: 408 after request_timeout, then a clean close (no reset
    # even though the client is still sending).
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        started = time.monotonic()
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1234567890\r\n":
            if select.select([sock], [], [], 0)[0]:
                break  # the daemon answered
            sock.sendall(bytes([byte]))
            time.sleep(0.1)
        answer = sock.recv(65536)
        assert 1.8 < time.monotonic() - started < 4
        assert answer.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in answer
        assert sock.recv(65536) == b""
    assert daemon.get("/get_frame/1").status_code == 200


def test_pipelined_requests_answered_in_order(start_daemon: Any, project: Path) -> None:
    db = project
    daemon = start_daemon("--project", str(db))
    data = (
        b"GET /get_frame/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /get_frame/2 "
        b"HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answer = raw_exchange(daemon.port, data)
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    first_jpeg, health_at, second_jpeg = (
        answer.find(b"image/jpeg"),
        answer.find(b"application/json"),
        answer.rfind(b"image/jpeg"),
    )
    assert first_jpeg < health_at < second_jpeg


def test_keepalive_connection_reused_after_14s_idle(start_daemon: Any, project: Path) -> None:
    db = project
    daemon = start_daemon("--project", str(db))
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=5)
    conn.request("GET", "/get_frame/0")
    first = conn.getresponse()
    first.read()
    assert first.status == 200 and first.getheader("Keep-Alive") == "timeout=20"
    local = conn.sock.getsockname()
    time.sleep(14)
    conn.request("GET", "/get_frame/1")
    second = conn.getresponse()
    assert second.status == 200 and len(second.read()) > 1000
    assert conn.sock.getsockname() == local  # the same connection, not a silent reconnect
    conn.close()


def test_overload_answers_503_with_retry_after_and_health_stays_fast(start_daemon: Any, project: Path) -> None:
    db = project
    daemon = start_daemon("--project", str(db), "--workers", "1", "--queue-size", "2", env=failpoint("sleep:0.3"))
    statuses: list[tuple[int, str | None]] = []
    errors: list[str] = []
    health_times: list[float] = []
    health_statuses: set[str] = set()

    def fetch(frame: int) -> None:
        try:
            r = requests.get(f"{daemon.url}/get_frame/{frame}", timeout=10)
            statuses.append((r.status_code, r.headers.get("Retry-After")))
            if r.status_code == 503:
                assert r.json()["limit"] in ("queue", "deadline")
        except requests.RequestException as exc:
            errors.append(repr(exc))

    stop = threading.Event()

    def watch_health() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            health_statuses.add(requests.get(daemon.url + "/health", timeout=5).json()["status"])
            health_times.append(time.monotonic() - t0)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_health)
    watcher.start()
    with ThreadPoolExecutor(max_workers=24) as pool:
        list(pool.map(fetch, range(100, 148)))
    stop.set()
    watcher.join()
    assert not errors
    assert {s for s, _ in statuses} <= {200, 503}
    assert any(s == 503 for s, _ in statuses) and any(s == 200 for s, _ in statuses)
    assert all(retry is not None and int(retry) >= 1 for s, retry in statuses if s == 503)
    assert max(health_times) < 1.0
    assert "overloaded" in health_statuses


def test_identical_requests_share_one_render(start_daemon: Any, project: Path) -> None:
    # 1 s renders: all 12 requests arrive while the first render runs, so none can be a cache hit.
    daemon = start_daemon("--project", str(project), "--workers", "1", env=failpoint("sleep:1.0"))
    before = daemon.health()["counters"]
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda _: daemon.get("/get_frame/7"), range(12)))
    assert all(r.status_code == 200 for r in results)
    assert len({r.content for r in results}) == 1
    after = daemon.health()["counters"]

    def delta(key: str) -> int:
        return int(after.get(key, 0) - before.get(key, 0))

    # None answered from the cache on the request path (they all came while the first render ran)...
    assert delta("outcome_cached") == 0, after
    # ...one in flight plus one pending, however many waited: every other request joined the pending one.
    assert 1 <= delta("admitted") <= 2 and 1 <= delta("completed") <= delta("admitted"), after
    assert delta("joined") == 12 - delta("admitted") == delta("outcome_shared"), after


def test_client_gone_while_queued_is_dropped_without_rendering(start_daemon: Any, project: Path) -> None:
    db = project
    daemon = start_daemon("--project", str(db), "--workers", "1", "--render-ahead", "false", env=failpoint("sleep:1.0"))
    completed = daemon.health()["counters"]["completed"]
    holder = threading.Thread(target=lambda: daemon.get("/get_frame/20"))
    holder.start()
    assert wait_for(lambda: daemon.health()["active_requests"] == 1, 5)  # frame 20 is rendering
    sock = socket.create_connection(("127.0.0.1", daemon.port))
    sock.sendall(b"GET /get_frame/21 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % daemon.port)
    assert wait_for(lambda: daemon.health()["queue_size"] == 1, 5)
    sock.close()
    assert wait_for(lambda: daemon.health()["counters"]["cancelled"] == 1, 5)
    assert daemon.health()["queue_size"] == 0
    holder.join()
    # One worker: a later frame renders after anything still queued, so frame 21 would have rendered before it.
    assert daemon.get("/get_frame/60").status_code == 200
    assert daemon.health()["counters"]["completed"] == completed + 2  # frames 20 and 60; frame 21 never rendered


def test_sigterm_stops_accepting_and_drains_what_was_received(start_daemon: Any, project: Path) -> None:
    db = project
    daemon = start_daemon("--project", str(db), "--workers", "1", env=failpoint("sleep:0.5"))
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda f=f: results.append(daemon.get(f"/get_frame/{30 + f}").status_code))
        for f in range(3)
    ]
    open_conn = socket.create_connection(("127.0.0.1", daemon.port))
    open_conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % daemon.port)
    assert open_conn.recv(65536).startswith(b"HTTP/1.1 200")
    admitted = daemon.health()["counters"]["admitted"]
    for t in threads:
        t.start()
    assert wait_for(lambda: daemon.health()["counters"]["admitted"] == admitted + 3, 5)  # all three received
    daemon.signal(signal.SIGTERM)
    # The listener is closed at once (under systemd it is systemd's, and new connections wait there for the next
    # instance); without systemd nothing listens any more, long before the renders are done.
    refused_at = time.monotonic()
    while time.monotonic() - refused_at < 5:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", daemon.port)) != 0:
                break
        time.sleep(0.02)
    assert len(results) < 3  # refused while renders were still being answered: at once, not after the drain
    with pytest.raises(requests.ConnectionError):
        requests.get(daemon.url + "/get_frame/99", timeout=5)
    for t in threads:
        t.join()
    assert results == [200, 200, 200]
    # The idle keep-alive connection was closed (no fd store without systemd), not left hanging.
    open_conn.settimeout(5)
    assert open_conn.recv(1) == b""
    open_conn.close()
    assert daemon.proc.wait(timeout=25) == 0
    assert "stopped" in daemon.log()


def test_sighup_reloads_configuration(start_daemon: Any, project: Path, tmp_path: Path) -> None:
    db = project
    conf = tmp_path / "flipedit-preview"
    conf.mkdir(exist_ok=True)
    (conf / "previewd.toml").write_text("queue_size = 5\n")
    daemon = start_daemon("--project", str(db), env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert daemon.health()["queue_capacity"] == 5
    (conf / "previewd.toml").write_text("queue_size = 9\njpeg_quality = 20\nmax_connections = 3\n")
    daemon.signal(signal.SIGHUP)
    assert wait_for(lambda: daemon.health()["queue_capacity"] == 9, 5)
    # The default JPEG quality: a frame not asked for with ?quality= is now encoded like ?quality=20.
    default = decode_raw(daemon.get("/get_frame/11").content)
    asked = decode_raw(daemon.get("/get_frame/11?quality=20").content)
    before = decode_raw(daemon.get("/get_frame/11?quality=85").content)
    assert default.quantization == asked.quantization != before.quantization
    # max_connections is restart-only (the fd limit and the fd store are sized at start): the running
    # value stays in force and /health names it as waiting for a restart.
    assert "max_connections" in daemon.health()["restart_pending"]
    held = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(3)]  # idle connections
    answer = raw_exchange(
        daemon.port, f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\nConnection: close\r\n\r\n".encode()
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    for sock in held:
        sock.close()
    (conf / "previewd.toml").write_text("queue_size = -3\n")
    daemon.signal(signal.SIGHUP)
    assert wait_for(lambda: "kept old configuration" in daemon.log(), 5)
    assert daemon.health()["queue_capacity"] == 9


def decode_raw(body: bytes) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(body))


def test_put_timeline_validates_and_guards_paths(start_daemon: Any, project: Path, tmp_path: Path) -> None:
    db = project
    daemon = start_daemon("--project", str(db))
    green = solid_png(tmp_path / "green.png", (10, 10), (0, 255, 0))
    outside = tmp_path.parent / f"outside-{tmp_path.name}.png"
    solid_png(outside, (10, 10), (0, 0, 255))
    (tmp_path / "link.png").symlink_to(outside)

    def put(path: str, **extra: Any) -> requests.Response:
        clip = {"source_path": path, "start_on_track_ms": 0, "end_on_track_ms": 1000, **extra}
        return requests.put(
            daemon.url + "/timeline", data=json.dumps({"tracks": [{"clips": [clip]}]}), timeout=5, headers=daemon.auth
        )

    bad = put(str(green), flip=7)
    assert bad.status_code == 400 and bad.json()["field"] == "timeline.tracks[0].clips[0].flip"
    for path in ("/etc/passwd", str(tmp_path / "../../x.jpg"), str(tmp_path / "link.png")):
        assert put(path).status_code == 403, path
    ok = put(str(green))
    assert ok.status_code == 200
    assert daemon.get("/timeline").json()["revision"] == ok.json()["revision"]
    image = decode(daemon.get("/get_frame/0").content)
    assert close_to(image.getpixel((640, 360)), (0, 255, 0))
    outside.unlink()


def test_bad_media_renders_placeholder_logged_once(start_daemon: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    db = tmp_path / "p.sqlite"
    build_project(
        db,
        2,
        [
            {
                "name": "t",
                "order": 0,
                "clips": [{"source": broken, "type": "video", "rect": (0, 0, 640, 360), "start": 0, "end": 10_000}],
            }
        ],
    )
    daemon = start_daemon("--project", str(db), "--workers", "2", "--render-ahead", "false", env=failpoint("sleep:0.2"))
    before = [w["completed"] for w in daemon.health()["workers"]]
    with ThreadPoolExecutor(max_workers=2) as pool:  # two at a time: both workers render the broken clip
        statuses = list(pool.map(lambda frame: daemon.get(f"/get_frame/{frame * 20}").status_code, range(8)))
    assert statuses == [200] * 8
    after = [w["completed"] for w in daemon.health()["workers"]]
    assert len(after) == 2 and all(a > b for a, b in zip(after, before, strict=True)), (
        before,
        after,
    )  # both rendered it
    assert daemon.log_settled().count(f"media problem in {broken}") == 1
    assert daemon.health()["status"] == "ok"


def test_connection_close_and_http10_end_cleanly(start_daemon: Any, project: Path) -> None:
    db = project
    daemon = start_daemon("--project", str(db))
    for request in (b"GET /health HTTP/1.0\r\n\r\n", b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
        answer = raw_exchange(daemon.port, request)
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.count(b"HTTP/1.1") == 1
    assert "Traceback" not in daemon.log() and "never retrieved" not in daemon.log()

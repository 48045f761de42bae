"""The trust boundary at a real daemon: who may talk, who may change things, what media may be read.

Every hostile source below renders as a placeholder in a frame that still answers 200, shows no
pixel of the outside file (pure blue), starts no helper program, and leaves the daemon serving.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import requests

from flipedit_previewd.timeline.projectdb import MEDIA_STAT_INTERVAL
from tests.support.helpers import build_project, close_to, decode, descendants, exchange, solid_png, wait_for

BLUE = (0, 0, 255)
GREEN = (0, 255, 0)


def make_video(
    path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 48), fmt: str | None = None
) -> Path:
    container = av.open(str(path), "w", format=fmt)
    stream = container.add_stream("mpeg4", rate=30)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    for _ in range(10):
        frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), colour, np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture
def scene(tmp_path: Path) -> dict[str, Any]:
    root = tmp_path / "project"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    green = solid_png(root / "green.png", (16, 16), GREEN)
    db = root / "p.sqlite"
    build_project(
        db, 3, [{"name": "t", "order": 0, "clips": [{"source": green, "rect": (0, 0, 64, 64), "end": 100_000}]}]
    )
    return {
        "root": root,
        "outside": outside,
        "db": db,
        "green": green,
        "blue_png": solid_png(outside / "secret.png", (16, 16), BLUE),
        "blue_ts": make_video(outside / "secret.ts", BLUE, fmt="mpegts"),
    }


def put(daemon: Any, clips: list[dict[str, Any]], **headers: str) -> requests.Response:
    doc = {
        "tracks": [
            {
                "clips": [
                    {
                        "start_on_track_ms": 0,
                        "end_on_track_ms": 100_000,
                        "type": "video",
                        "rect": {"left": 0, "top": 0, "width": 1280, "height": 720},
                        **c,
                    }
                    for c in clips
                ]
            }
        ]
    }
    return requests.put(daemon.url + "/timeline", data=json.dumps(doc), timeout=10, headers={**daemon.auth, **headers})


# --- who may talk ---------------------------------------------------------------------------------

EDITOR_SHAPES = [  # what the editor's Dart client sends (reference/flipedit-client.md): Host, no Origin
    b"GET /get_frame/3 HTTP/1.1\r\nuser-agent: Dart/3.2 (dart:io)\r\naccept-encoding: gzip\r\ncontent-length: "
    b"0\r\nhost: %s\r\n\r\n",
    b"GET /health HTTP/1.1\r\nuser-agent: Dart/3.2 (dart:io)\r\naccept-encoding: gzip\r\ncontent-length: 0\r\nhost: "
    b"%s\r\n\r\n",
    b"GET /debug/timeline HTTP/1.1\r\nuser-agent: Dart/3.2 (dart:io)\r\naccept-encoding: gzip\r\ncontent-length: "
    b"0\r\nhost: %s\r\n\r\n",
]
ENDPOINTS = ["/get_frame/0", "/health", "/metrics", "/debug/timeline", "/timeline", "/", "/nope"]


def test_foreign_host_and_browser_requests_refused_editor_shapes_served(
    start_daemon: Any, scene: dict[str, Any]
) -> None:
    daemon = start_daemon("--project", str(scene["db"]))
    port = daemon.port
    for host in (b"127.0.0.1:%d" % port, b"localhost:%d" % port, b"[::1]:%d" % port):
        for shape in EDITOR_SHAPES:
            status, answer = exchange(port, shape % host)
            assert status == 200, answer[:200]
    hostile = [
        {"Host": f"rebind.attacker.example:{port}"},
        {"Host": "127.0.0.1:1"},
        {"Host": f"127.0.0.1:{port}", "Origin": "http://rebind.attacker.example:8081"},
        {"Host": f"127.0.0.1:{port}", "Origin": "null"},
        {"Host": f"127.0.0.1:{port}", "Sec-Fetch-Site": "cross-site"},
        {"Host": f"localhost:{port}", "Sec-Fetch-Site": "same-site"},  # a page on another localhost port
        {"Host": f"localhost:{port}", "Sec-Fetch-Site": "same-origin", "Origin": f"http://localhost:{port + 1}"},
    ]
    for headers in hostile:
        for path in ENDPOINTS:
            for method in ("GET", "PUT"):
                head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                status, answer = exchange(port, f"{method} {path} HTTP/1.1\r\n{head}Content-Length: 0\r\n\r\n".encode())
                assert status in (403, 421), (headers, path, answer[:200])
                body = json.loads(answer.partition(b"\r\n\r\n")[2])
                assert body["error"] and body["detail"]
    # The daemon's own viewer page (same-origin, a loopback Host) may read; it may not change the timeline.
    status, _ = exchange(
        port, f"GET /health HTTP/1.1\r\nHost: localhost:{port}\r\nSec-Fetch-Site: same-origin\r\n\r\n".encode()
    )
    assert status == 200
    status, _ = exchange(
        port,
        f"PUT /timeline HTTP/1.1\r\nHost: localhost:{port}\r\nSec-Fetch-Site: same-origin\r\n"
        f"Content-Length: 0\r\n\r\n".encode(),
    )
    assert status == 403
    # A typed URL (Sec-Fetch-Site: none) is not a page's request.
    status, _ = exchange(
        port, f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nSec-Fetch-Site: none\r\n\r\n".encode()
    )
    assert status == 200
    # Journaled once per status per minute (421, 403), not once per refusal or per client (issue 25).
    assert daemon.log_settled().count("access_denied:") == 2, daemon.log()[-2000:]
    assert daemon.get("/get_frame/1").status_code == 200


def test_put_and_delete_need_the_token_over_tcp_and_the_owner_on_the_unix_socket(
    start_daemon: Any, scene: dict[str, Any], tmp_path: Path
) -> None:
    sock_path = tmp_path / "d.sock"
    daemon = start_daemon("--project", str(scene["db"]), "--listen", f"unix:{sock_path}")
    assert os.stat(daemon.token_file).st_mode & 0o777 == 0o600
    doc = json.dumps(
        {"tracks": [{"clips": [{"source_path": str(scene["green"]), "start_on_track_ms": 0, "end_on_track_ms": 1000}]}]}
    )
    url = daemon.url + "/timeline"
    assert requests.put(url, data=doc, timeout=5).status_code == 401
    assert requests.put(url, data=doc, timeout=5, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert requests.delete(url, timeout=5).status_code == 401
    assert requests.put(url, data=doc, timeout=5, headers=daemon.auth).status_code == 200
    assert requests.delete(url, timeout=5, headers=daemon.auth).status_code == 200
    # The unix socket: the owner (us) without any token.
    request = (
        f"PUT /timeline HTTP/1.1\r\nHost: anything\r\nContent-Length: {len(doc)}\r\nConnection: close\r\n\r\n{doc}"
    ).encode()
    with socket.socket(socket.AF_UNIX) as unix:
        unix.settimeout(10)
        unix.connect(str(sock_path))
        unix.sendall(request)
        answer = b""
        while chunk := unix.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_request_id_and_header_bytes(start_daemon: Any, scene: dict[str, Any]) -> None:
    daemon = start_daemon("--project", str(scene["db"]))
    port = daemon.port
    status, answer = exchange(port, b"GET /get_frame/5 HTTP/1.1\r\nHost: x\r\nX-Request-Id: caf\xe9\r\n\r\n")
    assert status == 200 and b"caf" not in answer.partition(b"\r\n\r\n")[0]
    status, answer = exchange(port, b"GET /get_frame/6 HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123_Z\r\n\r\n")
    assert status == 200 and b"X-Request-Id: abc-123_Z\r\n" in answer
    status, answer = exchange(port, b"GET /get_frame/7 HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\x1bb\r\n\r\n")
    assert status in (200, 400) and b"\x1b" not in answer.partition(b"\r\n\r\n")[0]  # the head: the body is a JPEG
    huge = json.dumps({"tracks": [{"id": int("9" * 400), "clips": []}]}).encode()
    status, answer = exchange(
        port,
        b"PUT /timeline HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n%s"
        % (daemon.auth["Authorization"].encode(), len(huge), huge),
    )
    assert status == 400 and json.loads(answer.partition(b"\r\n\r\n")[2])["field"] == "timeline.tracks[0].id"


# --- what may be read -----------------------------------------------------------------------------


def _no_blue(image: Any) -> bool:
    small = image.resize((160, 90))
    return not any(close_to(small.getpixel((x, y)), BLUE, 60) for x in range(0, 160, 4) for y in range(0, 90, 4))


def test_hostile_media_renders_placeholders_and_nothing_outside(start_daemon: Any, scene: dict[str, Any]) -> None:
    root, outside = scene["root"], scene["outside"]
    daemon = start_daemon("--project", str(scene["db"]), "--allowed-roots", str(root), "--max-source-pixels", "100000")
    (root / "list.m3u8").write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{scene['blue_ts']}\n#EXT-X-ENDLIST\n"
    )
    (root / "list.ffconcat").write_text(f"ffconcat version 1.0\nfile '{scene['blue_ts']}'\n")
    # A pattern name: FFmpeg's image2 would expand it to seq001.vid (the secret). Its own content is a green PNG,
    # decided by content and decoded by Pillow from the one checked descriptor.
    (root / "seq001.vid").write_bytes((outside / "secret.png").read_bytes())
    (root / "ps.png").write_text(
        "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 1 setrgbcolor 0 0 10 10 rectfill\nshowpage\n"
    )
    make_video(root / "big.mp4", BLUE, (640, 480))  # 307200 pixels > 100000
    ok = solid_png(root / "ok.png", (16, 16), GREEN)
    (root / "link.png").symlink_to(ok)
    fifo_target = solid_png(root / "fifo.png", (16, 16), GREEN)
    workers_before = descendants(daemon.proc.pid)
    assert workers_before
    (root / "seq%03d.vid").write_bytes(fifo_target.read_bytes())
    cases = {
        "list.m3u8": "HLS playlist is not an allowed video container",
        "list.ffconcat": "concat list is not an allowed video container",
        "ps.png": "PostScript is not an allowed still format",
        "big.mp4": "video too large",
    }
    for frame, (name, problem) in enumerate(cases.items()):
        assert put(daemon, [{"source_path": str(root / name)}]).status_code == 200
        response = daemon.get(f"/get_frame/{frame}")
        assert response.status_code == 200
        assert _no_blue(decode(response.content)), name
        # The journal line is written by the log's own thread: it may follow the answer by a moment.
        assert wait_for(lambda problem=problem: problem in daemon.log(), 3), (name, daemon.log()[-1500:])
    assert put(daemon, [{"source_path": str(root / "seq%03d.vid")}]).status_code == 200
    pattern = decode(daemon.get("/get_frame/9").content)
    assert _no_blue(pattern) and close_to(pattern.getpixel((640, 360)), GREEN)  # the file itself, never seq001.vid
    # Symlink and FIFO swapped after the PUT accepted them: checked again on what is opened.
    assert put(daemon, [{"source_path": str(root / "link.png")}]).status_code == 200
    assert close_to(decode(daemon.get("/get_frame/10").content).getpixel((640, 360)), GREEN)
    (root / "link.png").unlink()
    (root / "link.png").symlink_to(scene["blue_png"])
    time.sleep(MEDIA_STAT_INTERVAL + 0.3)  # until then the frame is the one rendered from the checked file
    image = decode(daemon.get("/get_frame/11").content)
    assert _no_blue(image) and wait_for(lambda: "outside the allowed media roots" in daemon.log(), 3)
    assert put(daemon, [{"source_path": str(fifo_target)}]).status_code == 200
    fifo_target.unlink()
    os.mkfifo(fifo_target)
    time.sleep(MEDIA_STAT_INTERVAL + 0.3)
    started = time.monotonic()
    response = daemon.get("/get_frame/12", timeout=10)
    assert response.status_code == 200 and time.monotonic() - started < 8
    assert wait_for(lambda: "not a regular file" in daemon.log(), 3), daemon.log()[-3000:]
    assert descendants(daemon.proc.pid) == workers_before  # no gs, no ffmpeg helper, no replaced worker
    assert daemon.health()["status"] == "ok"


def test_forbidden_roots_are_skipped_and_shown(start_daemon: Any, scene: dict[str, Any]) -> None:
    daemon = start_daemon(
        "--project",
        str(scene["db"]),
        "--allowed-roots",
        "/",
        "--allowed-roots",
        "/etc",
        "--allowed-roots",
        str(scene["root"]),
    )
    health = daemon.health()
    assert health["media_roots"] == [str(scene["root"].resolve())]
    assert {r.split(" ")[0] for r in health["media_roots_skipped"]} == {"/", "/etc"}


def test_control_characters_in_a_media_path_stay_on_one_escaped_line(start_daemon: Any, scene: dict[str, Any]) -> None:
    daemon = start_daemon("--project", str(scene["db"]), "--allowed-roots", str(scene["root"]))
    evil = str(scene["root"] / "a\n00:00:00 ERR     worker_hung: forged\x1b[2J\x1b]8;;http://x\x07.png")
    assert put(daemon, [{"source_path": evil, "type": "image"}]).status_code == 200
    assert daemon.get("/get_frame/0").status_code == 200
    log = daemon.log_settled()
    assert "\x1b" not in log and "\x07" not in log
    assert not re.search(r"^00:00:00 ERR", log, re.M)
    lines = [line for line in log.splitlines() if "media_problem" in line]
    assert len(lines) == 1 and "a\\x0a00:00:00 ERR" in lines[0] and "\\x1b[2J" in lines[0]


def test_preview_client_picks_up_the_token(
    start_daemon: Any, scene: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flipedit_previewd.client.api import PreviewClient, PreviewError

    runtime = tmp_path / "runtime"
    token_file = runtime / "flipedit-preview" / "token"
    daemon = start_daemon("--project", str(scene["db"]), env={"FLIPEDIT_PREVIEWD_TOKEN_FILE": str(token_file)})
    doc = {
        "tracks": [{"clips": [{"source_path": str(scene["green"]), "start_on_track_ms": 0, "end_on_track_ms": 1000}]}]
    }
    client = PreviewClient(daemon.url)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(PreviewError) as refused:
        client.put_timeline(doc)
    assert refused.value.status == 401
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert client.put_timeline(doc)["clips"] == 1
    assert client.delete_timeline()["source"] == "database"
    client.close()

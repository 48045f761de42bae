"""Bad input at the daemon: the malformed-request corpus and property-based fuzzing over a real socket."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.helpers import ROOT, Daemon, build_project, exchange, solid_png

CORPUS = [json.loads(line) for line in (ROOT / "tests/corpus/malformed_http.jsonl").read_text().splitlines()]
# Every request gets an answer: a connection closed without one (status 0) is a failure, not a pass.
DOCUMENTED = {200, 304, 400, 401, 403, 404, 405, 408, 413, 414, 421, 431, 503, 505}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("badinput")
    red = solid_png(tmp / "red.png", (32, 32), (255, 0, 0))
    db = tmp / "p.sqlite"
    build_project(
        db, 3, [{"name": "t", "order": 0, "clips": [{"source": red, "rect": (0, 0, 64, 64), "end": 100_000}]}]
    )
    # Media under the allowed root for the timeline fuzzer: a still, a non-image, a directory, a FIFO, a link.
    solid_png(tmp / "big.png", (3000, 20), (0, 255, 0))
    (tmp / "text.mp4").write_text("not a video")
    (tmp / "dir.png").mkdir()
    os.mkfifo(tmp / "fifo.mp4")
    (tmp / "link.png").symlink_to(red)
    d = Daemon(["--project", str(db), "--request-timeout", "1", "--allowed-roots", str(tmp)], tmp=tmp).start()
    d.root = tmp  # type: ignore[attr-defined]
    yield d
    d.stop()
    assert "Traceback" not in d.log(), d.log()[-3000:]  # fuzzing found crashes in the connection layer once


def test_corpus_has_100_entries_each_gets_its_status(daemon: Any) -> None:
    assert len(CORPUS) >= 100
    auth = f"\r\nHost: x\r\nAuthorization: {daemon.auth['Authorization']}\r\n".encode()
    for entry in CORPUS:
        # As the daemon's owner (the token), so the corpus reaches the body and routing checks behind the guard.
        status, answer = exchange(daemon.port, entry["request"].encode("latin-1").replace(b"\r\nHost: x\r\n", auth))
        assert status != 0, ("no answer at all", entry["why"])
        assert status in entry["expect"], (entry["why"], answer[:200])
        if (
            status >= 400 and status not in (404, 405) and b'"field"' not in answer
        ):  # a query mistake (names its field) keeps the connection
            assert b"Connection: close" in answer, entry["why"]
    assert daemon.get("/get_frame/1").status_code == 200
    assert daemon.health()["status"] == "ok" and daemon.proc.poll() is None


TOKEN = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=30)
METHODS = st.sampled_from(["GET", "PUT", "HEAD", "POST", "DELETE", "G ET", "", "\x00"]) | TOKEN
PATHS = st.sampled_from(
    ["/get_frame/1", "/health", "/timeline", "/metrics", "/debug/timeline", "/get_frame/-1", "*", ""]
) | TOKEN.map(lambda t: "/" + t)
# Control characters (newline, ESC, DEL, C1) where paths and header values go, and non-ASCII header bytes.
CONTROL = st.text(
    alphabet=st.sampled_from(["\x1b", "\x7f", "\x85", "\x9b", "\t", "\x07", "[", "3", "1", "m", "/"]),
    min_size=1,
    max_size=12,
)
NON_ASCII = st.text(alphabet=st.characters(min_codepoint=128, max_codepoint=255), min_size=1, max_size=12)
HEADER_VALUES = TOKEN | NON_ASCII | CONTROL | st.sampled_from(["caf\xe9", "\xff\xfe", "a\x1b]8;;http://x\x1b\\"])
HOSTS = st.sampled_from(["x", "x", "x", "localhost", "evil.example:8081", "127.0.0.1", ""]) | NON_ASCII


@st.composite
def raw_requests(draw: st.DrawFn) -> bytes:
    method, path = draw(METHODS), draw(PATHS)
    query = draw(
        st.sampled_from(["", "?width=100", "?quality=500", "?width=abc&height=-1", "?format=png"])
        | TOKEN.map(lambda t: "?" + t)
    )
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x", ""]))
    path += draw(st.sampled_from(["", ""]) | CONTROL)
    headers = draw(
        st.lists(
            st.tuples(
                TOKEN | st.sampled_from(["X-Request-Id", "Origin", "Sec-Fetch-Site", "Authorization", "If-None-Match"]),
                HEADER_VALUES,
            ),
            max_size=6,
        )
    )
    body = draw(st.binary(max_size=64))
    # "Host: x" becomes the daemon's own name in exchange(); other hosts exercise the Host check.
    lines = [f"{method} {path}{query} {version}", f"Host: {draw(HOSTS)}"] + [f"{k}: {v}" for k, v in headers]
    if draw(st.booleans()):
        lines.append(f"Content-Length: {draw(st.sampled_from([len(body), 0, -1, 10**12]) | st.integers(0, 100))}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))] + b"\r\n\r\n"
    return raw


def test_fuzzed_requests_get_documented_answers(daemon: Any, fuzz_examples: int) -> None:
    @settings(max_examples=fuzz_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(raw_requests())
    def check(raw: bytes) -> None:
        status, answer = exchange(
            daemon.port, raw + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=10
        )
        assert status != 0, ("no answer at all", raw[:300])
        assert status in DOCUMENTED, (raw[:300], answer[:300])

    check()
    assert daemon.get("/health").json()["status"] in ("ok", "overloaded")
    assert daemon.get("/get_frame/2").status_code == 200


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
UNDER_ROOT = [
    "red.png",
    "big.png",
    "text.mp4",
    "dir.png",
    "fifo.mp4",
    "link.png",
    "missing.png",
    "./red.png",
    "dir.png/../red.png",
]


def timelines(root: Path) -> st.SearchStrategy[Any]:
    """Timelines whose paths are refused, missing, or under the allowed root (so some are accepted and rendered)."""
    allowed = st.sampled_from([str(root / name) for name in UNDER_ROOT])
    refused = st.sampled_from(["/etc/passwd", "rel.png", "", "/nonexistent/x.mp4"]) | st.text(max_size=20)
    times = st.integers(-10, 10_000) | st.integers(0, 5000) | JSONISH
    rect = st.fixed_dictionaries(
        {
            "left": st.integers(-5000, 5000),
            "top": st.integers(-5000, 5000),
            "width": st.integers(-10, 5000),
            "height": st.integers(-10, 5000),
        }
    )
    clip = st.fixed_dictionaries(
        {"source_path": allowed | allowed | refused, "start_on_track_ms": times, "end_on_track_ms": times},
        optional={
            "rect": rect | JSONISH,
            "flip": JSONISH | st.integers(-1, 3),
            "type": st.sampled_from(["video", "image"]) | JSONISH,
            "start_in_source_ms": JSONISH | st.integers(-10, 100_000),
        },
    )
    track = st.fixed_dictionaries(
        {"clips": st.lists(clip, max_size=3)},
        optional={"order": JSONISH | st.integers(-3, 3), "visible": JSONISH | st.booleans(), "id": JSONISH},
    )
    canvas = st.fixed_dictionaries({"width": st.integers(-1, 4000), "height": st.integers(-1, 4000)})
    doc = st.fixed_dictionaries(
        {"tracks": st.lists(track, min_size=1, max_size=3) | st.lists(track, max_size=3) | JSONISH},
        optional={"canvas": canvas | JSONISH, "frame_rate": st.sampled_from([1, 24, 29.97, 60, 0, -1]) | JSONISH},
    )
    return doc | doc | JSONISH


def test_fuzzed_json_timelines_get_400_or_403_never_500(daemon: Any, fuzz_examples: int) -> None:
    """Refused ones get 400/403; accepted ones (paths under the allowed root) are rendered: 200, never 500."""
    import requests

    session = requests.Session()
    rendered: list[int] = []

    @settings(max_examples=fuzz_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(timelines(daemon.root))
    def check(doc: Any) -> None:
        body = json.dumps(doc, allow_nan=True)
        r = session.put(daemon.url + "/timeline", data=body, timeout=10, headers=daemon.auth)
        assert r.status_code in (200, 400, 403), r.text[:300]
        if r.status_code == 400:
            assert r.json().get("field") or "JSON" in r.json()["detail"]
        if r.status_code == 200:
            for frame in (0, 15, 90):
                got = session.get(f"{daemon.url}/get_frame/{frame}?width=160", timeout=30)
                if got.status_code == 400 and got.json().get("field") in ("width", "height"):
                    continue  # the canvas's aspect ratio makes 160 px wide an output over max_output_pixels: documented
                assert got.status_code == 200, (body[:300], got.status_code, got.text[:300])
                assert got.content[:2] == b"\xff\xd8"
                rendered.append(body.count(str(daemon.root)))  # clips with a path under the allowed root

    check()
    # Not vacuous: some fuzzed timelines were accepted and rendered, with clips under the allowed root.
    print(
        f"\nfuzzed timelines: {len(rendered)} frames rendered, {sum(rendered)} clip paths under the allowed root in "
        f"them"
    )
    assert len(rendered) >= fuzz_examples // 50 and sum(rendered) >= fuzz_examples // 100, (
        len(rendered),
        sum(rendered),
    )
    assert session.delete(daemon.url + "/timeline", timeout=10, headers=daemon.auth).status_code == 200
    assert daemon.get("/get_frame/3").status_code == 200


def serve_once(answer: Callable[[socket.socket], None]) -> Iterator[int]:
    """A one-connection TCP server on a free port that reads one request and then does ``answer``."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            answer(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield port
    thread.join(5)
    listener.close()


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("close", 0),  # no answer at all: status 0, which no test accepts
        ("complete-then-close", 400),  # a deliberate close after a complete error answer
        ("cut-short", "AssertionError"),  # closed in the middle of the body
        ("silent", "AssertionError"),  # never answers, never closes
    ],
)
def test_exchange_tells_no_answer_from_a_complete_answer(how: str, expected: object) -> None:
    """The harness the corpus and fuzz tests rely on: a missing or partial answer can never count as a status."""
    answers: dict[str, Callable[[socket.socket], None]] = {
        "close": lambda conn: None,
        "complete-then-close": lambda conn: conn.sendall(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        ),
        "cut-short": lambda conn: conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 20\r\n\r\n{}"),
        "silent": lambda conn: threading.Event().wait(3),
    }
    for port in serve_once(answers[how]):
        if expected == "AssertionError":
            with pytest.raises(AssertionError):
                exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=1)
        else:
            assert exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=1)[0] == expected

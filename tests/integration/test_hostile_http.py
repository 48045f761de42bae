"""Hostile HTTP, second round (issue 25), at a real daemon on real sockets: memory before authentication,
connection exhaustion, journal floods from rotating loopback addresses."""

from __future__ import annotations

import json
import re
import resource
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.helpers import still_project

MIB = 1024 * 1024


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return still_project(tmp_path)


def rss(pid: int) -> int:
    """The process's resident set, bytes (/proc/PID/status VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def answer_of(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def timeline_doc(project: Path) -> bytes:
    red = project.parent / "red.png"
    return json.dumps(
        {"tracks": [{"clips": [{"source_path": str(red), "start_on_track_ms": 0, "end_on_track_ms": 1000}]}]}
    ).encode()


# --- memory before authentication ------------------------------------------------------------------


def test_unauthenticated_bodies_are_refused_before_they_are_read(start_daemon: Any, project: Path) -> None:
    """64 x PUT /timeline with 4 MiB bodies, no token, each held one byte short: refused (401) at the end of the
    head, nothing of the bodies buffered: the daemon grows by less than 16 MiB (it grew 256 MiB before)."""
    daemon = start_daemon("--project", str(project))
    assert daemon.get("/get_frame/0").status_code == 200
    pid = daemon.proc.pid
    size = 4 * MIB
    head = f"PUT /timeline HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\nContent-Length: {size}\r\n\r\n".encode()
    body = b"x" * (size - 1)
    time.sleep(0.5)
    before = rss(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.append(rss(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    socks: list[socket.socket] = []

    def send(_: int) -> None:
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
        socks.append(sock)
        try:
            sock.sendall(head + body)
        except OSError:
            pass  # the daemon answered and closed without reading the body: what we want

    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(send, range(64)))
        time.sleep(1.0)
        statuses = [status_of(answer_of(sock, 2.0)) for sock in socks[:8]]
    finally:
        done.set()
        sampler.join()
        for sock in socks:
            sock.close()
    growth = max(peak) - before
    print(
        f"64 unauthenticated 4 MiB bodies held one byte short: RSS {before / MIB:.1f} MiB, peak +{growth / MIB:.1f} "
        f"MiB; "
        f"answers {sorted(set(statuses))}"
    )
    assert growth < 16 * MIB, f"the daemon grew by {growth / MIB:.1f} MiB"
    assert set(statuses) <= {401, 0} and 401 in statuses, statuses  # 0: a reset after the answer, on a slow reader
    # The owner's PUT still works.
    put = requests.put(daemon.url + "/timeline", data=timeline_doc(project), headers=daemon.auth, timeout=10)
    assert put.status_code == 200, put.text


def test_buffered_bodies_have_a_global_budget(start_daemon: Any, project: Path) -> None:
    """max_buffered_body_bytes: an authorised body that does not fit now is 503 with Retry-After, one that never
    fits is 413, both before they are read; once the first body has been answered the budget is free again."""
    daemon = start_daemon("--project", str(project), "--max-buffered-body-bytes", str(MIB))
    token = daemon.auth["Authorization"]

    def head(length: int) -> bytes:
        return (
            f"PUT /timeline HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\nAuthorization: {token}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()

    holder = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    try:
        holder.sendall(head(700_000) + b"x" * 1000)  # holds 700,000 bytes of the budget while its body arrives
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as second:
            second.sendall(head(700_000))
            answer = answer_of(second)
        assert status_of(answer) == 503 and b"\r\nRetry-After: " in answer, answer[:300]
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as huge:
            huge.sendall(head(2 * MIB))
            answer = answer_of(huge)
        assert status_of(answer) == 413, answer[:300]
        holder.sendall(b" " * (700_000 - 1000))  # the rest: not a timeline, answered 400, the budget given back
        assert status_of(answer_of(holder)) == 400
    finally:
        holder.close()
    put = requests.put(daemon.url + "/timeline", data=timeline_doc(project), headers=daemon.auth, timeout=10)
    assert put.status_code == 200, put.text
    assert daemon.health()["rejections"]["by_reason"].get("bodies") == 1


# --- connection exhaustion ---------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [64, 1024])
def test_idle_connections_do_not_lock_the_editor_out(start_daemon: Any, project: Path, limit: int) -> None:
    """The limit's worth of connections that never send a byte, from rotating 127/8 source addresses: the
    editor's open keep-alive connection and its new connection are both served (200), not 503."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < limit + 256:
        if hard != resource.RLIM_INFINITY and hard < limit + 256:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low for {limit} connections")
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit + 256, hard))
    daemon = start_daemon("--project", str(project), "--max-connections", str(limit))
    editor = requests.Session()
    silent: list[socket.socket] = []
    try:
        assert editor.get(daemon.url + "/get_frame/0", timeout=10).status_code == 200  # a keep-alive that has spoken
        started = time.monotonic()
        for i in range(limit):
            sock = socket.socket()
            sock.bind((f"127.0.0.{2 + i % 199}", 0))
            sock.connect(("127.0.0.1", daemon.port))
            silent.append(sock)
        time.sleep(0.3)
        kept = editor.get(daemon.url + "/get_frame/1", timeout=10)
        fresh = requests.get(daemon.url + "/get_frame/2", timeout=10, headers={"Connection": "close"})
        print(
            f"{limit} silent connections in {time.monotonic() - started:.1f} s: editor kept {kept.status_code}, new "
            f"{fresh.status_code}"
        )
        assert kept.status_code == 200 and fresh.status_code == 200
        health = requests.get(daemon.url + "/health", timeout=10, headers={"Connection": "close"}).json()
        print(f"open {health['connections']}, refused {health['rejections']['by_reason']}")
        assert health["connections"] <= limit // 2 + 3  # one client's silent connections: half the slots at most
        assert "connections" not in health["rejections"]["by_reason"]
    finally:
        editor.close()
        for sock in silent:
            sock.close()


# --- journal floods ------------------------------------------------------------------------------------


def test_refusal_flood_from_many_loopback_addresses_is_summarised(start_daemon: Any, project: Path) -> None:
    """Malformed and refused requests from 127.0.0.2 .. 127.0.0.200 (six kinds each): one journal entry per kind
    and status in the minute, not one per request or per address; the summary and /health count every one."""
    daemon = start_daemon("--project", str(project))
    port = daemon.port
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    kinds = {
        400: b"GARBAGE\r\n\r\n",
        414: b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + host + b"\r\n",
        431: b"GET /health HTTP/1.1\r\n" + host + b"X-Big: " + b"b" * 17000 + b"\r\n\r\n",
        421: b"GET /health HTTP/1.1\r\nHost: rebind.example\r\n\r\n",
        403: b"GET /health HTTP/1.1\r\n" + host + b"Origin: http://rebind.example\r\n\r\n",
        401: b"PUT /timeline HTTP/1.1\r\n" + host + b"Content-Length: 2\r\n\r\n{}",
    }
    sent: dict[int, int] = {}
    started = time.monotonic()
    for last in range(2, 201):
        for expected, data in kinds.items():
            with socket.socket() as sock:
                sock.bind((f"127.0.0.{last}", 0))
                sock.settimeout(10)
                sock.connect(("127.0.0.1", port))
                sock.sendall(data)
                got = status_of(answer_of(sock))
            assert got == expected, (last, expected, got)
            sent[got] = sent.get(got, 0) + 1
    seconds = time.monotonic() - started
    log = daemon.log_settled()
    entries = [line for line in log.splitlines() if re.search(r" (protocol_error|access_denied): ", line)]
    print(
        f"{sum(sent.values())} refusals from 199 addresses in {seconds:.1f} s: {len(entries)} "
        f"protocol_error/access_denied entries"
    )
    assert seconds < 60  # one minute of the flood: the bound below is per minute
    assert len(entries) <= len(kinds), entries[:20]
    health = daemon.health()
    assert {int(k): v for k, v in health["client_errors"].items()} == sent
    # The stop flushes the minute's summary: its counts are every request of the flood.
    daemon.stop()
    summary = [line for line in daemon.log().splitlines() if " summary: " in line]
    counted: dict[int, int] = {}
    for line in summary:
        for status, count in re.findall(r"COUNT_HTTP_(\d+)=(\d+)", line):
            counted[int(status)] = counted.get(int(status), 0) + int(count)
    assert {k: v for k, v in counted.items() if k in sent} == sent, summary

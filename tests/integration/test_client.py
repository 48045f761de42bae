"""The client library against a real daemon."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from flipedit_previewd.client.api import (
    CircuitBreaker,
    CircuitOpen,
    LatestFrame,
    PreviewClient,
    PreviewError,
    make_retry,
)
from tests.support.helpers import failpoint, still_project, wait_for


def project(tmp_path: Path) -> Path:
    return still_project(tmp_path, rect=(0, 0, 100, 100), db="p.sqlite")


def test_latest_wins_sends_at_most_two_requests_for_a_burst_of_50(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)), env=failpoint("sleep:0.3"))
    client = PreviewClient(daemon.url)
    got: list[int] = []
    latest = LatestFrame(client, lambda frame: got.append(frame.index))
    before = daemon.health()["counters"]["admitted"]
    for index in range(50):
        latest.submit(index)
    assert latest.wait(10)
    assert latest.sent <= 2 and latest.replaced >= 47
    assert got[-1] == 49  # the newest submission is the one that was answered last
    assert daemon.health()["counters"]["admitted"] - before <= 2
    client.close()


def test_retry_after_is_honoured(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)), "--queue-size", "0")  # every render is refused
    client = PreviewClient(daemon.url, retry=make_retry(attempts=2))
    started = time.monotonic()
    with pytest.raises(PreviewError) as info:
        client.frame(1)
    elapsed = time.monotonic() - started
    assert info.value.status == 503
    assert daemon.health()["counters"]["rejected"] == 3  # the first try and two retries
    assert elapsed >= 2 * 1.0  # each retry waited the daemon's Retry-After (1 s here)
    client.close()


def test_unix_socket_and_etag(start_daemon: Any, tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    daemon = start_daemon("--project", str(project(tmp_path)), "--listen", f"unix:{sock}")
    client = PreviewClient(str(sock))
    frame = client.frame(2, width=320)
    assert frame is not None and frame.body[:2] == b"\xff\xd8" and frame.etag
    assert client.frame(2, width=320, etag=frame.etag) is None
    assert client.health()["status"] == "ok"
    client.close()
    assert daemon.proc.poll() is None


def test_circuit_opens_after_failures_and_probes_health_before_closing(tmp_path: Path, start_daemon: Any) -> None:
    db = project(tmp_path)
    daemon = start_daemon("--project", str(db))
    now = [1000.0]  # the breaker's clock, moved by the test: no sleeping on the real one
    client = PreviewClient(
        daemon.url,
        retry=make_retry(attempts=0),
        breaker=CircuitBreaker(threshold=3, cooldown=0.5, clock=lambda: now[0]),
    )
    daemon.stop()
    for _ in range(3):
        with pytest.raises(requests.ConnectionError):
            client.frame(0)
    with pytest.raises(CircuitOpen):
        client.frame(0)  # fails fast, nothing sent
    now[0] += 0.4
    assert client.breaker.state == "open"
    with pytest.raises(CircuitOpen):
        client.frame(0)  # still within the cooldown
    now[0] += 0.2
    assert client.breaker.state == "half-open"
    with pytest.raises(CircuitOpen):
        client.frame(0)  # half-open: the /health probe fails, stays open (a new cooldown from now)
    assert client.breaker.state == "open"
    restarted = start_daemon("--project", str(db))
    client.base = restarted.url
    with pytest.raises(CircuitOpen):
        client.frame(0)  # the daemon is back, but the cooldown has not passed on the breaker's clock
    completed = restarted.health()["counters"]["completed"]
    now[0] += 0.6
    assert client.frame(0) is not None and client.breaker.state == "closed"
    assert restarted.health()["counters"]["completed"] == completed + 1  # this time the request went through
    client.close()


@contextmanager
def drops_first_connection(target_port: int) -> Iterator[dict[str, int]]:
    """A TCP relay to the daemon whose first connection reads the request and closes without an answer.

    That is a dropped connection on a fresh socket: urllib3 cannot have discarded it from its pool
    beforehand (as it does for a pooled connection the server closed while idle), so only a retry saves it.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    seen = {"port": listener.getsockname()[1], "connections": 0, "dropped": 0}
    stop = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            seen["connections"] += 1
            if seen["connections"] == 1:
                conn.recv(65536)  # the whole request arrived; answer nothing
                seen["dropped"] += 1
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", target_port))
            threading.Thread(target=pipe, args=(conn, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, conn), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_retries_cover_a_dropped_connection(start_daemon: Any, tmp_path: Path) -> None:
    """A GET whose connection is dropped before any answer is retried, never surfaced."""
    # The relay's port is another Host than the daemon's own: the Host check is off here ('*').
    daemon = start_daemon("--project", str(project(tmp_path)), "--keepalive-timeout", "1", "--allowed-hosts", "*")
    with drops_first_connection(daemon.port) as relay:
        client = PreviewClient(f"http://127.0.0.1:{relay['port']}")
        frame = client.frame(3)
        assert frame is not None and frame.body[:2] == b"\xff\xd8"
        assert relay["dropped"] == 1 and relay["connections"] == 2  # dropped once, answered on the retry
        client.close()
    # And a pooled connection the daemon closed while idle (keep-alive 1 s) is never surfaced either.
    client = PreviewClient(daemon.url)
    for index in range(3):
        assert client.frame(index) is not None
        assert wait_for(lambda: daemon.health()["connections"] <= 1, 5)  # the pooled one was closed (1: this /health)
    client.close()

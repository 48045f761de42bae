"""Whether a connection stays open after an answer: decided in one place (connection.ClientProtocol._closes).

Each case sends two pipelined requests on one connection and reads until the daemon closes it or a
deadline passes: a refused peer gets one answer and a close (its second request never served), a
route's own mistake keeps the connection for the next request.
"""

from __future__ import annotations

import socket
import time
from typing import Any


def pipelined(port: int, data: bytes, deadline: float = 5.0) -> tuple[bytes, bool]:
    """(everything received, whether the daemon closed the connection) for two pipelined requests."""
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as sock:
        sock.sendall(data.replace(b"Host: own", b"Host: 127.0.0.1:%d" % port))
        received, end = b"", time.monotonic() + deadline
        while time.monotonic() < end:
            sock.settimeout(max(0.05, end - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, False
            if not chunk:
                return received, True
            received += chunk
            if received.count(b"HTTP/1.1 ") >= 2 and received.endswith(b"}"):
                return received, False  # both answered: the connection is kept (nothing asked it to close)
        return received, False


def test_a_peer_refused_by_the_guard_gets_one_answer_and_a_close(start_daemon: Any) -> None:
    daemon = start_daemon()
    for method in (b"GET", b"HEAD"):
        answer, closed = pipelined(
            daemon.port,
            method + b" /health HTTP/1.1\r\nHost: rebind.example:8081\r\n\r\nGET /health HTTP/1.1\r\nHost: own\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 421 ") and b"Connection: close" in answer, answer[:300]
        assert answer.count(b"HTTP/1.1 ") == 1 and closed  # the pipelined second request was never served
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"Content-Length: 0" not in head and (body == b"") == (method == b"HEAD")  # HEAD: length, no body


def test_a_routes_own_mistake_keeps_the_connection(start_daemon: Any) -> None:
    daemon = start_daemon()
    answer, closed = pipelined(
        daemon.port, b"GET /nowhere HTTP/1.1\r\nHost: own\r\n\r\nGET /health HTTP/1.1\r\nHost: own\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 404 ") and b"HTTP/1.1 200 " in answer, answer[:300]
    assert b"Connection: close" not in answer and not closed

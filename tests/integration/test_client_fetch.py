"""PreviewClient.fetch, the bounded exchange previewctl talks through: over a unix socket and TCP,
against servers that say what an attacker likes (drip, huge), and the token only where it belongs."""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flipedit_previewd.client.api import PreviewClient
from flipedit_previewd.client.transport import Unreachable, unix_base
from flipedit_previewd.common.token import token_path, write_token
from tests.support.helpers import FakeHandler

SEEN: list[bytes] = []


class Handler(FakeHandler):
    def answer(self, sock: socket.socket, head: bytes, mode: str) -> None:
        SEEN.append(head)
        if mode == "ok":
            sock.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{"status":"ok"}')
        elif mode == "drip":  # one byte of the head a tenth of a second, for a minute
            for byte in b"HTTP/1.1 200 OK\r\nX-" + b"a" * 600:
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        elif mode == "huge":  # no Content-Length: only counting the body can stop it
            sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            for _ in range(2000):
                sock.sendall(b"x" * 65536)


class UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    mode = "ok"


class TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    mode = "ok"


@pytest.fixture
def unix_server(tmp_path: Path) -> Iterator[tuple[UnixServer, str]]:
    path = str(tmp_path / "d.sock")
    server = UnixServer(path, Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, path
    server.shutdown()
    server.server_close()


@pytest.fixture
def tcp_server() -> Iterator[TCPServer]:
    server = TCPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_unix_socket_in_every_spelling(unix_server: tuple[UnixServer, str]) -> None:
    _, path = unix_server
    for address in (path, f"unix:{path}", unix_base(path)):
        client = PreviewClient(address, resilient=False)
        assert client.unix and client.path == path and client.shown == f"unix:{path}"
        assert client.fetch("GET", "/health").json() == {"status": "ok"}


@pytest.mark.parametrize("where", ["unix", "tcp"])
def test_a_dripping_server_costs_the_deadline_not_more(
    unix_server: tuple[UnixServer, str], tcp_server: TCPServer, where: str
) -> None:
    server = unix_server[0] if where == "unix" else tcp_server
    server.mode = "drip"
    address = unix_server[1] if where == "unix" else f"http://127.0.0.1:{tcp_server.server_address[1]}"
    client = PreviewClient(address, timeout=1.0, resilient=False)
    started = time.monotonic()
    with pytest.raises(Unreachable) as info:
        client.fetch("GET", "/health")
    assert time.monotonic() - started < 10  # the server drips for 60 s; without the wall clock this waits for it
    assert "no complete answer within 1 s" in str(info.value) or "no answer within 1 s" in str(info.value)


def test_a_huge_answer_is_refused_at_the_cap(tcp_server: TCPServer) -> None:
    tcp_server.mode = "huge"
    client = PreviewClient(f"http://127.0.0.1:{tcp_server.server_address[1]}", timeout=20, resilient=False)
    with pytest.raises(Unreachable, match="over the 1048576 byte limit"):
        client.fetch("GET", "/health", max_bytes=1024 * 1024)


def test_errors_are_words_not_exception_names(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        client = PreviewClient(f"http://127.0.0.1:{port}", resilient=False)
        with pytest.raises(Unreachable) as info:
            client.fetch("GET", "/health")
    assert str(info.value) == f"http://127.0.0.1:{port}: connection refused"
    with pytest.raises(Unreachable, match="no such socket"):
        PreviewClient(str(tmp_path / "none.sock"), resilient=False).fetch("GET", "/health")


def test_the_token_goes_with_changes_over_tcp_only(
    unix_server: tuple[UnixServer, str], tcp_server: TCPServer, tmp_path: Path
) -> None:
    environ = {"XDG_RUNTIME_DIR": str(tmp_path / "run")}
    token = write_token(token_path(environ))
    tcp = PreviewClient(f"http://127.0.0.1:{tcp_server.server_address[1]}", resilient=False, environ=environ)
    unix = PreviewClient(unix_server[1], resilient=False, environ=environ)
    SEEN.clear()
    tcp.fetch("PUT", "/timeline", body=b"{}")
    tcp.fetch("GET", "/timeline")
    unix.fetch("PUT", "/timeline", body=b"{}")
    put_tcp, get_tcp, put_unix = (head.decode("latin-1").lower() for head in SEEN)
    assert f"authorization: bearer {token}".lower() in put_tcp
    assert "authorization" not in get_tcp and "authorization" not in put_unix
    assert os.stat(token_path(environ)).st_mode & 0o077 == 0

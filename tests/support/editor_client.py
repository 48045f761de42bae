"""The editor's HTTP habits as a test client: pooled keep-alive connections, no retry, a steady pace.

Reusable by any layer (namespace sandbox, booted systemd): give it host and port,
``start()`` it, do something to the daemon (restarts, an upgrade), ``stop()`` it and
look at the ``PoolReport``. Every failure is recorded, never retried: an exception,
a status other than 200, or a connection that was replaced (http.client reconnects
silently when the server closed a connection; the local port shows it).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PoolReport:
    answers: int = 0
    failures: list[str] = field(default_factory=list)
    initial_ports: list[int] = field(default_factory=list)
    final_ports: list[int] = field(default_factory=list)
    reconnects: int = 0  # requests that went out on a new connection after the first one
    closed_by_server: int = 0  # answers that said Connection: close (http.client then reconnects)
    max_latency_s: float = 0.0
    servers: set[str] = field(default_factory=set)  # daemon PIDs seen (from X-Request-Id)

    def summary(self) -> dict[str, Any]:
        return {
            "answers": self.answers,
            "failures": len(self.failures),
            "reconnects": self.reconnects,
            "closed_by_server": self.closed_by_server,
            "same_ports": self.initial_ports == self.final_ports,
            "max_latency_s": round(self.max_latency_s, 3),
            "daemon_pids": len(self.servers),
            "first_failures": self.failures[:3],
        }


class EditorPool:
    """``connections`` threads, each with one ``http.client`` keep-alive connection, each sending every ``interval``."""

    def __init__(
        self,
        host: str,
        port: int,
        connections: int = 4,
        interval: float = 0.05,
        timeout: float = 30.0,
        path: str | Callable[[int], str] = "/get_frame/{n}?width=160",
    ) -> None:
        self.host, self.port = host, port
        self.interval, self.timeout, self.path = interval, timeout, path
        self.report = PoolReport()
        self.conns = [http.client.HTTPConnection(host, port, timeout=timeout) for _ in range(connections)]
        self._ports: list[int] = [0] * connections
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> EditorPool:
        for index, conn in enumerate(self.conns):
            conn.connect()
            self._ports[index] = local_port(conn)
        self.report.initial_ports = list(self._ports)
        for index in range(len(self.conns)):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> PoolReport:
        """Stop sending; connections stay open (``close()`` closes them)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.report.final_ports = list(self._ports)
        return self.report

    def progress(self) -> tuple[int, int]:
        """(answers, reconnects) so far, while the pool runs."""
        with self._lock:
            return self.report.answers, self.report.reconnects

    def close(self) -> None:
        for conn in self.conns:
            conn.close()

    def _run(self, index: int) -> None:
        conn = self.conns[index]
        n = index * 1000
        next_at = time.monotonic() + index * self.interval / len(self.conns)
        while not self._stop.is_set():
            self._stop.wait(max(0.0, next_at - time.monotonic()))
            if self._stop.is_set():
                return
            next_at += self.interval
            n += 1
            began = time.monotonic()
            try:
                conn.request("GET", self.path(n) if callable(self.path) else self.path.format(n=n % 100))
                response = conn.getresponse()
                response.read()
                port = local_port(conn)
                with self._lock:
                    if response.status != 200:
                        self.report.failures.append(f"status {response.status} on connection {index}")
                    else:
                        self.report.answers += 1
                    if port and port != self._ports[index]:  # 0: closed after a Connection: close answer
                        self.report.reconnects += 1
                        self._ports[index] = port
                    self.report.closed_by_server += int(port == 0)
                    self.report.max_latency_s = max(self.report.max_latency_s, time.monotonic() - began)
                    request_id = response.getheader("X-Request-Id") or ""
                    if "-" in request_id:
                        self.report.servers.add(request_id.split("-", 1)[0])
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.report.failures.append(f"{type(exc).__name__}: {exc} on connection {index}")
                conn.close()  # the next request reconnects, which counts as a reconnect


def keep_pool_through(
    host: str, port: int, actions: Iterable[Callable[[], object]], settle: float = 0.5, **pool_args: Any
) -> PoolReport:
    """Run ``actions`` (restarts, an upgrade, ...) one after the other while an ``EditorPool`` talks to the daemon.

    E.g. from the booted layer: ``keep_pool_through("127.0.0.1", 8081, [lambda: run(["apt", "install", deb])])``,
    then assert ``report.failures == []`` and ``report.final_ports == report.initial_ports``.
    """
    pool = EditorPool(host, port, **pool_args).start()
    try:
        time.sleep(settle)
        for action in actions:
            action()
        time.sleep(settle)
        return pool.stop()
    finally:
        pool.stop()
        pool.close()


def local_port(conn: http.client.HTTPConnection) -> int:
    sock = conn.sock
    return int(sock.getsockname()[1]) if sock is not None else 0


def peer_closed(sock: socket.socket, timeout: float) -> bool:
    """True once the peer closed this idle connection (EOF or reset) within ``timeout``; never sends."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (ConnectionResetError, ConnectionAbortedError):
        return True
    except TimeoutError:
        return False

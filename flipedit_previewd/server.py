"""Connections and lifecycle, in the manner of uvicorn's ``serve()``.

Signal handlers only set flags. ``startup`` adopts sockets, starts workers,
renders a warm-up frame and then says ``READY=1``; ``main_loop`` waits for the
flags; ``shutdown`` says ``STOPPING=1``, refuses new renders with 503 and
drains within a bound. A separate health thread probes the event loop every
tick and sends ``WATCHDOG=1`` only when the loop answered and the pool can make
progress, so a wedged daemon is restarted by systemd instead of lying.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import sdnotify

from .access import Peer, peer_of
from .config import Config
from .journal import EventLog
from .protocol import HTTPConnection, Limits, ProtocolFailure, Request, Response
from .service import Service
from .sockets import Listener, adopt_systemd_sockets, kernel_backlog, open_listener

READ_PAUSE_BYTES = 256 * 1024
LINGER_SECONDS = 2.0


class ClientProtocol(asyncio.Protocol):
    """One connection: bytes into the sans-IO state machine, one request at a time, in order."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.service = server.service
        self.http = HTTPConnection(server.limits)
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.over_limit = False
        self.client = ""
        self.peer: Peer | None = None
        self.buffered = 0
        self.paused = False
        self.lingering = False
        self.timer_kind = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.add(self)
        self.service.connections = len(self.server.connections)
        self.over_limit = len(self.server.connections) > self.service.config.max_connections
        peer = transport.get_extra_info("peername")
        self.client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        self.peer = peer_of(transport)
        self._arm(self.server.limits.keepalive_timeout, self._idle_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.service.connections = len(self.server.connections)
        self._disarm()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # answered and closing: discard what the peer still sends
        self.http.receive(data)
        if self.task is not None:
            self.buffered += len(data)
            if self.buffered > READ_PAUSE_BYTES and self.transport and not self.paused:
                self.transport.pause_reading()
                self.paused = True
            return
        self._pump()

    def eof_received(self) -> bool | None:
        if self.lingering:
            return None  # the peer read our answer and closed: done
        self.http.receive(b"")
        if self.task is None:
            self._pump()
        return None

    def _pump(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        try:
            request = self.http.next_request()
        except ProtocolFailure as failure:
            self.server.log.emit("protocol_error", f"{failure.error.status} from {self.client}: {failure.error.detail}",
                                 "notice", STATUS=failure.error.status, CLIENT=self.client)
            self._write(Response.from_error(failure.error))
            return
        if request is None:
            if self.http.closed_by_peer:
                self.transport.close()
            elif self.http.mid_request:
                if self.timer is None or self.timer_kind != "request":
                    self._arm(self.server.limits_request_timeout, self._request_expired, "request")
            return
        self._disarm()
        self.task = asyncio.get_running_loop().create_task(self._serve(request))

    async def _serve(self, request: Request) -> None:
        response = await self.service.handle(request, self.over_limit, self.client, self.peer)
        if self.server.draining and not response.close:
            response.close = True  # stopping: finish this answer, take no more on this connection
        self._write(response, head_only=request.method == "HEAD")
        self.task = None
        self.buffered = 0
        if self.transport is None or self.transport.is_closing() or self.lingering:
            return  # answered with Connection: close: no next request on this connection
        if self.paused:
            self.transport.resume_reading()
            self.paused = False
        self.http.start_next_cycle()
        self._arm(self.server.limits.keepalive_timeout, self._idle_expired)
        self._pump()

    def _write(self, response: Response, head_only: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.over_limit:
            response.close = True
        try:
            data = self.http.send_response(response, head_only)
        except Exception as exc:  # noqa: BLE001 - a connection-level bug must cost one connection, not the daemon
            self.server.log.emit("protocol_error", f"cannot answer {self.client}: {type(exc).__name__}: {exc}", "err",
                                 CLIENT=self.client)
            self.transport.abort()
            return
        self.transport.write(data)
        if response.close or self.http.should_close:
            self._linger()

    def _linger(self) -> None:
        """Close without a reset: send FIN after the response, discard input for a while, then close.

        Closing a socket that still has unread input makes the kernel send RST,
        which can destroy the response before the client reads it.
        """
        assert self.transport is not None
        self._disarm()
        self.lingering = True
        if self.transport.can_write_eof():
            try:
                self.transport.write_eof()
            except OSError:  # the peer is already gone
                self.transport.abort()
                return
            self._arm(LINGER_SECONDS, self._close_now, "linger")
        else:
            self.transport.close()

    def _close_now(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.transport.close()

    def _arm(self, delay: float, callback: Callable[[], None], kind: str = "idle") -> None:
        self._disarm()
        self.timer = asyncio.get_running_loop().call_later(delay, callback)
        self.timer_kind = kind

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.timer_kind = ""

    def _idle_expired(self) -> None:
        self.timer = None
        if self.task is None and self.transport is not None:
            if self.http.mid_request:
                self._request_expired()
            else:
                self.transport.close()

    def _request_expired(self) -> None:
        from .errors import RequestTimeout

        self.timer = None
        if self.task is None and self.transport is not None:
            self.server.log.emit("protocol_error", f"408 from {self.client}: request not complete in time", "notice",
                                 STATUS=408, CLIENT=self.client)
            self._write(Response.from_error(RequestTimeout(
                f"request not received within {self.server.limits_request_timeout:.0f} s")))

    def close_if_idle(self) -> None:
        if self.task is None and self.transport is not None and not self.lingering:
            self.transport.close()


class Server:
    def __init__(self, config: Config, reload_config: Callable[[], Config] | None = None, log: EventLog | None = None) -> None:
        self.config = config
        self.reload_config = reload_config
        self.log = log or EventLog()
        self.limits = Limits(config.max_request_line, config.max_header_bytes, config.max_headers,
                             config.max_body_bytes, config.keepalive_timeout)
        self.limits_request_timeout = config.request_timeout
        self.service = Service(config, self.log)
        self.notifier = sdnotify.SystemdNotifier()
        self.connections: set[ClientProtocol] = set()
        self.listeners: list[Listener] = []
        self.servers: list[asyncio.base_events.Server] = []
        self.should_exit = False
        self.should_reload = False
        self.draining = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._health_thread: threading.Thread | None = None
        self._health_stop = threading.Event()
        self.watchdog_usec = _watchdog_usec()

    # --- signals only set flags ---------------------------------------------------------

    def _on_term(self) -> None:
        self.should_exit = True
        if self._wake:
            self._wake.set()

    def _on_hup(self) -> None:
        self.should_reload = True
        if self._wake:
            self._wake.set()

    def notify(self, text: str) -> None:
        self.notifier.notify(text)

    # --- lifecycle ----------------------------------------------------------------------

    async def serve(self) -> int:
        await self.startup()
        await self.main_loop()
        return await self.shutdown()

    async def startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._loop.add_signal_handler(signal.SIGTERM, self._on_term)
        self._loop.add_signal_handler(signal.SIGINT, self._on_term)
        self._loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        self.listeners = adopt_systemd_sockets()
        if not self.listeners:
            specs = self.config.listen or ("127.0.0.1:8081",)
            self.listeners = [open_listener(spec) for spec in specs]
        addresses = ", ".join(f"{x.address} ({'systemd ' + x.name if x.adopted else 'own'})" for x in self.listeners)
        self.log.emit("start", f"flipedit-previewd starting on {addresses}", "info", LISTEN=addresses,
                      WORKERS=self.config.workers, PROJECT=self.service.source.path)
        await self.service.start()
        for listener in self.listeners:
            if listener.sock.family == socket.AF_UNIX:
                server = await self._loop.create_unix_server(lambda: ClientProtocol(self), sock=listener.sock, backlog=kernel_backlog())
            else:
                server = await self._loop.create_server(lambda: ClientProtocol(self), sock=listener.sock, backlog=kernel_backlog())
            self.servers.append(server)
        self._health_thread = threading.Thread(target=self._health_loop, name="health", daemon=True)
        self._health_thread.start()
        if self.config.loop_nice:
            # Only this thread: the workers' driver threads and processes were created before and keep
            # their priority, so under a flood the CPU goes to rendering, not to answering 503s.
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.config.loop_nice)
            except OSError:
                pass
        self.notify(f"READY=1\nSTATUS={self.service.status_line()}\nMAINPID={os.getpid()}")
        self.log.emit("ready", f"ready: serving {self.service.source.path or 'no project'} with {self.config.workers} workers",
                      "info", PROJECT=self.service.source.path, WORKERS=self.config.workers)

    async def main_loop(self) -> None:
        assert self._wake is not None
        while not self.should_exit:
            await self._wake.wait()
            self._wake.clear()
            if self.should_reload and not self.should_exit:
                self.should_reload = False
                await self.reload()

    async def reload(self) -> None:
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\nSTATUS=reloading")
        error = ""
        if self.reload_config is not None:
            try:
                self.config = self.reload_config()
                self.service.reload(self.config)
            except Exception as exc:  # noqa: BLE001 - a bad reload keeps the old configuration
                error = str(exc)
        else:
            self.service.reload(self.config)
        self.log.emit("reload", "reloaded configuration and timeline" + (f"; kept old configuration: {error}" if error else ""),
                      "warning" if error else "info", ERROR=error or None)
        self.notify(f"READY=1\nSTATUS={self.service.status_line()}")

    async def shutdown(self) -> int:
        self.draining = True
        self.notify("STOPPING=1\nSTATUS=stopping: draining")
        backlog = self.service.admission.backlog()
        self.log.emit("stopping", f"stopping: draining {backlog} renders", "info", BACKLOG=backlog)
        for connection in list(self.connections):
            connection.close_if_idle()
        drained = await self.service.drain(self.config.drain_timeout)
        for server in self.servers:
            server.close()
        for connection in list(self.connections):
            connection.close_if_idle()
        await asyncio.sleep(0.05)
        self._health_stop.set()
        self.service.close()
        self.log.emit("stopped", "stopped" + ("" if drained else " with renders still unfinished"), "info",
                      DRAINED=int(drained))
        return 0

    # --- the health thread: STATUS every tick, WATCHDOG only on real progress ---------------

    def _tick_interval(self) -> float:
        if self.watchdog_usec:
            return min(2.0, self.watchdog_usec / 2_000_000)
        return 2.0

    def _health_loop(self) -> None:
        interval = self._tick_interval()
        loop = self._loop
        assert loop is not None
        last_summary = time.monotonic()
        withheld = False
        while not self._health_stop.wait(interval):
            answered = threading.Event()
            status: dict[str, Any] = {}

            def probe(status: dict[str, Any] = status, answered: threading.Event = answered) -> None:
                self.service.tick()
                status["line"] = self.service.status_line()
                status["progress"] = self.service.can_progress()
                answered.set()

            try:
                loop.call_soon_threadsafe(probe)
            except RuntimeError:
                return
            ok = answered.wait(interval)
            progress = bool(status.get("progress"))
            if ok:
                self.notify(f"STATUS={status['line']}")
            if self.watchdog_usec:
                if ok and progress:
                    self.notify("WATCHDOG=1")
                    withheld = False
                elif not withheld:
                    withheld = True
                    reason = "event loop did not answer its probe" if not ok else "no worker can make progress"
                    self.log.emit("watchdog_withheld", f"watchdog heartbeat withheld: {reason}", "err", REASON=reason)
            if ok and time.monotonic() - last_summary >= 60:
                last_summary = time.monotonic()
                loop.call_soon_threadsafe(self.service.flush_summary)


def _watchdog_usec() -> int:
    raw = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not raw or (pid and pid != str(os.getpid())):
        return 0
    try:
        return int(raw)
    except ValueError:
        return 0

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

from . import __version__
from .access import Peer, peer_of
from .config import Config
from .fdstore import Handover
from .journal import EventLog
from .protocol import HTTPConnection, Limits, ProtocolFailure, Request, Response
from .reconfigure import apply, http_limits
from .resources import raise_nofile
from .service import Service
from .sockets import Listener, adopt_systemd_sockets, kernel_backlog, open_listener

# Back-pressure: input beyond this, while a request is being served, is left in the kernel (bounds
# pipelining depth); output beyond WRITE_HIGH_BYTES not yet taken by the peer stops reading and serving
# on that connection until it drains. Memory per connection: about these two plus one response.
READ_PAUSE_BYTES = 64 * 1024
WRITE_HIGH_BYTES = 256 * 1024
LINGER_SECONDS = 2.0
# While stopping, a request that has begun to arrive gets this long to arrive whole (then 503), and,
# without the fd store, a connection that has sent nothing yet gets this long for its first request
# (it connected to send one), answered with Connection: close. A slow client cannot hold a restart.
DRAIN_GRACE = 1.0
# A connection refused at accept (max_connections) keeps its descriptor only this long after its 503.
REFUSED_LINGER_SECONDS = 0.5
MAX_REFUSED_LINGERING = 256


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
        self.write_paused = False
        self.refused = False
        self.linger_waited = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if len(self.server.connections) >= self.service.config.max_connections:
            self._refuse_at_accept()
            return
        transport.set_write_buffer_limits(high=WRITE_HIGH_BYTES)
        self.server.connections.add(self)
        self.service.connections = len(self.server.connections)
        peer = transport.get_extra_info("peername")
        self.client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        self.peer = peer_of(transport)
        self._arm(self.server.limits.keepalive_timeout, self._idle_expired)

    def _refuse_at_accept(self) -> None:
        """Over max_connections: a complete 503 at once, then the descriptor is given back."""
        assert self.transport is not None
        self.refused = True
        self.lingering = True
        error = self.service.admission.reject("connections", f"more than {self.service.config.max_connections} connections open")
        self.service.rejections.add("rejected", "connections")
        self.service.note_rejection()
        response = Response.from_error(error)
        response.close = True
        self.transport.write(self.http.send_response(response))
        refused = self.server.refused
        if len(refused) >= MAX_REFUSED_LINGERING or not self.transport.can_write_eof():
            self.transport.close()
            return
        refused.add(self)
        try:
            self.transport.write_eof()
        except OSError:
            self.transport.abort()
            return
        self._arm(REFUSED_LINGER_SECONDS, self._close_now, "linger")

    def pause_writing(self) -> None:
        """The peer is not taking our output: stop reading and serving it until it does."""
        self.write_paused = True
        if self.transport is not None and not self.paused:
            self.transport.pause_reading()
            self.paused = True
        if self.task is None and not self.lingering:
            self._arm(self.server.limits.keepalive_timeout, self._write_stalled, "write")

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.timer_kind == "write":
            self._disarm()
        if self.task is None and self.transport is not None and not self.transport.is_closing() and not self.lingering:
            self._continue()

    def _write_stalled(self) -> None:
        self.timer = None
        if self.write_paused and self.transport is not None:
            self.transport.abort()  # the peer has not read for keepalive_timeout: give the memory back

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.refused.discard(self)
        if self.refused:
            self._disarm()
            self.transport = None
            return
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
        if self.task is not None or self.write_paused:
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
        if self.task is None and not self.write_paused:
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
            self._write(Response.from_error(failure.error, protocol=True))
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
        if self.server.draining and not self.server.handover.enabled and not response.close:
            response.close = True  # stopping, no fd store: finish this answer, take no more on this connection
        self._write(response, head_only=request.method == "HEAD")
        self.task = None
        self.buffered = 0
        if self.transport is None or self.transport.is_closing() or self.lingering:
            return  # answered with Connection: close: no next request on this connection
        self.http.start_next_cycle()
        if self.write_paused:
            # the peer has not read what we sent: the next pipelined request waits for resume_writing
            self._arm(self.server.limits.keepalive_timeout, self._write_stalled, "write")
            return
        self._continue()

    def _continue(self) -> None:
        """Ready for the next request on this connection: read again, idle timer, serve what is buffered."""
        assert self.transport is not None
        if self.paused:
            self.transport.resume_reading()
            self.paused = False
            self.buffered = 0
        self._arm(self.server.limits.keepalive_timeout, self._idle_expired)
        self._pump()
        if self.server.draining:
            self.settle()

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
        if self.transport is None:
            return
        if self.transport.get_write_buffer_size():
            # The peer has not taken the whole answer yet: wait for it up to keepalive_timeout, then let
            # the memory go (close() alone would wait for a reader that may never come).
            self.linger_waited += LINGER_SECONDS
            if self.linger_waited < self.server.limits.keepalive_timeout:
                self._arm(LINGER_SECONDS, self._close_now, "linger")
                return
            self.transport.abort()
            return
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

    def settle(self, final: bool = False) -> bool:
        """One drain step for this connection (see ``Server.shutdown``); True once nothing more is owed on it.

        A request in progress or partly read is answered first. A connection between requests goes to
        systemd's fd store when that is on (the next instance serves it), else it is closed; one that
        has sent nothing yet gets DRAIN_GRACE for its first request. A request still incomplete after
        DRAIN_GRACE, or at the drain's deadline (``final``), is answered 503; what is left is closed.
        """
        transport = self.transport
        if transport is None or transport.is_closing() or self.lingering:
            return True
        if self.task is not None:
            return False
        grace_over = final or time.monotonic() - self.server.drain_started >= DRAIN_GRACE
        if self.http.mid_request:
            if grace_over:
                self._write(Response.from_error(self.service.admission.reject("stopping", "the daemon stopped before this request arrived whole")))
            return grace_over
        if transport.get_write_buffer_size() and not final:
            return False  # the last answer is still being written
        if self.server.handover.enabled and not transport.get_write_buffer_size():
            transport.pause_reading()  # what the peer sends now stays in the socket for the next instance
            if self.server.handover.store(transport.get_extra_info("socket")):
                transport.abort()  # closes only our descriptor: systemd holds the connection now
                return True
        if not grace_over:
            # No fd store: a client that is sending (it connected to, or it talks every few ms) gets its next
            # answer with Connection: close instead of a close racing its request; idle ones close after.
            transport.resume_reading()
            return False
        self.server.handover.closed += 1
        transport.close()
        return True


class Server:
    def __init__(self, config: Config, reload_config: Callable[[], Config] | None = None, log: EventLog | None = None) -> None:
        self.config = config
        self.reload_config = reload_config
        self.log = log or EventLog()
        self.limits: Limits = http_limits(config)
        self.limits_request_timeout = config.request_timeout
        self.service = Service(config, self.log)
        apply(config, self)  # the same lines as on SIGHUP set every live setting
        self.notifier = sdnotify.SystemdNotifier()
        self.handover = Handover(config.fdstore, config.max_connections)
        self.drain_started = 0.0
        self.connections: set[ClientProtocol] = set()
        self.refused: set[ClientProtocol] = set()
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
        self.nofile = raise_nofile(self.config.max_connections)
        self.log.start_writer()
        self.listeners = adopt_systemd_sockets(self.handover.adopted)
        why = "sockets passed by systemd"
        if not self.listeners:
            specs = self.config.listen or ("127.0.0.1:8081",)
            why = ("--listen / listen in the configuration" if self.config.listen
                   else "no socket from systemd and no --listen: the editor's default address")
            self.listeners = [open_listener(spec) for spec in specs]
        addresses = ", ".join(f"{x.address} ({'systemd ' + x.name if x.adopted else 'own'})" for x in self.listeners)
        self.log.emit("start", f"flipedit-previewd starting on {addresses} ({why}); project: "
                      f"{self.service.source.path or 'none'} ({self.service.project_reason})", "info", LISTEN=addresses,
                      WORKERS=self.config.workers, PROJECT=self.service.source.path, VERSION=__version__)
        await self.service.start()
        for listener in self.listeners:
            if listener.sock.family == socket.AF_UNIX:
                server = await self._loop.create_unix_server(lambda: ClientProtocol(self), sock=listener.sock, backlog=kernel_backlog())
            else:
                server = await self._loop.create_server(lambda: ClientProtocol(self), sock=listener.sock, backlog=kernel_backlog())
            self.servers.append(server)
        await self.handover.start(self._resume_connection)
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
        self.log.emit("ready", f"serving {self.service.source.path or 'no project'} with {self.config.workers} workers"
                      + (f", {self.handover.resumed} connections kept from the previous instance" if self.handover.resumed else ""),
                      "info", PROJECT=self.service.source.path, WORKERS=self.config.workers,
                      RESUMED_CONNECTIONS=self.handover.resumed, FDSTORE=self.handover.probe_result)
        if self.handover.refused:  # under a service manager that did not keep the probe (not: no manager at all)
            self.log.emit("fdstore_unavailable", f"file descriptor store not usable ({self.handover.probe_result}): "
                          "restarts will close idle keep-alive connections", "warning", FDSTORE=self.handover.probe_result)

    async def _resume_connection(self, sock: socket.socket) -> None:
        assert self._loop is not None
        await self._loop.connect_accepted_socket(lambda: ClientProtocol(self), sock=sock)

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
                apply(self.reload_config(), self)
                self.service.reload()
            except Exception as exc:  # noqa: BLE001 - a bad reload keeps the old configuration
                error = str(exc)
        else:
            self.service.reload()
        pending = ", ".join(self.config.restart_pending)
        self.log.emit("reload", "reloaded configuration and timeline" + (f"; kept old configuration: {error}" if error else "")
                      + (f"; restart to apply: {pending}" if pending else ""),
                      "warning" if error else "info", ERROR=error or None, RESTART_PENDING=pending or None)
        self.notify(f"READY=1\nSTATUS={self.service.status_line()}")

    async def shutdown(self) -> int:
        """Stop accepting at once, finish what was received, then hand over or close each connection.

        The listening sockets are systemd's: closing our copies leaves them listening, so connections
        that arrive now wait in the kernel's queue and the socket unit starts the next instance for
        them. Requests on open connections are still answered until the drain ends (refusing them
        would be the only alternative); each connection, once between requests, goes to the fd store
        or is closed (``ClientProtocol.settle``).
        """
        self.draining = True
        self.drain_started = time.monotonic()
        self.notify("STOPPING=1\nSTATUS=stopping: draining")
        for server in self.servers:
            server.close()
        backlog = self.service.admission.backlog()
        self.log.emit("stopping", f"draining {backlog} renders", "info", BACKLOG=backlog,
                      CONNECTIONS=len(self.connections), FDSTORE=int(self.handover.enabled))
        drained = await self.service.drain(self.config.drain_timeout, self._settle_connections)
        self._settle_connections(final=True)
        taken = self.handover.finish()
        await asyncio.sleep(0.05)
        self._health_stop.set()
        self.service.flush_summary()  # the last minute's cheap outcomes (cache hits, 304s, 4xx) are not lost on stop
        self.service.close()
        self.log.emit("stopped", ("all work drained, exiting" if drained else "exiting with renders still unfinished")
                      + f"; {self.handover.stored} connections handed to the fd store, {self.handover.closed} closed", "info",
                      DRAINED=int(drained), HANDED_OVER=self.handover.stored, CLOSED_CONNECTIONS=self.handover.closed,
                      HANDOVER_CONFIRMED=int(taken))
        self.log.stop_writer()
        return 0

    def _settle_connections(self, final: bool = False) -> bool:
        return all([connection.settle(final) for connection in list(self.connections)])

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

"""Listening and lifecycle, in the manner of uvicorn's ``serve()``.

Signal handlers only set flags. ``startup`` adopts sockets, starts the service (workers, a
warm-up frame) and then says ``READY=1``; ``main_loop`` waits for the flags; ``shutdown`` says
``STOPPING=1`` and drains within a bound. The lifecycle is one state (``lifecycle.Lifecycle``),
moved only here. Each connection is a ``connection.ClientProtocol``; the health thread that
decides ``WATCHDOG=1`` is ``sd.watchdog.Watchdog``. The server talks to the service only through
``lifecycle.ServiceAPI``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

from flipedit_previewd import __version__
from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.common.resources import raise_nofile
from flipedit_previewd.common.token import token_path, write_token
from flipedit_previewd.config.schema import Config, ConfigError
from flipedit_previewd.http.access import Guard
from flipedit_previewd.http.connection import ClientProtocol
from flipedit_previewd.http.intake import BodyBudget, ConnectionSlots
from flipedit_previewd.http.lifecycle import Lifecycle, LifecycleState, ServiceAPI
from flipedit_previewd.http.protocol import Limits
from flipedit_previewd.http.reconfigure import apply, http_limits
from flipedit_previewd.http.serverstate import Connection
from flipedit_previewd.sd.fdstore import Handover, own_unit, queued_job
from flipedit_previewd.sd.notify import notify
from flipedit_previewd.sd.sockets import Listener, adopt_systemd_sockets, kernel_backlog, open_listener
from flipedit_previewd.sd.watchdog import Watchdog


class Server:
    def __init__(
        self,
        config: Config,
        service: ServiceAPI,
        lifecycle: LifecycleState,
        reload_config: Callable[[], Config] | None = None,
        log: EventLog | None = None,
    ) -> None:
        self.config = config
        self.service = service
        self.lifecycle = lifecycle  # the one state: the service reads the same object
        self.reload_config = reload_config
        self.log = log or EventLog()
        self.limits: Limits = http_limits(config)
        self.request_timeout = config.request_timeout
        self._token_problem = ""
        self.guard = Guard(config.allowed_hosts, self._make_token(), service.note_client_error)
        self.bodies = BodyBudget(config.max_buffered_body_bytes)
        # Half the slots at most for connections that have sent nothing, per client (intake.py).
        self.slots: ConnectionSlots[Connection] = ConnectionSlots(
            config.max_connections, config.max_connections // 2, lambda connection: connection.idle
        )
        apply(config, self)  # the same lines as on SIGHUP set every live setting
        self.handover = Handover(config.fdstore, config.max_connections)
        self.connections: set[Connection] = set()
        self.refused: set[Connection] = set()
        self.listeners: list[Listener] = []
        self.servers: list[asyncio.base_events.Server] = []
        self.should_exit = False
        self.should_reload = False
        self.rejected = False  # the last reload's configuration could not be used (the service shows it degraded)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.watchdog = Watchdog(service, self.notify, self.log)

    def _make_token(self) -> str:
        """A fresh bearer token for state changes over TCP, in a file only this user can read."""
        self.token_file = token_path(os.environ, self.config.token_file)
        if not self.token_file:
            self._token_problem = "no token file (no $XDG_RUNTIME_DIR and no token_file)"
            return ""
        try:
            return write_token(self.token_file)
        except OSError as exc:
            self._token_problem = f"cannot write the token file {self.token_file}: {exc.strerror}"
            return ""

    def _say_token_problem(self) -> None:
        """Said once the listeners are known: whether PUT/DELETE are left on a unix socket or on nothing."""
        if not self._token_problem:
            return
        if any(listener.sock.family == socket.AF_UNIX for listener in self.listeners):
            consequence = "PUT/DELETE /timeline over the unix socket only"
        else:
            consequence = (
                "PUT/DELETE /timeline are not possible (no unix socket either): set XDG_RUNTIME_DIR or "
                "token_file, or add --listen unix:PATH"
            )
        self.log.emit(
            "config_error",
            f"{self._token_problem}; {consequence}",
            "warning",
            KEY="token_file",
            VALUE=self.token_file or None,
        )

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
        notify(text)  # sd/notify.py: the one sender (this one, the watchdog's and the fd store's)

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
            why = (
                "--listen / listen in the configuration"
                if self.config.listen
                else "no socket from systemd and no --listen: the editor's default address"
            )
            self.listeners = [open_listener(spec) for spec in specs]
        self._say_token_problem()
        addresses = ", ".join(f"{x.address} ({'systemd ' + x.name if x.adopted else 'own'})" for x in self.listeners)
        project, reason = self.service.project()
        self.log.emit(
            "start",
            f"flipedit-previewd starting on {addresses} ({why}); project: {project or 'none'} ({reason})",
            "info",
            LISTEN=addresses,
            WORKERS=self.config.workers,
            PROJECT=project,
            VERSION=__version__,
        )
        await self.service.start(lambda: len(self.connections))
        for listener in self.listeners:
            if listener.sock.family == socket.AF_UNIX:
                server = await self._loop.create_unix_server(
                    lambda: ClientProtocol(self), sock=listener.sock, backlog=kernel_backlog()
                )
            else:
                server = await self._loop.create_server(
                    lambda: ClientProtocol(self), sock=listener.sock, backlog=kernel_backlog()
                )
            self.servers.append(server)
        await self.handover.start(self._resume_connection)
        self.watchdog.start(self._loop)
        if self.config.loop_nice:
            # Only this thread: the workers' driver threads and processes were created before and keep
            # their priority, so under a flood the CPU goes to rendering, not to answering 503s.
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.config.loop_nice)
            except OSError:
                pass
        self.lifecycle.enter(Lifecycle.SERVING)
        self.notify(f"READY=1\nSTATUS={self.service.status_line()}\nMAINPID={os.getpid()}")
        project = self.service.project()[0]
        self.log.emit(
            "ready",
            f"serving {project or 'no project'} with {self.config.workers} workers"
            + (
                f", {self.handover.resumed} connections kept from the previous instance"
                if self.handover.resumed
                else ""
            ),
            "info",
            PROJECT=project,
            WORKERS=self.config.workers,
            RESUMED_CONNECTIONS=self.handover.resumed,
            FDSTORE=self.handover.probe_result,
        )
        if self.handover.refused:  # under a service manager that did not keep the probe (not: no manager at all)
            self.log.emit(
                "fdstore_unavailable",
                f"file descriptor store not usable ({self.handover.probe_result}): "
                "restarts will close idle keep-alive connections",
                "warning",
                FDSTORE=self.handover.probe_result,
            )

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
        self.lifecycle.enter(Lifecycle.RELOADING)
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\nSTATUS=reloading")
        rejected: ConfigError | None = None
        was_rejected = self.rejected
        if self.reload_config is not None:
            try:
                apply(self.reload_config(), self)
                self.service.reload()
            except ConfigError as exc:  # a bad reload keeps the old configuration, and says so until a good one
                rejected = exc
            except Exception as exc:  # noqa: BLE001 - anything else applying it: the same, in its own words
                rejected = ConfigError(
                    f"applying the configuration failed: {type(exc).__name__}: {exc}", source="reload"
                )
            self.rejected = rejected is not None
            self.service.config_rejected(rejected)
        else:
            self.service.reload()
        pending = ", ".join(self.config.restart_pending)
        error = str(rejected) if rejected else ""
        fixed = was_rejected and not rejected
        self.log.emit(
            "reload",
            "reloaded configuration and timeline"
            + (f"; kept old configuration: {error}" if error else "")
            + ("; the configuration error of an earlier reload is fixed" if fixed else "")
            + (f"; restart to apply: {pending}" if pending else ""),
            "warning" if error else "info",
            ERROR=error or None,
            RESTART_PENDING=pending or None,
            CONFIG_FIXED=1 if fixed else None,
            **{
                f"CONFIG_{k.upper()}": v or None
                for k, v in (rejected.fields() if rejected else {}).items()
                if k != "message"
            },
        )
        self.lifecycle.enter(Lifecycle.SERVING)
        self.notify(f"READY=1\nSTATUS={self.service.status_line()}")

    async def shutdown(self) -> int:
        """Stop accepting at once, finish what was received, then hand over or close each connection.

        The listening sockets are systemd's: closing our copies leaves them listening, so connections
        that arrive now wait in the kernel's queue and the socket unit starts the next instance for
        them. Requests on open connections are still answered until the drain ends (refusing them
        would be the only alternative); each connection, once between requests, goes to the fd store
        or is closed (``ClientProtocol.settle``).
        """
        if self.handover.enabled:
            # The store outlives this stop only if a restart is queued (fdstore.py). Asked before
            # draining begins: no connection may be handed over while the answer is not known.
            self.handover.expect_restart(
                await asyncio.get_running_loop().run_in_executor(None, queued_job, *own_unit())
            )
        self.lifecycle.enter(Lifecycle.DRAINING)
        self.notify("STOPPING=1\nSTATUS=stopping: draining")
        for server in self.servers:
            server.close()
        backlog = self.service.backlog()
        self.log.emit(
            "stopping",
            f"draining {backlog} renders",
            "info",
            BACKLOG=backlog,
            CONNECTIONS=len(self.connections),
            FDSTORE=int(self.handover.enabled),
            NEXT_JOB=self.handover.next_job or None,
        )
        drained = await self.service.drain(self.config.drain_timeout, self._settle_connections)
        self.lifecycle.enter(Lifecycle.STOPPED)  # nothing more is admitted
        self._settle_connections(final=True)
        taken = self.handover.finish()
        await asyncio.sleep(0.05)
        self.watchdog.stop()
        self.service.flush_summary()  # the last minute's cheap outcomes (cache hits, 304s, 4xx) are not lost on stop
        self.service.close()
        self.log.emit(
            "stopped",
            ("all work drained, exiting" if drained else "exiting with renders still unfinished")
            + f"; {self.handover.stored} connections handed to the fd store, {self.handover.closed} closed",
            "info",
            DRAINED=int(drained),
            HANDED_OVER=self.handover.stored,
            CLOSED_CONNECTIONS=self.handover.closed,
            HANDOVER_CONFIRMED=int(taken),
        )
        self.log.stop_writer()
        return 0

    def _settle_connections(self, final: bool = False) -> bool:
        return all([connection.settle(final) for connection in list(self.connections)])

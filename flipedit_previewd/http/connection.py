"""One client connection: bytes from the socket into the sans-IO HTTP state machine, answers back.

One request at a time, in order (pipelined ones wait in h11's buffer); back-pressure both ways,
decided by ``flow.FlowControl`` (the one owner of "reading paused"); a close never races an answer
(``_linger``); the stop drains each connection (``settle``). The access guard and the body budget
run here, at the end of each request's head, before a byte of its body is kept (``_admit``);
connection slots are given out by ``intake.ConnectionSlots``. Whether a connection closes after an
answer is decided in one place, ``_closes`` (HTTP's own rules, a broken request or HTTP/1.0, stay
in protocol.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from flipedit_previewd.common.errors import HTTPError, PayloadTooLarge, RequestTimeout
from flipedit_previewd.http.access import Peer, client_key, peer_of
from flipedit_previewd.http.flow import WRITE_HIGH_BYTES, FlowControl
from flipedit_previewd.http.protocol import Head, HTTPConnection, ProtocolFailure, Request, Response

if TYPE_CHECKING:
    from flipedit_previewd.http.serverstate import ServerState

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

    flow: FlowControl  # from connection_made on

    def __init__(self, server: ServerState) -> None:
        self.server = server
        self.service = server.service
        self.http = HTTPConnection(server.limits)
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.client = ""
        self.peer: Peer | None = None
        self.lingering = False
        self.timer_kind = ""
        self.refused = False
        self.linger_waited = 0.0
        self.silent = True  # no byte received yet
        self.charged = 0  # bytes of the body budget this connection's request holds
        self.arrived = 0.0  # when the current request's first bytes were read (perf_counter): a refusal's own time

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        accepted = time.perf_counter()
        self.transport = transport
        self.peer = peer_of(transport)
        key = client_key(self.peer)
        victims = self.server.slots.make_room(key)
        if victims is None:
            self.flow = FlowControl(transport)
            self.arrived = (
                accepted  # a refusal at accept is timed from the accept; any other from its request's first bytes
            )
            self._refuse_at_accept()
            return
        for victim in victims:
            victim.evict()
        self.flow = FlowControl(transport, write_high=WRITE_HIGH_BYTES)
        self.server.connections.add(self)
        self.server.slots.opened(self, key)
        peer = transport.get_extra_info("peername")
        self.client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        self._arm(self.server.limits.keepalive_timeout, self._idle_expired)

    @property
    def idle(self) -> bool:
        """Between requests (or before the first): may be closed to make room for a new connection."""
        return (
            self.task is None
            and not self.http.mid_request
            and not self.lingering
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def evict(self) -> None:
        """Closed to make room for a new connection (``intake.ConnectionSlots`` chose it: silent, or idle longest)."""
        self.server.connections.discard(self)
        self._disarm()
        if self.transport is not None:
            self.transport.close()

    def _refuse_at_accept(self) -> None:
        """Over max_connections: a complete 503 at once, then the descriptor is given back."""
        assert self.transport is not None
        self.refused = True
        self.lingering = True
        error = self.service.refuse("connections", f"more than {self.server.config.max_connections} connections open")
        data = self._serialise(Response.from_error(error))
        if data is not None:
            self.transport.write(data)
            self._timed_refusal(503, "connections")
        if len(self.server.refused) >= MAX_REFUSED_LINGERING:
            self.transport.close()
            return
        self.server.refused.add(self)
        self._linger(REFUSED_LINGER_SECONDS)

    def pause_writing(self) -> None:
        """The peer is not taking our output: stop reading and serving it until it does."""
        self.flow.pause_writing()
        if self.task is None and not self.lingering:
            self._arm(self.server.limits.keepalive_timeout, self._write_stalled, "write")

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        if self.timer_kind == "write":
            self._disarm()
        if self.task is None and self.transport is not None and not self.transport.is_closing() and not self.lingering:
            self._continue()

    def _write_stalled(self) -> None:
        self.timer = None
        if self.flow.write_paused and self.transport is not None:
            self.transport.abort()  # the peer has not read for keepalive_timeout: give the memory back

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.refused.discard(self)
        if self.refused:
            self._disarm()
            self.transport = None
            return
        self._release()
        self.server.slots.closed(self)
        self.server.connections.discard(self)
        self._disarm()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # answered and closing: discard what the peer still sends
        if self.silent:
            self.silent = False
            self.server.slots.spoke(self)
        if not self.arrived:
            self.arrived = time.perf_counter()
        self.http.receive(data)
        if self.task is not None or self.flow.write_paused:
            self.flow.hold(
                len(data)
            )  # served once this connection is ready again; past the high-water mark, reading pauses
            return
        self._pump()

    def eof_received(self) -> bool | None:
        if self.lingering:
            return None  # the peer read our answer and closed: done
        self.http.receive(b"")
        if self.task is None and not self.flow.write_paused:
            self._pump()
        return None

    def _pump(self) -> None:
        """Serve what is buffered: a request the service answers at once is written here, and the next one read
        (a loop, not recursion: a client may pipeline thousands); the first that needs work gets a task."""
        while self.transport is not None and not self.transport.is_closing():
            request = self._next_request()
            if request is None:
                return
            # A request the service can answer without work (a refusal under overload) is answered here, in
            # data_received: no task, so its 503 does not wait for a turn among the hundreds a flood makes.
            response = self.service.answer_now(request, self.client)
            if response is None:
                self.task = asyncio.get_running_loop().create_task(self._serve(request))
                return
            if not self._answered(request, response):
                return
            self._ready()

    def _next_request(self) -> Request | None:
        """The next whole request (its head admitted), or None: none buffered yet, or the connection answered/closed."""
        assert self.transport is not None
        while True:
            try:
                event = self.http.next_event()
            except ProtocolFailure as failure:
                error = failure.error
                self._release()
                self.service.note_client_error(
                    error.status,
                    f"{error.status} from {self.client}: {error.detail}",
                    "protocol_error",
                    CLIENT=self.client,
                )
                self._write(Response.from_error(error, protocol=True))
                return None
            if not isinstance(event, Head):
                break
            if not self._admit(event):
                return None
        request = event
        if request is None:
            if self.http.closed_by_peer:
                self.transport.close()
            elif self.http.mid_request:
                if self.timer is None or self.timer_kind != "request":
                    self._arm(self.server.request_timeout, self._request_expired, "request")
            return None
        self._disarm()
        if not self.arrived:  # a pipelined request, read with the one before it
            self.arrived = time.perf_counter()
        return request

    def _admit(self, head: Head) -> bool:
        """At the end of a request's head, before a byte of its body is kept: the access checks (who may ask,
        and whether this request may carry a body), then the body budget. A refusal is answered with
        Connection: close (the body, not read, cannot be skipped): nothing of it is ever buffered."""
        request = head.request
        try:
            # nothing more for a client that is not (or not speaking as) the editor's user
            self.server.guard.check(request, self.peer, head.body_length)
            size = self.server.limits.max_body_bytes if head.body_length is None else head.body_length
            if size:
                self._charge(size)
        except HTTPError as exc:
            self._write(Response.from_error(exc), head_only=request.method == "HEAD", refused=True)
            return False
        self.http.admit()
        return True

    def _charge(self, size: int) -> None:
        """Reserve the body's bytes in the server's budget (``intake.BodyBudget``), or raise 413/503."""
        budget = self.server.bodies
        if not budget.fits_ever(size):
            error = PayloadTooLarge(f"a body of {size} bytes exceeds max_buffered_body_bytes ({budget.limit})")
            self.service.note_client_error(
                413, f"413 from {self.client}: {error.detail}", "protocol_error", CLIENT=self.client
            )
            raise error
        if not budget.reserve(size):
            raise self.service.refuse(
                "bodies",
                f"{budget.used} bytes of request bodies already buffered (max_buffered_body_bytes {budget.limit})",
            )
        self.charged = size

    def _release(self) -> None:
        if self.charged:
            self.server.bodies.release(self.charged)
            self.charged = 0

    async def _serve(self, request: Request) -> None:
        response = await self.service.handle(request, self.client)
        self.task = None
        if self._answered(request, response):
            self._continue()

    def _answered(self, request: Request, response: Response) -> bool:
        """Write a request's answer; True when the connection is ready for its next request."""
        self._release()
        self._write(response, head_only=request.method == "HEAD")
        self.arrived = 0.0
        if self.transport is None or self.transport.is_closing() or self.lingering:
            return False  # answered with Connection: close: no next request on this connection
        self.http.start_next_cycle()
        if self.flow.write_paused:
            # the peer has not read what we sent: the next pipelined request waits for resume_writing
            self._arm(self.server.limits.keepalive_timeout, self._write_stalled, "write")
            return False
        return True

    def _continue(self) -> None:
        """Ready for the next request on this connection: read again, idle timer, serve what is buffered."""
        self._ready()
        self._pump()
        if self.server.lifecycle.stopping:
            self.settle()

    def _ready(self) -> None:
        """Between requests: reading resumed, the idle timer armed, the slot counted as resting."""
        assert self.transport is not None
        self.flow.ready()
        self._arm(self.server.limits.keepalive_timeout, self._idle_expired)
        self.server.slots.rested(self)

    def _closes(self, response: Response, refused: bool) -> bool:
        """The one place that decides ``Connection: close`` after an answer.

        Closed: what protocol.py already marked (the peer broke HTTP, or a limit like 413/431); a
        peer refused (over max_connections at accept, or by the access guard); and, while stopping
        without the fd store, every answer (no next request would be served on this connection).
        """
        stopping = self.server.lifecycle.stopping and not self.server.handover.enabled
        return response.close or refused or stopping

    def _serialise(self, response: Response, head_only: bool = False, refused: bool = False) -> bytes | None:
        response.close = self._closes(response, refused or self.refused)
        try:
            return self.http.send_response(response, head_only)
        except Exception as exc:  # noqa: BLE001 - a connection-level bug must cost one connection, not the daemon
            self.service.note_client_error(
                500,
                f"cannot answer {self.client}: {type(exc).__name__}: {exc}",
                "protocol_error",
                "err",
                CLIENT=self.client,
            )
            if self.transport is not None:
                self.transport.abort()
            return None

    def _write(self, response: Response, head_only: bool = False, refused: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        data = self._serialise(response, head_only, refused)
        if data is None:
            return
        self.transport.write(data)
        self._timed_refusal(response.status, response.limit)
        if response.close or self.http.should_close:
            self._linger()

    def _timed_refusal(self, status: int, limit: str) -> None:
        """A refusal (503) handed to the transport: its time from the request's first bytes (or the accept) to here.
        Not a render that waited its whole queue time and then expired (limit "deadline"): that one was admitted."""
        if status == 503 and limit != "deadline" and self.arrived:
            self.service.refusal_written(time.perf_counter() - self.arrived)

    def _linger(self, seconds: float = LINGER_SECONDS) -> None:
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
            self._arm(seconds, self._close_now, "linger")
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
        self.timer = None
        if self.task is None and self.transport is not None:
            self._release()
            self.service.note_client_error(
                408, f"408 from {self.client}: request not complete in time", "protocol_error", CLIENT=self.client
            )
            self._write(
                Response.from_error(RequestTimeout(f"request not received within {self.server.request_timeout:.0f} s"))
            )

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
        grace_over = final or time.monotonic() - self.server.lifecycle.since >= DRAIN_GRACE
        if self.http.mid_request:
            if grace_over:
                self._write(
                    Response.from_error(
                        self.service.refuse("stopping", "the daemon stopped before this request arrived whole")
                    )
                )
            return grace_over
        if transport.get_write_buffer_size() and not final:
            return False  # the last answer is still being written
        if self.server.handover.enabled and not transport.get_write_buffer_size():
            self.flow.park()  # what the peer sends now stays in the socket for the next instance
            if self.server.handover.store(transport.get_extra_info("socket")):
                transport.abort()  # closes only our descriptor: systemd holds the connection now
                return True
        if not grace_over:
            # No fd store: a client that is sending (it connected to, or it talks every few ms) gets its next
            # answer with Connection: close instead of a close racing its request; idle ones close after.
            self.flow.unpark()
            return False
        self.server.handover.closed += 1
        transport.close()
        return True

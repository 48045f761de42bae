"""http/connection.py driven through a fake transport (as uvicorn's tests/protocols/test_http.py does): no sockets.

The server around the connection is a stand-in holding the real parts a connection uses (access guard, body
budget, connection slots, lifecycle, fd-store hand-over); the service answers from a script.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest

from flipedit_previewd.common.errors import Overloaded
from flipedit_previewd.http import connection as connection_module
from flipedit_previewd.http.access import Guard
from flipedit_previewd.http.connection import ClientProtocol
from flipedit_previewd.http.flow import READ_HIGH_BYTES, WRITE_HIGH_BYTES
from flipedit_previewd.http.intake import BodyBudget, ConnectionSlots
from flipedit_previewd.http.lifecycle import Lifecycle, LifecycleState
from flipedit_previewd.http.protocol import Limits, Request, Response
from flipedit_previewd.sd.fdstore import Handover
from tests.support.helpers import run

GET = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n\r\n"


class MockTransport(asyncio.Transport):
    """A TCP connection from loopback that records everything the protocol does to it."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.reading = True
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.buffered = 0  # what get_write_buffer_size() answers: bytes the peer has not taken
        self.limits: dict[str, int | None] = {}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8081), "socket": None}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed and not self.eof_written, "written after close or EOF"
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = {"high": high, "low": low}

    def answers(self) -> list[bytes]:
        """The status lines written so far."""
        return re.findall(rb"HTTP/1\.1 \d{3}", bytes(self.written))


class Service:
    """The ServiceAPI calls a connection makes; ``handle`` answers 200 with the path, or waits for ``gate``."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.gate: asyncio.Event | None = None
        self.errors: list[int] = []
        self.refusals: list[str] = []
        self.refusal_times: list[float] = []
        self.busy_paths: set[str] = set()  # answered 503 by answer_now, synchronously

    def answer_now(self, request: Request, client: str) -> Response | None:
        if request.path in self.busy_paths:
            return Response.from_error(self.refuse("queue", "render queue full"))
        return None

    async def handle(self, request: Request, client: str) -> Response:
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        return Response.json(200, {"path": request.path, "body": len(request.body)})

    def refuse(self, limit: str, detail: str) -> Overloaded:
        self.refusals.append(limit)
        return Overloaded(limit, 1, detail)

    def note_client_error(
        self, status: int, what: str, event: str = "", priority: str = "notice", **fields: object
    ) -> None:
        self.errors.append(status)

    def refusal_written(self, seconds: float) -> None:
        self.refusal_times.append(seconds)


class Config:
    max_connections = 8


class Server:
    """What a connection reads of the server (``http/server.py``), with the real parts behind it."""

    def __init__(self, keepalive: float = 20.0, request_timeout: float = 10.0, body_budget: int = 1 << 20) -> None:
        self.service = Service()
        self.config = Config()
        self.limits = Limits(keepalive_timeout=keepalive)
        self.request_timeout = request_timeout
        self.guard = Guard(("127.0.0.1",), "secret", self.service.note_client_error)
        self.bodies = BodyBudget(body_budget)
        self.slots: ConnectionSlots[ClientProtocol] = ConnectionSlots(self.config.max_connections, 4, lambda c: c.idle)
        self.lifecycle = LifecycleState()
        self.lifecycle.enter(Lifecycle.SERVING)
        self.handover = Handover(False, 10, environ={})
        self.connections: set[ClientProtocol] = set()
        self.refused: set[ClientProtocol] = set()


def connect(server: Server) -> tuple[ClientProtocol, MockTransport]:
    protocol = ClientProtocol(cast(Any, server))
    transport = MockTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def settle_loop(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


@pytest.fixture
def server() -> Iterator[Server]:
    yield Server()


def test_a_request_is_answered_and_the_connection_kept(server: Server) -> None:
    async def scenario() -> None:
        protocol, transport = connect(server)
        assert transport.limits["high"] == WRITE_HIGH_BYTES and protocol in server.connections
        protocol.data_received(GET)
        await settle_loop()
        assert transport.answers() == [b"HTTP/1.1 200"] and [r.path for r in server.service.requests] == ["/health"]
        assert not transport.closed and protocol.idle and protocol.timer_kind == "idle"
        protocol.connection_lost(None)
        assert protocol not in server.connections and len(server.slots) == 0

    run(scenario())


def test_pipelined_requests_are_served_one_at_a_time_in_order(server: Server) -> None:
    async def scenario() -> None:
        protocol, transport = connect(server)
        server.service.gate = asyncio.Event()
        protocol.data_received(GET.replace(b"/health", b"/one") + GET.replace(b"/health", b"/two"))
        await settle_loop()
        assert [r.path for r in server.service.requests] == ["/one"] and transport.answers() == []
        server.service.gate.set()
        await settle_loop(20)
        assert [r.path for r in server.service.requests] == ["/one", "/two"]
        assert transport.answers() == [b"HTTP/1.1 200", b"HTTP/1.1 200"]
        assert bytes(transport.written).index(b'"/one"') < bytes(transport.written).index(b'"/two"')

    run(scenario())


def test_input_beyond_the_high_water_mark_waits_in_the_kernel_until_the_answer(server: Server) -> None:
    # the pipelining bound: a client cannot make one connection buffer more than READ_HIGH_BYTES while it is served
    async def scenario() -> None:
        protocol, transport = connect(server)
        server.service.gate = asyncio.Event()
        protocol.data_received(GET)
        await settle_loop()
        protocol.data_received(GET * (READ_HIGH_BYTES // len(GET)))  # at the mark: still read
        assert transport.reading
        protocol.data_received(GET)
        assert not transport.reading
        server.service.gate.set()
        await settle_loop()
        assert transport.reading  # answered: what waits is served, reading again

    run(scenario())


def test_a_peer_that_takes_no_output_is_neither_read_nor_served_until_it_does(server: Server) -> None:
    async def scenario() -> None:
        protocol, transport = connect(server)
        server.service.gate = asyncio.Event()
        protocol.data_received(GET)
        await settle_loop()
        protocol.pause_writing()  # as the transport does when the answer overflows its buffer
        server.service.gate.set()
        await settle_loop()
        assert not transport.reading and protocol.timer_kind == "write"
        protocol.data_received(GET.replace(b"/health", b"/next"))  # arrived before reading paused
        await settle_loop()
        assert [r.path for r in server.service.requests] == ["/health"]
        protocol.resume_writing()
        await settle_loop()
        assert transport.reading and [r.path for r in server.service.requests] == ["/health", "/next"]

    run(scenario())


def test_output_stalled_for_the_keepalive_timeout_is_aborted() -> None:
    async def scenario() -> None:
        server = Server(keepalive=0.05)
        protocol, transport = connect(server)
        protocol.data_received(GET)
        await settle_loop()
        transport.buffered = 10
        protocol.pause_writing()
        await asyncio.sleep(0.1)
        assert transport.aborted

    run(scenario())


def test_a_broken_request_is_answered_400_and_the_connection_lingers(server: Server) -> None:
    async def scenario() -> None:
        protocol, transport = connect(server)
        protocol.data_received(b"NOT HTTP AT ALL\r\n\r\n")
        await settle_loop()
        assert (
            transport.answers()[0].startswith(b"HTTP/1.1 400")
            and b"connection: close" in bytes(transport.written).lower()
        )
        assert transport.eof_written and protocol.lingering and not transport.closed and server.service.errors == [400]
        protocol.data_received(GET)  # what the peer still sends is discarded, never served
        await settle_loop()
        assert server.service.requests == []

    run(scenario())


def test_an_access_refusal_is_answered_before_the_body_and_closes(server: Server) -> None:
    async def scenario() -> None:
        protocol, transport = connect(server)
        protocol.data_received(b"GET /health HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        await settle_loop()
        assert transport.answers()[0].startswith(b"HTTP/1.1 421") and transport.eof_written
        assert server.service.requests == []

    run(scenario())


def test_a_body_holds_its_share_of_the_budget_until_answered() -> None:
    async def scenario() -> None:
        server = Server(body_budget=100)
        protocol, transport = connect(server)
        server.service.gate = asyncio.Event()
        head = (
            b"PUT /timeline HTTP/1.1\r\nHost: 127.0.0.1:8081\r\nAuthorization: Bearer secret\r\n"
            b"Content-Type: application/json\r\nContent-Length: 60\r\n\r\n"
        )
        protocol.data_received(head + b"x" * 60)
        await settle_loop()
        assert server.bodies.used == 60 and server.service.requests[0].body == b"x" * 60
        other, other_transport = connect(server)
        other.data_received(head)  # 60 more do not fit in 100 now: 503, nothing of it read
        await settle_loop()
        assert other_transport.answers()[0].startswith(b"HTTP/1.1 503") and server.service.refusals == ["bodies"]
        server.service.gate.set()
        await settle_loop()
        assert server.bodies.used == 0 and transport.answers() == [b"HTTP/1.1 200"]

    run(scenario())


def test_an_incomplete_request_is_answered_408_in_time() -> None:
    async def scenario() -> None:
        server = Server(request_timeout=0.05)
        protocol, transport = connect(server)
        protocol.data_received(b"GET /health HTTP/1.1\r\n")
        await asyncio.sleep(0.1)
        assert transport.answers()[0].startswith(b"HTTP/1.1 408") and server.service.errors == [408]

    run(scenario())


def test_a_connection_lost_mid_request_cancels_its_task(server: Server) -> None:
    async def scenario() -> None:
        protocol, transport = connect(server)
        server.service.gate = asyncio.Event()
        protocol.data_received(GET)
        await settle_loop()
        task = protocol.task
        assert task is not None and not protocol.idle
        protocol.connection_lost(None)
        await settle_loop()
        assert task.cancelled() and protocol.transport is None

    run(scenario())


def test_over_max_connections_a_newcomer_gets_503_and_its_descriptor_back(server: Server) -> None:
    async def scenario() -> None:
        server.config.max_connections = 1
        server.slots = ConnectionSlots(1, 1, lambda c: c.idle)
        busy, _ = connect(server)
        server.service.gate = asyncio.Event()
        busy.data_received(GET)  # serving: not idle, cannot be evicted
        await settle_loop()
        newcomer, transport = connect(server)
        assert transport.answers()[0].startswith(b"HTTP/1.1 503") and newcomer.refused and newcomer in server.refused
        assert len(server.service.refusal_times) == 1  # timed from the accept
        assert transport.limits == {}  # the answer is small: no output limits for a refused connection
        server.service.gate.set()

    run(scenario())


def test_while_stopping_without_the_fd_store_the_next_answer_closes(server: Server) -> None:
    async def scenario() -> None:
        protocol, transport = connect(server)
        server.lifecycle.enter(Lifecycle.DRAINING)
        assert protocol.settle() is False and transport.reading  # between requests: DRAIN_GRACE for a request
        protocol.data_received(GET)
        await settle_loop()
        assert b"connection: close" in bytes(transport.written).lower() and protocol.lingering
        assert protocol.settle() is True

    run(scenario())


def test_at_the_drain_deadline_an_incomplete_request_gets_503_and_an_idle_one_is_closed(server: Server) -> None:
    async def scenario() -> None:
        partial, partial_transport = connect(server)
        idle, idle_transport = connect(server)
        partial.data_received(b"GET /health HTTP/1.1\r\n")
        server.lifecycle.enter(Lifecycle.DRAINING)
        assert partial.settle(final=True) and idle.settle(final=True)
        assert partial_transport.answers()[0].startswith(b"HTTP/1.1 503") and server.service.refusals == ["stopping"]
        assert idle_transport.closed and idle_transport.written == b"" and server.handover.closed == 1

    run(scenario())


class StoringHandover(Handover):
    def __init__(self, accept: bool) -> None:
        super().__init__(True, 10, environ={})
        self.enabled = True
        self.accept = accept
        self.reading_when_stored: list[bool] = []

    def store(self, sock: socket.socket) -> bool:
        self.reading_when_stored.append(self.transport.reading)
        return self.accept

    transport: MockTransport


@pytest.mark.parametrize("accept", [True, False])
def test_an_idle_connection_goes_to_the_fd_store_with_reading_paused(server: Server, accept: bool) -> None:
    async def scenario() -> None:
        protocol, transport = connect(server)
        handover = StoringHandover(accept)
        handover.transport = transport
        server.handover = handover
        server.lifecycle.enter(Lifecycle.DRAINING)
        settled = protocol.settle()
        assert handover.reading_when_stored == [False]  # nothing read once the next instance may own the bytes
        if accept:
            assert settled and transport.aborted  # only our descriptor: systemd holds the connection
        else:
            assert (
                not settled and transport.reading and not transport.closed
            )  # the store is full: served until the grace ends

    run(scenario())


def test_a_busy_write_buffer_holds_the_drain(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        protocol, transport = connect(server)
        transport.buffered = 100
        server.lifecycle.enter(Lifecycle.DRAINING)
        monkeypatch.setattr(server.lifecycle, "since", time.monotonic() - 2 * connection_module.DRAIN_GRACE)
        assert protocol.settle() is False  # the last answer is still being written
        assert protocol.settle(final=True) is True and transport.closed

    run(scenario())


def test_a_refusal_that_needs_no_work_is_written_within_data_received(server: Server) -> None:
    """The 503 of a full render queue is answered in data_received itself, no task: under a flood it must not
    wait for its turn among hundreds of request tasks (its time is the daemon's refusal histogram)."""

    async def scenario() -> None:
        protocol, transport = connect(server)
        server.service.busy_paths = {"/busy"}
        protocol.data_received(GET.replace(b"/health", b"/busy"))
        # no await: written before data_received returned
        assert transport.answers() == [b"HTTP/1.1 503"] and b"Retry-After: 1" in bytes(transport.written)
        assert protocol.task is None and server.service.requests == [] and len(server.service.refusal_times) == 1
        assert (
            not transport.closed and protocol.idle and protocol.timer_kind == "idle"
        )  # kept alive, ready for the next
        protocol.data_received(GET)
        assert protocol.task is not None  # one that needs work gets its task as before
        await settle_loop()
        assert transport.answers() == [b"HTTP/1.1 503", b"HTTP/1.1 200"]

    run(scenario())


def test_pipelined_refusals_are_answered_in_order_without_recursion(server: Server) -> None:
    """Thousands of pipelined requests answered at once are a loop, not a recursion; the first that needs work
    stops it, and the ones after it wait for its answer."""

    async def scenario() -> None:
        protocol, transport = connect(server)
        server.service.busy_paths = {"/busy"}
        busy = GET.replace(b"/health", b"/busy")
        protocol.data_received(busy * 1500 + GET + busy)
        assert transport.answers() == [b"HTTP/1.1 503"] * 1500 and protocol.task is not None
        await settle_loop(10)
        assert transport.answers() == [b"HTTP/1.1 503"] * 1500 + [b"HTTP/1.1 200", b"HTTP/1.1 503"]

    run(scenario())


def test_a_refusal_is_timed_from_its_request_not_from_the_accept(server: Server) -> None:
    """The refusal histogram is the daemon's time: a client that connects and sends later is not counted in it
    (the first request on each of a flood's 400 connections was timed from the accept, the histogram's p99)."""

    async def scenario() -> None:
        protocol, transport = connect(server)
        server.service.busy_paths = {"/busy"}
        await asyncio.sleep(0.05)  # the client takes its time to send
        protocol.data_received(GET.replace(b"/health", b"/busy"))
        assert transport.answers() == [b"HTTP/1.1 503"] and server.service.refusal_times[0] < 0.01

    run(scenario())

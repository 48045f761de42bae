"""Sans-IO HTTP/1.1 request state machine on top of h11.

h11 does the parsing and the keep-alive/pipelining bookkeeping; this layer adds
the daemon's limits (request line, head size, header count, body size) and the
response conventions every answer shares (``Keep-Alive: timeout=N``,
``Content-Length``, ``Connection: close`` on errors). It never touches a
socket, so every rule here is testable with bytes in and bytes out.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import h11

from flipedit_previewd.common.errors import (
    BadRequest,
    HeaderFieldsTooLarge,
    HTTPError,
    PayloadTooLarge,
    URITooLong,
    VersionNotSupported,
)

SERVER_NAME = b"flipedit-previewd"


@dataclass(frozen=True)
class Limits:
    """What the parser buffers of one request (a timeline's cost to render is ``timeline.cost``)."""

    max_request_line: int = 8192
    max_header_bytes: int = 16384
    max_headers: int = 100
    max_body_bytes: int = 4 * 1024 * 1024
    keepalive_timeout: float = 20.0


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        _, _, raw = self.target.partition("?")
        return dict(parse_qsl(raw, keep_blank_values=True))


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False
    limit: str = ""  # a 503's limit ("queue", "connections", ...; "deadline": waited its queue time, not refused)

    @classmethod
    def json(cls, status: int, payload: Any, **kwargs: Any) -> Response:
        return cls(status, json.dumps(payload, separators=(",", ":")).encode(), "application/json", **kwargs)

    @classmethod
    def from_error(cls, error: HTTPError, protocol: bool = False) -> Response:
        """``protocol``: the peer broke HTTP itself, so the connection cannot go on. A 400 for a
        query mistake in a well-formed request keeps the connection (the editor's pool keeps it)."""
        headers: list[tuple[str, str]] = []
        retry_after = error.extra.get("retry_after")
        if retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        allow = getattr(error, "allow", ())
        if allow:
            headers.append(("Allow", ", ".join(allow)))
        close = protocol or error.status in (408, 413, 414, 431, 505)
        return cls.json(
            error.status, error.body(), headers=headers, close=close, limit=str(error.extra.get("limit") or "")
        )


@dataclass(frozen=True)
class Head:
    """A request whose head has arrived and whose body has not been read: the caller admits it
    (``HTTPConnection.admit``: its body is read from now on) or refuses it, unread."""

    request: Request
    body_length: int | None  # the declared Content-Length; None for a chunked body; 0 for none


class ProtocolFailure(Exception):
    """The peer broke HTTP; carry the error to answer with before closing."""

    def __init__(self, error: HTTPError) -> None:
        super().__init__(error.detail)
        self.error = error


class HTTPConnection:
    """One client connection's HTTP state, without I/O.

    ``receive`` feeds bytes; ``next_event`` returns a request's ``Head`` as soon as
    it has arrived (nothing of its body is kept until the caller ``admit``s it),
    then the complete request, or None when more bytes are needed, or raises
    ``ProtocolFailure``. ``next_request`` admits every head (no policy). After
    ``send_response`` the caller checks ``should_close`` and, if still open,
    asks for the next (possibly already pipelined) request.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self._pending: Request | None = None
        self._body = bytearray()
        self._cycle_bytes = 0
        self._saw_line_end = False
        self.closed_by_peer = False
        self._detached_close = False
        self._method = b""
        self._admitted = True  # False between a Head and admit(): no body byte is read

    @property
    def mid_request(self) -> bool:
        """True once any byte of a not yet complete request has arrived."""
        return self._cycle_bytes > 0 or self._pending is not None

    def receive(self, data: bytes) -> None:
        if not data:
            self.closed_by_peer = True
        elif not self._saw_line_end:
            self._cycle_bytes += len(data)
            if b"\n" in data:
                self._saw_line_end = True
        else:
            self._cycle_bytes += len(data)
        self._h11.receive_data(data)

    def next_request(self) -> Request | None:
        """The next complete request, every head admitted (a caller with no admission policy)."""
        while True:
            event = self.next_event()
            if not isinstance(event, Head):
                return event
            self.admit()

    def admit(self) -> None:
        """The head just returned is accepted: its body is read from now on."""
        self._admitted = True

    def next_event(self) -> Head | Request | None:
        if not self._saw_line_end and self._cycle_bytes > self.limits.max_request_line:
            raise ProtocolFailure(URITooLong(f"request line longer than {self.limits.max_request_line} bytes"))
        while self._admitted:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise ProtocolFailure(self._classify(exc)) from None
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return None
            if isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, h11.Request):
                self._method = event.method
                self._pending = self._start(event)
                self._admitted = False
                return Head(self._pending, self._body_length())
            if isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self.limits.max_body_bytes:
                    raise ProtocolFailure(PayloadTooLarge(f"body larger than {self.limits.max_body_bytes} bytes"))
                continue
            if isinstance(event, h11.EndOfMessage):
                request = self._pending
                assert request is not None
                request.body = bytes(self._body)
                self._pending = None
                self._body.clear()
                return request
        return None

    def _body_length(self) -> int | None:
        assert self._pending is not None
        if "transfer-encoding" in self._pending.headers:
            return None  # chunked (h11 refuses any other transfer coding)
        return int(self._pending.headers.get("content-length", "0").split(",")[0])

    def _classify(self, exc: h11.RemoteProtocolError) -> HTTPError:
        status = getattr(exc, "error_status_hint", 400)
        if status == 431:
            if not self._saw_line_end:
                return URITooLong(f"request line longer than {self.limits.max_header_bytes} bytes")
            return HeaderFieldsTooLarge(f"request head larger than {self.limits.max_header_bytes} bytes")
        if status == 501:
            return BadRequest(f"unsupported: {exc}")
        return BadRequest(f"malformed request: {exc}")

    def _start(self, event: h11.Request) -> Request:
        target = event.target.decode("latin-1")
        if event.http_version not in (b"1.0", b"1.1"):
            raise ProtocolFailure(
                VersionNotSupported(f"HTTP/{event.http_version.decode('latin-1')} is not supported; use HTTP/1.1")
            )
        if len(event.target) > self.limits.max_request_line:
            raise ProtocolFailure(URITooLong(f"request target longer than {self.limits.max_request_line} bytes"))
        head_bytes = len(event.method) + len(event.target) + 12 + sum(len(n) + len(v) + 4 for n, v in event.headers)
        if head_bytes > self.limits.max_header_bytes:
            # h11 only bounds heads that arrive in pieces; a head that arrives whole is measured here.
            raise ProtocolFailure(
                HeaderFieldsTooLarge(f"request head larger than {self.limits.max_header_bytes} bytes")
            )
        if len(event.headers) > self.limits.max_headers:
            raise ProtocolFailure(HeaderFieldsTooLarge(f"more than {self.limits.max_headers} header fields"))
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        length = headers.get("content-length")
        if length is not None and int(length.split(",")[0]) > self.limits.max_body_bytes:
            raise ProtocolFailure(
                PayloadTooLarge(f"Content-Length {length} exceeds {self.limits.max_body_bytes} bytes")
            )
        if not target.startswith("/") and target != "*":
            raise ProtocolFailure(BadRequest("request target must be an absolute path"))
        return Request(event.method.decode("ascii", "replace"), target, headers)

    def send_response(self, response: Response, head_only: bool = False) -> bytes:
        """Serialise a whole response; headers every answer carries are added here.

        Never raises: if h11 cannot answer on this connection (no request line seen yet, or its
        state is unusable after the peer broke the protocol), a detached h11 connection that saw a
        stand-in request serialises the reply, and the connection closes after it.
        """
        writer = self._h11
        if writer.their_state is h11.ERROR:
            response.close = True
        # h11 knows a HEAD response has no body even when the failure came before our handler did.
        head_only = head_only or self._method == b"HEAD"
        if writer.our_state is not h11.SEND_RESPONSE and writer.their_state is not h11.ERROR:
            writer = _detached_writer(head_only)
        try:
            out = self._serialise(writer, response, head_only)
        except h11.LocalProtocolError:
            if writer is not self._h11:
                raise
            writer = _detached_writer(head_only)
            out = self._serialise(writer, response, head_only)
        if writer is not self._h11:
            self._detached_close = True
        return out

    def _serialise(self, writer: h11.Connection, response: Response, head_only: bool) -> bytes:
        if writer is not self._h11:
            response.close = True
        headers = [("Server", SERVER_NAME.decode()), ("Date", http_date())]
        if response.status != 304:  # a 304 describes the held representation: no body headers (RFC 9110 15.4.5)
            headers += [("Content-Type", response.content_type), ("Content-Length", str(len(response.body)))]
        headers += response.headers
        if response.close:
            headers.append(("Connection", "close"))
        else:
            headers.append(("Keep-Alive", f"timeout={int(self.limits.keepalive_timeout)}"))
        phrase = HTTPStatus(response.status).phrase.encode()
        out = bytearray()
        out += writer.send(h11.Response(status_code=response.status, headers=headers, reason=phrase)) or b""
        if response.body and not head_only:
            out += writer.send(h11.Data(data=response.body)) or b""
        out += writer.send(h11.EndOfMessage()) or b""
        return bytes(out)

    @property
    def should_close(self) -> bool:
        return (
            self._detached_close
            or self._h11.our_state is h11.MUST_CLOSE
            or self._h11.their_state in (h11.MUST_CLOSE, h11.ERROR, h11.CLOSED)
        )

    def start_next_cycle(self) -> None:
        self._h11.start_next_cycle()
        self._method = b""
        self._admitted = True
        self._cycle_bytes = len(self._h11.trailing_data[0])
        self._saw_line_end = b"\n" in self._h11.trailing_data[0]


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header (RFC 9110 6.6.1), formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def _detached_writer(head_only: bool) -> h11.Connection:
    """An h11 connection that has read a stand-in request, to serialise one answer. A HEAD stand-in for a HEAD
    answer: after a GET, h11 wants the body that a HEAD answer leaves out, and raises at its end."""
    writer = h11.Connection(h11.SERVER)
    method = b"HEAD" if head_only else b"GET"
    writer.receive_data(method + b" / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    while not isinstance(writer.next_event(), h11.EndOfMessage):
        pass
    return writer

from __future__ import annotations

import time

import pytest

from flipedit_previewd.common.errors import (
    BadRequest,
    HeaderFieldsTooLarge,
    HTTPError,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
    URITooLong,
    VersionNotSupported,
)
from flipedit_previewd.http import protocol
from flipedit_previewd.http.protocol import HTTPConnection, Limits, ProtocolFailure, Response


def conn(**limits: int) -> HTTPConnection:
    return HTTPConnection(Limits(**limits))  # type: ignore[arg-type]


def failure_status(http: HTTPConnection, data: bytes) -> int:
    http.receive(data)
    with pytest.raises(ProtocolFailure) as info:
        http.next_request()
    return info.value.error.status


def test_pipelined_requests_come_out_in_order_one_at_a_time() -> None:
    http = conn()
    http.receive(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    first = http.next_request()
    assert first is not None and first.target == "/a"
    assert http.next_request() is None  # the second waits until the first is answered
    out = http.send_response(Response(200, b"hello", "text/plain"))
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"Keep-Alive: timeout=20" in out and out.endswith(b"hello")
    assert not http.should_close
    http.start_next_cycle()
    second = http.next_request()
    assert second is not None and second.target == "/b"


def test_partial_request_needs_more_data() -> None:
    http = conn()
    http.receive(b"GET /health HTTP/1.1\r\nHo")
    assert http.next_request() is None and http.mid_request
    http.receive(b"st: x\r\n\r\n")
    request = http.next_request()
    assert request is not None and request.path == "/health"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /" + b"a" * 9000, 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431),
        (b"PUT /timeline HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ],
)
def test_limits_answer_with_their_status_and_close(data: bytes, status: int) -> None:
    http = conn()
    http.receive(data)
    with pytest.raises(ProtocolFailure) as info:
        http.next_request()
    assert info.value.error.status == status
    out = http.send_response(Response.from_error(info.value.error, protocol=True))
    assert out.startswith(b"HTTP/1.1 %d " % status)
    assert b"Connection: close" in out
    assert http.should_close


def test_chunked_body_over_limit_is_413() -> None:
    http = conn(max_body_bytes=10)
    chunk = b"20\r\n" + b"x" * 32 + b"\r\n0\r\n\r\n"
    assert (
        failure_status(http, b"PUT /timeline HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk) == 413
    )


def test_head_response_has_length_but_no_body() -> None:
    http = conn()
    http.receive(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert http.next_request() is not None
    out = http.send_response(Response(200, b"12345"), head_only=True)
    assert b"Content-Length: 5" in out and out.endswith(b"\r\n\r\n")


def test_http10_client_gets_close() -> None:
    http = conn()
    http.receive(b"GET /health HTTP/1.0\r\n\r\n")
    assert http.next_request() is not None
    http.send_response(Response(200, b"{}"))
    assert http.should_close


def test_overload_error_carries_retry_after() -> None:
    from flipedit_previewd.common.errors import Overloaded

    response = Response.from_error(Overloaded("queue", 3))
    assert ("Retry-After", "3") in response.headers and response.status == 503 and not response.close
    assert b'"limit":"queue"' in response.body


def test_a_503_answer_carries_its_limit_and_other_errors_none() -> None:
    """The connection counts a refused request by ``Response.limit`` ("deadline" is a timeout, not a refusal)."""
    from flipedit_previewd.common.errors import Overloaded

    assert Response.from_error(Overloaded("deadline", 2, "waited")).limit == "deadline"
    assert Response.from_error(Overloaded("connections", 1)).limit == "connections"
    assert Response.from_error(BadRequest("nope")).limit == ""
    assert Response(200).limit == ""


@pytest.mark.parametrize(
    "data",
    [
        b"HEAD / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",  # 431 to a HEAD
        b"PUT /timeline HTTP/1.1\r\nHost: x\r\nContent-Length: 75\r\n\r\n" + b"x" * 61,  # then the peer closes
    ],
)
def test_error_answers_never_raise(data: bytes) -> None:
    """Found by fuzzing: h11 refused to send these answers (a body to a HEAD, a state of ERROR)."""
    http = conn()
    http.receive(data)
    try:
        request = http.next_request()
        assert request is None
        http.receive(b"")
        http.next_request()
    except ProtocolFailure as failure:
        out = http.send_response(Response.from_error(failure.error))
        assert out.startswith(b"HTTP/1.1 4") and b"Connection: close" in out and http.should_close
    else:
        raise AssertionError("expected a protocol failure")


# --- exact behaviour at the limits and in the bytes (each test below kills mutants that survived:
# docs/mutants-protocol.md)

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def fixed_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "http_date", lambda: "Sun, 09 Sep 2001 01:46:40 GMT")


def test_response_bytes_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed_date(monkeypatch)
    http = conn()
    http.receive(GET)
    assert http.next_request() is not None
    out = http.send_response(Response(200, b"hello", "text/plain", headers=[("ETag", '"e"')]))
    assert out == (
        b"HTTP/1.1 200 OK\r\nServer: flipedit-previewd\r\nDate: Sun, 09 Sep 2001 01:46:40 GMT\r\n"
        b'Content-Type: text/plain\r\nContent-Length: 5\r\nETag: "e"\r\nKeep-Alive: timeout=20\r\n\r\nhello'
    )
    assert http.should_close is False


def test_304_has_no_body_headers_and_other_statuses_do(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed_date(monkeypatch)
    for status, has_body_headers in ((304, False), (200, True), (305, True), (404, True)):
        http = conn()
        http.receive(GET)
        assert http.next_request() is not None
        out = http.send_response(Response(status, b"" if status == 304 else b"{}", headers=[("ETag", '"e"')]))
        assert (b"Content-Length:" in out) == has_body_headers and (b"Content-Type:" in out) == has_body_headers, status
        assert out.startswith(b"HTTP/1.1 %d " % status) and b"Server: flipedit-previewd\r\nDate: " in out


def test_an_answer_without_a_request_closes_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed_date(monkeypatch)
    http = conn()
    out = http.send_response(Response(408, b"{}"))  # nothing received: a detached writer answers
    assert out == (
        b"HTTP/1.1 408 Request Timeout\r\nServer: flipedit-previewd\r\nDate: Sun, 09 Sep 2001 01:46:40 GMT\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    assert http.should_close is True


def test_head_is_answered_without_body_even_when_the_caller_forgets() -> None:
    http = conn()
    http.receive(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
    request = http.next_request()
    assert request is not None and request.method == "HEAD"
    out = http.send_response(Response(200, b"12345"))
    assert out.endswith(b"Content-Length: 5\r\nKeep-Alive: timeout=20\r\n\r\n")
    http.start_next_cycle()
    # After the cycle a failure on the next request is not a HEAD answer: its body is sent.
    http.receive(b"GARBAGE\r\n\r\n")
    with pytest.raises(ProtocolFailure) as info:
        http.next_request()
    assert http.send_response(Response.from_error(info.value.error, protocol=True)).endswith(b"}")


def test_response_json_is_compact_and_typed() -> None:
    response = Response.json(201, {"a": [1, 2], "b": "c"})
    assert (
        response.body == b'{"a":[1,2],"b":"c"}'
        and response.content_type == "application/json"
        and response.status == 201
    )


def test_from_error_allow_header_and_which_statuses_close() -> None:
    allowed = Response.from_error(MethodNotAllowed("no", allow=("GET", "HEAD")))
    assert allowed.headers == [("Allow", "GET, HEAD")] and allowed.close is False
    assert Response.from_error(BadRequest("x")).headers == []
    closing = {
        RequestTimeout: 408,
        PayloadTooLarge: 413,
        URITooLong: 414,
        HeaderFieldsTooLarge: 431,
        VersionNotSupported: 505,
    }
    for error_type, status in closing.items():
        response = Response.from_error(error_type("x"))
        assert response.status == status and response.close is True, status
    for status in (400, 404, 409, 415, 500, 504, 506):
        error = HTTPError("x")
        error.status = status
        assert Response.from_error(error).close is False, status
        assert Response.from_error(error, protocol=True).close is True, status


def test_protocol_failure_message_is_the_detail() -> None:
    assert str(ProtocolFailure(BadRequest("the detail"))) == "the detail"


def test_fresh_connection_state() -> None:
    http = conn()
    assert http.mid_request is False and http.closed_by_peer is False and http.should_close is False
    http.receive(b"")
    assert http.closed_by_peer is True


def test_request_fields_body_in_pieces_and_repeated_headers() -> None:
    http = conn(max_body_bytes=10)
    http.receive(b"PUT /timeline?x=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 10\r\n\r\n01234")
    assert http.next_request() is None and http.mid_request
    http.receive(b"56789")
    request = http.next_request()
    assert request is not None and request.method == "PUT" and request.target == "/timeline?x=1"
    assert request.headers == {"host": "x", "x-a": "1, 2", "content-length": "10"}
    assert request.body == b"0123456789" and request.path == "/timeline" and request.query == {"x": "1"}
    http.send_response(Response(200, b"{}"))
    http.start_next_cycle()
    assert http.mid_request is False  # nothing of a next request yet


def test_a_whole_request_with_body_comes_out_of_one_call() -> None:
    http = conn()
    http.receive(b"PUT /timeline HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    request = http.next_request()
    assert request is not None and request.body == b"abc"


def test_asterisk_target_is_accepted_other_non_paths_are_not() -> None:
    http = conn()
    http.receive(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    request = http.next_request()
    assert request is not None and request.target == "*"
    http = conn()
    http.receive(b"GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(ProtocolFailure) as info:
        http.next_request()
    assert info.value.error.status == 400 and info.value.error.detail == "request target must be an absolute path"


def failure(data: bytes, **limits: int) -> tuple[int, str]:
    http = conn(**limits)
    http.receive(data)
    with pytest.raises(ProtocolFailure) as info:
        http.next_request()
    return info.value.error.status, info.value.error.detail


def accepted(data: bytes, **limits: int) -> bool:
    http = conn(**limits)
    http.receive(data)
    return http.next_request() is not None


def test_http2_request_is_505_naming_the_version() -> None:
    assert failure(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n") == (505, "HTTP/2.0 is not supported; use HTTP/1.1")


def test_request_line_limit_is_exact_in_pieces() -> None:
    assert conn(max_request_line=20).next_request() is None
    http = conn(max_request_line=20)
    http.receive(b"GET /aaaaaaaaa")  # 14 bytes and no line end yet
    http.receive(b"aaaaaa")  # 20: still allowed
    assert http.next_request() is None
    http.receive(b"a")  # 21
    with pytest.raises(ProtocolFailure) as info:
        http.next_request()
    assert (info.value.error.status, info.value.error.detail) == (414, "request line longer than 20 bytes")


def test_request_target_limit_is_exact() -> None:
    assert accepted(b"GET /" + b"a" * 49 + b" HTTP/1.1\r\nHost: x\r\n\r\n", max_request_line=50)
    assert failure(b"GET /" + b"a" * 50 + b" HTTP/1.1\r\nHost: x\r\n\r\n", max_request_line=50) == (
        414,
        "request target longer than 50 bytes",
    )


def test_head_size_limit_is_exact_for_a_head_that_arrives_whole() -> None:
    head = b"GET /abc HTTP/1.1\r\nHost: x\r\nX-Long: 123456789\r\nX-B: 1\r\n\r\n"
    size = len(b"GET") + len(b"/abc") + 12 + (4 + 1 + 4) + (6 + 9 + 4) + (3 + 1 + 4)
    assert accepted(head, max_header_bytes=size)
    assert failure(head, max_header_bytes=size - 1) == (431, f"request head larger than {size - 1} bytes")


def test_header_count_limit_is_exact() -> None:
    three = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n"
    assert accepted(three, max_headers=3)
    assert failure(three, max_headers=2) == (431, "more than 2 header fields")


def test_incomplete_heads_are_bounded_by_max_header_bytes() -> None:
    # Longer than 1000 bytes before any line end: the request line is too long (h11's bound, set to max_header_bytes).
    assert failure(b"GET /" + b"a" * 2000, max_request_line=100_000, max_header_bytes=1000) == (
        414,
        "request line longer than 1000 bytes",
    )
    # After the line end: the head is too large.
    assert failure(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 2000, max_header_bytes=1000) == (
        431,
        "request head larger than 1000 bytes",
    )


def test_h11_refusals_are_400_naming_the_kind() -> None:
    status, detail = failure(b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")  # h11: 501
    assert status == 400 and detail.startswith("unsupported: ")
    status, detail = failure(b"GARBAGE\r\n\r\n")
    assert status == 400 and detail.startswith("malformed request: ")


def test_body_limit_is_exact_by_content_length_and_by_data() -> None:
    assert accepted(b"PUT /t HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789", max_body_bytes=10)
    assert failure(b"PUT /t HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", max_body_bytes=10) == (
        413,
        "Content-Length 11 exceeds 10 bytes",
    )
    chunked = b"PUT /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert accepted(chunked + b"a\r\n0123456789\r\n0\r\n\r\n", max_body_bytes=10)
    assert failure(chunked + b"b\r\n0123456789a\r\n0\r\n\r\n", max_body_bytes=10) == (413, "body larger than 10 bytes")


def test_mid_request_counts_every_byte_after_the_line_end() -> None:
    http = conn()
    http.receive(b"GET / HTTP/1.1\r\n")
    http.receive(b"X-Long-Header: " + b"a" * 40)
    assert http.next_request() is None and http.mid_request is True


def test_a_pipelined_request_after_the_first_is_judged_by_its_own_line() -> None:
    # The second request's line is short; with its headers it is longer than max_request_line, which is fine.
    second = b"GET /b HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 40 + b"\r\n\r\n"
    http = conn(max_request_line=30)
    http.receive(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" + second)
    assert http.next_request() is not None
    http.send_response(Response(200, b"{}"))
    http.start_next_cycle()
    assert http.mid_request is True  # the second request's bytes are already here
    request = http.next_request()
    assert request is not None and request.target == "/b"


def test_http_date_format_and_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    real = protocol.formatdate

    def counting(timeval: float | None = None, localtime: bool = False, usegmt: bool = False) -> str:
        calls.append(timeval or 0.0)
        return real(timeval, localtime, usegmt)

    monkeypatch.setattr(protocol, "formatdate", counting)
    monkeypatch.setattr(protocol, "_date_cache", (0, ""))
    now = [1_000_000_000.25]
    monkeypatch.setattr(time, "time", lambda: now[0])
    assert protocol.http_date() == "Sun, 09 Sep 2001 01:46:40 GMT"
    assert calls == [1_000_000_000]  # formatted from the second it read, not from another look at the clock
    now[0] = 1_000_000_000.75
    assert protocol.http_date() == "Sun, 09 Sep 2001 01:46:40 GMT" and len(calls) == 1  # the same second: cached
    now[0] = 1_000_000_001.0
    assert protocol.http_date() == "Sun, 09 Sep 2001 01:46:41 GMT" and len(calls) == 2


def test_an_error_after_an_early_answer_is_still_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon answers some requests before their body (401 without a token); if the body then breaks HTTP,
    h11 will not send a second response on the connection: a detached writer does, and the connection closes."""
    fixed_date(monkeypatch)
    http = conn()
    http.receive(b"PUT /timeline HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert http.next_request() is None and http.mid_request
    early = http.send_response(Response(401, b"{}"))
    assert early.startswith(b"HTTP/1.1 401 ")
    http.receive(b"zz\r\n")  # not a chunk size
    with pytest.raises(ProtocolFailure) as info:
        http.next_request()
    out = http.send_response(Response.from_error(info.value.error, protocol=True))
    assert out.startswith(
        b"HTTP/1.1 400 Bad Request\r\nServer: flipedit-previewd\r\nDate: Sun, 09 Sep 2001 01:46:40 GMT\r\n"
    )
    assert out.endswith(b"\r\nConnection: close\r\n\r\n" + Response.from_error(info.value.error).body)
    assert http.should_close is True


def test_an_error_after_an_early_answer_to_a_head_request_is_answered_without_a_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same for HEAD: the detached writer's stand-in must be a HEAD too, or h11 wants the body a HEAD answer
    leaves out and send_response raises ("Too little data for declared Content-Length"), breaking its promise."""
    fixed_date(monkeypatch)
    http = conn()
    http.receive(b"HEAD /timeline HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert http.next_request() is None and http.mid_request
    assert http.send_response(Response(401, b"{}")).startswith(b"HTTP/1.1 401 ")
    http.receive(b"zz\r\n")  # not a chunk size
    with pytest.raises(ProtocolFailure) as info:
        http.next_request()
    error = Response.from_error(info.value.error, protocol=True)
    out = http.send_response(error)
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert f"Content-Length: {len(error.body)}\r\n".encode() in out  # what a GET would have got, as HEAD says
    assert out.endswith(b"\r\nConnection: close\r\n\r\n")  # and no body
    assert http.should_close is True

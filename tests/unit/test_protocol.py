from __future__ import annotations

import pytest

from flipedit_previewd.protocol import HTTPConnection, Limits, ProtocolFailure, Response


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
    assert failure_status(http, b"PUT /timeline HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk) == 413


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
    from flipedit_previewd.errors import Overloaded

    response = Response.from_error(Overloaded("queue", 3))
    assert ("Retry-After", "3") in response.headers and response.status == 503 and not response.close
    assert b'"limit":"queue"' in response.body


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

"""h11 versus httptools on the editor's traffic: parse pipelined frame requests, side by side.

Not a test. Prints requests/s (median of rounds, the two parsers alternating) and the ratio.
h11 is driven the way the daemon drives it (request, response, next cycle), since its
state machine is part of what we would otherwise have to write around httptools.
"""

from __future__ import annotations

import statistics
import time

import h11
import httptools

REQUEST = (
    b"GET /get_frame/%d HTTP/1.1\r\nHost: localhost:8081\r\nUser-Agent: Dart/3.3 (dart:io)\r\n"
    b'Accept-Encoding: gzip\r\nIf-None-Match: "abc-%d"\r\n\r\n'
)
BATCH = 200
ROUNDS = 7
BATCHES = 50


def payload() -> bytes:
    return b"".join(REQUEST % (i, i) for i in range(BATCH))


def run_h11(data: bytes) -> int:
    done = 0
    for _ in range(BATCHES):
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(data)
        while True:
            event = conn.next_event()
            if event is h11.PAUSED or event is h11.NEED_DATA:
                if conn.our_state is h11.DONE:
                    conn.start_next_cycle()
                    continue
                break
            if isinstance(event, h11.EndOfMessage):
                conn.send(h11.Response(status_code=304, headers=[("Content-Length", "0")]))
                conn.send(h11.EndOfMessage())
                done += 1
    return done


def run_httptools(data: bytes) -> int:
    class Sink:
        def __init__(self) -> None:
            self.done = 0
            self.headers: list[tuple[bytes, bytes]] = []

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_message_complete(self) -> None:
            self.done += 1
            self.headers = []

    total = 0
    for _ in range(BATCHES):
        sink = Sink()
        parser = httptools.HttpRequestParser(sink)
        parser.feed_data(data)
        total += sink.done
    return total


def main() -> None:
    data = payload()
    rates: dict[str, list[float]] = {"h11": [], "httptools": []}
    for _ in range(ROUNDS):
        for name, fn in (("h11", run_h11), ("httptools", run_httptools)):
            started = time.perf_counter()
            count = fn(data)
            rates[name].append(count / (time.perf_counter() - started))
    h11_rate, ht_rate = statistics.median(rates["h11"]), statistics.median(rates["httptools"])
    print(f"h11 {h11.__version__}: {h11_rate:,.0f} requests/s (median of {ROUNDS})")
    print(f"httptools {httptools.__version__}: {ht_rate:,.0f} requests/s (median of {ROUNDS})")
    print(f"httptools / h11 = {ht_rate / h11_rate:.1f}x; h11 per request = {1e6 / h11_rate:.1f} us")


if __name__ == "__main__":
    main()

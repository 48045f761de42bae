"""Baseline 1: the old server's design, written fresh from its notes (../shared/reference/).

A Flask development server; requests go into a bounded queue (request_queue.maxsize 20) served by
a pool of MAX_CONCURRENT_REQUESTS (2) worker threads behind a global lock; a full queue is a 503.
Rendering is the naive pipeline.  Usage: python old_server.py DB PORT
"""

from __future__ import annotations

import queue
import sys
import threading

from flask import Flask, Response, jsonify

from bench.baselines.naive import render

MAX_CONCURRENT_REQUESTS = 2
request_queue: queue.Queue[tuple[int, dict[str, object], threading.Event]] = queue.Queue(maxsize=20)
lock = threading.Lock()
active = [0]
app = Flask(__name__)
DB = sys.argv[1]


def worker() -> None:
    while True:
        frame, slot, done = request_queue.get()
        with lock:
            active[0] += 1
        try:
            slot["body"] = render(DB, frame)
        except Exception as exc:  # noqa: BLE001 - the old server answered 500
            slot["error"] = str(exc)
        finally:
            with lock:
                active[0] -= 1
            done.set()


@app.route("/get_frame/<int:frame_index>")
def get_frame(frame_index: int) -> Response:
    slot: dict[str, object] = {}
    done = threading.Event()
    try:
        request_queue.put_nowait((frame_index, slot, done))
    except queue.Full:
        return Response("busy", status=503)
    done.wait()
    if "error" in slot:
        return Response(str(slot["error"]), status=500)
    return Response(slot["body"], mimetype="image/jpeg")  # type: ignore[arg-type]


@app.route("/health")
def health() -> Response:
    return jsonify(
        status="ok", queue_size=request_queue.qsize(), active_requests=active[0], max_concurrent=MAX_CONCURRENT_REQUESTS
    )


if __name__ == "__main__":
    for _ in range(MAX_CONCURRENT_REQUESTS):
        threading.Thread(target=worker, daemon=True).start()
    app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)

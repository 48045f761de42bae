"""Baselines 2 and 3: Flask under gunicorn (gthread). PIPELINE=naive renders like the old server;
PIPELINE=daemon uses flipedit-previewd's own render function (compose with per-process decoders and
caches), which isolates the server layer from the renderer.  FLIPEDIT_DB names the project."""

from __future__ import annotations

import os
import threading

from flask import Flask, Response, jsonify

from bench.baselines.naive import render as naive_render
from flipedit_previewd.timeline.projectdb import ProjectSource  # noqa: E402
from flipedit_previewd.worker.compositor import OutputSpec, compose  # noqa: E402
from flipedit_previewd.worker.media import MediaPool  # noqa: E402

DB = os.environ["FLIPEDIT_DB"]
PIPELINE = os.environ.get("PIPELINE", "naive")
app = Flask(__name__)
_source = ProjectSource(DB, (1280, 720), 30.0)
_media = MediaPool(128 * 1024 * 1024, 100_000_000)
_lock = threading.Lock()  # decoders are per process and not thread-safe


@app.route("/get_frame/<int:frame_index>")
def get_frame(frame_index: int) -> Response:
    if PIPELINE == "naive":
        return Response(naive_render(DB, frame_index), mimetype="image/jpeg")
    with _lock:
        body = compose(_source.current(), frame_index, OutputSpec(1280, 720), _media).body
    return Response(body, mimetype="image/jpeg")


@app.route("/health")
def health() -> Response:
    return jsonify(status="ok")

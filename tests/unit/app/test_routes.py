"""app/routes.py driven directly: which path does what, query parsing, 404/405, PUT /timeline and the
one error boundary (every error becomes a response with its status). No socket: requests are built
(tests/support/app_parts.get) and handed to ``Routes.handle``; no worker process (AppParts.serve)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from flipedit_previewd.app.routes import MAX_FRAME, frame_index, output_spec
from flipedit_previewd.common.errors import BadRequest
from flipedit_previewd.config.schema import Config
from flipedit_previewd.http.lifecycle import Lifecycle
from flipedit_previewd.http.protocol import Response
from flipedit_previewd.timeline.model import Timeline
from flipedit_previewd.worker.output import OutputSpec
from tests.support.app_parts import AppParts, get
from tests.support.helpers import run


def answer(parts: AppParts, target: str, method: str = "GET", body: bytes = b"", **headers: str) -> Response:
    return run(parts.routes.handle(get(target, method, body, **headers)))


def header(response: Response, name: str) -> str | None:
    return next((value for key, value in response.headers if key.lower() == name.lower()), None)


def canvas(width: int = 1280, height: int = 720) -> Timeline:
    return Timeline(width, height, 30.0, (), source="test", revision="r")


# --- /get_frame/<n>: the frame index ------------------------------------------------------------


def test_a_frame_index_is_a_whole_number_from_0_to_the_maximum() -> None:
    assert frame_index("0") == 0 and frame_index("42") == 42 and frame_index(str(MAX_FRAME)) == MAX_FRAME
    for raw in ("-1", "abc", "1.5", "1e3", "", " 1", "\u0663", "+1", str(MAX_FRAME + 1)):  # U+0663: an Arabic-Indic 3
        with pytest.raises(BadRequest) as refused:
            frame_index(raw)
        assert refused.value.extra["field"] == "frame", raw


def test_a_bad_frame_index_is_a_400_counted_as_the_clients_error(parts: AppParts) -> None:
    response = answer(parts, "/get_frame/-3")
    assert response.status == 400 and json.loads(response.body)["field"] == "frame"
    assert parts.client_errors.total == {400: 1}
    assert parts.metrics.requests.labels("client_error")._value.get() == 1  # a frame request all the same
    assert parts.admission.counters["admitted"] == 0


# --- which path does what -------------------------------------------------------------------------


def test_each_path_reaches_its_own_answer(parts: AppParts) -> None:
    health = answer(parts, "/health")
    assert (
        health.status == 200
        and json.loads(health.body)["status"] == "ok"
        and ("Cache-Control", "no-store") in health.headers
    )
    assert parts.stats.summary == {"health": 1}
    metrics = answer(parts, "/metrics")
    assert metrics.status == 200 and metrics.content_type.startswith("text/plain; version=0.0.4")
    assert b"flipedit_preview_requests_total" in metrics.body and ("Cache-Control", "no-store") in metrics.headers
    index = json.loads(answer(parts, "/").body)
    assert index["service"] == "flipedit-previewd" and "/get_frame/<n>" in index["endpoints"]
    page = answer(parts, "/", accept="text/html,application/xhtml+xml")
    assert page.status == 200 and page.content_type.startswith("text/html") and page.body.startswith(b"<!")
    script = answer(parts, "/viewer.js")
    assert script.status == 200 and script.content_type.startswith("text/javascript")
    assert answer(parts, "/favicon.ico").content_type == "image/svg+xml"
    events = answer(parts, "/debug/events")
    assert events.status == 200 and "events" in json.loads(events.body)
    timeline = json.loads(answer(parts, "/timeline").body)
    assert len(timeline["tracks"][0]["clips"]) == 1


def test_the_debug_timeline_carries_the_dispatchers_queue_counts(parts: AppParts) -> None:
    async def scenario() -> dict[str, Any]:
        waiting = await parts.queued("/get_frame/7")  # admitted, never taken
        document = json.loads((await parts.routes.handle(get("/debug/timeline"))).body)
        waiting.cancel()
        return document

    document = run(scenario())
    assert document["queue_stats"] == {"queue_size": 1, "active_requests": 0}
    assert document["clips_count"] == 1


def test_the_path_is_matched_without_its_query_and_an_unknown_one_is_404(parts: AppParts) -> None:
    assert answer(parts, "/health?verbose=1").status == 200
    for target in ("/nope", "/health/", "/get_frame", "/HEALTH", "/timeline/x"):
        response = answer(parts, target)
        assert response.status == 404, target
        assert "no such endpoint" in json.loads(response.body)["detail"]
    assert parts.client_errors.total == {404: 5}


@pytest.mark.parametrize(
    ("target", "method", "allow"),
    [
        ("/health", "POST", "GET, HEAD"),
        ("/metrics", "DELETE", "GET, HEAD"),
        ("/get_frame/1", "PUT", "GET, HEAD"),
        ("/timeline", "POST", "GET, HEAD, PUT, DELETE"),
        ("/", "POST", "GET, HEAD"),
        ("/viewer.css", "PUT", "GET, HEAD"),
        ("/debug/timeline", "POST", "GET, HEAD"),
        ("/debug/events", "PATCH", "GET, HEAD"),
    ],
)
def test_a_method_a_path_does_not_take_is_405_with_allow(parts: AppParts, target: str, method: str, allow: str) -> None:
    response = answer(parts, target, method)
    assert response.status == 405 and header(response, "Allow") == allow
    assert parts.admission.counters["admitted"] == 0 and parts.stats.summary == {}


def test_head_is_taken_wherever_get_is(parts: AppParts) -> None:
    for target in ("/health", "/metrics", "/", "/timeline", "/debug/events", "/viewer.js"):
        assert answer(parts, target, "HEAD").status == 200, target


# --- query parsing (output_spec) ------------------------------------------------------------------


def test_one_side_given_keeps_the_canvas_aspect_and_none_gives_the_canvas() -> None:
    config = Config()
    assert output_spec({}, canvas(), config) == OutputSpec(1280, 720, config.jpeg_quality, "jpeg")
    assert output_spec({"width": "640"}, canvas(), config) == OutputSpec(640, 360, config.jpeg_quality, "jpeg")
    assert output_spec({"height": "90"}, canvas(), config) == OutputSpec(160, 90, config.jpeg_quality, "jpeg")
    assert output_spec({"width": "100", "height": "100"}, canvas(), config).width == 100
    assert output_spec({"width": "1"}, canvas(), config) == OutputSpec(
        1, 1, config.jpeg_quality, "jpeg"
    )  # never 0 high
    assert output_spec({"width": ""}, canvas(), config).width == 1280  # blank is "not given"


def test_quality_and_format_and_png_has_one_key_for_every_quality() -> None:
    config = Config()
    assert output_spec({"quality": "40"}, canvas(), config).quality == 40
    assert output_spec({"format": "JPG", "quality": "95"}, canvas(), config) == OutputSpec(1280, 720, 95, "jpeg")
    assert output_spec({"format": "png", "quality": "40"}, canvas(), config) == output_spec(
        {"format": "png"}, canvas(), config
    )
    assert output_spec({"format": "png"}, canvas(), config) == OutputSpec(1280, 720, 0, "png")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"width": "abc"}, "width"),
        ({"width": "0"}, "width"),
        ({"height": "-5"}, "height"),
        ({"width": "99999"}, "width"),
        ({"quality": "0"}, "quality"),
        ({"quality": "96"}, "quality"),
        ({"format": "gif"}, "format"),
        ({"width": "3.5"}, "width"),
    ],
)
def test_a_bad_query_value_is_a_400_naming_its_field(query: dict[str, str], field: str) -> None:
    with pytest.raises(BadRequest) as refused:
        output_spec(query, canvas(), Config())
    assert refused.value.extra["field"] == field


def test_an_output_over_the_pixel_limit_is_refused() -> None:
    config = Config(max_output_pixels=640 * 360)
    assert output_spec({"width": "640"}, canvas(), config).height == 360  # exactly the limit
    with pytest.raises(BadRequest, match="exceeds"):
        output_spec({"width": "641"}, canvas(), config)


def test_a_query_mistake_on_a_frame_request_is_answered_400_without_a_render(parts: AppParts) -> None:
    response = answer(parts, "/get_frame/1?quality=500")
    assert response.status == 400 and json.loads(response.body)["field"] == "quality" and not response.close
    assert parts.admission.counters["admitted"] == 0


# --- PUT and DELETE /timeline ---------------------------------------------------------------------


def doc(source: Path, end: int = 1000) -> bytes:
    return json.dumps(
        {"tracks": [{"clips": [{"source_path": str(source), "start_on_track_ms": 0, "end_on_track_ms": end}]}]}
    ).encode()


def test_a_put_timeline_is_served_until_deleted(parts: AppParts) -> None:
    still = Path(parts.project.source.path).parent / "red.png"
    before = json.loads(answer(parts, "/timeline").body)
    put = answer(parts, "/timeline", "PUT", doc(still, 2000))
    assert put.status == 200
    summary = json.loads(put.body)
    assert summary["clips"] == 1 and summary["total_frames"] == 60 and summary["revision"] != before["revision"]
    assert json.loads(answer(parts, "/timeline").body)["revision"] == summary["revision"]
    deleted = answer(parts, "/timeline", "DELETE")
    assert json.loads(deleted.body) == {"source": "database", "path": parts.project.source.path}
    assert json.loads(answer(parts, "/timeline").body)["revision"] == before["revision"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, "timeline"),
        (b"[" * 100_000, 400, "timeline"),
        (b"", 400, None),
        (b'{"tracks": 5}', 400, None),
    ],
)
def test_a_bad_timeline_body_is_a_4xx_and_the_timeline_stays(
    parts: AppParts, body: bytes, status: int, field: str | None
) -> None:
    revision = json.loads(answer(parts, "/timeline").body)["revision"]
    response = answer(parts, "/timeline", "PUT", body)
    assert response.status == status, response.body
    if field:
        assert json.loads(response.body)["field"] == field
    assert parts.project.source.override is None
    assert json.loads(answer(parts, "/timeline").body)["revision"] == revision


def test_a_media_path_outside_the_roots_is_refused_403(parts: AppParts, tmp_path: Path) -> None:
    response = answer(parts, "/timeline", "PUT", doc(Path("/etc/passwd")))
    assert response.status == 403, response.body
    assert parts.project.source.override is None and parts.client_errors.total == {403: 1}


def test_a_timeline_over_the_clip_limit_is_refused(tmp_path: Path) -> None:
    parts = AppParts(tmp_path / "none.sqlite", max_timeline_clips=2)
    try:
        clips = [{"source_path": str(tmp_path / "x.png"), "start_on_track_ms": 0, "end_on_track_ms": 10}] * 3
        response = answer(parts, "/timeline", "PUT", json.dumps({"tracks": [{"clips": clips}]}).encode())
        assert 400 <= response.status < 500 and parts.project.source.override is None, response.body
    finally:
        parts.close()


# --- the one error boundary -----------------------------------------------------------------------


def test_a_bug_in_a_route_is_a_500_logged_and_the_routes_keep_serving(parts: AppParts) -> None:
    def broken() -> dict[str, Any]:
        raise KeyError("oops")

    parts.routes.health = broken
    response = answer(parts, "/health")
    assert response.status == 500 and json.loads(response.body)["detail"] == "internal error: KeyError"
    logged = [e for e in parts.log.recent if e["event"] == "protocol_error"]
    assert len(logged) == 1 and "/health" in logged[0]["message"] and "KeyError" in logged[0]["message"]
    assert parts.client_errors.total == {}  # the daemon's fault, not the client's
    assert answer(parts, "/metrics").status == 200


def test_a_cancelled_request_is_not_turned_into_an_answer(parts: AppParts) -> None:
    async def cancelled() -> dict[str, Any]:
        raise asyncio.CancelledError

    def route_cancelled() -> Awaitable[Response]:
        parts.routes.offload.run = lambda *a, **k: cancelled()  # type: ignore[method-assign]
        return parts.routes.handle(get("/timeline"))

    with pytest.raises(asyncio.CancelledError):
        run(route_cancelled())


def test_a_frame_once_stopped_is_refused_503_with_retry_after(parts: AppParts) -> None:
    parts.lifecycle.enter(Lifecycle.DRAINING)
    parts.lifecycle.enter(Lifecycle.STOPPED)
    response = answer(parts, "/get_frame/1")
    assert response.status == 503 and header(response, "Retry-After") is not None and response.limit == "stopping"
    assert parts.refused == [("stopping", "the daemon is stopping")] and parts.admission.counters["admitted"] == 0
    assert parts.client_errors.total == {}  # a 5xx is not the client's error
    assert answer(parts, "/health").status == 200  # only frames are refused by the stop


def test_a_frame_while_draining_is_still_rendered(parts: AppParts) -> None:
    parts.lifecycle.enter(Lifecycle.DRAINING)

    async def scenario() -> Response:
        served = asyncio.ensure_future(parts.serve())
        response = await parts.routes.handle(get("/get_frame/1"))
        await served
        return response

    assert run(scenario()).status == 200 and parts.refused == []

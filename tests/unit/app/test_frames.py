"""app/frames.py driven directly: ETag and 304, the frame cache, the revision in the key, render-ahead
planning, overload answered 503 with Retry-After. The render path is the real Dispatcher over a pool
that is never started: the test takes admitted jobs and finishes them (tests/support/app_parts.py)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from flipedit_previewd.app.frames import etag_matches
from flipedit_previewd.common.errors import Overloaded, RenderFailed
from flipedit_previewd.demo.fixtures import set_clip_rect
from flipedit_previewd.http.protocol import Request, Response
from flipedit_previewd.render.admission import retry_after
from flipedit_previewd.render.dispatch import frame_etag
from flipedit_previewd.worker.output import OutputSpec
from tests.support.app_parts import AppParts, get
from tests.support.helpers import run, still_project


def header(response: Response, name: str) -> str | None:
    return next((value for key, value in response.headers if key.lower() == name.lower()), None)


async def rendered(parts: AppParts, request: Request, frame: int, body: bytes = b"frame-bytes") -> Response:
    """``request`` through the frame use-case, its render (if one is admitted) done by the test as the worker."""
    admitted = parts.admission.counters["admitted"]
    parts.admission.bind(asyncio.get_running_loop())
    answer = asyncio.ensure_future(parts.frames.get_frame(request, frame, "test"))
    while not answer.done() and parts.admission.counters["admitted"] == admitted:
        await asyncio.sleep(0)
    if not answer.done():
        await parts.serve(body)
    return await answer


def frame(parts: AppParts, target: str, number: int, **headers: str) -> Response:
    return run(rendered(parts, get(target, **headers), number))


def etag_of(parts: AppParts, number: int, spec: OutputSpec) -> str:
    return frame_etag(parts.project.current(), number, spec)


# --- a render, its ETag and 304 -------------------------------------------------------------------


def test_a_frame_is_rendered_once_and_answered_with_its_strong_etag(parts: AppParts) -> None:
    response = frame(parts, "/get_frame/5?width=640", 5)
    spec = OutputSpec(640, 360, parts.config.jpeg_quality, "jpeg")
    assert response.status == 200 and response.body == b"frame-bytes" and response.content_type == "image/jpeg"
    assert header(response, "ETag") == etag_of(parts, 5, spec)
    assert header(response, "X-Cache") == "miss" and header(response, "Cache-Control") == "no-cache"
    assert parts.admission.counters["admitted"] == 1 and parts.stats.summary == {"rendered": 1}
    assert list(parts.stats.latencies) and parts.log.recent[-1]["event"] == "request"


def test_if_none_match_with_the_current_etag_is_a_304_without_a_render(parts: AppParts) -> None:
    etag = header(frame(parts, "/get_frame/5", 5), "ETag")
    assert etag is not None
    for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = frame(parts, "/get_frame/5", 5, if_none_match=sent)
        assert response.status == 304 and response.body == b"", sent
        assert ("ETag", etag) in response.headers and ("Cache-Control", "no-cache") in response.headers
    assert parts.admission.counters["admitted"] == 1 and parts.stats.summary["not_modified"] == 4


def test_another_frames_etag_does_not_match() -> None:
    assert not etag_matches("", '"r-1-64x36-q85-jpeg"')
    assert not etag_matches('"r-1-64x36-q85-jpeg"', '"r-11-64x36-q85-jpeg"')
    assert not etag_matches('"r-1-64x36-q85-jpeg"', '"r-1-64x36-q85-png"')
    assert etag_matches(' "a" ,W/"r-1-64x36-q85-jpeg"', '"r-1-64x36-q85-jpeg"')


def test_a_stale_if_none_match_gets_the_frame(parts: AppParts) -> None:
    response = frame(parts, "/get_frame/5", 5, if_none_match='"an-old-revision-5-1280x720-q85-jpeg"')
    assert response.status == 200 and response.body == b"frame-bytes"


# --- the frame cache ------------------------------------------------------------------------------


def test_the_same_frame_again_is_a_cache_hit_without_a_render(parts: AppParts) -> None:
    first = frame(parts, "/get_frame/5", 5)
    again = frame(parts, "/get_frame/5", 5, x_request_id="editor-42")
    assert again.status == 200 and again.body == first.body and header(again, "ETag") == header(first, "ETag")
    assert header(again, "X-Cache") == "hit" and header(again, "X-Request-Id") == "editor-42"
    assert parts.admission.counters["admitted"] == 1 and parts.stats.summary == {"rendered": 1, "cached": 1}


@pytest.mark.parametrize(
    "other", ["/get_frame/6", "/get_frame/5?width=640", "/get_frame/5?format=png", "/get_frame/5?quality=50"]
)
def test_another_frame_or_output_is_not_the_cached_one(parts: AppParts, other: str) -> None:
    frame(parts, "/get_frame/5", 5)
    number = int(other.split("/")[2].split("?")[0])
    response = frame(parts, other, number)
    assert header(response, "X-Cache") == "miss" and parts.admission.counters["admitted"] == 2


def test_the_timelines_revision_is_in_the_key_so_an_edit_is_never_served_stale(parts: AppParts) -> None:
    before = frame(parts, "/get_frame/5", 5, body=b"old")
    conn = sqlite3.connect(parts.project.source.path)
    set_clip_rect(conn, 3, 1, (0, 0, 50, 50))  # the editor moves the clip
    conn.commit()
    conn.close()
    after = run(rendered(parts, get("/get_frame/5"), 5, b"new"))
    assert header(after, "X-Cache") == "miss" and after.body == b"new"
    assert header(after, "ETag") != header(before, "ETag")
    assert (
        frame(parts, "/get_frame/5", 5, if_none_match=str(header(before, "ETag"))).status == 200
    )  # the old ETag is stale


def test_an_unsafe_request_id_is_replaced(parts: AppParts) -> None:
    response = frame(parts, "/get_frame/5", 5, x_request_id="bad id\x1b[31m")
    given = header(response, "X-Request-Id")
    assert given is not None and given != "bad id\x1b[31m" and given.endswith("-1")


# --- overload: 503 with Retry-After ---------------------------------------------------------------


def test_a_full_queue_is_a_503_with_retry_after_and_begins_an_overload(tmp_path: Path) -> None:
    parts = AppParts(still_project(tmp_path), workers=1, queue_size=1)

    async def scenario() -> tuple[Response, Response]:
        queued = await parts.queued("/get_frame/1")
        refused = await parts.routes.handle(get("/get_frame/2"))
        await parts.serve()
        return refused, await queued

    try:
        refused, queued = run(scenario())
        assert refused.status == 503 and refused.limit == "queue"
        assert header(refused, "Retry-After") == str(retry_after(backlog=1, rate=0.0, capacity=1))
        assert json.loads(refused.body)["limit"] == "queue"
        assert queued.status == 200  # the one admitted is still answered
        assert parts.stats.overloaded_since is not None and parts.stats.summary.get("rejected") == 1
        assert parts.rejections.total == 1 and [e["event"] for e in parts.log.recent].count("overload_began") == 1
        assert parts.client_errors.total == {}  # the daemon's limit, not the client's mistake
    finally:
        parts.close()


def test_a_failed_render_is_answered_with_its_status_and_journaled(parts: AppParts) -> None:
    async def scenario() -> Response:
        answer = await parts.queued("/get_frame/3")
        job = parts.admission.take(threading.Event())
        assert job is not None
        parts.admission.finish(job, error=RenderFailed("decoder broke"))
        return await answer

    response = run(scenario())
    assert response.status == 500 and json.loads(response.body)["detail"] == "decoder broke"
    entry = parts.log.recent[-1]
    assert entry["event"] == "request" and "-> 500 failed" in entry["message"]
    assert parts.stats.summary == {"failed": 1} and not parts.stats.latencies


# --- render-ahead planning ------------------------------------------------------------------------


def walk(parts: AppParts, frames: range, query: str = "?width=320") -> list[Response]:
    return [frame(parts, f"/get_frame/{n}{query}", n) for n in frames]


def ahead_frames(parts: AppParts) -> list[int]:
    return sorted(key[0] for key in parts.admission.ahead)


def test_a_playback_is_followed_by_render_ahead_jobs_for_the_next_frames(parts: AppParts) -> None:
    walk(parts, range(0, 4))
    planned = ahead_frames(parts)
    assert planned and planned[0] == 4 and planned == list(range(4, 4 + len(planned)))
    assert len(planned) <= parts.config.render_ahead_frames
    assert all(key[1] == OutputSpec(320, 180, parts.config.jpeg_quality, "jpeg") for key in parts.admission.ahead)
    assert parts.ahead.counters["planned"] >= len(planned) and parts.admission.ahead_limit == 1  # workers - 1


def test_frames_already_cached_are_not_planned(parts: AppParts) -> None:
    spec = OutputSpec(320, 180, parts.config.jpeg_quality, "jpeg")
    parts.cache.put(etag_of(parts, 5, spec), (b"x", "image/jpeg", ""), 1)
    walk(parts, range(0, 4))
    assert 5 not in ahead_frames(parts) and 6 in ahead_frames(parts)


def test_no_render_ahead_during_an_overload(parts: AppParts) -> None:
    walk(parts, range(0, 3))
    parts.stats.note_rejection()  # requests are being refused
    walk(parts, range(3, 4))
    assert ahead_frames(parts) == [] and parts.ahead.counters["suppressed"] >= 1


def test_render_ahead_switched_off_plans_nothing(tmp_path: Path) -> None:
    parts = AppParts(still_project(tmp_path), render_ahead=False)
    try:
        walk(parts, range(0, 6))
        assert ahead_frames(parts) == [] and parts.ahead.counters["planned"] == 0 and parts.admission.ahead_limit == 0
    finally:
        parts.close()


def test_an_edit_drops_the_jobs_planned_for_the_old_revision(parts: AppParts) -> None:
    walk(parts, range(0, 4))
    assert ahead_frames(parts)
    parts.project.source.set_json(None)  # no change yet: the same revision keeps its plan
    conn = sqlite3.connect(parts.project.source.path)
    set_clip_rect(conn, 3, 1, (0, 0, 50, 50))
    conn.commit()
    conn.close()
    revision = parts.project.current().revision
    frame(parts, "/get_frame/20?width=320", 20)  # one request of the new revision: no gesture yet
    assert all(job.revision == revision for job in parts.admission.ahead.values())


def test_an_overload_exception_is_the_503_path_not_a_bug(parts: AppParts) -> None:
    async def scenario() -> Response:
        async def refuse(*args: object) -> None:
            raise Overloaded("queue", 3)

        parts.frames.dispatcher.render = refuse  # type: ignore[method-assign, assignment]
        return await parts.routes.handle(get("/get_frame/1"))

    response = run(scenario())
    assert response.status == 503 and header(response, "Retry-After") == "3"
    assert parts.stats.summary == {"rejected": 1} and parts.rejections.total == 1
    assert not any(e["event"] == "protocol_error" for e in parts.log.recent)

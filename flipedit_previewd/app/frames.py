"""GET /get_frame/<n>, the use case: ETag and 304, the frame cache, render-ahead planning, the
request's log entry; the render itself goes one way through the dispatcher (dispatch.py).

Runs on the event loop only. What it needs from the service around it (the current timeline,
query parsing, the request stats) is the narrow ``FrameHost`` interface.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from collections import OrderedDict
from typing import Any, Protocol

from flipedit_previewd.app.state import RequestStats
from flipedit_previewd.common.errors import HTTPError, Overloaded
from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.common.metrics import Metrics
from flipedit_previewd.common.rejections import RejectionSummary
from flipedit_previewd.common.textsafe import is_safe_token
from flipedit_previewd.config.schema import Config
from flipedit_previewd.http.protocol import Request, Response
from flipedit_previewd.render.admission import UNREAD
from flipedit_previewd.render.dispatch import Dispatcher, FrameResult, HeavyFrameRefused, frame_etag
from flipedit_previewd.timeline.model import Timeline
from flipedit_previewd.worker.output import OutputSpec

RECENT_PROBLEMS = 20  # sources listed in /health's media_problems
AHEAD_TTL_S = 1.0  # a render-ahead job not started within this is no longer ahead of anything


class FrameHost(Protocol):
    config: Config
    log: EventLog
    metrics: Metrics
    rejections: RejectionSummary
    stats: RequestStats

    async def timeline(self) -> Timeline: ...

    async def timeline_unless_changed(self) -> Timeline | None:
        """The current timeline, or None when the database changed since its last read (a render will read it)."""
        ...

    def last_timeline(self) -> Timeline:
        """The last timeline read, without looking at the files (never blocks)."""
        ...

    def output_spec(self, request: Request, timeline: Timeline) -> OutputSpec: ...


# A frame's bytes are fixed by its strong ETag (timeline revision, frame, output), but the timeline can change
# at any moment: a browser or proxy may keep a frame, yet must ask again each time (If-None-Match, answered 304
# at no render cost) rather than show a stale one. Sent on the 200 and, as RFC 9110 asks, on the 304.
FRAME_CACHING = ("Cache-Control", "no-cache")


def etag_matches(header: str, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


class FrameService:
    def __init__(self, host: FrameHost, dispatcher: Dispatcher) -> None:
        self.host = host
        self.dispatcher = dispatcher
        self.admission = dispatcher.admission
        self.cache = dispatcher.cache
        self.ahead = dispatcher.ahead
        self._request_seq = 0
        # Frame requests ``refuse_now`` let through whose task has not submitted them yet, by id (a Request is not
        # hashable); weak: one whose task never runs (its connection lost first) goes with its request.
        self._incoming: dict[int, weakref.ref[Request]] = {}
        self._problems_reported: set[tuple[str, str]] = set()  # once per daemon, whichever worker met it
        self._recent_problems: OrderedDict[str, tuple[str, float]] = (
            OrderedDict()
        )  # source -> (problem, when): /health, doctor
        dispatcher.hooks.media_problem = self._media_problem
        self.apply(host.config)

    def apply(self, config: Config) -> None:
        """At start and on reload: render-ahead, the render budget, how long heavy frames stay refused."""
        self.ahead.frames = config.render_ahead_frames if config.render_ahead else 0
        limit = config.render_ahead_workers or max(1, config.workers - 1)
        self.admission.ahead_limit = min(limit, config.workers) if self.ahead.frames else 0
        if not self.ahead.frames:
            self.admission.retain_ahead(lambda p: False)
        # kept below hang_threshold so a heavy render never looks like a hang
        self.dispatcher.budget = float(min(config.render_budget, config.hang_threshold * 0.8))
        self.dispatcher.heavy.ttl = config.heavy_frame_ttl

    def render_ahead_stats(self) -> dict[str, Any]:
        c = self.admission.counters
        return {
            "enabled": bool(self.ahead.frames),
            "frames": self.ahead.frames,
            "workers": self.admission.ahead_limit,
            "gestures": len(self.ahead.tracks),
            "queued": len(self.admission.ahead),
            "running": self.admission.ahead_running(),
            **self.ahead.counters,
            "started": c["ahead_started"],
            "taken_over": c["ahead_taken_over"],
            "dropped": c["ahead_dropped"],
            "hits": self.cache.ahead_hits,
            "wasted": self.cache.ahead_wasted,
            "contended": self.ahead.contended,
        }

    def _media_problem(self, path: str, problem: str) -> None:
        if (path, problem) in self._problems_reported:
            return
        if len(self._problems_reported) > 10_000:
            self._problems_reported.clear()
        self._problems_reported.add((path, problem))
        self._recent_problems.pop(path, None)
        self._recent_problems[path] = (problem, time.monotonic())
        while len(self._recent_problems) > RECENT_PROBLEMS:
            self._recent_problems.popitem(last=False)
        self.host.log.emit(
            "media_problem", f"media problem in {path}: {problem}", "warning", SOURCE_PATH=path, PROBLEM=problem
        )

    def media_problems(self) -> list[dict[str, Any]]:
        """The sources whose latest render met a problem, newest last (each also journalled once)."""
        now = time.monotonic()
        return [
            {"path": path, "problem": problem, "age_s": round(now - when, 1)}
            for path, (problem, when) in self._recent_problems.items()
        ]

    def _plan_ahead(self, frame: int, spec: OutputSpec, timeline: Timeline) -> None:
        """For every real frame request: follow a playback or scrub with render-ahead jobs."""
        if not self.ahead.frames or not self.cache.capacity:
            return
        plan = self.ahead.observe(time.monotonic(), spec, frame, timeline.revision, timeline.total_frames)
        revision = timeline.revision
        if plan is None:
            self.admission.retain_ahead(lambda p: p.revision == revision)
            return
        if (
            self.host.stats.overloaded_since is not None
            or self.admission.queue
            or self.ahead.contended
            or len(self.admission.in_flight) - self.admission.ahead_running() >= self.host.config.workers
        ):
            # Real work is waiting, being refused, occupies every worker now (the first requests of a
            # flood, before any is refused) or has kept them busy lately: a guess would take its CPU.
            self.ahead.counters["suppressed"] += 1
            self.admission.retain_ahead(lambda p: False)
            return
        wanted = {(f, spec) for f in plan.frames}
        self.admission.retain_ahead(lambda p: p.revision == revision and (p.key[1] != spec or p.key in wanted))
        for f in plan.frames:
            if frame_etag(timeline, f, spec) not in self.cache:
                if self.admission.speculate((f, spec), revision, AHEAD_TTL_S, 4 * self.ahead.frames):
                    self.ahead.counters["planned"] += 1

    def _not_modified(self, etag: str, spec: OutputSpec) -> Response:
        self.host.stats.count("not_modified")
        return Response(304, b"", spec.content_type, headers=[("ETag", etag), FRAME_CACHING])

    def _let_through(self, request: Request) -> None:
        key = id(request)
        self._incoming[key] = weakref.ref(request, lambda _ref: self._incoming.pop(key, None))

    def refuse_now(self, request: Request, frame: int) -> Response | None:
        """On the connection's data_received, before a task is made: the 503 that ``get_frame`` would answer at
        once because the render queue is full and holds no job of this frame to join; None otherwise (a
        request with If-None-Match or a frame in the cache is served as usual: it may need no render).

        Counted as ``get_frame`` counts a refusal. The key is worked out against the last timeline read:
        the output size depends only on the canvas, which a database change does not move.
        """
        admission = self.admission
        # Requests let through but not yet submitted count against the queue: under a flood, hundreds arrive in
        # one turn of the loop before any of their tasks runs; all but the queue's room are refused here, at once.
        if len(admission.queue) + len(self._incoming) < admission.queue_size or request.headers.get("if-none-match"):
            self._let_through(request)
            return None
        begun = time.monotonic()
        timeline = self.host.last_timeline()
        spec = self.host.output_spec(request, timeline)
        if (frame, spec) in admission.queue or frame_etag(timeline, frame, spec) in self.cache:
            self._let_through(request)
            return None
        error = admission.reject("queue", f"render queue full ({admission.queue_size} waiting)")
        host = self.host
        host.stats.count("rejected")
        host.metrics.total_time.observe(time.monotonic() - begun)
        host.stats.note_rejection()
        host.rejections.add("rejected", "queue")
        return Response.from_error(error)

    async def get_frame(self, request: Request, frame: int, client: str) -> Response:
        try:
            return await self._get_frame(request, frame, client)
        finally:
            self._incoming.pop(id(request), None)

    async def _get_frame(self, request: Request, frame: int, client: str) -> Response:
        host = self.host
        begun = time.monotonic()
        self._request_seq += 1
        given = request.headers.get("x-request-id", "")
        request_id = given if is_safe_token(given) else f"{os.getpid()}-{self._request_seq}"
        # None: the database changed and nobody has read it yet. The render reads it when it starts (at least
        # the revision of now, as every request must get), and finds the frame in the cache if it is there.
        timeline = await host.timeline_unless_changed()
        spec = host.output_spec(request, timeline or host.last_timeline())  # the canvas: no database change moves it
        fields: dict[str, Any] = {
            "REQUEST_ID": request_id,
            "METHOD": request.method,
            "PATH": request.target,
            "FRAME": frame,
            "CLIENT": client,
        }
        revision, etag = UNREAD, ""
        if timeline is not None:
            revision, etag = timeline.revision, frame_etag(timeline, frame, spec)
            self._plan_ahead(frame, spec, timeline)
            if etag_matches(request.headers.get("if-none-match", ""), etag):
                return self._not_modified(etag, spec)
            cached = self.cache.get(etag)
            if cached is not None:
                host.stats.count("cached")
                host.stats.latencies.append((time.monotonic() - begun) * 1000)
                return Response(
                    200,
                    cached[0],
                    cached[1],
                    headers=[
                        ("ETag", etag),
                        FRAME_CACHING,
                        ("X-Cache", "hit"),
                        ("X-Request-Id", request_id),
                        *source_header(cached[2]),
                    ],
                )
        outcome = "failed"
        status = 500
        refused_at_once = False
        result: FrameResult | None = None
        try:
            self._incoming.pop(id(request), None)  # in the queue from here (render submits before it first waits)
            result = await self.dispatcher.render((frame, spec), revision, etag)
            outcome, status = ("shared" if result.shared else "rendered"), 200
        except asyncio.CancelledError:
            outcome, status = "cancelled", 499
            raise
        except Overloaded as exc:
            outcome, status = ("timeout" if exc.limit == "deadline" else "rejected"), 503
            fields["LIMIT"] = exc.limit
            raise
        except HTTPError as exc:
            outcome, status = ("timeout" if exc.status == 504 else "failed"), exc.status
            refused_at_once = isinstance(exc, HeavyFrameRefused)
            fields["ERROR"] = exc.detail
            if exc.extra.get("limit"):
                fields["LIMIT"] = exc.extra["limit"]
            raise
        finally:
            total_ms = (time.monotonic() - begun) * 1000
            host.stats.count(outcome)
            host.metrics.total_time.observe(total_ms / 1000)
            if status == 200:
                host.stats.latencies.append(total_ms)
            if outcome == "rejected":
                host.stats.note_rejection()
            fields.update(
                STATUS=status,
                OUTCOME=outcome,
                TOTAL_MS=round(total_ms, 2),
                QUEUE_DEPTH=len(self.admission.queue),
                IN_FLIGHT=len(self.admission.in_flight),
            )
            if result is not None:
                if not result.cached:
                    self.ahead.note_real_render(result.queue_ms)
                fields.update(
                    QUEUE_MS=round(result.queue_ms, 2),
                    RENDER_MS=round(result.render_ms, 2),
                    BYTES=len(result.body),
                    CACHE="hit" if result.cached else "miss",
                )
            if status == 503 or refused_at_once:
                # refused without a render: counted, and summarised once a second (rejections.py)
                host.rejections.add(outcome, str(fields.get("LIMIT", "other")))
            else:
                host.log.emit(
                    "request",
                    f"{request.method} {request.target} -> {status} {outcome} in {total_ms:.1f} ms",
                    "info" if status < 500 else "warning",
                    **fields,
                )
        if timeline is None and etag_matches(request.headers.get("if-none-match", ""), result.etag):
            return self._not_modified(result.etag, spec)  # the change left this frame as the client has it
        return Response(
            200,
            result.body,
            result.content_type,
            headers=[
                ("ETag", result.etag),
                FRAME_CACHING,
                ("X-Cache", "hit" if result.cached else "miss"),
                ("X-Request-Id", request_id),
                ("X-Render-Ms", f"{result.render_ms:.1f}"),
                ("X-Queue-Ms", f"{result.queue_ms:.1f}"),
                *source_header(result.source),
            ],
        )


def source_header(source: str) -> list[tuple[str, str]]:
    """``X-Preview-Source: proxy|original|mixed``: where the frame's video pictures came from (none: no header)."""
    return [("X-Preview-Source", source)] if source else []

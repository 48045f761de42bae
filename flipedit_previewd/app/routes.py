"""The routes: which path does what, query parsing, PUT /timeline, and the one error boundary.

``Routes.handle`` is the only place where an ``HTTPError`` (or a bug) becomes a response; a
route raises, it never builds an error answer itself. Frames go to the frame use-case
(``frames.FrameService.get_frame``); everything slow on untrusted input (parsing a timeline, checking its
paths, serialising a large one) runs in the offload threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from flipedit_previewd import __version__
from flipedit_previewd.app import viewer
from flipedit_previewd.app.frames import FrameService
from flipedit_previewd.app.project import Project
from flipedit_previewd.app.state import RequestStats, RunningConfig
from flipedit_previewd.common.errors import (
    BadRequest,
    DomainError,
    HTTPError,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    RenderFailed,
    as_http,
)
from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.common.metrics import Metrics
from flipedit_previewd.common.offload import BoundedOffload
from flipedit_previewd.common.rejections import ClientErrors
from flipedit_previewd.config.schema import Config
from flipedit_previewd.config.values import MAX_SIDE  # one bound for a canvas side and for a requested output side
from flipedit_previewd.http.lifecycle import Lifecycle, LifecycleState
from flipedit_previewd.http.protocol import Request, Response
from flipedit_previewd.proxy.manager import ProxyManager
from flipedit_previewd.render.dispatch import QueueSnapshot
from flipedit_previewd.timeline.model import Timeline, timeline_from_json
from flipedit_previewd.timeline.safety import check_timeline_paths
from flipedit_previewd.worker.output import OutputSpec

MAX_FRAME = 10_000_000
MAX_LISTED = 1000  # sources named in a POST /proxies?project= answer (the count is whole)
VIEWER_FILES = {
    "/viewer.js": (viewer.JS, "text/javascript; charset=utf-8"),
    "/viewer.css": (viewer.CSS, "text/css; charset=utf-8"),
    "/favicon.svg": (viewer.ICON, "image/svg+xml"),
    "/favicon.ico": (viewer.ICON, "image/svg+xml"),
}
# /health and /metrics describe this instant: no cache (browser, proxy) may keep or replay one. Frames have
# their own policy (``frames.FRAME_CACHING``: kept, but validated by ETag each time).
NO_STORE = ("Cache-Control", "no-store")


class Routes:
    """Which path does what, over the parts it is handed (never the service that composes them)."""

    def __init__(
        self,
        *,
        running: RunningConfig,
        lifecycle: LifecycleState,
        project: Project,
        frames: FrameService,
        snapshot: Callable[[], QueueSnapshot],
        stats: RequestStats,
        client_errors: ClientErrors,
        offload: BoundedOffload,
        metrics: Metrics,
        log: EventLog,
        health: Callable[[], dict[str, Any]],
        refuse: Callable[[str, str], Overloaded],
        proxies: ProxyManager | None = None,
    ) -> None:
        self.running = running
        self.lifecycle = lifecycle
        self.project = project
        self.frames = frames
        self.snapshot = snapshot
        self.stats = stats
        self.client_errors = client_errors
        self.offload = offload
        self.metrics = metrics
        self.log = log
        self.health = health  # the /health document (``health.Health.report``)
        self.refuse = refuse  # a 503 decided here (the stop), counted like admission's own (``Service.refuse``)
        self.proxy_manager = proxies  # /proxies (proxy/manager.py); None: no such endpoint

    async def handle(self, request: Request, client: str = "") -> Response:
        try:
            return await self._route(request, client)
        except (HTTPError, DomainError) as raised:
            answer = as_http(raised)  # a refused path or an invalid timeline: the one place they get a status
            if 400 <= answer.status < 500:
                self.client_errors.note(answer.status, f"{request.method} {request.target[:200]}: {answer.detail}")
                if request.path.startswith("/get_frame/"):  # a frame request all the same (a render's errors are 5xx)
                    self.metrics.requests.labels("client_error").inc()
            return Response.from_error(answer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary: log, answer 500, keep serving
            self.log.emit(
                "protocol_error",
                f"internal error on {request.target}: {type(exc).__name__}: {exc}",
                "err",
                PATH=request.target,
            )
            return Response.from_error(RenderFailed(f"internal error: {type(exc).__name__}"))

    def answer_now(self, request: Request, client: str = "") -> Response | None:
        """Synchronously (the connection's data_received): a frame refused at once for a full render queue, or None."""
        if (
            request.method not in ("GET", "HEAD")
            or not request.path.startswith("/get_frame/")
            or self.lifecycle.current is Lifecycle.STOPPED
        ):
            return None
        try:
            return self.frames.refuse_now(request, frame_index(request.path[len("/get_frame/") :]))
        except Exception:  # noqa: BLE001 - a bad frame number or query, anything else: ``handle`` answers it as always
            return None

    async def _route(self, request: Request, client: str) -> Response:
        project = self.project
        path = request.path
        method = request.method
        if path.startswith("/get_frame/"):
            _require(method, ("GET", "HEAD"))
            frame = frame_index(path[len("/get_frame/") :])
            if self.lifecycle.current is Lifecycle.STOPPED:
                raise self.refuse("stopping", "the daemon is stopping")
            return await self.frames.get_frame(request, frame, client)
        if path == "/health":
            _require(method, ("GET", "HEAD"))
            self.stats.count("health")
            return Response.json(200, self.health(), headers=[NO_STORE])
        if path == "/metrics":
            _require(method, ("GET", "HEAD"))
            return Response(
                200, self.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8", headers=[NO_STORE]
            )
        if path == "/debug/timeline":
            _require(method, ("GET", "HEAD"))
            timeline = await project.timeline()
            queue = self.snapshot()
            queue_stats = {"queue_size": queue.queued, "active_requests": queue.in_flight}
            return await self.offload.run(lambda: _large_json({**timeline.debug_json(), "queue_stats": queue_stats}))
        if path == "/timeline":
            _require(method, ("GET", "HEAD", "PUT", "DELETE"))
            if method == "PUT":
                return await self.put_timeline(request)
            if method == "DELETE":
                project.source.set_json(None)
                return Response.json(200, {"source": "database", "path": project.source.path})
            timeline = await project.timeline()
            return await self.offload.run(lambda: _large_json(timeline.to_json()))
        if path == "/":
            _require(method, ("GET", "HEAD"))
            if "text/html" in request.headers.get("accept", ""):
                return Response(200, viewer.HTML.encode(), "text/html; charset=utf-8", headers=list(viewer.HEADERS))
            return Response.json(
                200,
                {
                    "service": "flipedit-previewd",
                    "version": __version__,
                    "endpoints": [
                        "/get_frame/<n>",
                        "/health",
                        "/metrics",
                        "/debug/timeline",
                        "/debug/events",
                        "/timeline",
                        "/proxies",
                    ],
                },
            )
        if path in VIEWER_FILES:
            _require(method, ("GET", "HEAD"))
            body, kind = VIEWER_FILES[path]
            return Response(200, body.encode(), kind, headers=list(viewer.HEADERS))
        if path == "/proxies":
            _require(method, ("GET", "HEAD", "POST", "DELETE"))
            return await self.proxies(request)
        if path == "/debug/events":
            _require(method, ("GET", "HEAD"))
            return Response.json(200, {"events": list(self.log.recent)}, headers=[("Cache-Control", "no-store")])
        raise NotFound(f"no such endpoint: {path[:80]}")

    async def proxies(self, request: Request) -> Response:
        """GET: the store's proxies and the maker's state; POST: make proxies for every video of the current
        timeline now (``?all=1``: even those whose random frames are cheap); DELETE: remove every proxy."""
        manager = self.proxy_manager
        if manager is None:
            raise NotFound("no such endpoint: /proxies")
        if request.method == "POST":
            every = request.query.get("all", "") in ("1", "true", "yes")
            min_cost = 0.0 if every else None
            named = project_param(request.target)
            if named is not None:
                return await self.proxies_ahead(manager, named, min_cost)
            timeline = await self.project.timeline()
            queued = manager.note(timeline, force=True, min_cost=min_cost)
            return Response.json(200, {"queued": queued, "proxies": manager.snapshot()}, headers=[NO_STORE])
        if request.method == "DELETE":
            removed = await self.offload.run(manager.clear)
            return Response.json(200, {"removed": removed, "proxies": manager.snapshot()}, headers=[NO_STORE])
        listing = await self.offload.run(manager.listing)
        return Response.json(200, {"proxies": manager.snapshot(), "entries": listing}, headers=[NO_STORE])

    async def proxies_ahead(self, manager: ProxyManager, path: str, min_cost: float | None) -> Response:
        """POST /proxies?project=PATH: proxies for the videos of a project not served, made ahead of its opening.

        The database is read and checked off the loop (``Project.read_another``: the served project's
        read-only open, limits and path policy, with that project's media roots); a refusal is answered with its
        status by the boundary (``handle``) and is a ``proxy_project`` journal entry, as a build is."""
        shown = path[:300]
        try:
            another = await self.offload.run(self.project.read_another, path)
        except (HTTPError, DomainError) as refused:
            answer = as_http(refused)
            self.log.emit(
                "proxy_project",
                f"no proxies built ahead for project {shown!r}: HTTP {answer.status} {answer.detail}",
                "warning",
                PROJECT=shown,
                STATUS=answer.status,
                REASON=answer.detail,
            )
            raise
        sources = manager.note_another(another.timeline, another.roots, min_cost)
        self.log.emit(
            "proxy_project",
            f"building proxies ahead for project {shown!r}: {len(sources)} source(s) queued",
            "info",
            PROJECT=shown,
            QUEUED=len(sources),
            ROOTS=":".join(another.roots)[:1000],
        )
        return Response.json(
            200,
            {
                "project": another.path,
                "queued": len(sources),
                "sources": sources[:MAX_LISTED],
                "roots": list(another.roots),
                "proxies": manager.snapshot(),
            },
            headers=[NO_STORE],
        )

    async def put_timeline(self, request: Request) -> Response:
        timeline = await self.offload.run(self._parse_timeline, request.body)
        self.project.source.set_json(timeline)
        return Response.json(
            200, {"revision": timeline.revision, "clips": len(timeline.clips), "total_frames": timeline.total_frames}
        )

    def _parse_timeline(self, body: bytes) -> Timeline:
        """In an offload thread: parse, validate, check limits and paths (each can be slow on hostile input)."""
        config = self.running.config
        try:
            data = json.loads(body or b"null")
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"timeline: body is not valid JSON: {exc}", field="timeline") from None
        timeline = timeline_from_json(data, (config.canvas_width, config.canvas_height), config.frame_rate)
        self.project.check_limits(timeline)
        check_timeline_paths(timeline, self.project.allowed_roots(timeline))
        return timeline


def project_param(target: str) -> str | None:
    """``?project=PATH`` of a request target, or None without one. Bounded by the request line's limit (8 KiB,
    else 414 before any route) and decoded strictly: a path that is not UTF-8, or named twice, is a 400."""
    _, _, raw = target.partition("?")
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=16)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"query: not usable ({type(exc).__name__})", field="project") from None
    named = [value for name, value in pairs if name == "project"]
    if len(named) > 1:
        raise BadRequest("project: named more than once", field="project")
    return named[0] if named else None


def frame_index(raw: str) -> int:
    """/get_frame/<n>: a whole number from 0; anything else is the client's mistake (400, one message for all)."""
    try:
        frame = int(raw) if raw.isascii() and raw.lstrip("-").isdigit() else -1
    except ValueError:
        frame = -1
    if frame < 0:
        raise BadRequest(f"frame index must be a whole number from 0, not {raw[:40]!r}", field="frame")
    if frame > MAX_FRAME:
        raise BadRequest(f"frame index {frame} is absurd", field="frame")
    return frame


def output_spec(query: dict[str, str], timeline: Timeline, config: Config) -> OutputSpec:
    """?width=&height=&quality=&format= against the timeline's canvas and the configured limits."""
    cw, ch = timeline.canvas_width, timeline.canvas_height
    width = _int_param(query, "width", 1, MAX_SIDE)
    height = _int_param(query, "height", 1, MAX_SIDE)
    if width and not height:
        height = max(1, round(width * ch / cw))
    elif height and not width:
        width = max(1, round(height * cw / ch))
    width, height = width or cw, height or ch
    if width * height > config.max_output_pixels:
        raise BadRequest(f"output {width}x{height} exceeds {config.max_output_pixels} pixels", field="width")
    quality = _int_param(query, "quality", 1, 95) or config.jpeg_quality
    fmt = query.get("format", "jpeg").lower()
    if fmt not in ("jpeg", "jpg", "png"):
        raise BadRequest(f"format must be jpeg or png, not {fmt!r}", field="format")
    if fmt == "png":
        # PNG ignores quality: one cache key and ETag for every ?quality= (no 95 renders of the same bytes).
        return OutputSpec(width, height, 0, "png")
    return OutputSpec(width, height, quality, "jpeg")


def _large_json(payload: Any) -> Response:
    """A 200 JSON answer built by the pure-Python encoder (in an offload thread): the C encoder
    serialises a 50,000-clip timeline in one call holding the GIL, which stalls the event loop."""
    encoder = json.JSONEncoder(separators=(",", ":"))
    return Response(200, "".join(encoder.iterencode(payload)).encode(), "application/json")


def _require(method: str, allowed: tuple[str, ...]) -> None:
    if method not in allowed:
        raise MethodNotAllowed(f"{method} not allowed here; use {', '.join(allowed)}", allow=allowed)


def _int_param(query: dict[str, str], name: str, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {raw[:20]!r}", field=name) from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}", field=name)
    return value

"""Every message between the daemon's pool and a worker process, in the one module both ends import.

The pool (``render/pool.py``) and the worker's loop (``worker/main.py``) restate nothing: each message
is a dataclass here, like gunicorn's ``dirty/protocol.py``.

Daemon -> worker (``ToWorker``), pickled by ``Connection.send``: the daemon is the trusted side and the
worker has to trust it anyway.

- ``Start``: the first message, once: the worker's settings and the daemon's pid (orphan guard).
- ``TimelineHead`` then its ``Clips`` in pieces: a timeline, once per revision (``timeline_messages``).
- ``Job``: render one frame of the timeline last sent; ``speculative`` for render-ahead (run at a lower
  priority). The worker answers each one, in order.
- ``Confine``: lock the filesystem to these roots now (Landlock, as a first job would): a fresh process that
  replaces an idle one (``WorkerPool.recycle``) is confined before its first job, off that job's path.
- ``Stop``: end after the job in hand (a closed pipe ends the worker too).

Worker -> daemon (``FromWorker``): ``Hello`` once, after start and confinement (what the sandbox
holds), then one ``Rendered`` or ``Failed`` per job. A worker decodes untrusted media; once a crafted
file has taken one over, everything it sends is hostile. Unpickling that would hand it the daemon
(pickle runs code), so replies are plain data (``encode``/``decode``) the daemon parses with strict
checks: a header of fixed size (magic, version, the two lengths), a JSON object whose every field has
a type and a bound, and the encoded image as raw bytes after it. Any deviation raises ``WireError``;
the daemon then kills and replaces that worker and answers the job with an error, never crashes
(``render.pool.WorkerPool.render``).

A new reply field: a dataclass field with a default, written by ``encode``, checked (type and bound)
by ``decode``. Keys ``decode`` does not know are ignored, so the JSON object stays extensible.
"""

from __future__ import annotations

import enum
import json
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from flipedit_previewd.timeline.model import Clip, Timeline, Track
from flipedit_previewd.worker.output import OutputSpec

# --- daemon -> worker -----------------------------------------------------------------------------

# Timelines go to a worker once per revision, in pieces of this many clips: pickling 50,000 clips in
# one call holds the GIL (and so stalls the event loop) for a third of a second.
CLIPS_PER_MESSAGE = 500


@dataclass(frozen=True)
class WorkerSettings:
    source_cache_bytes: int
    max_source_pixels: int
    proxy_root: str = ""  # the proxy store a worker reads (proxy/); "" when proxies are off
    proxy_size: tuple[int, int] = (0, 0)  # the box proxies are made for; (0, 0): the canvas's size


@dataclass(frozen=True)
class Start:
    settings: WorkerSettings
    parent: int  # the daemon's pid: a worker whose parent changed (the daemon died) ends itself


@dataclass(frozen=True)
class TrackHead:
    id: int
    order: int
    visible: bool
    kind: str
    clips: int  # how many clips follow for this track, in ``Clips`` messages


@dataclass(frozen=True)
class TimelineHead:
    width: int
    height: int
    frame_rate: float
    source: str
    revision: str
    tracks: tuple[TrackHead, ...]
    note: str


@dataclass(frozen=True)
class Clips:
    clips: tuple[Clip, ...]  # at most CLIPS_PER_MESSAGE, of the tracks of the last head, in order


@dataclass(frozen=True)
class Job:
    job_id: int
    frame: int
    spec: OutputSpec
    revision: str  # of the timeline the worker must hold (the last one sent); else the job fails
    broken: frozenset[str] = frozenset()  # sources that crashed a worker twice: drawn as placeholders
    roots: tuple[str, ...] = ()  # where media may be read from, checked on each opened descriptor
    speculative: bool = False  # render-ahead: run at a lower priority, below the event loop and real renders


@dataclass(frozen=True)
class Confine:
    roots: tuple[str, ...]


@dataclass(frozen=True)
class Stop:
    pass


ToWorker = Start | TimelineHead | Clips | Job | Confine | Stop


def timeline_messages(timeline: Timeline) -> Iterator[TimelineHead | Clips]:
    """The messages that carry ``timeline`` to a worker: its head, then its clips track by track."""
    yield TimelineHead(
        timeline.canvas_width,
        timeline.canvas_height,
        timeline.frame_rate,
        timeline.source,
        timeline.revision,
        tuple(TrackHead(t.id, t.order, t.visible, t.type, len(t.clips)) for t in timeline.tracks),
        timeline.note,
    )
    for track in timeline.tracks:
        for start in range(0, len(track.clips), CLIPS_PER_MESSAGE):
            yield Clips(track.clips[start : start + CLIPS_PER_MESSAGE])


def receive_timeline(head: TimelineHead, receive: Callable[[], object]) -> Timeline:
    """The timeline ``head`` starts, its clips read with ``receive`` (the worker's end of ``timeline_messages``)."""
    tracks = []
    for track in head.tracks:
        clips: list[Clip] = []
        while len(clips) < track.clips:
            message = receive()
            if not isinstance(message, Clips):
                raise TypeError(f"expected the clips of a timeline, got {type(message).__name__}")
            clips.extend(message.clips)
        tracks.append(Track(track.id, track.order, track.visible, tuple(clips), track.kind))
    return Timeline(
        head.width, head.height, head.frame_rate, tuple(tracks), head.source, revision=head.revision, note=head.note
    )


def covers(locked: tuple[str, ...], roots: tuple[str, ...]) -> bool:
    """Whether a worker confined to ``locked`` may read everything under ``roots`` (all real paths).

    Both ends decide by it: the pool replaces a worker that does not cover a job's roots before
    sending the job, and the worker refuses such a job (Landlock rules can only be tightened).
    """
    return all(any(root == lock or root.startswith(lock.rstrip("/") + "/") for lock in locked) for root in roots)


# --- worker -> daemon ------------------------------------------------------------------------------

MAGIC = b"FEPW"
VERSION = 1
HEADER = struct.Struct("!4sBxxxII")  # magic, version, padding, metadata length, body length
MAX_META = 1 << 20  # problems of many clips fit easily; a JSON bomb does not
MAX_TEXT = 4096  # one message, one path, one problem
MAX_PROBLEMS = 1000
MAX_ATTEMPTS = 16
MAX_BODY = 256 << 20  # absolute; a reply is also held to its output size (body_limit)
CONTENT_TYPES = ("image/jpeg", "image/png")
SOURCES = ("", "proxy", "original", "mixed")  # Rendered.source: where the video pictures came from
IMAGE_MAGIC = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}


class WireError(ValueError):
    """A reply that is not what a sound worker sends: the worker is replaced."""


class Kind(enum.Enum):
    """A reply's ``kind`` in its JSON metadata."""

    HELLO = "hello"
    RENDERED = "ok"
    FAILED = "error"


@dataclass(frozen=True)
class Attempt:
    """One escape attempt of the test failpoint (``failpoints.py``): the daemon logs it as ``sandbox_violation``."""

    what: str
    refused: bool
    error: str = ""


@dataclass(frozen=True)
class Hello:
    """A worker's first reply, after start and confinement: what its sandbox holds (``confine.Status``)."""

    kind: ClassVar[Kind] = Kind.HELLO
    seccomp: bool
    landlock: bool
    landlock_abi: int
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"seccomp": self.seccomp, "landlock": self.landlock, "landlock_abi": self.landlock_abi, "why": self.why}


@dataclass(frozen=True)
class Rendered:
    kind: ClassVar[Kind] = Kind.RENDERED
    job_id: int
    render_ms: float
    content_type: str
    body: bytes
    problems: tuple[tuple[str, str], ...] = ()  # (path, problem)
    clips: int = 0
    attempts: tuple[Attempt, ...] = ()
    reach: tuple[int, int] | None = None  # timeline frames [from, to) the worker's decoder serves without a seek
    source: str = ""  # what the video frames came from (SOURCES): the X-Preview-Source header


@dataclass(frozen=True)
class Failed:
    kind: ClassVar[Kind] = Kind.FAILED
    job_id: int
    render_ms: float
    message: str  # what went wrong
    attempts: tuple[Attempt, ...] = ()


FromWorker = Hello | Rendered | Failed


def encode(reply: FromWorker) -> bytes:
    meta: dict[str, Any] = {"kind": reply.kind.value}
    body = b""
    attempts: tuple[Attempt, ...] = ()
    match reply:
        case Hello():
            meta.update(job_id=0, render_ms=0.0, sandbox=reply.as_dict())
        case Rendered():
            meta.update(
                job_id=reply.job_id,
                render_ms=reply.render_ms,
                content_type=reply.content_type,
                problems=[list(p) for p in reply.problems],
                clips=reply.clips,
            )
            if reply.reach is not None:
                meta["reach"] = list(reply.reach)
            if reply.source:
                meta["source"] = reply.source
            body, attempts = reply.body, reply.attempts
        case Failed():
            meta.update(job_id=reply.job_id, render_ms=reply.render_ms, message=reply.message[:MAX_TEXT])
            attempts = reply.attempts
    if attempts:
        meta["attempts"] = [{"what": a.what, "refused": a.refused, "error": a.error} for a in attempts]
    data = json.dumps(meta, separators=(",", ":")).encode()
    return HEADER.pack(MAGIC, VERSION, len(data), len(body)) + data + body


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise WireError(f"{what}: not a string of at most {MAX_TEXT} characters")
    return value


def _int(value: Any, what: str, high: int) -> int:
    if type(value) is not int or not 0 <= value <= high:
        raise WireError(f"{what}: not an integer in 0..{high}")
    return value


def decode(
    data: bytes, job_id: int | None = None, content_type: str | None = None, body_limit: int = MAX_BODY
) -> FromWorker:
    """Parse one reply; ``job_id``/``content_type`` are what the job asked for, ``body_limit`` its largest sane "
    "image."""
    if len(data) < HEADER.size:
        raise WireError("shorter than the header")
    magic, version, meta_len, body_len = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise WireError("not a reply of this version")
    if meta_len > MAX_META or body_len > min(body_limit, MAX_BODY) or HEADER.size + meta_len + body_len != len(data):
        raise WireError("lengths do not match the reply or exceed their limits")
    try:
        meta = json.loads(data[HEADER.size : HEADER.size + meta_len])
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise WireError(f"metadata is not JSON: {type(exc).__name__}") from None
    if not isinstance(meta, dict):
        raise WireError("metadata is not an object")
    try:
        kind = Kind(meta.get("kind"))
    except ValueError:
        raise WireError("unknown kind") from None
    answered = _int(meta.get("job_id"), "job_id", 2**63)
    if job_id is not None and kind is not Kind.HELLO and answered != job_id:
        raise WireError(f"answer to job {answered}, not to job {job_id}")
    render_ms = meta.get("render_ms")
    if (
        not isinstance(render_ms, (int, float))
        or isinstance(render_ms, bool)
        or not (math.isfinite(render_ms) and 0 <= render_ms < 1e9)
    ):
        raise WireError("render_ms: not a finite duration")
    body = data[HEADER.size + meta_len :]
    if kind is not Kind.RENDERED and body:
        raise WireError(f"a {kind.value} reply carries no image")
    attempts = _attempts(meta.get("attempts", []))
    if kind is Kind.RENDERED:
        return _rendered(meta, answered, float(render_ms), body, content_type, attempts)
    if kind is Kind.FAILED:
        return Failed(answered, float(render_ms), _text(meta.get("message"), "message"), attempts)
    sandbox = meta.get("sandbox")
    if (
        not isinstance(sandbox, dict)
        or type(sandbox.get("seccomp")) is not bool
        or type(sandbox.get("landlock")) is not bool
    ):
        raise WireError("sandbox: not a status")
    return Hello(
        sandbox["seccomp"],
        sandbox["landlock"],
        _int(sandbox.get("landlock_abi"), "landlock_abi", 1000),
        _text(sandbox.get("why"), "why"),
    )


def decode_answer(data: bytes, job_id: int, content_type: str, body_limit: int) -> Rendered | Failed:
    """The reply to job ``job_id``: a ``Rendered`` of the asked-for type and size, or a ``Failed``; never a hello."""
    reply = decode(data, job_id, content_type, body_limit)
    if isinstance(reply, Hello):
        raise WireError("a hello in answer to a job")
    return reply


def _rendered(
    meta: dict[str, Any], job_id: int, render_ms: float, body: bytes, asked: str | None, attempts: tuple[Attempt, ...]
) -> Rendered:
    content_type = _text(meta.get("content_type"), "content_type")
    if content_type not in CONTENT_TYPES or (asked is not None and content_type != asked):
        raise WireError("content_type: not the one asked for")
    if not body.startswith(IMAGE_MAGIC[content_type]):
        raise WireError("body: not an image of its content type")
    problems = meta.get("problems")
    if not isinstance(problems, list) or len(problems) > MAX_PROBLEMS:
        raise WireError(f"problems: not a list of at most {MAX_PROBLEMS}")
    checked = []
    for problem in problems:
        if not isinstance(problem, list) or len(problem) != 2:
            raise WireError("problems: each one a [path, problem] pair")
        checked.append((_text(problem[0], "problem path"), _text(problem[1], "problem")))
    reach = meta.get("reach")
    span: tuple[int, int] | None = None
    if reach is not None:
        if not isinstance(reach, list) or len(reach) != 2:
            raise WireError("reach: not a [from, to] pair")
        low, high = _int(reach[0], "reach", 2**31), _int(reach[1], "reach", 2**31)
        span = (low, high) if low <= high else None
    source = meta.get("source", "")
    if source not in SOURCES:
        raise WireError("source: not one of proxy, original, mixed")
    return Rendered(
        job_id,
        render_ms,
        content_type,
        body,
        tuple(checked),
        _int(meta.get("clips"), "clips", 10_000_000),
        attempts,
        span,
        source,
    )


def _attempts(attempts: Any) -> tuple[Attempt, ...]:
    if not isinstance(attempts, list) or len(attempts) > MAX_ATTEMPTS:
        raise WireError("attempts: not a short list")
    checked = []
    for attempt in attempts:
        if not isinstance(attempt, dict) or type(attempt.get("refused")) is not bool:
            raise WireError("attempts: each one an object with 'refused'")
        checked.append(
            Attempt(_text(attempt.get("what"), "what"), attempt["refused"], _text(attempt.get("error", ""), "error"))
        )
    return tuple(checked)


def body_limit(width: int, height: int) -> int:
    """The largest image a sound worker sends for this output: uncompressed RGBA plus PNG's overhead."""
    return min(MAX_BODY, width * height * 4 + height * 16 + 65536)

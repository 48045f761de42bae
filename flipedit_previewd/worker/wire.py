"""The worker -> daemon reply format, imported by both ends: a fixed header, JSON metadata, raw image bytes.

A worker decodes untrusted media; once a crafted file has taken one over, everything it sends is
hostile. Unpickling that would hand it the daemon (pickle runs code), so replies are plain data the
daemon parses with strict checks: a header of fixed size (magic, version, the two lengths), a JSON
object whose every field has a type and a bound, and the encoded image as raw bytes after it. Any
deviation raises ``WireError``; the daemon then kills and replaces that worker and answers the job
with an error, never crashes (``workers.WorkerPool.render``).

The other direction (daemon -> worker: settings, timelines, jobs) stays pickle: the daemon is the
trusted side and the worker has to trust it anyway.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

MAGIC = b"FEPW"
VERSION = 1
HEADER = struct.Struct("!4sBxxxII")  # magic, version, padding, metadata length, body length
MAX_META = 1 << 20  # problems of many clips fit easily; a JSON bomb does not
MAX_TEXT = 4096  # one message, one path, one problem
MAX_PROBLEMS = 1000
MAX_BODY = 256 << 20  # absolute; a reply is also held to its output size (body_limit)
CONTENT_TYPES = ("image/jpeg", "image/png")
SOURCES = ("", "proxy", "original", "mixed")
IMAGE_MAGIC = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}


class WireError(ValueError):
    """A reply that is not what a sound worker sends: the worker is replaced."""


@dataclass
class Reply:
    kind: str  # "hello" (once, after start and confinement), "ok", "error"
    job_id: int = 0
    render_ms: float = 0.0
    content_type: str = ""
    body: bytes = b""
    problems: list[tuple[str, str]] = field(default_factory=list)
    clips: int = 0
    message: str = ""  # error: what went wrong
    sandbox: dict[str, Any] = field(default_factory=dict)  # hello: confine.Status.as_dict()
    attempts: list[dict[str, Any]] = field(default_factory=list)  # the escape failpoint's attempts (tests only)
    source: str = ""  # ok: what the video frames came from (SOURCES), for X-Preview-Source


def encode(reply: Reply) -> bytes:
    meta: dict[str, Any] = {"kind": reply.kind, "job_id": reply.job_id, "render_ms": reply.render_ms}
    if reply.kind == "ok":
        meta.update(content_type=reply.content_type, problems=[list(p) for p in reply.problems], clips=reply.clips,
                    source=reply.source)
    elif reply.kind == "error":
        meta["message"] = reply.message[:MAX_TEXT]
    elif reply.kind == "hello":
        meta["sandbox"] = reply.sandbox
    if reply.attempts:
        meta["attempts"] = reply.attempts
    data = json.dumps(meta, separators=(",", ":")).encode()
    return HEADER.pack(MAGIC, VERSION, len(data), len(reply.body)) + data + reply.body


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise WireError(f"{what}: not a string of at most {MAX_TEXT} characters")
    return value


def _int(value: Any, what: str, high: int) -> int:
    if type(value) is not int or not 0 <= value <= high:
        raise WireError(f"{what}: not an integer in 0..{high}")
    return value


def decode(data: bytes, job_id: int | None = None, content_type: str | None = None, body_limit: int = MAX_BODY) -> Reply:
    """Parse one reply; ``job_id``/``content_type`` are what the job asked for, ``body_limit`` its largest sane image."""
    if len(data) < HEADER.size:
        raise WireError("shorter than the header")
    magic, version, meta_len, body_len = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise WireError("not a reply of this version")
    if meta_len > MAX_META or body_len > min(body_limit, MAX_BODY) or HEADER.size + meta_len + body_len != len(data):
        raise WireError("lengths do not match the reply or exceed their limits")
    try:
        meta = json.loads(data[HEADER.size:HEADER.size + meta_len])
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise WireError(f"metadata is not JSON: {type(exc).__name__}") from None
    if not isinstance(meta, dict):
        raise WireError("metadata is not an object")
    kind = meta.get("kind")
    if kind not in ("hello", "ok", "error"):
        raise WireError("unknown kind")
    reply = Reply(kind, _int(meta.get("job_id"), "job_id", 2**63))
    if job_id is not None and kind != "hello" and reply.job_id != job_id:
        raise WireError(f"answer to job {reply.job_id}, not to job {job_id}")
    render_ms = meta.get("render_ms")
    if not isinstance(render_ms, (int, float)) or isinstance(render_ms, bool) or not (math.isfinite(render_ms) and 0 <= render_ms < 1e9):
        raise WireError("render_ms: not a finite duration")
    reply.render_ms = float(render_ms)
    body = data[HEADER.size + meta_len:]
    if kind == "ok":
        reply.content_type = _text(meta.get("content_type"), "content_type")
        if reply.content_type not in CONTENT_TYPES or (content_type is not None and reply.content_type != content_type):
            raise WireError("content_type: not the one asked for")
        if not body.startswith(IMAGE_MAGIC[reply.content_type]):
            raise WireError("body: not an image of its content type")
        reply.body = body
        problems = meta.get("problems")
        if not isinstance(problems, list) or len(problems) > MAX_PROBLEMS:
            raise WireError(f"problems: not a list of at most {MAX_PROBLEMS}")
        for problem in problems:
            if not isinstance(problem, list) or len(problem) != 2:
                raise WireError("problems: each one a [path, problem] pair")
            reply.problems.append((_text(problem[0], "problem path"), _text(problem[1], "problem")))
        reply.clips = _int(meta.get("clips"), "clips", 10_000_000)
        source = meta.get("source", "")
        if source not in SOURCES:
            raise WireError("source: not one of proxy, original, mixed")
        reply.source = source
    elif body:
        raise WireError(f"a {kind} reply carries no image")
    if kind == "error":
        reply.message = _text(meta.get("message"), "message")
    if kind == "hello":
        sandbox = meta.get("sandbox")
        if (not isinstance(sandbox, dict) or type(sandbox.get("seccomp")) is not bool or type(sandbox.get("landlock")) is not bool):
            raise WireError("sandbox: not a status")
        reply.sandbox = {"seccomp": sandbox["seccomp"], "landlock": sandbox["landlock"],
                         "landlock_abi": _int(sandbox.get("landlock_abi"), "landlock_abi", 1000), "why": _text(sandbox.get("why"), "why")}
    attempts = meta.get("attempts", [])
    if not isinstance(attempts, list) or len(attempts) > 16:
        raise WireError("attempts: not a short list")
    for attempt in attempts:
        if not isinstance(attempt, dict) or type(attempt.get("refused")) is not bool:
            raise WireError("attempts: each one an object with 'refused'")
        reply.attempts.append({"what": _text(attempt.get("what"), "what"), "refused": attempt["refused"],
                               "error": _text(attempt.get("error", ""), "error")})
    return reply


def body_limit(width: int, height: int) -> int:
    """The largest image a sound worker sends for this output: uncompressed RGBA plus PNG's overhead."""
    return min(MAX_BODY, width * height * 4 + height * 16 + 65536)

"""The messages between the pool and its workers (worker/wire.py): the typed daemon -> worker messages and the
worker -> daemon reply format, which is held to its bounds against garbage (a worker taken over sends anything)."""

from __future__ import annotations

import json
import pickle

import pytest

from flipedit_previewd.timeline.model import Clip, Rect, Timeline, Track
from flipedit_previewd.worker import wire
from flipedit_previewd.worker.output import OutputSpec

JPEG = b"\xff\xd8\xff\xe0" + b"x" * 100


def raw(meta: dict[str, object], body: bytes = b"") -> bytes:
    data = json.dumps(meta).encode()
    return wire.HEADER.pack(wire.MAGIC, wire.VERSION, len(data), len(body)) + data + body


def ok_reply(**meta: object) -> bytes:
    return raw(
        {"kind": "ok", "job_id": 5, "render_ms": 1.5, "content_type": "image/jpeg", "problems": [], "clips": 1, **meta},
        JPEG,
    )


# --- worker -> daemon ------------------------------------------------------------------------------


def test_each_reply_round_trips_as_its_own_type() -> None:
    escape = (wire.Attempt("exec /bin/sh", True, "EPERM"), wire.Attempt("open /etc/hostname", False))
    sent = wire.Rendered(5, 12.5, "image/jpeg", JPEG, (("/m/a.mp4", "file not found"),), 3, escape)
    assert wire.decode(wire.encode(sent), 5, "image/jpeg", wire.body_limit(64, 36)) == sent
    assert wire.decode_answer(wire.encode(sent), 5, "image/jpeg", wire.body_limit(64, 36)) == sent
    reaching = wire.Rendered(5, 1.0, "image/jpeg", JPEG, reach=(10, 250))  # locality: the decoder's GOP
    assert wire.decode(wire.encode(reaching), 5, "image/jpeg", wire.body_limit(64, 36)) == reaching
    failed = wire.Failed(5, 2.0, "ValueError: x", escape)
    assert wire.decode_answer(wire.encode(failed), 5, "image/jpeg", 0) == failed
    hello = wire.Hello(True, False, 0, "no")
    got = wire.decode(wire.encode(hello), body_limit=0)
    assert got == hello and isinstance(got, wire.Hello)
    assert got.as_dict() == {"seccomp": True, "landlock": False, "landlock_abi": 0, "why": "no"}  # /health "sandbox"


def test_the_kinds_on_the_wire_are_those_of_version_1() -> None:
    """The JSON ``kind`` strings are the format, not names: a rename must change VERSION too."""
    assert wire.VERSION == 1 and [k.value for k in wire.Kind] == ["hello", "ok", "error"]
    assert json.loads(wire.encode(wire.Failed(1, 0.0, "x"))[wire.HEADER.size :])["kind"] == "error"


def test_unknown_metadata_keys_are_ignored() -> None:
    """The JSON object is extensible: a field the daemon does not know is dropped, never an error."""
    assert isinstance(wire.decode(ok_reply(proxy=True, future={"a": 1}), 5, "image/jpeg"), wire.Rendered)


GARBAGE = {
    "pickle": pickle.dumps(("ok", 5, b"", 1.0)),  # the old format: never unpickled
    "empty": b"",
    "bad magic": b"XXXX" + ok_reply()[4:],
    "truncated": ok_reply()[:-1],
    "trailing": ok_reply() + b"\0",
    "not json": wire.HEADER.pack(wire.MAGIC, 1, 3, 0) + b"{{{",
    "deep json": wire.HEADER.pack(wire.MAGIC, 1, 200_000, 0) + b"[" * 100_000 + b"]" * 100_000,
    "not utf-8": wire.HEADER.pack(wire.MAGIC, 1, 2, 0) + b"\xff\xfe",
    "a list": wire.HEADER.pack(wire.MAGIC, 1, 2, 0) + b"[]",
    "other job": ok_reply(job_id=6),
    "job id a bool": ok_reply(job_id=True),
    "job id negative": ok_reply(job_id=-1),
    "render_ms NaN": ok_reply(render_ms=float("nan")),
    "render_ms text": ok_reply(render_ms="1"),
    "other content type": ok_reply(content_type="image/png"),
    "unknown kind": ok_reply(kind="shell"),
    "kind missing": ok_reply(kind=None),
    "problems not pairs": ok_reply(problems=[["a"]]),
    "problem not text": ok_reply(problems=[["a", 1]]),
    "too many problems": ok_reply(problems=[["a", "b"]] * (wire.MAX_PROBLEMS + 1)),
    "huge text": ok_reply(problems=[["a" * (wire.MAX_TEXT + 1), "b"]]),
    "clips a float": ok_reply(clips=1.0),
    "attempts not a list": ok_reply(attempts={"what": "x"}),
    "too many attempts": ok_reply(attempts=[{"what": "x", "refused": True}] * (wire.MAX_ATTEMPTS + 1)),
    "attempt refused not a bool": ok_reply(attempts=[{"what": "x", "refused": 1}]),
    "hello without status": raw({"kind": "hello", "job_id": 0, "render_ms": 0}),
    "hello with a bad abi": raw(
        {
            "kind": "hello",
            "job_id": 0,
            "render_ms": 0,
            "sandbox": {"seccomp": True, "landlock": True, "landlock_abi": -1, "why": ""},
        }
    ),
    "error without message": raw({"kind": "error", "job_id": 5, "render_ms": 0}),
    "error with an image": raw({"kind": "error", "job_id": 5, "render_ms": 0, "message": "x"}, JPEG),
    "hello with an image": raw(
        {
            "kind": "hello",
            "job_id": 0,
            "render_ms": 0,
            "sandbox": {"seccomp": True, "landlock": True, "landlock_abi": 1, "why": ""},
        },
        JPEG,
    ),
}


@pytest.mark.parametrize("name", GARBAGE)
def test_garbage_is_a_wire_error_never_an_other_exception(name: str) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(GARBAGE[name], 5 if not name.startswith("hello") else None, "image/jpeg")


def test_a_hello_is_no_answer_to_a_job() -> None:
    """A worker taken over may say hello again instead of answering: that is no frame (an empty body served)."""
    hello = wire.encode(wire.Hello(True, True, 7, ""))
    with pytest.raises(wire.WireError):
        wire.decode_answer(hello, 5, "image/jpeg", wire.body_limit(64, 36))


def test_bodies_are_held_to_their_output_size_and_type() -> None:
    big = wire.encode(wire.Rendered(5, 1.0, "image/jpeg", JPEG + b"x" * 10_000))
    with pytest.raises(wire.WireError):
        wire.decode(big, 5, "image/jpeg", body_limit=1000)
    not_an_image = wire.encode(wire.Rendered(5, 1.0, "image/jpeg", b"#!/bin/sh\n"))
    with pytest.raises(wire.WireError):
        wire.decode(not_an_image, 5, "image/jpeg")
    assert (
        wire.body_limit(64, 36) == 64 * 36 * 4 + 36 * 16 + 65536 and wire.body_limit(100_000, 100_000) == wire.MAX_BODY
    )


# --- daemon -> worker ------------------------------------------------------------------------------


def _timeline(clips: int) -> Timeline:
    def clip(i: int, track: int) -> Clip:
        return Clip(
            i, track, "video", f"/m/{i}.mp4", i * 10.0, i * 10.0 + 10, 0.0, 10.0, Rect(1.0, 2.0, 3.0, 4.0), 0, (i, i)
        )

    tracks = (
        Track(1, 0, True, tuple(clip(i, 1) for i in range(clips)), "video"),
        Track(2, 1, False, (), "overlay"),
        Track(3, -1, True, tuple(clip(i, 3) for i in range(7)), "video"),
    )
    return Timeline(1280, 720, 29.97, tracks, "/p/project.sqlite", revision="rev-1", note="a note")


def test_a_timeline_travels_in_pieces_and_arrives_whole() -> None:
    """Through pickle, as Connection.send does: the messages are what the worker unpickles."""
    timeline = _timeline(2 * wire.CLIPS_PER_MESSAGE + 1)
    messages = [pickle.loads(pickle.dumps(m)) for m in wire.timeline_messages(timeline)]
    assert isinstance(messages[0], wire.TimelineHead) and [type(m) for m in messages[1:]] == [wire.Clips] * 4
    assert max(len(m.clips) for m in messages[1:]) == wire.CLIPS_PER_MESSAGE
    rest = iter([*messages[1:], wire.Stop()])
    got = wire.receive_timeline(messages[0], rest.__next__)
    assert isinstance(next(rest), wire.Stop)  # nothing of the timeline left unread, nothing of the next message taken
    assert got == timeline and got.revision == "rev-1" and got.note == "a note"


def test_a_timeline_interrupted_by_another_message_is_a_bug_said_as_such() -> None:
    head = next(wire.timeline_messages(_timeline(3)))
    assert isinstance(head, wire.TimelineHead)
    with pytest.raises(TypeError, match="Job"):
        wire.receive_timeline(head, lambda: wire.Job(1, 0, OutputSpec(64, 36), "rev-1"))


def test_the_daemons_messages_survive_pickle() -> None:
    for message in (
        wire.Start(wire.WorkerSettings(1 << 22, 1 << 24), 1234),
        wire.Stop(),
        wire.Job(7, 12, OutputSpec(64, 36, 80, "png"), "rev", frozenset({"/m/a"}), ("/m",), True),
    ):
        assert pickle.loads(pickle.dumps(message)) == message


def test_a_worker_covers_only_roots_under_its_own() -> None:
    assert wire.covers(("/m/a",), ("/m/a", "/m/a/sub"))
    assert not wire.covers(("/m/a",), ("/m/ab",))  # a sibling with the same prefix is another directory
    assert not wire.covers(("/m/a",), ("/m/a", "/m/b"))
    assert wire.covers((), ()) and not wire.covers(
        (), ("/m/a",)
    )  # confined to no roots: a project needs a fresh worker

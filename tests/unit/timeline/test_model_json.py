"""The JSON timeline's every rule, its defaults, its JSON views and its revision, exactly.

Each case names the message and field a client sees: a rule that moved (a bound off by one, a field
name, a default) changes what is asserted here. Written against mutmut's survivors over timeline.py
(docs/mutants-timeline.md lists the few left and why)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from flipedit_previewd.timeline.model import (
    MAX_CANVAS_SIDE,
    Clip,
    Rect,
    Timeline,
    Track,
    empty_timeline,
    restat,
    stat_of,
    timeline_from_json,
)

CANVAS, FPS = (1280, 720), 30.0
C0 = "timeline.tracks[0].clips[0]"


def clip(**fields: Any) -> dict[str, Any]:
    return {"source_path": "/m/a.png", "start_on_track_ms": 0, "end_on_track_ms": 1000, **fields}


def doc(*clips: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"tracks": [{"clips": list(clips) or [clip()]}], **top}


def track(**fields: Any) -> dict[str, Any]:
    return {"tracks": [{"clips": [clip()], **fields}]}


def refused(data: Any) -> tuple[str, str]:
    from flipedit_previewd.common.errors import TimelineInvalid

    with pytest.raises(TimelineInvalid) as info:
        timeline_from_json(data, CANVAS, FPS)
    return info.value.detail, info.value.extra["field"]


CASES: list[tuple[Any, str, str]] = [
    ([], "timeline: expected a JSON object", "timeline"),
    ({"canvas": "x", "tracks": []}, "timeline.canvas: expected an object, got str", "timeline.canvas"),
    (
        {"canvas": {"height": 5}, "tracks": []},
        "timeline.canvas.width: required field is missing",
        "timeline.canvas.width",
    ),
    (
        {"canvas": {"width": 5}, "tracks": []},
        "timeline.canvas.height: required field is missing",
        "timeline.canvas.height",
    ),
    (
        {"canvas": {"width": 0, "height": 5}, "tracks": []},
        "timeline.canvas.width: must be between 1 and 8192",
        "timeline.canvas.width",
    ),
    (
        {"canvas": {"width": 5, "height": 8193}, "tracks": []},
        "timeline.canvas.height: must be between 1 and 8192",
        "timeline.canvas.height",
    ),
    ({"frame_rate": True, "tracks": []}, "timeline.frame_rate: expected a number, got True", "timeline.frame_rate"),
    ({"frame_rate": "30", "tracks": []}, "timeline.frame_rate: expected a number, got str", "timeline.frame_rate"),
    ({"frame_rate": float("nan"), "tracks": []}, "timeline.frame_rate: must be finite", "timeline.frame_rate"),
    ({"frame_rate": float("inf"), "tracks": []}, "timeline.frame_rate: must be finite", "timeline.frame_rate"),
    ({"frame_rate": 0.99, "tracks": []}, "timeline.frame_rate: must be between 1 and 240", "timeline.frame_rate"),
    ({"frame_rate": 240.01, "tracks": []}, "timeline.frame_rate: must be between 1 and 240", "timeline.frame_rate"),
    (
        {"frame_rate": 2**53 + 1, "tracks": []},
        "timeline.frame_rate: out of range (at most 9e+15 in magnitude)",
        "timeline.frame_rate",
    ),
    ({}, "timeline.tracks: required field is missing", "timeline.tracks"),
    ({"tracks": "x"}, "timeline.tracks: expected a list, got str", "timeline.tracks"),
    ({"tracks": [{"clips": []}] * 257}, "timeline.tracks: at most 256 tracks", "timeline.tracks"),
    ({"tracks": ["x"]}, "timeline.tracks[0]: expected an object", "timeline.tracks[0]"),
    (track(id="a"), "timeline.tracks[0].id: expected an integer, got str", "timeline.tracks[0].id"),
    ({"tracks": [{}]}, "timeline.tracks[0].clips: required field is missing", "timeline.tracks[0].clips"),
    (
        {"tracks": [{"clips": [clip()] * 4097}]},
        "timeline.tracks[0].clips: at most 4096 clips",
        "timeline.tracks[0].clips",
    ),
    (track(order="1"), "timeline.tracks[0].order: expected an integer, got str", "timeline.tracks[0].order"),
    (track(visible="yes"), "timeline.tracks[0].visible: expected a boolean, got str", "timeline.tracks[0].visible"),
    (track(type=1), "timeline.tracks[0].type: expected a string, got int", "timeline.tracks[0].type"),
    ({"tracks": [{"clips": ["x"]}]}, f"{C0}: expected an object", C0),
    (
        doc({"end_on_track_ms": 5, "source_path": "/a"}),
        f"{C0}.start_on_track_ms: required field is missing",
        f"{C0}.start_on_track_ms",
    ),
    (
        doc({"start_on_track_ms": 5, "source_path": "/a"}),
        f"{C0}.end_on_track_ms: required field is missing",
        f"{C0}.end_on_track_ms",
    ),
    (
        doc(clip(start_on_track_ms=-1)),
        f"{C0}.end_on_track_ms: must be >= start_on_track_ms >= 0",
        f"{C0}.end_on_track_ms",
    ),
    (
        doc(clip(start_on_track_ms=10, end_on_track_ms=9)),
        f"{C0}.end_on_track_ms: must be >= start_on_track_ms >= 0",
        f"{C0}.end_on_track_ms",
    ),
    (
        doc(clip(end_on_track_ms=1e10 + 1)),
        f"{C0}.end_on_track_ms: must be >= start_on_track_ms >= 0",
        f"{C0}.end_on_track_ms",
    ),
    (
        doc(clip(end_on_track_ms=2**53)),
        f"{C0}.end_on_track_ms: must be >= start_on_track_ms >= 0",
        f"{C0}.end_on_track_ms",
    ),
    (
        doc(clip(end_on_track_ms=-(2**53) - 1)),
        f"{C0}.end_on_track_ms: out of range (at most 9e+15 in magnitude)",
        f"{C0}.end_on_track_ms",
    ),
    (doc(clip(start_in_source_ms=-1)), f"{C0}.start_in_source_ms: must be >= 0", f"{C0}.start_in_source_ms"),
    (doc(clip(start_in_source_ms=1e10 + 1)), f"{C0}.start_in_source_ms: must be >= 0", f"{C0}.start_in_source_ms"),
    (
        doc(clip(start_in_source_ms="0")),
        f"{C0}.start_in_source_ms: expected a number, got str",
        f"{C0}.start_in_source_ms",
    ),
    (doc(clip(end_in_source_ms="0")), f"{C0}.end_in_source_ms: expected a number, got str", f"{C0}.end_in_source_ms"),
    (doc(clip(type="foo")), f"{C0}.type: unknown clip type 'foo'", f"{C0}.type"),
    (doc(clip(type=5)), f"{C0}.type: expected a string, got int", f"{C0}.type"),
    (
        doc({"start_on_track_ms": 0, "end_on_track_ms": 5}),
        f"{C0}.source_path: required field is missing",
        f"{C0}.source_path",
    ),
    (doc(clip(source_path="")), f"{C0}.source_path: must be a non-empty path", f"{C0}.source_path"),
    (doc(clip(source_path="/a\x00b")), f"{C0}.source_path: must be a non-empty path", f"{C0}.source_path"),
    (doc(clip(source_path=5)), f"{C0}.source_path: expected a string, got int", f"{C0}.source_path"),
    (doc(clip(rect="x")), f"{C0}.rect: expected an object or null, got str", f"{C0}.rect"),
    (
        doc(clip(rect={"left": 0, "top": 0, "width": 5})),
        f"{C0}.rect.height: required field is missing",
        f"{C0}.rect.height",
    ),
    (
        doc(clip(rect={"left": 0, "top": 0, "width": 0, "height": 5})),
        f"{C0}.rect: width and height must be positive and bounded",
        f"{C0}.rect",
    ),
    (
        doc(clip(rect={"left": 0, "top": 0, "width": 5, "height": 0})),
        f"{C0}.rect: width and height must be positive and bounded",
        f"{C0}.rect",
    ),
    (
        doc(clip(rect={"left": 0, "top": 0, "width": 4 * MAX_CANVAS_SIDE + 1, "height": 5})),
        f"{C0}.rect: width and height must be positive and bounded",
        f"{C0}.rect",
    ),
    (
        doc(clip(rect={"left": 0, "top": 0, "width": 5, "height": 4 * MAX_CANVAS_SIDE + 1})),
        f"{C0}.rect: width and height must be positive and bounded",
        f"{C0}.rect",
    ),
    (
        doc(clip(rect={"left": 1e6 + 1, "top": 0, "width": 5, "height": 5})),
        f"{C0}.rect: width and height must be positive and bounded",
        f"{C0}.rect",
    ),
    (
        doc(clip(rect={"left": 0, "top": -1e6 - 1, "width": 5, "height": 5})),
        f"{C0}.rect: width and height must be positive and bounded",
        f"{C0}.rect",
    ),
    (doc(clip(flip=3)), f"{C0}.flip: must be 0, 1 or 2", f"{C0}.flip"),
    (doc(clip(flip=-1)), f"{C0}.flip: must be 0, 1 or 2", f"{C0}.flip"),
    (doc(clip(flip=False)), f"{C0}.flip: expected a number, got False", f"{C0}.flip"),
    (doc(clip(id="1")), f"{C0}.id: expected an integer, got str", f"{C0}.id"),
]


@pytest.mark.parametrize(("data", "detail", "field"), CASES, ids=[f"{i}:{c[2]}" for i, c in enumerate(CASES)])
def test_each_rule_names_its_field_and_reason(data: Any, detail: str, field: str) -> None:
    assert refused(data) == (detail, field)


@pytest.mark.parametrize(
    "data",
    [
        {"canvas": {"width": 1, "height": MAX_CANVAS_SIDE}, "tracks": []},
        {"frame_rate": 1, "tracks": []},
        {"frame_rate": 240, "tracks": []},
        {"tracks": [{"clips": []}] * 256},
        {"tracks": [{"clips": [clip()] * 4096}]},
        doc(clip(start_on_track_ms=5, end_on_track_ms=5)),
        doc(clip(end_on_track_ms=1e10)),
        doc(clip(start_in_source_ms=1e10)),
        doc(clip(start_in_source_ms=0)),
        doc(clip(type="audio"), clip(type="text"), clip(type="image"), clip(type="video")),
        doc(clip(rect={"left": -1e6, "top": 1e6, "width": 4 * MAX_CANVAS_SIDE, "height": 4 * MAX_CANVAS_SIDE})),
        doc(clip(flip=0), clip(flip=1), clip(flip=2), clip(rect=None)),
        doc(clip(rect={"left": 0, "top": 0, "width": 0.5, "height": 0.5})),  # positive, not at least 1
    ],
)
def test_the_bounds_themselves_are_accepted(data: Any) -> None:
    timeline_from_json(data, CANVAS, FPS)


def test_defaults_and_values_land_where_they_belong() -> None:
    data = {
        "canvas": {"width": 640, "height": 360},
        "frame_rate": 25,
        "tracks": [
            {
                "clips": [
                    clip(),
                    clip(source_path="/m/b.mp4", start_on_track_ms=100, end_on_track_ms=300, start_in_source_ms=40),
                ]
            },
            {
                "id": 7,
                "order": -3,
                "visible": False,
                "type": "overlay",
                "clips": [
                    clip(
                        id=9,
                        type="image",
                        start_in_source_ms=5,
                        end_in_source_ms=6,
                        rect={"left": 1, "top": 2, "width": 3, "height": 4},
                        flip=2,
                    )
                ],
            },
        ],
    }
    got = timeline_from_json(data, CANVAS, FPS)
    want = Timeline(
        640,
        360,
        25.0,
        (
            Track(
                1,
                0,
                True,
                (
                    Clip(1, 1, "video", "/m/a.png", 0.0, 1000.0, 0.0, 1000.0, None, 0, None),
                    Clip(2, 1, "video", "/m/b.mp4", 100.0, 300.0, 40.0, 240.0, None, 0, None),
                ),
                "video",
            ),
            Track(
                7,
                -3,
                False,
                (Clip(9, 7, "image", "/m/a.png", 0.0, 1000.0, 5.0, 6.0, Rect(1.0, 2.0, 3.0, 4.0), 2, None),),
                "overlay",
            ),
        ),
        source="json",
    )
    assert got == want and got.revision == want.revision
    assert got.tracks[1].order == -3 and got.tracks[0].order == 0  # order by default is the track's index
    second = timeline_from_json({"tracks": [{"clips": []}, {"clips": [clip(), clip()]}]}, CANVAS, FPS)
    assert [t.id for t in second.tracks] == [1, 2] and [t.order for t in second.tracks] == [0, 1]
    assert [c.id for c in second.clips] == [1, 2] and {c.track_id for c in second.clips} == {2}
    plain = timeline_from_json({"tracks": []}, CANVAS, FPS)
    assert (plain.canvas_width, plain.canvas_height, plain.frame_rate, plain.source) == (1280, 720, 30.0, "json")


def test_a_clip_records_its_sources_stat(tmp_path: Path) -> None:
    media = tmp_path / "a.png"
    media.write_bytes(b"xyz")
    parsed = timeline_from_json(doc(clip(source_path=str(media))), CANVAS, FPS)
    st = os.stat(media)
    assert parsed.clips[0].source_stat == (st.st_mtime_ns, 3, st.st_ino, st.st_dev) == stat_of(str(media))


def test_a_file_replaced_by_one_of_the_same_size_and_time_is_a_change(tmp_path: Path) -> None:
    """A decoder keeps the old file open (so its inode is not reused): only another stat makes the workers open the
    new one (a file replaced by ``cp -p`` or ``rsync -t``: the same size and time)."""
    media = tmp_path / "a.mp4"
    media.write_bytes(b"old")
    before = timeline_from_json(doc(clip(source_path=str(media))), CANVAS, FPS)
    st = os.stat(media)
    with open(media, "rb"):  # what a worker's decoder holds
        media.unlink()
        media.write_bytes(b"new")
        os.utime(media, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (os.stat(media).st_size, os.stat(media).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
        after = restat(before)
    assert after is not before and after.clips[0].source_stat != before.clips[0].source_stat
    assert after.revision != before.revision


def test_layers_are_ordered_by_track_then_start_and_skip_what_is_not_drawn() -> None:
    def c(cid: int, tid: int, kind: str, start: float, end: float) -> Clip:
        return Clip(cid, tid, kind, f"/m/{cid}", start, end, 0, end - start)

    hidden = Track(1, 0, False, (c(1, 1, "video", 0, 1000),))
    top = Track(2, 5, True, (c(5, 2, "video", 500, 1000), c(4, 2, "image", 0, 1000), c(3, 2, "video", 0, 1000)))
    bottom_b = Track(4, 1, True, (c(6, 4, "video", 0, 1000),))
    bottom_a = Track(3, 1, True, (c(7, 3, "image", 0, 1000), c(8, 3, "audio", 0, 1000), c(9, 3, "text", 0, 1000)))
    timeline = Timeline(100, 100, 10.0, (top, hidden, bottom_b, bottom_a))
    assert [x.id for x in timeline.layers_at(5)] == [7, 6, 3, 4, 5]  # order, then track id; start, then clip id
    assert [x.id for x in timeline.layers_at(4)] == [7, 6, 3, 4]  # clip 5 starts at frame 5
    assert timeline.layers_at(10) == []  # end frame is exclusive
    assert timeline.total_frames == 10 and len(timeline.clips) == 8
    assert empty_timeline((10, 20), 24.0).total_frames == 0


def test_json_views_are_exact() -> None:
    timeline = Timeline(
        640,
        360,
        25.0,
        (
            Track(
                3,
                1,
                False,
                (Clip(4, 3, "image", "/m/s.png", 100.0, 400.0, 10.0, 60.0, Rect(1.0, 2.0, 3.0, 4.0), 1, (5, 6)),),
                "video",
            ),
        ),
        source="db",
    )
    assert timeline.debug_json() == {
        "total_frames": 10,
        "frame_rate": 25.0,
        "clips_count": 1,
        "revision": timeline.revision,
        "source": "db",
        "canvas": {"width": 640, "height": 360},
        "clips": [
            {
                "index": 0,
                "id": 4,
                "track_id": 3,
                "type": "image",
                "source_path": "/m/s.png",
                "track_time_ms": {"start": 100.0, "end": 400.0, "duration": 300.0},
                "source_time_ms": {"start": 10.0, "end": 60.0, "duration": 50.0},
                "rect": {"left": 1.0, "top": 2.0, "width": 3.0, "height": 4.0},
                "flip": 1,
            }
        ],
    }
    assert timeline.to_json() == {
        "canvas": {"width": 640, "height": 360},
        "frame_rate": 25.0,
        "revision": timeline.revision,
        "tracks": [
            {
                "id": 3,
                "order": 1,
                "visible": False,
                "type": "video",
                "clips": [
                    {
                        "id": 4,
                        "type": "image",
                        "source_path": "/m/s.png",
                        "start_on_track_ms": 100.0,
                        "end_on_track_ms": 400.0,
                        "start_in_source_ms": 10.0,
                        "end_in_source_ms": 60.0,
                        "rect": {"left": 1.0, "top": 2.0, "width": 3.0, "height": 4.0},
                        "flip": 1,
                    }
                ],
            }
        ],
    }
    no_rect = Timeline(10, 10, 10.0, (Track(1, 0, True, (Clip(1, 1, "video", "/v", 0, 100, 0, 100),)),))
    assert no_rect.debug_json()["clips"][0]["rect"] is None
    again = timeline_from_json(timeline.to_json(), CANVAS, FPS)  # what GET /timeline says can be PUT back
    assert again.clips[0].rect == timeline.clips[0].rect and again.tracks[0].visible is False


def test_empty_timeline() -> None:
    empty = empty_timeline((320, 200), 12.5)
    assert (empty.canvas_width, empty.canvas_height, empty.frame_rate, empty.tracks, empty.source) == (
        320,
        200,
        12.5,
        (),
        "empty",
    )
    assert empty_timeline((320, 200), 12.5, source="none").source == "none"
    assert empty.note == ""  # the frame says "No videos in timeline"
    assert empty_timeline((320, 200), 12.5, note="No project").note == "No project"


def test_the_note_of_an_empty_timeline_is_part_of_its_revision() -> None:
    """Another reason for an empty frame draws another frame: it must not be served under the old ETag."""
    plain = empty_timeline((320, 200), 12.5)
    unreadable = empty_timeline((320, 200), 12.5, note="Project not readable")
    other = empty_timeline((320, 200), 12.5, note="No project")
    assert len({plain.revision, unreadable.revision, other.revision}) == 3
    assert empty_timeline((320, 200), 12.5, note="No project").revision == other.revision


def test_the_revision_is_a_digest_of_every_pixel_input() -> None:
    base_clip = Clip(1, 1, "video", "/m/a", 0, 1000, 0, 1000, Rect(0, 0, 10, 10), 0, (1, 2))
    base_track = Track(1, 0, True, (base_clip,))

    def rev(canvas: tuple[int, int] = (100, 100), fps: float = 30.0, **changes: Any) -> str:
        track_changes = {k: v for k, v in changes.items() if k in ("id", "order", "visible", "type", "clips")}
        clip_changes = {k.removeprefix("clip_"): v for k, v in changes.items() if k.startswith("clip_")}
        from dataclasses import replace

        t = replace(base_track, **track_changes)
        if clip_changes:
            t = replace(t, clips=(replace(base_clip, **clip_changes),))
        return Timeline(canvas[0], canvas[1], fps, (t,)).revision

    base = rev()
    assert len(base) == 24 and int(base, 16) >= 0
    variants = [
        rev((101, 100)),
        rev((100, 101)),
        rev(fps=25.0),
        rev(id=2),
        rev(order=1),
        rev(visible=False),
        rev(type="x"),
        rev(clips=(base_clip, base_clip)),
        rev(clip_id=2),
        rev(clip_track_id=2),
        rev(clip_type="image"),
        rev(clip_source_path="/m/b"),
        rev(clip_start_on_track_ms=1),
        rev(clip_end_on_track_ms=999),
        rev(clip_start_in_source_ms=1),
        rev(clip_end_in_source_ms=999),
        rev(clip_rect=Rect(1, 0, 10, 10)),
        rev(clip_rect=None),
        rev(clip_flip=1),
        rev(clip_source_stat=(1, 3)),
        rev(clip_source_stat=None),
    ]
    assert len({base, *variants}) == len(variants) + 1
    undecodable = os.fsdecode(b"/m/\xff.png")  # a file name that is not UTF-8: surrogate-escaped, still digested
    assert Timeline(1, 1, 1.0, (Track(1, 0, True, (Clip(1, 1, "video", undecodable, 0, 1, 0, 1),)),)).revision


def test_restat_keeps_everything_but_the_stats(tmp_path: Path) -> None:
    media = tmp_path / "a.png"
    media.write_bytes(b"x")
    data = {
        "canvas": {"width": 320, "height": 200},
        "frame_rate": 12,
        "tracks": [{"clips": [clip(source_path=str(media))]}],
    }
    before = timeline_from_json(data, CANVAS, FPS)
    assert restat(before) is before
    media.write_bytes(b"xyz")
    os.utime(media, ns=(5, 5))
    after = restat(before)
    assert after.clips[0].source_stat is not None and after.clips[0].source_stat[:2] == (5, 3)
    assert (after.canvas_width, after.canvas_height, after.frame_rate, after.source) == (320, 200, 12.0, "json")
    assert after.tracks[0].clips[0].rect == before.tracks[0].clips[0].rect and after.revision != before.revision
    assert restat(after) is after

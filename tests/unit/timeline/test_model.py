from __future__ import annotations

import os
from pathlib import Path

import pytest

from flipedit_previewd.common.errors import BadRequest, Forbidden, PathRefused, TimelineInvalid, as_http
from flipedit_previewd.timeline.model import Clip, restat, timeline_from_json
from flipedit_previewd.timeline.safety import check_timeline_paths


def doc(**clip: object) -> dict[str, object]:
    base = {"source_path": "/m/a.png", "start_on_track_ms": 0, "end_on_track_ms": 1000}
    base.update(clip)
    return {"tracks": [{"id": 1, "order": 0, "clips": [base]}]}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], "timeline"),
        ({"tracks": "x"}, "timeline.tracks"),
        (doc(start_on_track_ms="soon"), "timeline.tracks[0].clips[0].start_on_track_ms"),
        (doc(end_on_track_ms=-5), "timeline.tracks[0].clips[0].end_on_track_ms"),
        (doc(flip=3), "timeline.tracks[0].clips[0].flip"),
        (doc(rect={"left": 0, "top": 0, "width": -1, "height": 5}), "timeline.tracks[0].clips[0].rect"),
        (doc(source_path=""), "timeline.tracks[0].clips[0].source_path"),
        ({"canvas": {"width": 0, "height": 10}, "tracks": []}, "timeline.canvas.width"),
        ({"frame_rate": True, "tracks": []}, "timeline.frame_rate"),
    ],
)
def test_bad_json_timeline_names_the_field(data: object, field: str) -> None:
    with pytest.raises(TimelineInvalid) as info:
        timeline_from_json(data, (1280, 720), 30)
    assert info.value.extra["field"] == field
    assert field in info.value.detail
    answer = as_http(info.value)  # the boundary's mapping: a 400 naming the same field
    assert isinstance(answer, BadRequest) and answer.status == 400
    assert answer.body()["field"] == field and answer.detail == info.value.detail


def test_timing_model_matches_the_editor() -> None:
    clip = Clip(1, 1, "video", "/x.mp4", 1000, 2000, 500, 1500)
    assert clip.start_frame(30) == 30 and clip.end_frame(30) == 60
    assert clip.source_frame(30, 30) == 15 and clip.source_frame(45, 30) == 30
    timeline = timeline_from_json(doc(start_on_track_ms=1000, end_on_track_ms=2000), (1280, 720), 30)
    assert timeline.layers_at(29) == [] and len(timeline.layers_at(30)) == 1 and timeline.layers_at(60) == []
    assert timeline.total_frames == 60


def test_revision_changes_with_anything_that_affects_pixels(tmp_path: Path) -> None:
    media = tmp_path / "a.png"
    media.write_bytes(b"x")
    base = timeline_from_json(doc(source_path=str(media)), (1280, 720), 30)
    same = timeline_from_json(doc(source_path=str(media)), (1280, 720), 30)
    moved = timeline_from_json(
        doc(source_path=str(media), rect={"left": 1, "top": 0, "width": 5, "height": 5}), (1280, 720), 30
    )
    other_fps = timeline_from_json({**doc(source_path=str(media)), "frame_rate": 25}, (1280, 720), 30)
    assert base.revision == same.revision
    assert len({base.revision, moved.revision, other_fps.revision}) == 3
    assert restat(base) is base
    media.write_bytes(b"xy")
    os.utime(media, ns=(1, 1))
    assert restat(base).revision != base.revision


def test_paths_outside_roots_are_forbidden(tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    (root / "ok.png").write_bytes(b"")
    (root / "escape.png").symlink_to("/etc/passwd")
    allowed = timeline_from_json(doc(source_path=str(root / "ok.png")), (1280, 720), 30)
    check_timeline_paths(allowed, [str(root)])
    for path in ("/etc/passwd", str(root / "../../x.jpg"), str(root / "escape.png"), "relative.png"):
        bad = timeline_from_json(doc(source_path=path), (1280, 720), 30)
        with pytest.raises(PathRefused) as info:
            check_timeline_paths(bad, [str(root)])
        answer = as_http(info.value)
        assert (
            isinstance(answer, Forbidden) and answer.status == 403 and answer.body()["field"] == "clips[0].source_path"
        )


def test_as_http_passes_http_errors_through_and_leaves_the_rest() -> None:
    error = Forbidden("no")
    assert as_http(error) is error
    assert as_http(ValueError("x")) is None

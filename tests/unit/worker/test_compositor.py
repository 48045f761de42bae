from __future__ import annotations

import gc
import os
import random
import weakref
from pathlib import Path

import pytest

from flipedit_previewd.demo.fixtures import make_indexed_video, read_index
from flipedit_previewd.timeline.model import timeline_from_json
from flipedit_previewd.timeline.projectdb import ProjectSource
from flipedit_previewd.worker.compositor import OutputSpec, compose
from flipedit_previewd.worker.media import MediaPool
from tests.support.helpers import build_project, close_to, decode, solid_png

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def pool() -> MediaPool:
    return MediaPool(64 * 1024 * 1024, 50_000_000)


def render(db: Path, frame: int = 0, width: int = 1280, height: int = 720) -> object:
    timeline = ProjectSource(str(db), (1280, 720), 30).current()
    return decode(compose(timeline, frame, OutputSpec(width, height), pool()).body)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rect_lands_where_the_database_says(tmp_path: Path, version: int) -> None:
    red = solid_png(tmp_path / "red.png", (64, 64), RED)
    db = tmp_path / "p.sqlite"
    build_project(db, version, [{"name": "t", "order": 0, "clips": [{"source": red, "rect": (100, 50, 200, 120)}]}])
    image = render(db)
    assert close_to(image.getpixel((101, 51)), RED) and close_to(image.getpixel((298, 168)), RED)
    assert close_to(image.getpixel((98, 100)), (0, 0, 0)) and close_to(image.getpixel((302, 100)), (0, 0, 0))
    assert close_to(image.getpixel((200, 48)), (0, 0, 0)) and close_to(image.getpixel((200, 172)), (0, 0, 0))
    half = render(db, width=640, height=360)
    assert close_to(half.getpixel((51, 26)), RED) and close_to(half.getpixel((48, 60)), (0, 0, 0))


def test_layering_hidden_tracks_flips_and_off_canvas(tmp_path: Path) -> None:
    red = solid_png(tmp_path / "red.png", (64, 64), RED)
    green = solid_png(tmp_path / "green.png", (64, 64), GREEN)
    split = tmp_path / "split.png"
    from PIL import Image

    img = Image.new("RGB", (100, 100), BLUE)
    img.paste(RED, (0, 0, 50, 100))
    img.save(split)
    db = tmp_path / "p.sqlite"
    build_project(
        db,
        2,
        [
            {"name": "top", "order": 2, "clips": [{"source": green, "rect": (150, 150, 100, 100)}]},
            {"name": "bottom", "order": 1, "clips": [{"source": red, "rect": (100, 100, 200, 200)}]},
            {"name": "hidden", "order": 3, "visible": False, "clips": [{"source": red, "rect": (160, 160, 50, 50)}]},
            {"name": "flip", "order": 0, "clips": [{"source": split, "rect": (600, 100, 100, 100), "flip": 1}]},
            {
                "name": "offcanvas",
                "order": 4,
                "clips": [
                    {"source": green, "rect": (1200, 650, 200, 200)},
                    {"source": red, "rect": (-500, -500, 100, 100)},
                ],
            },
        ],
    )
    image = render(db)
    assert close_to(image.getpixel((200, 200)), GREEN)  # higher order on top
    assert close_to(image.getpixel((120, 120)), RED)
    assert close_to(image.getpixel((610, 150)), BLUE) and close_to(
        image.getpixel((690, 150)), RED
    )  # flipped horizontally
    assert close_to(image.getpixel((1275, 715)), GREEN)  # partly off canvas: the visible part is drawn
    assert image.size == (1280, 720)


def test_no_rect_centres_and_never_upscales(tmp_path: Path) -> None:
    small = solid_png(tmp_path / "s.png", (100, 50), RED)
    db = tmp_path / "p.sqlite"
    build_project(db, 1, [{"name": "t", "order": 0, "clips": [{"source": small}]}])
    image = render(db)
    assert close_to(image.getpixel((640, 360)), RED) and close_to(image.getpixel((592, 338)), RED)
    assert close_to(image.getpixel((585, 360)), (0, 0, 0)) and close_to(image.getpixel((640, 330)), (0, 0, 0))


def test_empty_frame_is_black_with_message(tmp_path: Path) -> None:
    db = tmp_path / "p.sqlite"
    build_project(db, 3, [])
    image = render(db)
    assert close_to(image.getpixel((10, 10)), (0, 0, 0), 5)
    assert image.crop((540, 340, 740, 380)).convert("L").getextrema()[1] > 128  # the text is there


@pytest.fixture(scope="module")
def indexed_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_indexed_video(tmp_path_factory.mktemp("v") / "indexed.mp4", 120, (320, 180), 30, gop=30)


def test_frame_exact_sequential_backward_random(indexed_video: Path) -> None:
    data = {
        "tracks": [
            {
                "clips": [
                    {
                        "source_path": str(indexed_video),
                        "start_on_track_ms": 1000,
                        "end_on_track_ms": 5000,
                        "start_in_source_ms": 0,
                        "rect": {"left": 0, "top": 0, "width": 640, "height": 360},
                    }
                ]
            }
        ]
    }
    timeline = timeline_from_json(data, (1280, 720), 30)
    media = pool()
    spec = OutputSpec(1280, 720, 95)

    def shown(frame: int) -> int:
        return read_index(decode(compose(timeline, frame, spec, media).body), (0, 0, 640, 360))

    order = list(range(30, 70)) + list(range(149, 100, -7)) + [59, 60, 61, 89, 90, 91, 149]
    rng = random.Random(7)
    order += [rng.randrange(30, 150) for _ in range(25)]
    for frame in order:
        assert shown(frame) == frame - 30, f"timeline frame {frame}"
    source = next(iter(media.videos.values()))
    assert source.seeks < len(order) / 2  # sequential access decodes forward instead of seeking


@pytest.mark.parametrize(
    ("gop", "walk", "jumps"),
    [
        # all-intra (DNxHR, ProRes, a proxy): every jump of more than two frames seeks to the target itself
        (1, [0, 1, 2, 3], [(60, True), (61, False), (63, False), (70, True), (20, True)]),
        # GOP 30 (keyframes 0, 30, 60, 90): a jump seeks only when the next keyframe (known, or a GOP after the
        # last one passed) lies on its way
        (30, list(range(0, 41)), [(75, True), (80, False), (95, True), (98, False), (119, False), (10, True)]),
    ],
)
def test_a_forward_jump_seeks_when_a_keyframe_lies_on_its_way(
    tmp_path: Path, gop: int, walk: list[int], jumps: list[tuple[int, bool]]
) -> None:
    video = make_indexed_video(tmp_path / f"g{gop}.mp4", 120, (320, 180), 30, gop=gop)
    data = {"tracks": [{"clips": [{"source_path": str(video), "start_on_track_ms": 0, "end_on_track_ms": 4000}]}]}
    timeline = timeline_from_json(data, (320, 180), 30)
    media = pool()

    def shown(frame: int) -> int:
        return read_index(decode(compose(timeline, frame, OutputSpec(320, 180, 95), media).body))

    for frame in walk:
        assert shown(frame) == frame
    source = next(iter(media.videos.values()))
    for frame, seeks in jumps:
        before = source.seeks
        assert shown(frame) == frame
        assert (source.seeks > before) == seeks, f"frame {frame}: seeked {source.seeks - before} times"


def test_clip_starting_inside_the_source(indexed_video: Path) -> None:
    data = {
        "tracks": [
            {
                "clips": [
                    {
                        "source_path": str(indexed_video),
                        "start_on_track_ms": 0,
                        "end_on_track_ms": 1000,
                        "start_in_source_ms": 2000,
                    }
                ]
            }
        ]
    }
    timeline = timeline_from_json(data, (320, 180), 30)
    body = compose(timeline, 10, OutputSpec(320, 180, 95), pool()).body
    assert read_index(decode(body)) == 70


def test_closing_the_media_frees_its_decoders_without_the_cyclic_collector(indexed_video: Path) -> None:
    """An idle worker closes its media (worker/main.py) and allocates nothing afterwards, so Python's cyclic
    collector never runs there: whatever ``close`` leaves in a reference cycle (a source and its decoding
    generator) keeps its decoder, FFmpeg's threads and frame pools (bench/results/RESULTS.md, "Idle PSS")."""
    data = {
        "tracks": [
            {
                "clips": [
                    {
                        "source_path": str(indexed_video),
                        "start_on_track_ms": 0,
                        "end_on_track_ms": 4000,
                        "start_in_source_ms": 0,
                    }
                ]
            }
        ]
    }
    timeline = timeline_from_json(data, (320, 180), 30)
    media = pool()
    gc.collect()
    gc.disable()
    try:
        for frame in (10, 11, 75, 40):
            compose(timeline, frame, OutputSpec(320, 180, 95), media)
        sources = [weakref.ref(source) for source in media.videos.values()]
        assert sources
        media.close()
        assert [ref() for ref in sources] == [None] * len(sources)
        assert len(media.decoded) == 0
    finally:
        gc.enable()


@pytest.mark.parametrize("kind", ["truncated", "empty", "text", "huge", "missing", "fifo"])
def test_bad_media_renders_a_placeholder_and_reports_once(tmp_path: Path, indexed_video: Path, kind: str) -> None:
    path = (
        tmp_path
        / {
            "truncated": "t.mp4",
            "empty": "e.mp4",
            "text": "x.mp4",
            "huge": "h.png",
            "missing": "m.mp4",
            "fifo": "f.mp4",
        }[kind]
    )
    if kind == "fifo":
        os.mkfifo(path)  # opening it would block forever: it must be refused, not opened
    if kind == "truncated":
        path.write_bytes(indexed_video.read_bytes()[:3000])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not a video\n" * 100)
    elif kind == "huge":
        import struct
        import zlib

        w = h = 20000

        def chunk(tag: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

        path.write_bytes(
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
            + chunk(b"IEND", b"")
        )
    data = {
        "tracks": [
            {
                "clips": [
                    {
                        "source_path": str(path),
                        "start_on_track_ms": 0,
                        "end_on_track_ms": 1000,
                        "rect": {"left": 100, "top": 100, "width": 400, "height": 300},
                    }
                ]
            }
        ]
    }
    timeline = timeline_from_json(data, (1280, 720), 30)
    media = pool()
    first = compose(timeline, 5, OutputSpec(1280, 720), media)
    second = compose(timeline, 6, OutputSpec(1280, 720), media)
    assert len(first.problems) == 1 and first.problems[0][0] == str(path)
    assert second.problems == []  # reported once
    image = decode(first.body)
    assert close_to(image.getpixel((105, 200)), (255, 0, 255), 60)  # the placeholder's border
    assert close_to(image.getpixel((50, 50)), (0, 0, 0), 10)

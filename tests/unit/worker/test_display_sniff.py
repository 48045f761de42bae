"""Display geometry (display.py) and content sniffing (sniff.py): pure rules, no decoder."""

from __future__ import annotations

import struct
from fractions import Fraction

import pytest
from PIL import Image

from flipedit_previewd.worker.display import Geometry, sample_aspect, to_rgb, transpose_of
from flipedit_previewd.worker.sniff import sniff

T = Image.Transpose


def matrix(a: float, b: float, c: float, d: float) -> bytes:
    return struct.pack("<9i", int(a * 65536), int(b * 65536), 0, int(c * 65536), int(d * 65536), 0, 0, 0, 1 << 30)


@pytest.mark.parametrize(
    ("m", "op", "size"),
    [
        ((1, 0, 0, 1), None, (640, 360)),
        ((0, 1, -1, 0), T.ROTATE_270, (360, 640)),  # a phone held upright: clockwise 90
        ((0, -1, 1, 0), T.ROTATE_90, (360, 640)),
        ((-1, 0, 0, -1), T.ROTATE_180, (640, 360)),
        ((-1, 0, 0, 1), T.FLIP_LEFT_RIGHT, (640, 360)),  # a selfie camera's mirror
        ((1, 0, 0, -1), T.FLIP_TOP_BOTTOM, (640, 360)),
        ((0, 1, 1, 0), T.TRANSPOSE, (360, 640)),
        ((0, -1, -1, 0), T.TRANSVERSE, (360, 640)),
        ((0.7071, 0.7071, -0.7071, 0.7071), None, (640, 360)),  # a free rotation: shown as stored
    ],
)
def test_display_matrix_gives_the_players_orientation(
    m: tuple[float, ...], op: T | None, size: tuple[int, int]
) -> None:
    transpose = transpose_of(matrix(*m))
    assert transpose == op
    assert Geometry(640, 360, Fraction(1), transpose).displayed == size


def test_pixel_aspect_widens_and_is_applied_before_rotation() -> None:
    assert Geometry(640, 360, Fraction(4, 3)).displayed == (853, 360)
    assert Geometry(640, 360, Fraction(4, 3), T.ROTATE_270).displayed == (360, 853)
    assert Geometry(640, 360, Fraction(4, 3), T.ROTATE_270).scale_size((360, 853)) == (853, 360)
    assert transpose_of(b"") is None and transpose_of(b"\x00" * 10) is None


@pytest.mark.parametrize("sar", [None, Fraction(0), Fraction(-1), Fraction(1000), Fraction(1, 1000)])
def test_damaged_aspect_ratios_are_shown_square(sar: Fraction | None) -> None:
    assert sample_aspect(sar) == 1


@pytest.mark.parametrize(
    ("mode", "value", "rgb"),
    [
        ("I;16", 65535, (255, 255, 255)),
        ("I;16", 32896, (128, 128, 128)),
        ("I;16", 0, (0, 0, 0)),
        ("I;16B", 65535, (255, 255, 255)),
        ("I", 65535, (255, 255, 255)),
        ("I", 257 * 100, (100, 100, 100)),
        ("F", 0.5, (128, 128, 128)),
        ("L", 77, (77, 77, 77)),
    ],
)
def test_still_levels(mode: str, value: float, rgb: tuple[int, int, int]) -> None:
    shown = to_rgb(Image.new(mode, (2, 2), value))  # type: ignore[arg-type]
    assert shown.mode == "RGB" and shown.getpixel((0, 0)) == rgb


def test_transparency_is_kept() -> None:
    assert to_rgb(Image.new("LA", (1, 1), (10, 20))).getpixel((0, 0)) == (10, 10, 10, 20)
    assert to_rgb(Image.new("PA", (1, 1))).mode == "RGBA"
    palette = Image.new("P", (1, 1))
    palette.info["transparency"] = 0
    assert to_rgb(palette).mode == "RGBA"


@pytest.mark.parametrize(
    ("head", "kind", "name"),
    [
        (b"\xff\xd8\xff\xe0", "image", "JPEG"),
        (b"\x89PNG\r\n\x1a\n", "image", "PNG"),
        (b"GIF89a", "image", "GIF"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image", "WebP"),
        (b"BM" + b"\x00" * 12 + b"\x28" + b"\x00" * 10, "image", "BMP"),
        (b"II*\x00", "refused", "TIFF"),
        (b"MM\x00*", "refused", "TIFF"),
        (b"YUV4MPEG2 W10", "refused", "YUV4MPEG"),
        (b"\x00\x00\x00\x18ftypheic", "refused", "HEIF/HEIC"),
        (b"\x00\x00\x00\x18ftypisom", "video", "MP4/MOV"),
        (b"\x1aE\xdf\xa3", "video", "Matroska"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "video", "AVI"),
        (b"\x47" + b"\x00" * 187 + b"\x47" + b"\x00" * 10, "video", "MPEG-TS"),
        (b"\x00\x00\x00\x00\x47" + b"\x00" * 191 + b"\x47", "video", "MPEG-TS"),  # .m2ts: 192-byte packets
        (b"\x00\x00\x01\xba", "video", "MPEG-PS"),
        (b"#EXTM3U\n", "refused", "HLS playlist"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "refused", "WAV"),
        (b"<?xml version", "refused", "SVG/XML"),
    ],
)
def test_sniffing_by_content(head: bytes, kind: str, name: str) -> None:
    found = sniff(head)
    assert found is not None and (found.kind, found.name) == (kind, name)


def test_refusals_name_what_is_allowed() -> None:
    assert sniff(b"II*\x00").refusal() == "TIFF is not an allowed still format; allowed: JPEG, PNG, WebP, BMP, GIF"  # type: ignore[union-attr]
    assert sniff(b"YUV4MPEG2").refusal().startswith("YUV4MPEG is not an allowed video container; allowed: MP4/MOV")  # type: ignore[union-attr]
    assert sniff(b"RIFF\x00\x00\x00\x00WAVE").refusal() == "WAV has no picture (an audio file)"  # type: ignore[union-attr]
    assert sniff(b"plain text") is None


def test_keyframe_index_finds_the_keyframe_before_and_knows_adjacent_ones() -> None:
    from flipedit_previewd.worker.keyframes import KeyframeIndex

    index = KeyframeIndex()
    index.add(0, 564, None)
    index.add(750_000, 836_224, 0)  # demuxed one after the other: adjacent
    index.add(2_250_000, 2_502_656, None)  # reached by a seek: its predecessor is unknown
    assert index.before(Fraction(-1)) is None
    assert index.before(Fraction(0)) == (0, 564)
    assert index.before(Fraction(749_999)) == (0, 564) and index.before(Fraction(750_000)) == (750_000, 836_224)
    assert index.before(Fraction(3_000_000)) == (2_250_000, 2_502_656)
    assert index.covers(0, Fraction(749_999)) and not index.covers(0, Fraction(750_000))
    assert not index.covers(750_000, Fraction(800_000))  # what follows 750_000 was never seen: maybe a keyframe
    index.add(0, 564, None)
    assert len(index) == 3


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _movie(matrix: tuple[int, int, int, int], handler: bytes = b"vide") -> bytes:
    a, b, c, d = matrix
    tkhd = (
        b"\x00" * 4
        + b"\x00" * 20
        + b"\x00" * 16
        + struct.pack(">9i", a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30)
        + b"\x00" * 8
    )
    hdlr = b"\x00" * 8 + handler + b"\x00" * 12
    trak = _box(b"trak", _box(b"tkhd", tkhd) + _box(b"mdia", _box(b"hdlr", hdlr)))
    return _box(b"ftyp", b"isom\x00\x00\x00\x00") + _box(b"moov", trak)


def read(data: bytes) -> bytes | None:
    from flipedit_previewd.worker.display import tkhd_matrix

    return tkhd_matrix(lambda offset, size: data[offset : offset + size], len(data))


def test_the_track_header_gives_the_matrix_where_ffmpeg_does_not() -> None:
    assert transpose_of(read(_movie((0, 1, -1, 0)))) == T.ROTATE_270
    assert read(_movie((0, 1, -1, 0), handler=b"soun")) is None  # not a video track


@pytest.mark.parametrize("damage", ["size0", "size_huge", "size_small", "truncated", "largesize", "deep_garbage"])
def test_a_hostile_movie_header_costs_nothing(damage: str) -> None:
    data = bytearray(_movie((0, 1, -1, 0)))
    moov = data.find(b"moov") - 4
    if damage == "size0":
        data[moov : moov + 4] = struct.pack(">I", 0)  # "to the end of the file": still bounded by the file
    elif damage == "size_huge":
        data[moov : moov + 4] = struct.pack(">I", 0xFFFFFFF0)
    elif damage == "size_small":
        data[moov + 8 : moov + 12] = struct.pack(">I", 3)  # trak of 3 bytes
    elif damage == "truncated":
        data = data[: moov + 30]
    elif damage == "largesize":
        data[moov : moov + 4] = struct.pack(">I", 1)  # a 64-bit size follows, here garbage
    elif damage == "deep_garbage":
        data += _box(b"moov", b"\xff" * 4000)
    result = read(bytes(data))
    assert result is None or len(result) == 36


def test_only_matrices_that_cannot_be_honoured_are_reported() -> None:
    from flipedit_previewd.worker.display import matrix_problem

    assert (
        matrix_problem(matrix(1, 0, 0, 1)) == ""
    )  # the identity every MP4's track header carries (FFmpeg 5.1 reads it)
    assert (
        matrix_problem(matrix(0, 1, -1, 0)) == "" and matrix_problem(None) == "" and matrix_problem(b"\x00" * 36) == ""
    )
    assert "rotation of 45 degrees" in matrix_problem(matrix(0.7071, 0.7071, -0.7071, 0.7071))

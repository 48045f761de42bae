"""How a source is shown: its orientation, its pixel shape and its levels, as players show them.

A phone stores a portrait video as landscape pixels plus a display matrix; a camera may
store 1440x1080 pixels meant to be shown 1920x1080 (sample aspect ratio 4:3); a PNG may
hold 16-bit grey. The decoders hand us the stored pixels; this module says what the
viewer is meant to see, so the compositor fits and places the *displayed* picture.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from PIL import Image

_T = Image.Transpose
# The display matrix's 2x2 part (a, b, c, d) maps a stored pixel (x, y) to (a*x + c*y, b*x + d*y)
# (ISO/IEC 14496-12 tkhd; FFmpeg's AV_FRAME_DATA_DISPLAYMATRIX uses the same layout). Axis-aligned
# matrices are the eight rotations and mirrorings a player applies.
_TRANSPOSES: dict[tuple[int, int, int, int], _T | None] = {
    (1, 0, 0, 1): None,
    (-1, 0, 0, 1): _T.FLIP_LEFT_RIGHT,
    (1, 0, 0, -1): _T.FLIP_TOP_BOTTOM,
    (-1, 0, 0, -1): _T.ROTATE_180,
    (0, 1, -1, 0): _T.ROTATE_270,  # clockwise 90: the stored top edge becomes the right edge (a phone held upright)
    (0, -1, 1, 0): _T.ROTATE_90,  # counter-clockwise 90
    (0, 1, 1, 0): _T.TRANSPOSE,
    (0, -1, -1, 0): _T.TRANSVERSE,
}
_SWAPS = {_T.ROTATE_90, _T.ROTATE_270, _T.TRANSPOSE, _T.TRANSVERSE}
MAX_SAR = 10  # a sample aspect ratio beyond 10:1 either way is damage, not intent: shown square


@dataclass(frozen=True)
class Geometry:
    """Stored size, pixel shape and orientation of a video; ``displayed`` is what the viewer sees."""

    width: int
    height: int
    sar: Fraction = Fraction(1)
    transpose: _T | None = None

    @property
    def swaps(self) -> bool:
        return self.transpose in _SWAPS

    @property
    def upright(self) -> tuple[int, int]:
        """The stored picture with its pixel shape applied, before rotation."""
        if self.sar == 1:
            return self.width, self.height
        return max(1, round(self.width * self.sar)), self.height

    @property
    def displayed(self) -> tuple[int, int]:
        width, height = self.upright
        return (height, width) if self.swaps else (width, height)

    def scale_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size to scale the stored picture to, so that after ``orient`` it is ``size``."""
        return (size[1], size[0]) if self.swaps else size

    def orient(self, image: Image.Image) -> Image.Image:
        return image if self.transpose is None else image.transpose(self.transpose)


def transpose_of(matrix: bytes | None) -> _T | None:
    """The rotation/mirroring of a display matrix (nine int32, 16.16 fixed point for a..d).

    A matrix that is not axis-aligned (a free rotation) or not readable is shown as stored.
    """
    if not matrix or len(matrix) < 36:
        return None
    m = struct.unpack("<9i", matrix[:36])
    key = tuple(_unit(v) for v in (m[0], m[1], m[3], m[4]))
    return _TRANSPOSES.get(key, None)  # type: ignore[arg-type]


def matrix_problem(matrix: bytes | None) -> str:
    """Why a display matrix cannot be honoured ("" when it can, or there is none): said per source, never silent."""
    if not matrix or len(matrix) < 36:
        return ""
    m = struct.unpack("<9i", matrix[:36])
    if tuple(_unit(v) for v in (m[0], m[1], m[3], m[4])) in _TRANSPOSES or (m[0], m[1], m[3], m[4]) == (0, 0, 0, 0):
        return ""  # honoured (the identity included: FFmpeg 5.1's track header gives it for every MP4), or none given
    degrees = math.degrees(math.atan2(m[1], m[0]))
    return (
        f"its display matrix asks for a rotation of {degrees:.0f} degrees or a skew: only quarter turns and "
        "mirroring are applied; shown as stored"
    )


def _unit(value: int) -> int | None:
    ratio = value / 65536
    for unit in (-1, 0, 1):
        if abs(ratio - unit) < 0.01:
            return unit
    return None


def sample_aspect(sar: Fraction | None) -> Fraction:
    if sar is None or sar <= 0 or not Fraction(1, MAX_SAR) <= sar <= MAX_SAR:
        return Fraction(1)
    return Fraction(sar)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB or RGBA at 8 bits per channel, with each mode's levels mapped as a viewer maps them.

    Pillow's ``convert("RGB")`` clips 16-bit grey (``I;16``) and 32-bit ``I`` to 255 (all
    white); these carry 0..65535 and are scaled down. Modes with transparency keep it.
    """
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        return image
    if mode.startswith("I;16") or mode == "I":
        # 16-bit samples: 0..65535 -> 0..255 (Pillow's point() on mode I is a linear map).
        grey = image.convert("I") if mode != "I" else image
        return grey.point(lambda v: v * (1 / 257) + 0.5).convert("L").convert("RGB")
    if mode == "F":
        low, high = image.getextrema()
        scale = 255.0 if isinstance(high, float) and high <= 1.0 else 1.0
        return image.point(lambda v: v * scale + 0.5).convert("L").convert("RGB")
    if mode in ("LA", "La", "PA", "RGBa") or (mode in ("P", "L", "1") and "transparency" in image.info):
        return image.convert("RGBA")
    return image.convert("RGB")  # L, 1, P, CMYK (Pillow undoes Adobe's inversion on decode), YCbCr, LAB, HSV


MAX_MOOV = 64 * 1024 * 1024  # a movie header larger than this is not read for its matrix (hours of samples fit in less)


def tkhd_matrix(read_at: Callable[[int, int], bytes], file_size: int) -> bytes | None:
    """The display matrix of the first video track of an MP4/MOV, as FFmpeg lays it out (nine int32).

    For FFmpeg builds that do not attach the matrix to decoded frames (Debian 12's 5.1 with PyAV 10):
    walks moov/trak/{tkhd, mdia/hdlr} with every size checked against its parent, so a hostile
    file costs at most one bounded read. ``read_at(offset, size)`` reads the opened descriptor.
    """
    offset = 0
    for _ in range(64):  # top-level boxes: ftyp, free, mdat, moov ... in any order
        if offset + 8 > file_size:
            return None
        size, kind = _box(read_at(offset, 16), file_size - offset)
        if size is None:
            return None
        if kind == b"moov":
            if size > MAX_MOOV:
                return None
            moov = read_at(offset, size)
            return _video_matrix(moov, *_body(moov, 0, len(moov)))
        offset += size
    return None


def _box(head: bytes, room: int) -> tuple[int | None, bytes]:
    if len(head) < 8:
        return None, b""
    size, kind = struct.unpack(">I4s", head[:8])
    if size == 1 and len(head) >= 16:
        size = struct.unpack(">Q", head[8:16])[0]
    elif size == 0:
        size = room
    return (size if 8 <= size <= room else None), kind


def _body(data: bytes, start: int, end: int) -> tuple[int, int]:
    header = 16 if struct.unpack(">I", data[start : start + 4])[0] == 1 else 8
    return start + header, end


def _children(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    found: list[tuple[bytes, int, int]] = []
    at = start
    while at + 8 <= end and len(found) < 1024:
        size, kind = _box(data[at : at + 16], end - at)
        if size is None:
            break
        found.append((kind, at, at + size))
        at += size
    return found


def _video_matrix(data: bytes, start: int, end: int) -> bytes | None:
    for kind, at, until in _children(data, start, end):
        if kind != b"trak":
            continue
        matrix, video = None, False
        for child, c_at, c_until in _children(data, *_body(data, at, until)):
            body, _ = _body(data, c_at, c_until)
            if child == b"tkhd" and c_until - body >= 84:
                version = data[body]
                offset = body + 4 + (32 if version == 1 else 20) + 16
                if offset + 36 <= c_until:
                    matrix = struct.pack("<9i", *struct.unpack(">9i", data[offset : offset + 36]))
            elif child == b"mdia":
                for grand, g_at, g_until in _children(data, *_body(data, c_at, c_until)):
                    g_body, _ = _body(data, g_at, g_until)
                    if grand == b"hdlr" and g_until - g_body >= 12 and data[g_body + 8 : g_body + 12] == b"vide":
                        video = True
        if video:
            return matrix
    return None

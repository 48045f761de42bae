"""Source media: frame-exact video through PyAV, stills through Pillow, both already scaled.

Decoding is the expensive part of a frame, so each worker keeps decoders open
per source (bounded LRU) and remembers where each one stands: a request a few
frames ahead decodes forward, only a jump backwards or far ahead seeks. All
scaling happens in FFmpeg's scaler or Pillow's draft/reduce at the target
size, never at full size first.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Any, cast

import av
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from .framecache import FrameCache

STILL_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
# What Pillow may decode: the formats the README promises, never one guessed from content
# (EPS starts Ghostscript; many others are rarely-audited decoders).
STILL_FORMATS = ["JPEG", "PNG", "WEBP", "BMP", "GIF"]
# What FFmpeg may demux: containers whose media is inside the one opened file. No playlists
# (hls, dash), lists (concat), image sequences (image2), or anything that opens other files or URLs.
VIDEO_DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,flv,ogg,asf,mxf,ivf,h264,hevc,m4v,mpegvideo"
FORWARD_DECODE_LIMIT = 90  # frames: beyond this a seek is cheaper than decoding forward


class MediaError(Exception):
    """A source that cannot give us pixels; rendered as a placeholder, never a failed frame."""


@dataclass
class _Decoded:
    index: int
    frame: Any  # av.VideoFrame at full size; scaled on demand


def open_media(path: str, roots: tuple[str, ...] | None) -> IO[bytes]:
    """Open once, then check what was opened: a regular file whose real path is under a root.

    ``O_NONBLOCK`` makes opening a FIFO return at once (it is then refused), the checks are made on
    the descriptor, so a symlink or file swapped after the timeline was accepted gains nothing, and
    the decoders read from this descriptor only. ``roots`` None means unchecked (tools, benchmarks).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise MediaError("file not found") from None
    except OSError as exc:
        raise MediaError(f"cannot open: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MediaError("not a regular file")
        if roots is not None:
            try:
                real = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                raise MediaError("cannot tell where the opened file is (no /proc)") from None
            if not any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots):
                raise MediaError("outside the allowed media roots")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _refuse_nested_open(url: str, flags: int, options: Any) -> Any:
    raise OSError(f"opening {url!r} from inside a media file is not allowed")


class VideoSource:
    def __init__(self, path: str, roots: tuple[str, ...] | None = None, max_pixels: int = 0) -> None:
        self.path = path
        self.file = open_media(path, roots)
        options = {"format_whitelist": VIDEO_DEMUXERS, "protocol_whitelist": "none", "enable_drefs": "0"}
        try:
            try:
                self.container = av.open(self.file, "r", timeout=5.0, io_open=_refuse_nested_open, options=options)
            except TypeError:  # PyAV without io_open: the protocol whitelist still refuses nested opens
                self.file.seek(0)
                self.container = av.open(self.file, "r", timeout=5.0, options=options)
        except (av.FFmpegError, OSError, ValueError) as exc:
            self.file.close()
            raise MediaError(f"cannot open video: {_short(exc)}") from None
        if not self.container.streams.video:
            self.close()
            raise MediaError("no video stream")
        self.stream = self.container.streams.video[0]
        width, height = self.stream.codec_context.width, self.stream.codec_context.height
        if max_pixels and width * height > max_pixels:
            self.close()
            raise MediaError(f"video too large: {width}x{height} exceeds {max_pixels} pixels")
        # Slice threads only: frame threading adds latency to every seek and, on 2 cores
        # shared by 2 worker processes, measured slower (bench/render.py).
        self.stream.thread_type = "SLICE"
        rate = self.stream.average_rate or self.stream.guessed_rate or Fraction(30)
        self.rate = Fraction(rate)
        self.time_base = self.stream.time_base or Fraction(1, 1000)
        self.start_pts = self.stream.start_time or 0
        self._frames: Any = None
        self._last: _Decoded | None = None
        self._ahead: _Decoded | None = None
        self.scaled: tuple[tuple[int, tuple[int, int]], Image.Image] | None = None
        self.seeks = 0

    def size(self) -> tuple[int, int]:
        return self.stream.codec_context.width, self.stream.codec_context.height

    def _index_of(self, frame: Any) -> int:
        if frame.pts is None:
            return self._last.index + 1 if self._last else 0
        seconds = (frame.pts - self.start_pts) * self.time_base
        return int(round(seconds * self.rate))

    def _seek(self, target: int) -> None:
        self.seeks += 1
        pts = self.start_pts + int(Fraction(target) / self.rate / self.time_base)
        self.container.seek(max(pts, self.start_pts), stream=self.stream, backward=True, any_frame=False)
        self._frames = self.container.decode(self.stream)
        self._last = None
        self._ahead = None

    def frame_at(self, target: int) -> Any:
        """The decoded frame whose index is ``target`` (or the last one before it)."""
        last = self._last
        if last is not None and last.index == target:
            return last.frame
        if self._frames is None or last is None or target < last.index or target - last.index > FORWARD_DECODE_LIMIT:
            self._seek(target)
        best = self._last
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.index > target:
            self._ahead = ahead
        else:
            best = ahead or best
            if best is None or best.index < target:
                best = self._decode_until(target, best)
        if best is None:
            if self._ahead is None:
                raise MediaError(f"frame {target} is beyond the end of the video")
            best, self._ahead = self._ahead, None  # target precedes the first frame
        self._last = best
        return best.frame

    def _decode_until(self, target: int, best: _Decoded | None) -> _Decoded | None:
        try:
            for frame in self._frames:
                decoded = _Decoded(self._index_of(frame), frame)
                if decoded.index > target:
                    self._ahead = decoded  # keep it: the next request probably wants it
                    return best
                best = decoded
                if decoded.index == target:
                    return best
        except (av.FFmpegError, OSError) as exc:
            self._frames = None
            raise MediaError(f"decode error: {_short(exc)}") from None
        self._frames = None  # past the end: the last frame stands, the next request seeks
        return best

    def close(self) -> None:
        try:
            self.container.close()
        finally:
            self.file.close()


class MediaPool:
    """Per-worker media state: open decoders, scaled stills and the problems already reported."""

    def __init__(self, cache_bytes: int, max_source_pixels: int, max_open: int = 8, roots: tuple[str, ...] | None = None) -> None:
        self.max_source_pixels = max_source_pixels
        self.roots = roots
        self.max_open = max_open
        self.videos: OrderedDict[tuple[str, Any], VideoSource] = OrderedDict()
        self.scaled = FrameCache(cache_bytes)
        self.reported: set[tuple[str, str]] = set()
        Image.MAX_IMAGE_PIXELS = max_source_pixels

    def video(self, path: str, stat: Any) -> VideoSource:
        key = (path, stat)
        source = self.videos.get(key)
        if source is not None:
            self.videos.move_to_end(key)
            return source
        for old_key in [k for k in self.videos if k[0] == path]:
            self.videos.pop(old_key).close()
        source = VideoSource(path, self.roots, self.max_source_pixels)
        self.videos[key] = source
        while len(self.videos) > self.max_open:
            _, evicted = self.videos.popitem(last=False)
            evicted.close()
        return source

    def video_frame(self, path: str, stat: Any, index: int, fps: float, size: tuple[int, int]) -> Image.Image:
        source = self.video(path, stat)
        # The editor's timing model counts source frames at the timeline rate; map to the source's own rate.
        source_index = int(round(Fraction(index) / Fraction(fps).limit_denominator(1001) * source.rate))
        key = (source_index, size)
        if source.scaled is not None and source.scaled[0] == key:
            return source.scaled[1]  # same frame, same size: e.g. another layer is being dragged
        frame = source.frame_at(source_index)
        image: Image.Image = frame.reformat(width=size[0], height=size[1], format="rgb24").to_image()
        # One scaled frame per source, not an LRU of them: caching many full frames churns memory
        # (fresh pages on every allocation) and measured slower than re-scaling (bench/render.py).
        source.scaled = (key, image)
        return image

    def native_size(self, path: str, stat: Any, kind: str) -> tuple[int, int]:
        if kind == "video":
            return self.video(path, stat).size()
        key = ("size", path, stat)
        cached = self.scaled.get(key)
        if cached is None:
            image, cached, handle = self._open_still(path)
            image.close()
            handle.close()
            self.scaled.put(key, cached, 64)
        return cached  # type: ignore[no-any-return]

    def set_roots(self, roots: tuple[str, ...]) -> None:
        """New roots (a reload, another project): nothing opened under the old ones is used again."""
        if roots != self.roots:
            self.close()
            self.scaled = FrameCache(self.scaled.capacity)
            self.roots = roots

    def _open_still(self, path: str) -> tuple[Image.Image, tuple[int, int], IO[bytes]]:
        """Open lazily from the checked descriptor; format and pixel count from the header, before decoding."""
        handle = open_media(path, self.roots)
        try:
            image = Image.open(handle, formats=STILL_FORMATS)
            width, height = image.size
            if width * height > self.max_source_pixels:
                image.close()
                raise MediaError(f"image too large: {width}x{height} exceeds {self.max_source_pixels} pixels")
            orientation = image.getexif().get(0x0112, 1)
        except Image.DecompressionBombError as exc:
            handle.close()
            raise MediaError(f"image too large: {_short(exc)}") from None
        except UnidentifiedImageError:
            handle.close()
            raise MediaError(f"not an allowed image format (allowed: {', '.join(STILL_FORMATS)})") from None
        except (OSError, ValueError, SyntaxError) as exc:
            handle.close()
            raise MediaError(f"cannot read image: {_short(exc)}") from None
        except MediaError:
            handle.close()
            raise
        return image, ((height, width) if orientation in (5, 6, 7, 8) else (width, height)), handle

    def still(self, path: str, stat: Any, size: tuple[int, int]) -> Image.Image:
        key = ("s", path, stat, size)
        cached = self.scaled.get(key)
        if cached is not None:
            return cast(Image.Image, cached)
        image, visible, handle = self._open_still(path)
        try:
            if image.format == "JPEG":
                swapped = visible != image.size
                image.draft("RGB", (size[1], size[0]) if swapped else size)
            image.load()
            image = ImageOps.exif_transpose(image) or image
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise MediaError(f"cannot decode image: {_short(exc)}") from None
        finally:
            handle.close()
        self.scaled.put(key, image, size[0] * size[1] * len(image.getbands()))
        return image

    def first_report(self, path: str, problem: str) -> bool:
        key = (path, problem)
        if key in self.reported:
            return False
        self.reported.add(key)
        return True

    def close(self) -> None:
        for source in self.videos.values():
            source.close()
        self.videos.clear()


def kind_of(path: str, clip_type: str) -> str:
    if clip_type == "image" or os.path.splitext(path)[1].lower() in STILL_EXTENSIONS:
        return "image"
    return "video"


def placeholder(size: tuple[int, int], path: str, problem: str) -> Image.Image:
    """A visible tile that names the problem, drawn where the clip would have been."""
    tile = Image.new("RGB", size, (64, 0, 64))
    draw = ImageDraw.Draw(tile)
    draw.rectangle([0, 0, size[0] - 1, size[1] - 1], outline=(255, 0, 255), width=max(1, min(size) // 50))
    text = f"{os.path.basename(path) or path}\n{problem}"
    draw.multiline_text((6, 6), text, fill=(255, 255, 255))
    return tile


def _short(exc: BaseException) -> str:
    # PyAV errors end with ": '<name>'", and for a file opened by descriptor the name is that
    # descriptor's number, which changes between opens: drop it, or "reported once" reports again.
    if isinstance(getattr(exc, "strerror", None), str) and getattr(exc, "errno", None) is not None:
        text = str(exc.strerror).strip()  # type: ignore[attr-defined]
    else:
        text = str(exc).strip()
    text = text or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."

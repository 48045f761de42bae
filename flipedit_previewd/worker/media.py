"""Source media: frame-exact video through PyAV, stills through Pillow, both already scaled.

Decoding is the expensive part of a frame, so each worker keeps decoders open
per source (bounded LRU) and remembers where each one stands: a request a few
frames ahead decodes forward, only a jump backwards or far ahead seeks. All
scaling happens in FFmpeg's scaler or Pillow's draft/reduce at the target
size, never at full size first.
"""

from __future__ import annotations

import fcntl
import functools
import os
import stat
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Any, cast

import av
import av.video.reformatter
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from flipedit_previewd.common.framecache import FrameCache
from flipedit_previewd.proxy.reader import ProxyReader, usable
from flipedit_previewd.proxy.store import Manifest, Params, params_for
from flipedit_previewd.worker.decoded import RUN_BYTES, RUN_FRAMES, DecodedFrames, following_of
from flipedit_previewd.worker.display import Geometry, matrix_problem, sample_aspect, tkhd_matrix, to_rgb, transpose_of
from flipedit_previewd.worker.keyframes import KeyframeIndex
from flipedit_previewd.worker.sniff import (
    HEAD_BYTES,
    STILL_EXTENSIONS,
    STILL_FORMATS,
    STILL_NAMES,
    VIDEO_CODECS,
    VIDEO_DEMUXERS,
    Sniffed,
    sniff,
)

FORWARD_DECODE_LIMIT = 90  # frames: beyond this a seek is cheaper than decoding forward
REVERSE_WINDOW = (
    60  # frames: a request this close behind the decoder is a scrub turning back (keep what its decode passes)
)
SEEK_ATTEMPTS = 5  # seeks ever further back (1, 2, 4, 8, 16 s) before decoding from the first byte


# Above 8 bits per sample FFmpeg's scaler takes its generic path, where the default (bilinear)
# is soft and biased. Measured against the original picture (docs/usage.md, "Which frame is shown"): when scaling,
# bicubic with full chroma interpolation and exact rounding; at the stored size, error
# diffusion. 8-bit sources keep the default, bit-exact with FFmpeg's own decoding.
def _flags(*names: str) -> Any:
    """Scaler flags combined, or the algorithm alone where PyAV (Debian 12's 10.0) has no flag members."""
    interpolation = av.video.reformatter.Interpolation
    try:
        combined = getattr(interpolation, names[0])
        for name in names[1:]:
            combined |= getattr(interpolation, name)
        return combined
    except (AttributeError, TypeError):
        return getattr(interpolation, names[0])


DEEP_SCALED = _flags("BICUBIC", "ACCURATE_RND", "FULL_CHR_H_INT")
DEEP_NATIVE = _flags("POINT", "ERROR_DIFFUSION")  # at the stored size: FFmpeg's own conversion, within 0.2 levels


class MediaError(Exception):
    """A source that cannot give us pixels; rendered as a placeholder, never a failed frame."""


@dataclass
class _Decoded:
    pts: int  # presentation time in ticks of the stream's time base (numbered on where the file has none)
    frame: Any  # av.VideoFrame at full size; scaled on demand


Decoded = _Decoded  # the public name, for tools that read a source's frames (VideoSource.from_start)


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
    except PermissionError as exc:
        # In a confined worker (confine.py) Landlock refuses a path outside the roots before it is opened:
        # the same reason as the check below would give (resolving the path opens nothing)
        if roots is not None and not _under(os.path.realpath(path), roots):
            raise MediaError("outside the allowed media roots") from None
        raise MediaError(f"cannot open: {exc.strerror}") from None
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
            if not _under(real, roots):
                raise MediaError("outside the allowed media roots")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _under(real: str, roots: tuple[str, ...]) -> bool:
    return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)


def _refuse_nested_open(url: str, flags: int, options: Any) -> Any:
    raise OSError(f"opening {url!r} from inside a media file is not allowed")


@functools.lru_cache(maxsize=16)
def timeline_rate(fps: float) -> Fraction:
    """The timeline's rate as an exact fraction: 29.97 is 30000/1001, as the NTSC rates are meant.
    Cached: asked for each video layer of each frame, and a timeline has one rate."""
    rate = Fraction(fps).limit_denominator(1001)
    for base in (24, 30, 48, 60, 120):
        ntsc = Fraction(base * 1000, 1001)
        if rate != base and abs(float(rate - ntsc)) < 0.005:
            return ntsc
    return rate


class VideoSource:
    """One open video: frames placed by presentation time, found by seeking that never lands late.

    The time rule (docs/usage.md, "Which frame is shown"): at ``t`` seconds into the source the frame
    shown is the last one whose presentation time, counted from the first frame's, is at or
    before ``t`` (half a tick of the stream's time base allowed for rounding in the file). A
    seek is verified: when the first frame it yields is already past the target (MPEG-TS and
    MPEG-PS seek by byte estimate; an open-GOP keyframe's leading frames are dropped after a
    seek), it seeks further back, and finally decodes from the first byte.
    """

    def __init__(self, path: str, roots: tuple[str, ...] | None = None, max_pixels: int = 0) -> None:
        self.path = path
        self.max_pixels = max_pixels
        self.file = open_media(path, roots)
        self.seeks = 0
        self.restarts = 0
        self._frames: Any = None
        self._last: _Decoded | None = None
        self._ahead: _Decoded | None = None
        self._pulled: int | None = None  # the last time given out by _pull: numbering of frames without one
        self.keyframes = KeyframeIndex()
        self._lands_late = False  # a timestamp seek of this source has yielded a frame after its target
        self._bytes_refused = False  # the demuxer refuses byte seeks (it has an index of its own)
        self.scaled: tuple[tuple[int, tuple[int, int]], Image.Image] | None = None
        self.run: list[_Decoded] = []  # the frames the last decode pass went through, up to its target (decoded.py)
        self.run_from: Fraction | None = None  # from which pts on they are noted (None: not noted)
        try:
            self._open_container()
            self.stream = self.container.streams.video[0] if self.container.streams.video else None
            if self.stream is None:
                raise MediaError("no video stream")
            codec = self.stream.codec_context.name
            if codec not in VIDEO_CODECS:
                raise MediaError(f"the {codec} codec is not an allowed video codec")
            self._check_pixels(self.stream.codec_context.width, self.stream.codec_context.height)
            # Slice threads only: frame threading adds latency to every seek and, on 2 cores
            # shared by 2 worker processes, measured slower (bench/render.py).
            self.stream.thread_type = "SLICE"
            self.rate = Fraction(self.stream.average_rate or self.stream.guessed_rate or 30)
            self.time_base = Fraction(self.stream.time_base or Fraction(1, 1000))
            self._tick = 1 / self.rate / self.time_base  # one frame's duration in ticks (numbering, windows)
            self._frames = self._decoding()
            first = self._pull()
            if first is None:
                raise MediaError("no frame could be decoded")
        except MediaError:
            self.close()
            raise
        except (av.FFmpegError, OSError, ValueError, MemoryError, RecursionError) as exc:
            self.close()
            raise MediaError(f"cannot open video: {_short(exc)}") from None
        # The first frame gives the origin of time and what the viewer sees: the display
        # matrix and the pixel shape travel with the decoded frames.
        self.origin = first.pts
        self.timestamps = first.frame.pts is not None
        matrix = next((bytes(sd) for sd in first.frame.side_data if str(sd.type).endswith("DISPLAYMATRIX")), None)
        if matrix is None and self.container.format.name.startswith("mov"):
            matrix = tkhd_matrix(self._read_at, os.fstat(self.file.fileno()).st_size)
        sar = getattr(self.stream, "sample_aspect_ratio", None) or self.stream.codec_context.sample_aspect_ratio
        self.geometry = Geometry(first.frame.width, first.frame.height, sample_aspect(sar), transpose_of(matrix))
        self.warning = matrix_problem(matrix)  # shown, but not as a player would: reported per source
        self.deep = any(component.bits > 8 for component in first.frame.format.components)
        # how many decoded frames a pass may keep for a scrub turning back (decoded.py): bounded in bytes
        self.frame_bytes = max(1, sum(plane.buffer_size for plane in first.frame.planes))
        self.run_limit = max(1, min(RUN_FRAMES, RUN_BYTES // self.frame_bytes))
        self._last = first

    def _open_container(self) -> None:
        self.file.seek(0)
        # container_options, not options: those are also given to every codec, and PyAV 10 (Debian 12)
        # then aborts the process with "free(): invalid pointer" when opening an MPEG-PS file.
        options = {"format_whitelist": VIDEO_DEMUXERS, "protocol_whitelist": "none", "enable_drefs": "0"}
        try:
            self.container = av.open(
                self.file, "r", timeout=5.0, io_open=_refuse_nested_open, container_options=options
            )
        except TypeError:  # PyAV without io_open: the protocol whitelist still refuses nested opens
            self.file.seek(0)
            self.container = av.open(self.file, "r", timeout=5.0, container_options=options)

    def _read_at(self, offset: int, size: int) -> bytes:
        return os.pread(self.file.fileno(), size, offset)

    def _check_pixels(self, width: int, height: int) -> None:
        if self.max_pixels and width * height > self.max_pixels:
            raise MediaError(f"video too large: {width}x{height} exceeds {self.max_pixels} pixels")

    def size(self) -> tuple[int, int]:
        """The displayed size: rotation and pixel shape applied, as a player shows it."""
        return self.geometry.displayed

    def _pull(self) -> _Decoded | None:
        """The next frame in presentation order, or None at the end (the iterator is then dropped)."""
        try:
            frame = next(self._frames)
        except StopIteration:
            self._frames = None
            return None
        self._check_pixels(frame.width, frame.height)  # a stream may switch to a larger size mid-way
        pts = frame.pts
        if pts is None:  # raw streams carry no times: numbered at the stream's rate, from the last one
            pts = 0 if self._pulled is None else self._pulled + max(1, round(self._tick))
        self._pulled = pts
        return _Decoded(pts, frame)

    def limit_of(self, seconds: Fraction) -> Fraction:
        """The latest presentation time (stream ticks) a frame shown ``seconds`` after the first may have."""
        return self.origin + seconds / self.time_base + Fraction(1, 2)

    def position(self) -> int | None:
        """The pts of the frame the decoder last gave out (None after an error)."""
        return self._last.pts if self._last is not None else None

    def ended(self) -> bool:
        """The decoder has read the whole file (the last frame it gave stands for every later time)."""
        return self._frames is None

    def read_ahead(self) -> _Decoded | None:
        return self._ahead

    def frame_at(self, seconds: Fraction) -> _Decoded:
        """The frame on screen ``seconds`` after the first frame (see the class's time rule)."""
        limit = self.limit_of(seconds)
        self.run = []
        try:
            return self._frame_at(limit)
        except MediaError:
            self._frames = None
            raise
        except (av.FFmpegError, OSError, ValueError, MemoryError, RecursionError) as exc:
            self._frames = None
            self._last = self._ahead = None
            raise MediaError(f"decode error: {_short(exc)}") from None

    def _frame_at(self, limit: Fraction) -> _Decoded:
        last, ahead = self._last, self._ahead
        if last is not None and last.pts <= limit:
            if (ahead is not None and ahead.pts > limit) or (ahead is None and self._frames is None):
                return last  # the same frame (or the last of the file), nothing to decode
            here = ahead.pts if ahead is not None else last.pts
            if (
                self._frames is not None
                and limit - here <= FORWARD_DECODE_LIMIT * self._tick
                and not self._keyframe_between(here, limit)
            ):
                return self._forward(limit)
        self._seek(limit)
        return self._forward(limit)

    def _keyframe_between(self, here: int, limit: Fraction) -> bool:
        """A keyframe after ``here`` and at or before ``limit``: a seek to it costs less than decoding forward.

        Known from the keyframe index, or, where timestamp seeks land exactly (an indexed container),
        inferred: every keyframe the decoder passed on its way to ``here`` is in the index, so the last
        known one at or before ``here`` is the real one, and the next comes at most the widest keyframe
        gap seen after it. Without this, an all-intra source decoded up to 90 whole frames for a jump a
        seek answers with one (bench/results/FOOTAGE.md). A step of one or two frames always decodes forward.
        """
        if limit - here <= 2 * self._tick:
            return False
        known = self.keyframes.before(limit)
        if known is not None and known[0] > here:
            return True
        gap = self.keyframes.widest_gap()
        current = self.keyframes.before(Fraction(here))
        return (
            gap is not None
            and current is not None
            and self.timestamps
            and not self._lands_late
            and current[0] + gap <= limit
        )

    def _forward(self, limit: Fraction) -> _Decoded:
        """Decode forward from where the decoder stands to the last frame at or before ``limit``."""
        best = self._last
        run, run_from = self.run, self.run_from
        if best is not None and run_from is not None and best.pts >= run_from:
            run.append(best)
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            if ahead.pts > limit:
                self._ahead = ahead
                assert best is not None
                return best
            best = ahead
            if run_from is not None and best.pts >= run_from:
                run.append(best)
        while self._frames is not None:
            decoded = self._pull()
            if decoded is None:
                break  # past the end: the last frame stands
            if decoded.pts > limit:
                self._ahead = decoded  # keep it: the next request probably wants it
                break
            best = decoded
            if run_from is not None and best.pts >= run_from:
                run.append(best)
                if len(run) > self.run_limit:
                    del run[0]
        if best is None:
            raise MediaError("no frame could be decoded")
        self._last = best
        return best

    def from_start(self) -> Iterator[_Decoded]:
        """Every frame in presentation order from the first byte, numbered as the time rule numbers them (a raw
        stream's frames at its rate): for a tool that reads the whole source (the proxy maker, proxy/maker.py).
        Leaves the decoder at the end; a ``frame_at`` afterwards seeks as after any jump."""
        self._restart()
        decoded, self._last = self._last, None
        while decoded is not None:
            yield decoded
            decoded = self._pull()

    def _seek(self, limit: Fraction) -> None:
        """Position the decoder at a frame at or before ``limit``, never after it.

        In order: the keyframe index's byte position when this source's timestamp seeks are known to
        land late and the index knows the target's GOP; the demuxer's own timestamp seek; the
        index's nearest keyframe before the target; timestamp seeks 1, 2, 4, 8, 16 s further back;
        the first byte; a fresh open. Each is verified by the first frame it yields.
        """
        self.seeks += 1
        if self.timestamps:
            known = self.keyframes.before(limit)
            if (
                known is not None
                and self._lands_late
                and self.keyframes.covers(known[0], limit)
                and self._seek_byte(known[1], limit)
            ):
                return
            if self._seek_time(int(limit), limit):
                return
            self._lands_late = True
            known = self.keyframes.before(limit)
            if known is not None and self._seek_byte(known[1], limit):
                return
            back = 1 / self.time_base
            for _ in range(SEEK_ATTEMPTS):
                target = int(limit - back)
                if target <= self.origin:
                    break
                if self._seek_time(target, limit):
                    return
                back *= 2
            if self._seek_byte(0, limit):
                return
        self._restart()

    def _seek_time(self, target: int, limit: Fraction) -> bool:
        try:
            self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        except (av.FFmpegError, OSError):
            return False  # a stream that cannot seek (raw H.264)
        return self._landed(limit)

    def _seek_byte(self, position: int, limit: Fraction) -> bool:
        if self._bytes_refused:
            return False
        try:
            self.container.seek(position, unsupported_byte_offset=True)
        except (av.FFmpegError, OSError, TypeError):  # MP4 refuses byte seeks (it has an index)
            self._bytes_refused = True
            return False
        return self._landed(limit)

    def _landed(self, limit: Fraction) -> bool:
        """Decode the first frame after a seek: True when it is at or before ``limit`` (and whole)."""
        self._frames = self._decoding()
        self._last = self._ahead = self._pulled = None
        first = self._pull()
        if first is not None and first.pts <= limit and not getattr(first.frame, "is_corrupt", False):
            self._last = first
            return True
        return False

    def _restart(self) -> None:
        """Decode from the first byte of a fresh open: the one position every demuxer reaches exactly."""
        self.restarts += 1
        self.container.close()
        self._open_container()
        stream = self.container.streams.video[0]
        stream.thread_type = "SLICE"
        self.stream = stream
        self._frames = self._decoding()
        self._last = self._ahead = self._pulled = None
        first = self._pull()
        if first is None:
            raise MediaError("no frame could be decoded")
        self._last = first  # a target before the first frame shows the first frame

    def _decoding(self) -> Iterator[Any]:
        """Frames in presentation order, noting each keyframe packet's byte position on the way."""
        previous: int | None = None
        for packet in self.container.demux(self.stream):
            if packet.is_keyframe and packet.pts is not None and packet.pos is not None and packet.pos >= 0:
                self.keyframes.add(packet.pts, packet.pos, previous)
                previous = packet.pts
            yield from packet.decode()

    def picture(self, decoded: _Decoded, size: tuple[int, int]) -> Image.Image:
        """The frame as the viewer sees it, at ``size`` (displayed orientation), scaled once by FFmpeg."""
        return picture_of(decoded.frame, self.geometry, size, self.deep)

    def close(self) -> None:
        """Close the file and the demuxer, and let go of the decoder now.

        The decoding generator (``_frames``) refers to this source, a reference cycle: without breaking it the
        source, its stream's codec context and FFmpeg's slice threads with their frame pools (several MB a
        source) outlive ``close`` until Python's cyclic collector runs, which an idle worker, allocating
        nothing, never triggers (idle PSS, bench/footprint.py).
        """
        try:
            frames, self._frames = self._frames, None
            if frames is not None:
                frames.close()
            self._last = self._ahead = None
            self.run = []
            self.scaled = None
            container = getattr(self, "container", None)
            if container is not None:
                container.close()
        finally:
            self.file.close()


def picture_of(frame: Any, geometry: Geometry, size: tuple[int, int], deep: bool) -> Image.Image:
    """A decoded frame (an original's or a proxy's, ``geometry`` its own) as the viewer sees it, at ``size``."""
    width, height = geometry.scale_size(size)
    if deep:
        native = (width, height) == (geometry.width, geometry.height)
        flags = DEEP_NATIVE if native else DEEP_SCALED
        scaled = frame.reformat(width=width, height=height, format="rgb24", interpolation=flags)
    else:
        scaled = frame.reformat(width=width, height=height, format="rgb24")
    return geometry.orient(scaled.to_image())


def scaled_picture(frame: Any, geometry: Geometry, size: tuple[int, int], deep: bool) -> Image.Image:
    """``picture_of`` with a failure of FFmpeg's scaler reported as the media's problem."""
    try:
        return picture_of(frame, geometry, size, deep)
    except (av.FFmpegError, OSError, ValueError, MemoryError) as exc:
        raise MediaError(f"cannot scale the frame: {_short(exc)}") from None


class MediaPool:
    """Per-worker media state: open decoders, scaled stills and the problems already reported.

    With a proxy reader (``proxies``), a video frame comes from the source's proxy when one covers it, the
    clip is shown no larger than the proxy, and the output is not lossless (``begin``): the same frame by
    the same rule (proxy/reader.py), scaled by the same ``_picture``. ``used`` says which kind each video
    frame of the current render came from (the ``X-Preview-Source`` header). A proxy is found by the file
    (its descriptor's fstat) and drawn by what its manifest records, so a source with a proxy is not opened
    as media at all: no probe, no first-frame decode, no decoder of the original held in memory.
    """

    def __init__(
        self,
        cache_bytes: int,
        max_source_pixels: int,
        max_open: int = 8,
        roots: tuple[str, ...] | None = None,
        proxies: ProxyReader | None = None,
        proxy_size: tuple[int, int] = (0, 0),
    ) -> None:
        self.max_source_pixels = max_source_pixels
        self.roots = roots
        self.max_open = max_open
        self.videos: OrderedDict[tuple[str, Any], VideoSource] = OrderedDict()
        self.scaled = FrameCache(cache_bytes)
        self.decoded = DecodedFrames()
        self.reach: tuple[int, int, int] | None = (
            None  # (frames behind, frames ahead, source pixels) of the costliest video
        )
        self.reported: set[tuple[str, str]] = set()
        self.proxies = proxies
        self.proxy_size = proxy_size  # (0, 0): the canvas's size (proxy.store.params_for)
        self._proxy_params: Params | None = None  # this render's: None when proxies may not be used
        self._proxied: dict[tuple[str, Any], Manifest | None] = {}  # this render's proxy of each (path, stat)
        self._proxy_scaled: OrderedDict[str, tuple[tuple[int, tuple[int, int]], Image.Image]] = OrderedDict()
        self.used: set[str] = set()
        Image.MAX_IMAGE_PIXELS = max_source_pixels

    def begin(self, canvas: tuple[int, int], lossless: bool) -> None:
        """Before a render: which proxies fit this timeline's canvas, or none for a lossless output."""
        self.used = set()
        self._proxied = {}
        if self.proxies is None or lossless:
            self._proxy_params = None
        else:
            self._proxy_params = params_for(self.proxy_size, canvas)

    def source_used(self) -> str:
        """ "proxy", "original", "mixed", or "" when the render drew no video frame."""
        return "mixed" if len(self.used) > 1 else next(iter(self.used), "")

    def _proxy(self, path: str, stat: Any) -> Manifest | None:
        """This render's proxy of the file at ``path``: found by the fstat of a descriptor opened as the media
        would be (the same checks: a file outside the roots raises as it would), never by decoding it."""
        params, reader = self._proxy_params, self.proxies
        if params is None or reader is None:
            return None
        key = (path, stat)
        if key not in self._proxied:
            handle = open_media(path, self.roots)
            try:
                self._proxied[key] = reader.for_file(os.fstat(handle.fileno()), params)
            except OSError:
                self._proxied[key] = None
            finally:
                handle.close()
        return self._proxied[key]

    def _from_proxy(self, path: str, stat: Any, seconds: Fraction, size: tuple[int, int]) -> Image.Image | None:
        """The frame from the source's proxy when one covers it and may show it at ``size``, else None."""
        manifest = self._proxy(path, stat)
        if manifest is None or self.proxies is None or not usable(manifest, size):
            return None
        found = self.proxies.frame_at(manifest, seconds)
        if found is None:
            return None
        pts, frame = found
        kept = self._proxy_scaled.get(manifest.key)
        if kept is not None and kept[0] == (pts, size):
            self._proxy_scaled.move_to_end(manifest.key)
            return kept[1]  # same frame, same size: e.g. another layer is being dragged
        deep = any(component.bits > 8 for component in frame.format.components)
        image = scaled_picture(frame, manifest.geometry, size, deep)
        self._proxy_scaled[manifest.key] = ((pts, size), image)
        self._proxy_scaled.move_to_end(manifest.key)
        while len(self._proxy_scaled) > self.max_open:
            self._proxy_scaled.popitem(last=False)
        return image

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
        """Frame ``index`` counted at the timeline's rate ``fps``: the source frame on screen at index / fps."""
        seconds = Fraction(index) / timeline_rate(fps)
        proxied = self._from_proxy(path, stat, seconds, size)
        self.used.add("original" if proxied is None else "proxy")
        if proxied is not None:  # one packet of an all-intra copy: no decoder position, reach or kept run to note
            return proxied
        source = self.video(path, stat)
        turning_back = self._turning_back(source, (path, stat), size, seconds)
        if isinstance(turning_back, Image.Image):
            return turning_back
        decoded = source.frame_at(seconds)
        key = (decoded.pts, size)
        if source.scaled is not None and source.scaled[0] == key:
            return source.scaled[1]  # same frame, same size: e.g. another layer is being dragged
        image = self._picture(source, decoded, size)
        # One scaled frame per source, not an LRU of them: caching many full frames churns memory
        # (fresh pages on every allocation) and measured slower than re-scaling (bench/render.py).
        # Only a scrub turning back keeps the frames its decode went through (decoded.py).
        source.scaled = (key, image)
        if turning_back:
            self._keep_run(source, (path, stat), size, decoded, image)
        source.run_from = None
        self._note_reach(source, (path, stat), size, fps)
        return image

    def _note_reach(self, source: VideoSource, identity: Any, size: tuple[int, int], fps: float) -> None:
        """How far around the frame just given this decoder answers without a seek, in frames at ``fps``: back over
        the frames kept, ahead to the next keyframe the index knows (else a forward decode's worth). For the source
        with the most pixels of the render (``reach``): that one's seeks are what locality saves."""
        pixels = source.geometry.width * source.geometry.height
        position = source.position()
        if position is None or (self.reach is not None and self.reach[2] >= pixels):
            return
        per_tick = float(source.time_base) * fps  # frames at the timeline's rate per stream tick
        ahead = FORWARD_DECODE_LIMIT
        following = source.keyframes.after(position)
        if following is not None:
            ahead = max(1, min(ahead, int((following - position) * per_tick)))
        behind = 0
        kept = self.decoded.span(identity, size)
        if kept is not None and kept[0] <= position < kept[1]:
            behind = int((position - kept[0]) * per_tick)
        self.reach = (behind, ahead, pixels)

    def _picture(self, source: VideoSource, decoded: _Decoded, size: tuple[int, int]) -> Image.Image:
        return scaled_picture(decoded.frame, source.geometry, size, source.deep)

    def _turning_back(
        self, source: VideoSource, identity: Any, size: tuple[int, int], seconds: Fraction
    ) -> Image.Image | bool:
        """A frame kept from an earlier decode (the image), else whether this request is a scrub turning back: a
        time a little behind the decoder's position (then the frames its decode passes are noted, ``_keep_run``)."""
        if not source.timestamps:
            return False  # frames numbered by us: numbers restart with every seek, so no kept frame is named safely
        limit = source.limit_of(seconds)
        kept = self.decoded.find(identity, size, limit)
        if kept is not None:
            return kept[1]
        position = source.position()
        if position is None or limit >= position or position - limit > REVERSE_WINDOW * source._tick:
            return False
        source.run_from = limit - source.run_limit * source._tick
        return True

    def _keep_run(
        self, source: VideoSource, identity: Any, size: tuple[int, int], target: _Decoded, image: Image.Image
    ) -> None:
        """Keep the frames the last decode went through up to ``target`` at ``size``, as many as the budget holds."""
        run = source.run
        # Frames no larger than an eighth of the budget are kept as decoded and scaled only when asked for; larger
        # ones (4K) scaled now, as they would not fit otherwise.
        lazy = source.frame_bytes <= self.decoded.capacity // 8
        each = max(size[0] * size[1] * 3, source.frame_bytes if lazy else 0)
        room = max(1, self.decoded.capacity // max(1, each) - 1)
        first = max(0, len(run) - room)
        for at in range(len(run) - 1, first - 1, -1):  # the target first: the nearest frames matter most
            decoded = run[at]
            following = following_of(run, at, source.read_ahead(), source.ended())
            if following is None or self.decoded.has(identity, size, decoded.pts):
                continue
            if decoded is target:
                self.decoded.put(identity, size, decoded.pts, following, image)
            elif lazy:
                later = functools.partial(scaled_picture, decoded.frame, source.geometry, size, source.deep)
                self.decoded.put(identity, size, decoded.pts, following, later, source.frame_bytes)
            else:
                self.decoded.put(identity, size, decoded.pts, following, self._picture(source, decoded, size))
        source.run = []

    def warning(self, path: str, stat: Any) -> str:
        """What about an open video is not shown as a player shows it ("" for nothing)."""
        source = self.videos.get((path, stat))
        if source is not None:
            return source.warning
        manifest = self._proxied.get((path, stat))
        return manifest.warning if manifest is not None else ""

    def kind(self, path: str, stat: Any, clip_type: str) -> str:
        """ "image" or "video", by the file's first bytes; a format on no allow-list is refused by name."""
        key = ("kind", path, stat)
        cached = self.scaled.get(key)
        if cached is None:
            handle = open_media(path, self.roots)
            try:
                head = handle.read(HEAD_BYTES)
            except OSError as exc:
                raise MediaError(f"cannot read: {exc.strerror}") from None
            finally:
                handle.close()
            cached = sniff(head) or Sniffed(kind_of(path, clip_type), "")
            self.scaled.put(key, cached, 64)
        assert isinstance(cached, Sniffed)
        if cached.kind == "refused":
            raise MediaError(cached.refusal())
        return cached.kind

    def native_size(self, path: str, stat: Any, kind: str) -> tuple[int, int]:
        if kind == "video":
            manifest = self._proxy(path, stat)
            if manifest is not None and manifest.shown is not None:
                return manifest.shown  # the original's displayed size, recorded by the maker that opened it
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
            self.decoded.clear()
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
            raise MediaError(f"not an allowed still format; allowed: {STILL_NAMES}") from None
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
            image = to_rgb(ImageOps.exif_transpose(image) or image)
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
        """Close every source and drop the frames kept of them (``decoded`` holds its sources as keys)."""
        for source in self.videos.values():
            source.close()
        self.videos.clear()
        self.decoded.clear()
        self.scaled = FrameCache(self.scaled.capacity)
        self._proxy_scaled.clear()
        self._proxied = {}
        if self.proxies is not None:
            self.proxies.close()


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

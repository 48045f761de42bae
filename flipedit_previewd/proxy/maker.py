"""Making one proxy: decode the source from its first byte as the renderer does, write all-intra H.264 segments.

Run as the daemon's child (``python -m flipedit_previewd.proxy.maker``), so it stays in the unit's cgroup,
is stopped with the daemon, and its crash is only a failed proxy. Before it reads the source it lowers
itself as far as Linux allows (``SCHED_IDLE``: it runs only when a core would otherwise idle, falling back
to nice 19; I/O class idle) and confines itself as a render worker does (seccomp; Landlock: reads as a
worker reads, writes only under the store), because it parses the same untrusted media. It decodes on one
thread, scales on one thread and encodes on one thread: a second core is the render workers'.

**Where its time goes** (bench/proxy_speed.py, the 1080p30 GOP-250 source on one core; perf): decoding the
original ~53%, libx264 ~29%, scaling ~10%, the kernel ~3% (page faults, fsyncs: 4 per 1 s segment, 3-7 ms),
Python ~2.5%; about 2.5x real time in CPU time. x264 is at its cheapest already (ultrafast: CAVLC, no
deblocking, I16x16; ``tune=fastdecode`` gives the same bytes), and what is left is the codecs' own work.

**Why the renderer's decoder.** The proxy must give the frame the renderer would give (docs/usage.md,
"Which frame is shown"): frames are taken from ``worker.media.VideoSource`` in presentation order from the
start, exactly as it numbers them (origin = the first frame's pts, raw streams numbered at the rate), and
each frame's original pts is stored beside it; the reader applies the same rule to those pts. A source
whose timestamps do not increase (where the renderer's answer depends on where it seeked from) is refused.

**Why this codec.** bench/proxy_format.py (1080p GOP-250 sources made by stock ffmpeg, proxy 1280x720,
one thread): H.264 all-intra (libx264 ultrafast, no B-frames) decodes a random frame in 3-6 ms from one
packet and is made at 1.5-2x real time; CRF 6 keeps luma PSNR >= 46 dB there and >= 45 dB on every file of
the corpus (CRF 10 gave 44 dB on a long GOP, CRF 8 44.6 on ProRes), at 170-224 MB per minute of source on
sensor noise and mandelbrot detail (worst cases). JPEG q95 needed 210-320 MB/min and lost more in its RGB
round trip (46 dB); a GOP of 4-8 saved little at this quality and tripled the random-frame cost.
10/12-bit sources get 10-bit proxies of the same chroma layout, so the renderer's deep-colour scaling applies.

Progress goes to stdout as JSON lines (``start``, ``progress``, ``done``, ``failed``), read by the daemon.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import os
import sys
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
from av.video.reformatter import VideoReformatter

from flipedit_previewd.proxy.store import Manifest, Params, Store, StoreError, identity_of, key_of
from flipedit_previewd.worker.display import Geometry
from flipedit_previewd.worker.media import DEEP_SCALED, Decoded, MediaError, VideoSource

IOPRIO_CLASS_IDLE = 3
IOPRIO_WHO_PROCESS = 1
IOPRIO_SET = {"x86_64": 251, "aarch64": 30}


class _OneThreadSource(VideoSource):
    """The renderer's VideoSource, decoding on one thread (a maker must not take the workers' core)."""

    def _open_container(self) -> None:
        super()._open_container()
        for stream in self.container.streams.video:
            stream.thread_count = 1


def _die_with_parent() -> None:
    """SIGKILL this process when the daemon that started it dies (PR_SET_PDEATHSIG): never an orphan maker."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass


def lower_priority() -> list[str]:
    """SCHED_IDLE (else nice 19) and I/O class idle for this process; returns what was applied."""
    applied = []
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        applied.append("SCHED_IDLE")
    except (AttributeError, OSError):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 19)
            applied.append("nice 19")
        except OSError:
            pass
    import platform

    number = IOPRIO_SET.get(platform.machine())
    if number is not None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(number, IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASS_IDLE << 13) == 0:
            applied.append("ionice idle")
    return applied


def fit(geometry: Geometry, box: tuple[int, int]) -> tuple[int, int]:
    """The proxy's stored size: the source's stored picture scaled by the one factor (<= 1) that fits its
    displayed picture within ``box``, sides rounded down to even (4:2:0).

    One factor on the stored grid, pixel shape and orientation kept: scaling the proxy to a clip's size is
    then the same resampling as scaling the original (an anamorphic source's proxy is never stretched to
    square pixels first, which measured 33 dB where the original is shown narrower than its proxy).
    """
    shown = geometry.displayed
    scale = min(box[0] / shown[0], box[1] / shown[1], 1.0)
    width = max(2, int(round(geometry.width * scale)) // 2 * 2)
    height = max(2, int(round(geometry.height * scale)) // 2 * 2)
    return width, height


def plan(source: VideoSource, params: Params) -> Manifest:
    """The manifest of the proxy ``source`` would get (no segments yet)."""
    identity = identity_of(source)
    stored = fit(source.geometry, (params.width, params.height))
    sar = source.geometry.sar
    transpose = None if source.geometry.transpose is None else int(source.geometry.transpose)
    total = 0
    assert source.stream is not None
    if source.stream.frames:
        total = int(source.stream.frames)
    elif source.stream.duration and source.stream.time_base:
        total = int(source.stream.duration * source.stream.time_base * source.rate)
    return Manifest(
        key_of(identity, params),
        identity,
        params,
        stored[0],
        stored[1],
        transpose,
        source.time_base,
        source.origin,
        frames_total=total,
        source_path=source.path,
        sar=(sar.numerator, sar.denominator),
        shown=source.size(),
        warning=source.warning,
    )


# 8-bit layouts kept as the source has them (libx264 codes each): no conversion of levels or chroma on the
# way into the proxy. 10/12-bit sources get 10-bit proxies of the same chroma layout (an 8-bit copy of a
# ProRes measured 44 dB where it is scaled); anything else (RGB, palettes) yuv420p.
KEPT_FORMATS = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p")


def proxy_format(layout: str, deep: bool) -> str:
    if not deep:
        return layout if layout in KEPT_FORMATS else "yuv420p"
    for chroma in ("yuv444p", "yuv422p"):
        if layout.startswith(chroma):
            return chroma + "10le"
    return "yuv420p10le"


SAMPLE_PACKETS = 600  # packets read from the start to find the keyframe interval (20 s at 30 fps)


def random_cost(source: VideoSource) -> tuple[float, float]:
    """(million pixels decoded per random frame, keyframe interval): half the interval plus one, times
    the frame's pixels. The interval comes from the first packets' keyframe flags (no decoding); the
    decoding that follows (``VideoSource.from_start``) starts again from the first byte."""
    assert source.stream is not None
    packets = keyframes = 0
    for packet in source.container.demux(source.stream):
        if packet.size == 0:
            continue
        packets += 1
        keyframes += bool(packet.is_keyframe)
        if packets >= SAMPLE_PACKETS:
            break
    interval = packets / keyframes if keyframes > 1 else float(max(packets, 1))
    ctx = source.stream.codec_context
    return (interval / 2 + 1) * ctx.width * ctx.height / 1e6, interval


def _encoder(width: int, height: int, params: Params, pix_fmt: str) -> Any:
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, pix_fmt
    encoder.time_base = Fraction(1, 1000)
    encoder.thread_count = 1
    encoder.options = {
        "preset": "ultrafast",
        "crf": str(params.crf),
        "g": "1",
        "keyint_min": "1",
        "bf": "0",
        "sc_threshold": "0",
        "repeat-headers": "1",
    }
    return encoder


@functools.cache
def _one_thread() -> dict[str, int]:
    """``threads=1`` for the scaler where PyAV takes it (PyAV 11 and later ask FFmpeg for one thread per core by
    default); PyAV 10 (Debian 12's, the .deb's) has no such argument, and its FFmpeg 5.1 scales on one thread."""
    try:
        VideoReformatter().reformat(av.VideoFrame(16, 16, "yuv420p"), width=8, height=8, threads=1)
    except TypeError:
        return {}
    return {"threads": 1}


def make(
    store: Store,
    path: str,
    params: Params,
    roots: tuple[str, ...] | None = None,
    max_pixels: int = 0,
    max_bytes: int = 0,
    report: Callable[[dict[str, Any]], None] = lambda event: None,
    min_cost: float = 0.0,
    budget: int = 0,
    keep: frozenset[str] = frozenset(),
) -> Manifest | None:
    """Make the proxy of ``path`` in ``store``; returns its manifest (complete, stopped or refused), or None
    when the source's random frames cost less than ``min_cost`` million pixels (no proxy needed).

    A proxy already made (complete, stopped by the budget, or refused) is reported ("exists") and kept.
    Raises MediaError when the source cannot be opened or decoded. ``max_bytes`` (0: none) stops the
    making once the proxy would pass it: what was made stays usable as a partial proxy. ``budget`` (0: none)
    is the whole store's: past it the least recently used proxies not in ``keep`` are removed as this one
    grows (their sizes are known only then), and when nothing more may go, the making stops the same way.
    """
    source = _OneThreadSource(path, roots, max_pixels)
    try:
        manifest = plan(source, params)
        existing = store.manifest(manifest.key)
        if existing is not None and (existing.complete or existing.refused or existing.stopped):
            report({"event": "exists", "key": existing.key, "frames": existing.frames, "complete": existing.complete})
            return existing
        if min_cost > 0:
            cost, interval = random_cost(source)
            if cost < min_cost:
                report(
                    {
                        "event": "skipped",
                        "reason": f"random frames are cheap: {cost:.1f} Mpx each "
                        f"(keyframe every {interval:.0f} frames), below {min_cost:g}",
                    }
                )
                return None
        # A proxy interrupted before (the daemon stopped, the maker was killed) goes on after its last segment:
        # the same key is the same file and parameters, and the segments it lists are whole (store.clean).
        resumed = (
            existing is not None
            and bool(existing.segments)
            and (existing.width, existing.height) == (manifest.width, manifest.height)
        )
        if resumed:
            assert existing is not None
            existing.frames_total = manifest.frames_total
            manifest = existing
        report(
            {
                "event": "start",
                "key": manifest.key,
                "total": manifest.frames_total,
                "size": [manifest.width, manifest.height],
                "resumed_at": manifest.frames,
            }
        )
        if not resumed:
            store.begin(manifest)
        skip_to = manifest.segments[-1][1] if resumed else None  # frames up to this pts are in the proxy already
        used = store.usage() if budget else 0
        frames = source.from_start()
        decoded: Decoded | None = next(frames, None)
        if decoded is None:
            raise MediaError("no frame could be decoded")
        pix_fmt = proxy_format(decoded.frame.format.name, source.deep)
        encoder = _encoder(manifest.width, manifest.height, params, pix_fmt)
        # One scaler for the whole source, on this thread. ``frame.reformat`` makes a scaler per frame with
        # FFmpeg's default thread count (one per core): it started and joined two threads per frame, each time on
        # both cores (1200 clone3 per 20 s of 1080p, strace), and set the filters up again. Same pixels (the same
        # filter, only the slicing differs): bench/proxy_speed.py.
        scaler = VideoReformatter()
        interpolation = DEEP_SCALED if source.deep else None  # None: FFmpeg's bilinear, as the renderer scales
        pending: list[tuple[int, bytes]] = []
        waiting: deque[int] = deque()  # original pts of frames given to the encoder: no reordering (no B-frames)
        written = 0
        index = 0
        previous: int | None = None
        while decoded is not None:
            if skip_to is not None and decoded.pts <= skip_to:
                previous = decoded.pts
                decoded = next(frames, None)
                continue
            if previous is not None and decoded.pts <= previous:
                manifest.refused = "its timestamps do not increase: the frame shown depends on where decoding started"
                manifest.segments.clear()
                store.begin(manifest)
                return manifest
            previous = decoded.pts
            small = scaler.reformat(
                decoded.frame,
                width=manifest.width,
                height=manifest.height,
                format=pix_fmt,
                interpolation=interpolation,
                **_one_thread(),
            )
            small.pts = index
            small.time_base = encoder.time_base
            waiting.append(decoded.pts)
            index += 1
            for packet in encoder.encode(small):
                pending.append((waiting.popleft(), bytes(packet)))
            while len(pending) >= params.segment_frames:
                size = store.add_segment(manifest, pending[: params.segment_frames])
                written += size
                used += size
                del pending[: params.segment_frames]
                report(
                    {"event": "progress", "done": manifest.frames, "total": max(manifest.frames_total, manifest.frames)}
                )
                if budget and used > budget:
                    evicted = store.evict(keep=set(keep) | {manifest.key}, budget=budget)
                    if evicted:
                        report({"event": "evicted", "keys": evicted})
                    used = store.usage()
                if (max_bytes and written > max_bytes) or (budget and used > budget):
                    manifest.stopped = "over the disk budget"
                    store.write_manifest(manifest)
                    return manifest
            decoded = next(frames, None)
        for packet in encoder.encode(None):
            pending.append((waiting.popleft(), bytes(packet)))
        if pending:
            written += store.add_segment(manifest, pending)
        if not manifest.identity.same_file(os.fstat(source.file.fileno())):
            store.remove(manifest.key)  # changed while it was read: these frames are of no one file
            raise MediaError("the file changed while its proxy was made")
        manifest.complete = True
        manifest.frames_total = manifest.frames
        store.write_manifest(manifest)
        report({"event": "progress", "done": manifest.frames, "total": manifest.frames})
        return manifest
    except (av.FFmpegError, ValueError, MemoryError, RecursionError) as exc:
        raise MediaError(f"decode error: {exc}") from None
    finally:
        source.close()


def confine(store_root: str, roots: tuple[str, ...]) -> str:
    """As a render worker confines itself, plus writing under the store. Returns why not, or ""."""
    from flipedit_previewd.worker import confine as sandbox

    arch, status = sandbox.confine_process()
    if arch is None or not status.landlock:
        return status.why
    try:
        sandbox.lock_filesystem_writing(arch, status.landlock_abi, roots, store_root)
    except OSError as exc:
        return f"landlock: {exc.strerror or exc}"
    return status.why


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flipedit_previewd.proxy.maker", description=__doc__.split("\n")[0])
    parser.add_argument("source")
    parser.add_argument("--store", required=True)
    parser.add_argument("--size", default="1280x720", help="the box the proxy's frames fit in, WxH")
    parser.add_argument("--root", action="append", default=[], help="a media root (repeat); none: unchecked")
    parser.add_argument("--max-pixels", type=int, default=0)
    parser.add_argument("--max-bytes", type=int, default=0)
    parser.add_argument(
        "--budget", type=int, default=0, help="bytes for the whole store: least recently used proxies go to make room"
    )
    parser.add_argument(
        "--keep", action="append", default=[], help="a proxy key never evicted (those the timeline uses)"
    )
    parser.add_argument(
        "--min-cost", type=float, default=0.0, help="million pixels per random frame below which no proxy is made"
    )
    parser.add_argument("--no-confine", action="store_true")
    args = parser.parse_args(argv)
    out = sys.stdout

    def report(event: dict[str, Any]) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    _die_with_parent()
    applied = lower_priority()
    width, height = (int(v) for v in args.size.split("x"))
    store = Store(args.store)
    roots = tuple(os.path.realpath(root) for root in args.root) or None
    try:
        store.create()
        why = "" if args.no_confine else confine(str(store.root.resolve()), roots or ())
        report({"event": "priority", "applied": applied, "sandbox": why})
        manifest = make(
            store,
            args.source,
            Params(width, height),
            roots,
            args.max_pixels,
            args.max_bytes,
            report,
            args.min_cost,
            args.budget,
            frozenset(args.keep),
        )
    except (MediaError, StoreError, OSError) as exc:
        report({"event": "failed", "reason": str(exc)[:500]})
        return 1
    if manifest is None:
        return 0
    if manifest.refused:
        report({"event": "failed", "reason": manifest.refused, "key": manifest.key})
        return 1
    report(
        {
            "event": "done",
            "key": manifest.key,
            "frames": manifest.frames,
            "complete": manifest.complete,
            "stopped": manifest.stopped,
            "bytes": sum(e.bytes for e in store.entries() if e.key == manifest.key),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

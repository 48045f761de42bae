"""The on-disk proxy store: one directory per proxy, named by the source's identity, within a disk budget.

Layout under the root (``$CACHE_DIRECTORY/proxies`` when systemd's ``CacheDirectory=`` gives one, else
``$XDG_CACHE_HOME/flipedit-preview/proxies``, else ``~/.cache/flipedit-preview/proxies``)::

    <key>/manifest.json     what the proxy is: source identity, time base, origin, size, segments made
    <key>/seg-000000.bin    frames 0..N-1: a table (original pts, offset, size) then the coded frames
    <key>/.tmp-*            being written; never read, removed at start

**Why keyed by identity.** The key hashes the source's ``st_dev, st_ino, st_size, st_mtime_ns``, its
stream parameters (codec, stored size, time base, frame rate) and the proxy's own (size, codec, format
version). A file edited in place changes its size or mtime, a file replaced by another changes its
inode: either way the key changes and the old proxy is never found again (the budget removes it).

**Why crash-safe this way.** Every file is written as ``.tmp-*``, fsynced and renamed into place, then
the directory is fsynced: a reader sees a whole segment or none. The manifest is rewritten the same way
after each segment, and only segments it lists are used, so a maker killed mid-write leaves at worst a
``.tmp-*`` file or a segment the manifest does not list, both ignored and removed at the next start.

**Why untrusted.** Another process of the user (or a crafted project's author, through a shared cache)
may have written here: names are checked against fixed patterns, nothing is opened through a symlink
(``O_NOFOLLOW``, ``lstat``), reads are bounded, and a manifest that fails validation is a missing proxy.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the daemon's main process imports this module (manager.py) and never loads Pillow
    from flipedit_previewd.worker.display import Geometry

FORMAT_VERSION = 1
CODECS = ("h264",)  # what a manifest may name; the reader opens no other decoder for a proxy
MANIFEST = "manifest.json"
MAX_MANIFEST = 16 << 20  # a 10-hour source at 60 fps lists ~72,000 segments of 30: ~3 MB
MAX_SEGMENT = 512 << 20
MAX_SEGMENT_FRAMES = 4096
MAX_SIDE = 16384
KEY = re.compile(r"^[0-9a-f]{32}$")
SEGMENT = re.compile(r"^seg-([0-9]{6})\.bin$")
SEG_MAGIC = b"FEPX"
SEG_HEADER = struct.Struct("!4sBxxxI")  # magic, version, frame count
SEG_ENTRY = struct.Struct("!qII")  # original pts, offset from the file's start, size


class StoreError(Exception):
    """Something in the store is not what this code writes: treated as no proxy."""


def default_root(env: Mapping[str, str] | None = None) -> Path:
    """Where proxies live: systemd's cache directory for the unit, else the XDG cache."""
    env = os.environ if env is None else env
    given = env.get("CACHE_DIRECTORY", "")
    if given:
        return Path(given.split(":")[0]) / "proxies"  # systemd lists one per CacheDirectory= entry
    xdg = env.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path(env.get("HOME") or os.path.expanduser("~")) / ".cache"
    return base / "flipedit-preview" / "proxies"


@dataclass(frozen=True)
class Identity:
    """What makes a proxy the proxy of this source: the file as it is now, and its video stream."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    codec: str
    width: int
    height: int
    time_base: tuple[int, int]
    rate: tuple[int, int]

    @classmethod
    def of(
        cls, st: os.stat_result, codec: str, width: int, height: int, time_base: Fraction, rate: Fraction
    ) -> Identity:
        return cls(
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            codec,
            width,
            height,
            (time_base.numerator, time_base.denominator),
            (rate.numerator, rate.denominator),
        )

    def same_file(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (self.dev, self.ino, self.size, self.mtime_ns)


def identity_of(source: Any) -> Identity:
    """The identity of an open ``worker.media.VideoSource``: the descriptor it reads (fstat, not the path:
    what was opened is what was decoded) and its video stream. One function for the maker and the workers."""
    ctx = source.stream.codec_context
    return Identity.of(os.fstat(source.file.fileno()), ctx.name, ctx.width, ctx.height, source.time_base, source.rate)


@dataclass(frozen=True)
class Params:
    """The proxy's own parameters: the box its frames fit in, and how they are coded."""

    width: int = 1280
    height: int = 720
    codec: str = "h264"
    crf: int = (
        6  # the corpus (tests/unit/proxy): >= 45 dB luma everywhere; CRF 10 gave 44 on a long GOP, CRF 8 44.6 on ProRes
    )
    segment_frames: int = 30


def params_for(configured: tuple[int, int], canvas: tuple[int, int]) -> Params:
    """The proxy parameters for a timeline: the configured box, or the canvas's size where it is 0x0.
    The daemon's manager and the workers both ask this, so both compute the same key."""
    width, height = configured if configured[0] > 0 and configured[1] > 0 else canvas
    return Params(max(2, width), max(2, height))


def key_of(identity: Identity, params: Params) -> str:
    data = json.dumps(
        {"identity": identity.__dict__, "params": params.__dict__, "format": FORMAT_VERSION},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(data.encode()).hexdigest()[:32]


@dataclass
class Manifest:
    """A proxy's description. ``segments`` lists (first pts, last pts, frames) of each segment made, in order."""

    key: str
    identity: Identity
    params: Params
    width: int  # stored size of the proxy's frames: the source's stored picture scaled by one factor <= 1
    height: int
    transpose: int | None  # PIL Image.Transpose value the source's display matrix asks for, or None
    time_base: Fraction
    origin: int
    segments: list[tuple[int, int, int]] = field(default_factory=list)
    complete: bool = False
    frames_total: int = 0  # estimated from the container while making; exact once complete
    refused: str = ""  # why this source cannot have a proxy (kept so it is not tried again)
    stopped: str = ""  # why making stopped before the end (the budget): a partial proxy, not retried
    source_path: str = ""  # for people listing the store; never opened from here
    sar: tuple[int, int] = (1, 1)  # the source's pixel shape, kept: the proxy's pixels are the source's, fewer
    # What the renderer asks of the original besides its frames: its displayed size (the clip's fit) and what about
    # its display matrix is not shown as a player shows it. With these a worker draws from the proxy without opening
    # the original at all (probing a 4K HEVC file and decoding its first frame costs ~180 ms). None: not recorded.
    shown: tuple[int, int] | None = None
    warning: str = ""

    @property
    def frames(self) -> int:
        return sum(count for _, _, count in self.segments)

    @property
    def displayed(self) -> tuple[int, int]:
        """The size the proxy shows at: stored size, turned as the source's display matrix turns it."""
        return self.geometry.displayed

    @property
    def geometry(self) -> Geometry:
        from PIL import Image

        from flipedit_previewd.worker.display import Geometry

        return Geometry(
            self.width,
            self.height,
            Fraction(*self.sar),
            None if self.transpose is None else Image.Transpose(self.transpose),
        )

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": FORMAT_VERSION,
                "key": self.key,
                "identity": self.identity.__dict__,
                "params": self.params.__dict__,
                "width": self.width,
                "height": self.height,
                "transpose": self.transpose,
                "time_base": [self.time_base.numerator, self.time_base.denominator],
                "origin": self.origin,
                "segments": [list(s) for s in self.segments],
                "complete": self.complete,
                "frames_total": self.frames_total,
                "refused": self.refused,
                "stopped": self.stopped,
                "source_path": self.source_path,
                "sar": list(self.sar),
                "shown": None if self.shown is None else list(self.shown),
                "warning": self.warning,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes, key: str) -> Manifest:
        """Parse and validate: every field typed and bounded, the segments ordered. Raises StoreError."""
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError):
            raise StoreError("manifest is not JSON") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT_VERSION or raw.get("key") != key:
            raise StoreError("manifest of another format or key")
        try:
            ident = raw["identity"]
            identity = Identity(
                _int(ident["dev"]),
                _int(ident["ino"]),
                _int(ident["size"]),
                _int(ident["mtime_ns"]),
                _str(ident["codec"]),
                _int(ident["width"]),
                _int(ident["height"]),
                _pair(ident["time_base"]),
                _pair(ident["rate"]),
            )
            par = raw["params"]
            params = Params(
                _int(par["width"], MAX_SIDE),
                _int(par["height"], MAX_SIDE),
                _str(par["codec"]),
                _int(par["crf"], 51),
                _int(par["segment_frames"], MAX_SEGMENT_FRAMES),
            )
            if params.codec not in CODECS or params.segment_frames < 1:
                raise StoreError("manifest names another codec")
            transpose = raw["transpose"]
            if transpose is not None and (type(transpose) is not int or not 0 <= transpose <= 6):
                raise StoreError("manifest transpose")
            tb = _pair(raw["time_base"])
            if tb[0] <= 0 or tb[1] <= 0:
                raise StoreError("manifest time base")
            segments = []
            last = None
            for entry in raw["segments"]:
                if not isinstance(entry, list) or len(entry) != 3:
                    raise StoreError("manifest segment")
                first, end, count = (
                    _int(entry[0], signed=True),
                    _int(entry[1], signed=True),
                    _int(entry[2], MAX_SEGMENT_FRAMES),
                )
                if count < 1 or end < first or (last is not None and first <= last):
                    raise StoreError("manifest segments out of order")
                last = end
                segments.append((first, end, count))
            width, height = _int(raw["width"], MAX_SIDE), _int(raw["height"], MAX_SIDE)
            if width < 2 or height < 2:
                raise StoreError("manifest size")
            sar = _pair(raw["sar"])
            if sar[0] < 1 or sar[1] < 1:
                raise StoreError("manifest pixel shape")
            shown = None if raw.get("shown") is None else _pair(raw["shown"])
            if shown is not None and not (1 <= shown[0] <= MAX_SIDE * 8 and 1 <= shown[1] <= MAX_SIDE * 8):
                raise StoreError("manifest shown size")
            return cls(
                key,
                identity,
                params,
                width,
                height,
                transpose,
                Fraction(*tb),
                _int(raw["origin"], signed=True),
                segments,
                raw["complete"] is True,
                _int(raw["frames_total"]),
                _str(raw["refused"]),
                _str(raw["stopped"]),
                _str(raw["source_path"]),
                sar,
                shown,
                _str(raw.get("warning", "")),
            )
        except (KeyError, TypeError) as exc:
            raise StoreError(f"manifest field missing or mistyped: {exc}") from None


def _int(value: Any, high: int = 2**63 - 1, signed: bool = False) -> int:
    if type(value) is not int or value > high or value < (-(2**63) if signed else 0):
        raise StoreError("manifest: a number out of range")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 4096:
        raise StoreError("manifest: a text out of range")
    return value


def _pair(value: Any) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise StoreError("manifest: not a pair")
    return _int(value[0], 2**31), _int(value[1], 2**31)


def pack_segment(frames: list[tuple[int, bytes]]) -> bytes:
    """A segment file's bytes: header, the table (original pts, offset, size), then each coded frame."""
    offset = SEG_HEADER.size + SEG_ENTRY.size * len(frames)
    table = []
    for pts, data in frames:
        table.append(SEG_ENTRY.pack(pts, offset, len(data)))
        offset += len(data)
    return SEG_HEADER.pack(SEG_MAGIC, FORMAT_VERSION, len(frames)) + b"".join(table) + b"".join(d for _, d in frames)


def read_table(fd: int, size: int) -> list[tuple[int, int, int]]:
    """A segment's table, checked against the file's size: (pts, offset, size) per frame. Raises StoreError."""
    head = os.pread(fd, SEG_HEADER.size, 0)
    if len(head) != SEG_HEADER.size:
        raise StoreError("segment shorter than its header")
    magic, version, count = SEG_HEADER.unpack(head)
    if magic != SEG_MAGIC or version != FORMAT_VERSION or not 1 <= count <= MAX_SEGMENT_FRAMES:
        raise StoreError("not a segment of this format")
    raw = os.pread(fd, SEG_ENTRY.size * count, SEG_HEADER.size)
    if len(raw) != SEG_ENTRY.size * count:
        raise StoreError("segment table cut short")
    table = [SEG_ENTRY.unpack_from(raw, i * SEG_ENTRY.size) for i in range(count)]
    start = SEG_HEADER.size + SEG_ENTRY.size * count
    previous = None
    for pts, offset, length in table:
        if offset < start or offset + length > size or length == 0 or (previous is not None and pts <= previous):
            raise StoreError("segment table does not fit the file")
        previous = pts
    return table


def open_nofollow(path: Path, flags: int = os.O_RDONLY) -> int:
    """Open a regular file in the store without following a symlink; StoreError for anything else."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(f"{path.name} is a symlink") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(f"{path.name} is not a regular file")
    return fd


@dataclass
class Entry:
    key: str
    manifest: Manifest | None  # None: unreadable or invalid (removed by clean)
    bytes: int
    used: float  # last use: the manifest's mtime (touched on use)


class Store:
    """The store's root directory. Reading needs nothing else; writing and eviction happen in the daemon and the "
    "maker."""

    def __init__(self, root: Path | str, budget: int = 4 << 30) -> None:
        self.root = Path(root)
        self.budget = budget

    # --- layout ---------------------------------------------------------------------------------

    def dir(self, key: str) -> Path:
        if not KEY.match(key):
            raise StoreError("not a proxy key")
        return self.root / key

    def segment_path(self, key: str, index: int) -> Path:
        return self.dir(key) / f"seg-{index:06d}.bin"

    def create(self) -> None:
        """Make the root (mode 0700: what the user's media look like is theirs) and refuse a symlinked one."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.root.is_symlink() or not self.root.is_dir():
            raise StoreError(f"{self.root} is not a directory")

    def _is_dir(self, path: Path) -> bool:
        try:
            return stat.S_ISDIR(os.lstat(path).st_mode)
        except OSError:
            return False

    # --- reading --------------------------------------------------------------------------------

    def manifest(self, key: str) -> Manifest | None:
        """The proxy's validated manifest, or None (missing, a symlink, too large, invalid)."""
        try:
            directory = self.dir(key)
            if not self._is_dir(directory):
                return None
            fd = open_nofollow(directory / MANIFEST)
        except (OSError, StoreError):
            return None
        try:
            size = os.fstat(fd).st_size
            if size > MAX_MANIFEST:
                return None
            data = os.pread(fd, size, 0)
        except OSError:
            return None
        finally:
            os.close(fd)
        try:
            return Manifest.from_json(data, key)
        except StoreError:
            return None

    def names(self) -> list[str]:
        """The keys of the proxy folders in the store (other names and symlinks are not proxies)."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        return [name for name in names if KEY.match(name) and self._is_dir(self.root / name)]

    def entries(self) -> Iterator[Entry]:
        for name in self.names():
            total = 0
            used = 0.0
            try:
                for child in os.scandir(self.root / name):
                    st = child.stat(follow_symlinks=False)
                    total += st.st_blocks * 512 if stat.S_ISREG(st.st_mode) else 0
                    if child.name == MANIFEST:
                        used = st.st_mtime
            except OSError:
                continue
            yield Entry(name, self.manifest(name), total, used)

    def usage(self) -> int:
        return sum(entry.bytes for entry in self.entries())

    # --- writing --------------------------------------------------------------------------------

    def write_atomic(self, path: Path, data: bytes) -> None:
        """Temp file, fsync, rename, fsync the directory: the name points at the whole file or the old one."""
        directory = path.parent
        tmp = directory / f".tmp-{path.name}-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def begin(self, manifest: Manifest) -> None:
        """Start a proxy afresh: whatever was under its key goes, then its manifest (no segments yet)."""
        directory = self.dir(manifest.key)
        self.remove(manifest.key)
        directory.mkdir(mode=0o700)
        self.write_atomic(directory / MANIFEST, manifest.to_json())

    def add_segment(self, manifest: Manifest, frames: list[tuple[int, bytes]]) -> int:
        """Write the next segment, then list it in the manifest; returns the segment's bytes."""
        data = pack_segment(frames)
        self.write_atomic(self.segment_path(manifest.key, len(manifest.segments)), data)
        manifest.segments.append((frames[0][0], frames[-1][0], len(frames)))
        self.write_manifest(manifest)
        return len(data)

    def write_manifest(self, manifest: Manifest) -> None:
        self.write_atomic(self.dir(manifest.key) / MANIFEST, manifest.to_json())

    def touch(self, key: str) -> None:
        """Mark a proxy used now (its manifest's mtime is the LRU clock; survives restarts)."""
        try:
            os.utime(self.dir(key) / MANIFEST, follow_symlinks=False)
        except (OSError, StoreError, NotImplementedError):
            pass

    def remove(self, key: str) -> None:
        directory = self.dir(key)
        if self._is_dir(directory):
            shutil.rmtree(directory, ignore_errors=True)  # rmtree unlinks symlinks, never follows them
        elif os.path.lexists(directory):
            os.unlink(directory)

    # --- housekeeping ---------------------------------------------------------------------------

    def clean(self) -> list[str]:
        """At start (no maker running): remove temp files, unlisted segments, foreign names and invalid proxies."""
        removed: list[str] = []
        try:
            names = os.listdir(self.root)
        except OSError:
            return removed
        for name in names:
            path = self.root / name
            if not KEY.match(name) or not self._is_dir(path):
                if path.is_symlink() or path.is_file() or name.startswith(".tmp-"):
                    path.unlink(missing_ok=True)
                    removed.append(name)
                elif self._is_dir(path):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(name)
                continue
            manifest = self.manifest(name)
            if manifest is None:
                self.remove(name)
                removed.append(name)
                continue
            listed = {f"seg-{i:06d}.bin" for i in range(len(manifest.segments))}
            for child in os.listdir(path):
                if child != MANIFEST and child not in listed:
                    (path / child).unlink(missing_ok=True)
                    removed.append(f"{name}/{child}")
        return removed

    def evict(self, keep: set[str] = frozenset(), budget: int | None = None) -> list[str]:  # type: ignore[assignment]
        """Remove least recently used proxies until the store fits the budget; never one in ``keep``."""
        budget = self.budget if budget is None else budget
        entries = sorted(self.entries(), key=lambda e: e.used)
        total = sum(e.bytes for e in entries)
        removed = []
        for entry in entries:
            if total <= budget:
                break
            if entry.key in keep:
                continue
            self.remove(entry.key)
            total -= entry.bytes
            removed.append(entry.key)
        return removed

"""Worker side: the proxy frame for a time into a source, found by the renderer's own rule, or None.

A worker asks for a frame the way it asks the source (``seconds`` after the first frame); the reader
computes the renderer's limit (origin + seconds in ticks + half a tick), finds the segment holding the
last frame at or before it among the *original* pts the maker stored, and decodes that one frame
(all-intra: one packet, a few milliseconds). When the frame is not surely in what has been made (a
partial proxy whose next segment is not written yet) it answers None and the worker decodes the original:
a proxy never gives a frame the original would not.

The store is read as untrusted (``store.read_table`` checks every offset against the file's size) and
only through ``O_NOFOLLOW``; a proxy that fails to read or decode is dropped for this source, not retried
per frame.
"""

from __future__ import annotations

import bisect
import os
import time
from collections import OrderedDict
from fractions import Fraction
from typing import Any

import av

from flipedit_previewd.proxy.store import Manifest, Params, Store, StoreError, key_of, open_nofollow

RELOAD_AFTER = 1.0  # s: how often a partial proxy's manifest is read again for segments made since
MAX_TABLES = 64


class ProxyReader:
    """One per worker: manifests and segment tables cached, one H.264 decoder per proxy in use."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._manifests: dict[str, tuple[Manifest | None, float]] = {}
        self._tables: OrderedDict[tuple[str, int], tuple[list[tuple[int, int, int]], list[int]]] = OrderedDict()
        self._decoders: dict[str, Any] = {}
        self.broken: set[str] = set()
        self._index: dict[tuple[int, int, int, int, Params], str] = {}  # (file's stat, params) -> key
        self._listed: int | None = None  # the store folder's mtime when it was last listed
        self._pending: set[str] = set()  # listed folders without a readable manifest (a proxy just begun)
        self._pending_at = 0.0

    def manifest(self, key: str) -> Manifest | None:
        """The proxy's manifest (re-read at most every RELOAD_AFTER while incomplete); None when absent or unusable."""
        if key in self.broken:
            return None
        cached = self._manifests.get(key)
        now = time.monotonic()
        if cached is not None and (cached[0] is not None and cached[0].complete or now - cached[1] < RELOAD_AFTER):
            return cached[0]
        manifest = self.store.manifest(key)
        if manifest is not None and (manifest.refused or not manifest.segments):
            manifest = None
        self._manifests[key] = (manifest, now)
        return manifest

    def for_file(self, st: os.stat_result, params: Params) -> Manifest | None:
        """The proxy of the file ``st`` describes (an fstat of the descriptor the worker opened), made with
        ``params``, without opening the file as media: the key needs the stream's parameters, the index by
        file does not. The store's folder is listed again when it changes (a proxy begun or removed), and
        folders whose manifest could not be read yet are looked at again at most every RELOAD_AFTER."""
        self._refresh_index()
        wanted = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, params)
        key = self._index.get(wanted)
        if key is None:
            now = time.monotonic()
            if self._pending and now - self._pending_at >= RELOAD_AFTER:
                self._pending_at = now
                for name in list(self._pending):
                    self._index_one(name)
                key = self._index.get(wanted)
        return None if key is None else self.manifest(key)

    def _refresh_index(self) -> None:
        try:
            changed = os.stat(self.store.root).st_mtime_ns
        except OSError:
            self._index, self._listed = {}, None
            return
        if changed == self._listed:
            return
        self._index, self._pending, self._listed = {}, set(), changed
        for entry in self.store.names():
            self._index_one(entry)

    def _index_one(self, name: str) -> None:
        manifest = self.store.manifest(name)
        if manifest is None:
            self._pending.add(name)
            return
        self._pending.discard(name)
        i = manifest.identity
        self._index[(i.dev, i.ino, i.size, i.mtime_ns, manifest.params)] = name

    def frame_at(self, manifest: Manifest, seconds: Fraction) -> tuple[int, Any] | None:
        """(original pts, decoded proxy frame) on screen ``seconds`` after the first frame, or None when not covered."""
        limit = manifest.origin + seconds / manifest.time_base + Fraction(1, 2)
        segments = manifest.segments
        firsts = [first for first, _, _ in segments]
        index = bisect.bisect_right(firsts, limit) - 1
        if index < 0:
            index = 0  # before the first frame: the first frame stands (as in the renderer)
        first, last, _ = segments[index]
        if limit >= last and index == len(segments) - 1 and not manifest.complete:
            return None  # a frame after ``last`` may exist in a segment not made yet
        try:
            return self._decode(manifest, index, limit)
        except (OSError, StoreError, av.FFmpegError, ValueError, IndexError) as exc:
            self.drop(manifest.key, str(exc))
            return None

    def _decode(self, manifest: Manifest, index: int, limit: Fraction) -> tuple[int, Any] | None:
        key = manifest.key
        path = self.store.segment_path(key, index)
        fd = open_nofollow(path)
        try:
            cached = self._tables.get((key, index))
            if cached is None:
                table = _read_table(fd)
                cached = (table, [pts for pts, _, _ in table])
                self._tables[(key, index)] = cached
                while len(self._tables) > MAX_TABLES:
                    self._tables.popitem(last=False)
            else:
                self._tables.move_to_end((key, index))
            table, times = cached
            at = max(0, bisect.bisect_right(times, limit) - 1)
            pts, offset, size = table[at]
            data = os.pread(fd, size, offset)
        finally:
            os.close(fd)
        if len(data) != size:
            raise StoreError("segment cut short")
        decoder = self._decoders.get(key)
        if decoder is None:
            decoder = av.CodecContext.create(manifest.params.codec, "r")
            decoder.thread_count = 1
            self._decoders[key] = decoder
        frames = decoder.decode(av.Packet(data))
        if not frames:  # a decoder that holds frames back: drain it, and start a fresh one next time
            frames = decoder.decode(None)
            del self._decoders[key]
        if not frames:
            raise StoreError("proxy frame did not decode")
        frame = frames[-1]
        if (frame.width, frame.height) != (manifest.width, manifest.height):
            raise StoreError("proxy frame of another size than its manifest says")
        return pts, frame

    def drop(self, key: str, why: str = "") -> None:
        """Stop using this proxy in this worker (it failed to read or decode)."""
        self.broken.add(key)
        self._decoders.pop(key, None)
        self._manifests.pop(key, None)
        for table_key in [k for k in self._tables if k[0] == key]:
            del self._tables[table_key]

    def close(self) -> None:
        self._decoders.clear()
        self._tables.clear()
        self._manifests.clear()
        self._index, self._pending, self._listed = {}, set(), None


def _read_table(fd: int) -> list[tuple[int, int, int]]:
    from flipedit_previewd.proxy.store import read_table

    return read_table(fd, os.fstat(fd).st_size)


def usable(manifest: Manifest, size: tuple[int, int]) -> bool:
    """A clip shown at ``size`` (output pixels, displayed orientation) may use this proxy: never enlarged from it."""
    shown = manifest.displayed
    return size[0] <= shown[0] and size[1] <= shown[1]


__all__ = ["Params", "ProxyReader", "key_of", "usable"]

"""The encoded-frame cache, shared by real requests and render-ahead.

Keys are strong ETags (timeline revision, frame, output), so an entry never goes stale: a new
revision simply asks for other keys. Size is bounded by bytes, and each entry is charged what it
really costs the process: its value's bytes plus ``ENTRY_OVERHEAD`` (the key, the entry, the
ordered dict's slot). Counting image bytes only, 20,000 tiny renders in a 2 MiB
cache (2,641 entries of 651 bytes) grew the main process by 5.2 MB RSS, 6.5 MB PSS. Render-ahead puts frames here
before anyone asked for them, which must never push out what the editor is looking at: a
speculative put may only evict other speculative frames nobody used yet, or frames no request
touched for ``idle_s`` seconds; otherwise it is dropped. Hits on speculative frames and the
speculative frames thrown away unused are counted, so render-ahead's benefit and waste show.

It is the package's one byte-bounded LRU: each worker's cache of scaled stills
(``media.MediaPool``) is a ``FrameCache`` too, which simply never makes a speculative put.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

# What an entry costs besides its value's bytes, measured: 398 bytes of Python objects (tracemalloc, 20,000
# puts: the ETag ~95, the entry and its timestamp ~130, the value tuple ~60, the OrderedDict slot ~110). In
# a real daemon's RSS (20,000 distinct 1x1 renders, 631-byte bodies, 4 clients, a 2 MiB cache charged 512,
# 1,024 and 2,048 per entry: 1,834, 1,267 and 782 entries, growth 3.85, 3.34 and 2.99 MB; 0.62 MB with no
# cache) an entry costs ~0.8 KB with its body, on top of ~1.7 MB of allocator slack once the cache churns,
# whatever its size. Charged 1 KiB: 2% of a typical 50 KB frame.
ENTRY_OVERHEAD = 1024


@dataclass
class _Entry:
    value: Any
    size: int
    used: float  # monotonic time of the last real use (or of the put)
    ahead: bool  # put by render-ahead and not asked for yet


class FrameCache:
    def __init__(self, capacity: int, idle_s: float = 10.0, entry_overhead: int = ENTRY_OVERHEAD) -> None:
        self.capacity = capacity
        self.entry_overhead = entry_overhead
        self.idle_s = idle_s
        self.size = 0
        self.hits = 0
        self.misses = 0
        self.ahead_hits = 0
        self.ahead_wasted = 0
        self._items: OrderedDict[Any, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            entry.used = time.monotonic()
            if entry.ahead:
                entry.ahead = False
                self.ahead_hits += 1
            return entry.value

    def __contains__(self, key: Any) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: Any, value: Any, size: int, ahead: bool = False) -> bool:
        """Store ``value`` of ``size`` bytes (charged ``size + entry_overhead``); False when it was not stored
        (too big, or no room a speculative put may take)."""
        size += self.entry_overhead
        if size > self.capacity:
            if ahead:
                self.ahead_wasted += 1
            return False
        now = time.monotonic()
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.size -= old.size
                if ahead:
                    ahead = old.ahead  # already here (a real render won the race): keep its state
            if ahead and not self._make_room_ahead(size, now):
                self.ahead_wasted += 1
                return False
            self._items[key] = _Entry(value, size, now, ahead)
            self.size += size
            while self.size > self.capacity:
                self._evict_oldest()
            return True

    def _make_room_ahead(self, size: int, now: float) -> bool:
        while self.size + size > self.capacity:
            key, entry = next(iter(self._items.items()))
            if not entry.ahead and now - entry.used < self.idle_s:
                return False  # the least recently used frame is in use: nothing may go for a guess
            self._evict_oldest()
        return True

    def _evict_oldest(self) -> None:
        _, entry = self._items.popitem(last=False)
        self.size -= entry.size
        if entry.ahead:
            self.ahead_wasted += 1

    def __len__(self) -> int:
        return len(self._items)

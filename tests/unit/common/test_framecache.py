"""What the frame cache really costs: its setting bounds the memory of its entries, not only their image bytes."""

from __future__ import annotations

import gc
import tracemalloc

from flipedit_previewd.common.framecache import FrameCache

CACHE = 2 * 1024 * 1024


def test_20000_tiny_entries_stay_within_one_and_a_half_times_the_setting() -> None:
    """The key and value shapes the daemon stores (an ETag, (body, content type)); 100-byte bodies, so that
    the overhead of an entry (about 400 bytes) is what fills memory: counted as image bytes only, 20,000 of
    them fit in 2 MiB and cost 10 MB."""
    gc.collect()
    tracemalloc.start()
    try:
        cache = FrameCache(CACHE)
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            body = bytes([i % 256]) * 100
            cache.put(f'"9c41d07a2be55f13-{i}-1x1-q80-jpeg"', (body, "image/jpeg"), len(body))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cache.size <= CACHE
    assert grown <= 1.5 * CACHE, f"{grown / 1e6:.1f} MB for {len(cache)} entries in a {CACHE / 1e6:.1f} MB cache"

"""Work the event loop must not do itself, behind a bounded queue.

Parsing and validating a JSON timeline, resolving its paths, reading a project
database, serialising a large timeline: each can take long on hostile input.
They run in a small thread pool; the loop only awaits. The pool's queue is
bounded: when it is full the request is answered 503 at once (``Overloaded``),
never queued without limit and never run on the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from flipedit_previewd.common.errors import Overloaded

T = TypeVar("T")


class BoundedOffload:
    def __init__(self, threads: int, queue: int, name: str = "offload") -> None:
        self.capacity = threads + queue
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self.name = name
        self.pending = 0
        self.rejected = 0
        self._lock = threading.Lock()

    def _enter(self) -> None:
        with self._lock:
            if self.pending >= self.capacity:
                self.rejected += 1
                raise Overloaded(self.name, 1, f"{self.name} queue full ({self.capacity} jobs)")
            self.pending += 1

    def _leave(self) -> None:
        with self._lock:
            self.pending -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a thread, or raise ``Overloaded`` at once when the queue is full."""
        self._enter()

        def call() -> T:
            try:
                return fn(*args)
            finally:
                self._leave()

        try:
            future = self.pool.submit(call)
        except RuntimeError:  # shut down
            self._leave()
            raise Overloaded("stopping", 1, "the daemon is stopping") from None
        return await asyncio.wrap_future(future)

    def submit_nowait(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Fire and forget (e.g. a reload); False when the queue is full."""
        try:
            self._enter()
        except Overloaded:
            return False

        def call() -> None:
            try:
                fn(*args)
            finally:
                self._leave()

        try:
            self.pool.submit(call)
        except RuntimeError:
            self._leave()
            return False
        return True

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

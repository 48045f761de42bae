"""Work the loop must not do itself, behind a bounded queue (common/offload.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from flipedit_previewd.common.errors import Overloaded
from flipedit_previewd.common.offload import BoundedOffload


def test_offload_queue_full_is_an_immediate_503() -> None:
    async def scenario() -> tuple[int, list[Any]]:
        offload = BoundedOffload(1, 1)
        gate = threading.Event()
        first = asyncio.ensure_future(offload.run(gate.wait, 5))
        second = asyncio.ensure_future(offload.run(gate.wait, 5))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded):
            await offload.run(time.sleep, 0)
        gate.set()
        results = await asyncio.gather(first, second)
        after = await offload.run(lambda: 7)
        offload.shutdown()
        return offload.rejected, [*results, after]

    rejected, results = asyncio.run(scenario())
    assert rejected == 1 and results == [True, True, 7]

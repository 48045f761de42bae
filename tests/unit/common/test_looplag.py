"""How late the event loop runs its timers (common/looplag.py)."""

from __future__ import annotations

import asyncio
import time

from flipedit_previewd.common.looplag import LoopLag


def test_loop_lag_sees_a_blocked_loop_and_reports_once() -> None:
    reports: list[float] = []

    async def scenario() -> LoopLag:
        lag = LoopLag(0.1, lambda worst, _: reports.append(worst))
        lag.start(asyncio.get_running_loop())
        await asyncio.sleep(0.2)
        time.sleep(0.3)  # the loop is blocked
        await asyncio.sleep(0.2)
        time.sleep(0.2)
        await asyncio.sleep(0.1)
        lag.stop()
        return lag

    lag = asyncio.run(scenario())
    assert lag.snapshot()["max_ms"] >= 250
    assert lag.over_threshold == 2 and len(reports) == 1 and reports[0] >= 0.25

"""Rejections summarised (common/rejections.py)."""

from __future__ import annotations

from typing import Any

from flipedit_previewd.common.rejections import RejectionSummary


class _Log:
    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event: str, message: str, priority: str = "info", **fields: Any) -> None:
        self.entries.append((event, fields))


def test_rejection_summary_adds_up_to_every_rejection() -> None:
    log = _Log()
    summary = RejectionSummary(log)  # type: ignore[arg-type]
    for i in range(2500):
        summary.add("rejected" if i % 5 else "timeout", "queue" if i % 5 else "deadline")
        if i % 1000 == 999:
            summary.flush()
    summary.flush()
    summary.flush()  # nothing new: no entry
    assert len(log.entries) == 3
    assert sum(f["REJECTED"] for _, f in log.entries) == 2500
    assert sum(f.get("COUNT_REJECTED", 0) + f.get("COUNT_TIMEOUT", 0) for _, f in log.entries) == 2500
    assert sum(f.get("LIMIT_QUEUE", 0) for _, f in log.entries) == 2000 and summary.total == 2500

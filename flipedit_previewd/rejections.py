"""Rejections summarised, not logged one by one.

During a flood every refused request used to be its own journal entry (about
2,000 a second, and journald then cost 13% of the CPU). Now each refusal is
counted by outcome and reason, and once a second one ``rejections`` entry
carries the counts: ``COUNT_<OUTCOME>`` (what ``previewctl stats`` adds to its
outcome totals, as it does for ``summary`` entries) and ``LIMIT_<REASON>``.
The counts of every entry add up to every rejection: nothing is lost.
"""

from __future__ import annotations

from collections import Counter

from .journal import EventLog


class RejectionSummary:
    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.outcomes: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.total = 0  # since start, for /health and tests
        self.by_reason: Counter[str] = Counter()

    def add(self, outcome: str, reason: str) -> None:
        self.outcomes[outcome] += 1
        self.reasons[reason] += 1
        self.by_reason[reason] += 1
        self.total += 1

    def flush(self) -> None:
        """Once a second: one entry for everything refused since the last one."""
        if not self.outcomes:
            return
        count = sum(self.outcomes.values())
        fields = {f"COUNT_{k.upper()}": v for k, v in self.outcomes.items()}
        fields.update({f"LIMIT_{k.upper()}": v for k, v in self.reasons.items()})
        text = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
        self.log.emit("rejections", f"{count} requests refused in the last second: {text}", "warning",
                      REJECTED=count, **fields)
        self.outcomes.clear()
        self.reasons.clear()

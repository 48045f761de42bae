"""Rejections summarised, not logged one by one.

During a flood every refused request used to be its own journal entry (about
2,000 a second, and journald then cost 13% of the CPU). Now each refusal is
counted by outcome and reason, and once a second one ``rejections`` entry
carries the counts: ``COUNT_<OUTCOME>`` (what ``previewctl stats`` adds to its
outcome totals, as it does for ``summary`` entries) and ``LIMIT_<REASON>``.
The counts of every entry add up to every rejection: nothing is lost.

``ClientErrors`` is the same idea for every answer that is the client's fault (a 4xx from a
route, a protocol error, a refusal by the access guard): one path, counted per status for the
per-minute ``summary`` entry (``COUNT_HTTP_<STATUS>``, a few examples), and only the first of each
event kind and status in a minute journaled at once. The key is the kind and the status, never
the client: a client rotating through 127/8 gains nothing, and the journal's volume is bounded.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from flipedit_previewd.common.journal import EventLog

EXAMPLES = 3  # examples kept per status and minute for the summary
EXAMPLE_CHARS = 300


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
        self.log.emit(
            "rejections", f"{count} requests refused in the last second: {text}", "warning", REJECTED=count, **fields
        )
        self.outcomes.clear()
        self.reasons.clear()


class ClientErrors:
    """Answers that are the client's fault, on one path: counted, a few examples kept, journaled at most
    once per event kind and status per minute (``take`` starts the next minute, from the summary)."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.counts: Counter[int] = Counter()  # this minute
        self.examples: dict[int, list[str]] = {}
        self.last: dict[int, str] = {}
        self.total: Counter[int] = Counter()  # since start, for /health
        self._announced: set[tuple[str, int]] = set()

    def note(self, status: int, what: str, event: str = "", priority: str = "notice", **fields: Any) -> None:
        """Count one answer; ``event`` (e.g. ``protocol_error``): journal it if it is the first of its kind this "
        "minute."""
        what = what[:EXAMPLE_CHARS]
        self.counts[status] += 1
        self.total[status] += 1
        examples = self.examples.setdefault(status, [])
        if len(examples) < EXAMPLES:
            examples.append(what)
        self.last[status] = what
        if event and (event, status) not in self._announced:
            self._announced.add((event, status))
            self.log.emit(
                event, f"{what} (more this minute: counted in the summary)", priority, STATUS=status, **fields
            )

    def take(self) -> tuple[dict[int, int], dict[int, list[str]], dict[int, str]]:
        """This minute's counts, examples and last answer per status; the next minute starts empty."""
        taken = (dict(self.counts), self.examples, self.last)
        self.counts = Counter()
        self.examples = {}
        self.last = {}
        self._announced = set()
        return taken

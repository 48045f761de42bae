"""The one percentile definition the daemon, previewctl, the tests and the benchmarks share.

Linear interpolation between the closest ranks (``statistics.quantiles(..., method="inclusive")``,
numpy's default): p0 is the smallest value, p100 the largest, and one sample is every percentile.
Figures that are compared with each other (a benchmark's ratio, ``previewctl stats`` against a
test's own count) must come from the same definition, or a ratio measures the definitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

POINTS = (50, 95, 99)


def percentile(values: Iterable[float], pct: float) -> float | None:
    """The ``pct``-th percentile (0-100) of ``values``; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be between 0 and 100, not {pct}")
    position = (len(ordered) - 1) * pct / 100
    below = int(position)
    if below + 1 >= len(ordered):
        return float(ordered[-1])
    fraction = position - below
    return float(ordered[below] + (ordered[below + 1] - ordered[below]) * fraction)


def summary(values: Sequence[float], points: Sequence[int] = POINTS, digits: int | None = 2) -> dict[str, float | None]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` (None for no values), rounded to ``digits`` unless None."""
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for point in points:
        value = percentile(ordered, point)
        out[f"p{point}"] = value if value is None or digits is None else round(value, digits)
    return out

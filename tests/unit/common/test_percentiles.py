"""The one percentile helper: the definition every figure (daemon, previewctl, tests, benchmarks) shares."""

from __future__ import annotations

import random
import statistics

import pytest

from flipedit_previewd.common.looplag import LoopLag
from flipedit_previewd.common.percentiles import percentile, summary
from flipedit_previewd.ctl.stats import percentiles


def test_matches_statistics_inclusive_quantiles_at_every_cut() -> None:
    rng = random.Random(7)
    for n in (2, 3, 10, 101, 997):
        values = [rng.expovariate(1 / 30) for _ in range(n)]
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        for point in range(1, 100):
            assert percentile(values, point) == pytest.approx(cuts[point - 1], rel=1e-12), (n, point)


def test_ends_one_sample_empty_and_range() -> None:
    assert percentile([5.0, 1.0, 3.0], 0) == 1.0 and percentile([5.0, 1.0, 3.0], 100) == 5.0
    assert percentile([3.0, 1.0], 50) == 2.0  # interpolated, order of the input does not matter
    assert percentile([4.0], 99) == 4.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_rounds_and_the_callers_use_it() -> None:
    values = [1.0, 2.0, 4.0, 8.0, 16.0]
    assert summary(values) == {"p50": 4.0, "p95": 14.4, "p99": 15.68}
    assert summary([]) == {"p50": None, "p95": None, "p99": None}
    assert summary([1.0, 2.0], digits=None)["p95"] == pytest.approx(1.95)
    assert percentiles(values) == {**summary(values), "count": 5}  # previewctl stats
    lag = LoopLag(1.0, lambda worst, threshold: None)
    lag.samples.extend(values)
    assert lag.percentile(95) == pytest.approx(14.4)  # the daemon's loop lag, same definition

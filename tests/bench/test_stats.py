"""bench.stats: one definition of a percentile (numpy's linear interpolation) for every benchmark."""

from __future__ import annotations

import pytest

from bench.stats import differences, latency_stats, median, percentile, ratio_spread, ratios, spread


def test_percentiles_of_a_known_array_interpolate_between_ranks():
    values = [15, 20, 35, 40, 50]  # in any order: sorted inside
    assert percentile(values[::-1], 0) == 15 and percentile(values, 100) == 50
    assert percentile(values, 50) == 35
    assert percentile(values, 25) == 20  # rank (5 - 1) * 0.25 = 1 exactly
    assert percentile(values, 40) == pytest.approx(29.0)  # rank 1.6: 20 + 0.6 * (35 - 20)
    assert percentile(values, 99) == pytest.approx(49.6)  # rank 3.96: 40 + 0.96 * 10
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert median([4, 1, 3, 2]) == 2.5
    assert percentile([], 50) is None and median([]) is None


def test_a_percentile_outside_0_to_100_is_refused():
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1, 2], 101)


def test_spread_gives_median_min_max_and_quartiles():
    s = spread([3.0, 1.0, 2.0, 10.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.5, 1.0, 10.0, 4)
    assert (s["p25"], s["p75"]) == (pytest.approx(1.75), pytest.approx(4.75))
    assert s["values"] == [3.0, 1.0, 2.0, 10.0]  # as measured, in round order
    assert spread([])["median"] is None and spread([])["n"] == 0


def test_latency_stats_use_the_same_percentiles():
    lat = [0.1 * i for i in range(1, 11)]
    stats = latency_stats(lat)
    assert stats["n"] == 10 and stats["max_s"] == pytest.approx(1.0) and stats["mean_s"] == pytest.approx(0.55)
    assert stats["p50_s"] == pytest.approx(percentile(lat, 50)) == pytest.approx(0.55)
    assert stats["p99_s"] == pytest.approx(0.991)
    assert latency_stats([])["p99_s"] is None


def test_ratios_are_taken_round_by_round():
    assert ratios([2.0, 3.0, 4.0], [1.0, 0.0, 2.0]) == [2.0, 2.0]  # a zero denominator is left out
    r = ratio_spread([1.0, 3.0, 2.0], [1.0, 1.0, 1.0])
    assert (r["median"], r["min"], r["max"]) == (2.0, 1.0, 3.0)
    assert differences([0.3, 0.5], [0.1, 0.2], 1000)["values"] == [200.0, 300.0]
    with pytest.raises(ValueError, match="round by round"):
        ratios([1.0, 2.0], [1.0])

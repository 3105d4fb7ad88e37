"""The statistics of every benchmark, on numpy: one definition of a percentile (numpy's default, linear
interpolation between the two nearest ranks), medians, latency summaries and ratio summaries.

Repeated measurements are summarised as ``spread``: the median with min, max and quartiles, so a table can
show ``median [min-max]``. A ratio of two systems is taken pair by pair within a round (``ratios``), then
summarised the same way (``ratio_spread``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (q in [0, 100]) with linear interpolation (numpy's default); None for no values."""
    if len(values) == 0:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"a percentile is between 0 and 100, e.g. 99; got {q}")
    return float(np.percentile(np.asarray(values, dtype=float), q))


def median(values: Sequence[float]) -> float | None:
    """The median (the 50th percentile); None for no values."""
    return percentile(values, 50)


def mean(values: Sequence[float]) -> float | None:
    return float(np.mean(np.asarray(values, dtype=float))) if len(values) else None


def spread(values: Sequence[float]) -> dict:
    """Median of repeated measurements and how far they spread (min, max, quartiles, n, all values)."""
    vals = np.asarray(values, dtype=float)
    if vals.size == 0:
        return {"median": None, "min": None, "max": None, "p25": None, "p75": None, "n": 0, "values": []}
    p25, p50, p75 = (float(x) for x in np.percentile(vals, [25, 50, 75]))
    return {"median": p50, "min": float(vals.min()), "max": float(vals.max()), "p25": p25, "p75": p75,
            "n": int(vals.size), "values": [round(float(v), 6) for v in vals]}


def latency_stats(latencies_s: Sequence[float]) -> dict:
    """n, mean, p50, p95, p99 and max of request latencies in seconds (None each for no requests)."""
    vals = np.asarray(latencies_s, dtype=float)
    if vals.size == 0:
        return {"n": 0, "mean_s": None, "p50_s": None, "p95_s": None, "p99_s": None, "max_s": None}
    p50, p95, p99 = (float(x) for x in np.percentile(vals, [50, 95, 99]))
    return {"n": int(vals.size), "mean_s": float(vals.mean()), "p50_s": p50, "p95_s": p95, "p99_s": p99,
            "max_s": float(vals.max())}


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Pair-by-pair ratios of measurements taken in the same round (pairs with a zero denominator left out)."""
    if len(numerators) != len(denominators):
        raise ValueError(f"ratios pair measurements round by round: {len(numerators)} numerators but "
                         f"{len(denominators)} denominators")
    return [n / d for n, d in zip(numerators, denominators, strict=True) if d]


def ratio_spread(numerators: Sequence[float], denominators: Sequence[float]) -> dict:
    """``spread`` of the pair-by-pair ratios: median ratio over rounds with its min-max."""
    return spread(ratios(numerators, denominators))


def differences(minuends: Sequence[float], subtrahends: Sequence[float], scale: float = 1.0) -> dict:
    """``spread`` of pair-by-pair differences (times ``scale``, e.g. 1000 for seconds to milliseconds)."""
    if len(minuends) != len(subtrahends):
        raise ValueError(f"differences pair measurements round by round: {len(minuends)} against "
                         f"{len(subtrahends)}")
    return spread([(a - b) * scale for a, b in zip(minuends, subtrahends, strict=True)])

"""ROUGE scoring with Google's ``rouge-score`` (the implementation behind ``evaluate.load("rouge")``).

Conventions (they move published numbers by several points, so they are fixed here):
- F1 of ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum, Porter stemming on, scores x100.
- ROUGE-L is the plain longest common subsequence over the whole summary (newlines ignored);
  ROUGE-Lsum splits on newlines and takes the union LCS per sentence. Our summaries are one or two
  sentences on one line, so the two agree unless a summary contains newlines. The gate uses ROUGE-L.
- Several references (DialogSum test): each metric is the best over the references for that
  dialogue, taken per metric (as in the DialogSum paper's multi-reference evaluation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rouge_score import rouge_scorer

METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")

_scorer = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)


def score_one(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """Best-of-references F1 (x100) for each metric, for one prediction."""
    if not references:
        raise ValueError("at least one reference summary is needed")
    best = dict.fromkeys(METRICS, 0.0)
    for reference in references:
        scores = _scorer.score(reference, prediction)
        for metric in METRICS:
            best[metric] = max(best[metric], scores[metric].fmeasure * 100.0)
    return best


def score_corpus(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[dict[str, float]]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference sets")
    return [score_one(p, r) for p, r in zip(predictions, references)]


def mean_scores(per_example: Sequence[dict[str, float]]) -> dict[str, float]:
    return {m: float(np.mean([s[m] for s in per_example])) if per_example else 0.0 for m in METRICS}


def bootstrap_ci(values: Sequence[float], samples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling dialogues with replacement)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(samples, arr.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)

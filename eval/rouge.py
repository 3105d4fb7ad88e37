"""ROUGE scoring with Google's ``rouge-score`` (the implementation behind ``evaluate.load("rouge")``).

Conventions (they move published numbers by several points, so they are fixed here):

- F1 of ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum, Porter stemming on, scores x100. rouge-score lowercases
  and keeps only ``[a-z0-9]+`` tokens (so ``#Person1#`` is the token ``person1``).
- **ROUGE-L** is the plain longest common subsequence over the whole summary, as one token sequence.
  This is what the gate uses.
- **ROUGE-Lsum** is the summary-level variant: each text is split into sentences, one per line, and the
  score is the union LCS of every reference sentence against all candidate sentences. rouge-score only
  splits on newlines, and single-line summaries would make it identical to ROUGE-L; published numbers
  (Hugging Face's ``run_summarization.py``, most BART/PEGASUS papers) first put every sentence on its own
  line with nltk's punkt splitter. We do the same with ``split_sentences`` (a dependency-free splitter on
  ``. ! ?`` + whitespace: punkt's data is a download the CI and laptops may not have). ROUGE-Lsum
  rewards sentences that match in a different order, so it is several points above ROUGE-L on
  multi-sentence summaries; compare published numbers only with the same variant.
- Several references (DialogSum test): each metric is the best over the references for that dialogue,
  taken per metric (as in the DialogSum paper's multi-reference evaluation).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from rouge_score import rouge_scorer

METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
METRIC_NAMES = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum"}

_scorer = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)
# A sentence ends at . ! or ? (possibly followed by closing quotes/brackets) before whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')\]])\s+")


def split_sentences(text: str) -> str:
    """One sentence per line (the input rouge-score's ROUGE-Lsum expects)."""
    sentences = []
    for line in text.strip().splitlines():
        sentences.extend(s.strip() for s in _SENTENCE_END.split(line) if s.strip())
    return "\n".join(sentences)


def score_one(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """Best-of-references F1 (x100) for each metric, for one prediction."""
    if not references:
        raise ValueError("at least one reference summary is needed")
    best = dict.fromkeys(METRICS, 0.0)
    prediction_lines = split_sentences(prediction)
    for reference in references:
        scores = _scorer.score(reference, prediction)
        # rouge-score tokenizes away the newlines for every metric but rougeLsum, so the split form
        # only changes rougeLsum; scored separately to keep ROUGE-L on the text exactly as generated.
        scores["rougeLsum"] = _scorer.score(split_sentences(reference), prediction_lines)["rougeLsum"]
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
    """Percentile bootstrap interval of the mean (resampling dialogues with replacement).

    Given per-dialogue differences (candidate minus baseline on the same dialogues) it is the paired
    bootstrap interval of the mean difference.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(samples, arr.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def summarize_metric(values: Sequence[float], samples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean and 95 % bootstrap interval of one metric over dialogues, rounded for reports."""
    low, high = bootstrap_ci(values, samples=samples, seed=seed)
    mean = float(np.mean(values)) if len(values) else 0.0
    return {"mean": round(mean, 3), "ci_low": round(low, 3), "ci_high": round(high, 3)}

"""The ROUGE-L gate: a candidate may not fall below its baseline, and its two backends must agree.

Checks, per evaluation set (DialogSum test, SAMSum validation):

1. **Regression**, per backend: mean ROUGE-L of the candidate minus the baseline's mean ROUGE-L on the
   same dialogues must not be below ``-TOLERANCE[subset]`` points.
2. **Backend agreement**: mean ROUGE-L of ONNX Runtime minus PyTorch, for the candidate, must lie within
   ``±AGREEMENT_TOLERANCE`` points.

Why these numbers (measured on the default model's 'ci' baseline; README, "ROUGE-L gate"):

- The tolerance is the half-width of a 95 % interval of a set's mean ROUGE-L on that subset, rounded: the
  baseline's bootstrap interval is +/-1.8 (DialogSum) and +/-2.4 (SAMSum) on 100 dialogues. A model whose
  summaries mostly differ but whose quality barely moved (weights perturbed by 0.3 or 0.5 of their std:
  84-96 % of the summaries change, means within 1.1 points) differs per dialogue with a standard deviation
  of 6.8-8.6 ROUGE-L, a paired 95 % half-width of 1.3-1.7 on 100 dialogues. A drop of more than 2.0
  points is more than the choice of 100 dialogues explains. On the full sets (500 and 818 dialogues) the same spreads give +/-0.6-0.9: tolerance 1.0.
  Smaller real regressions pass the 'ci' gate; the full suite resolves down to about a point.
- The two backends run the same fp32 weights with the same settings: on the 'ci' subset 100 % of their
  summaries are identical. A tie flipped by rounding moves a mean of 100 dialogues by a few tenths at most;
  a broken export or a lossy quantization of one backend moves them apart by more.

Deltas are paired (the candidate's and the baseline's summaries of the same dialogues); the report shows
their paired bootstrap interval and the baseline's own interval next to the tolerance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from eval.baseline import Baseline, BaselineError
from eval.datasets import SUITE_SETS, dialogue_sha
from eval.generate import BACKENDS, SERVICE
from eval.rouge import METRIC_NAMES, METRICS, bootstrap_ci, score_one
from eval.suite import Run

GATE_METRIC = "rougeL"
# ROUGE-L points a candidate may lose against the baseline, by subset (justification: module docstring).
TOLERANCE = {"ci": 2.0, "full": 1.0}
# ROUGE-L points by which ONNX Runtime and PyTorch may differ on the same model.
AGREEMENT_TOLERANCE = 0.5
WORST_EXAMPLES = 5


@dataclass
class Check:
    kind: str  # "regression" or "agreement"
    dataset: str
    backend: str
    metric: str
    candidate: float
    reference: float  # the baseline's mean on the same dialogues, or PyTorch's for an agreement check
    delta: float
    delta_ci: tuple[float, float]
    tolerance: float
    n: int
    passed: bool

    def describe(self) -> str:
        short = SUITE_SETS.get(self.dataset, self.dataset)
        name = METRIC_NAMES.get(self.metric, self.metric)
        verdict = "PASS" if self.passed else "FAIL"
        ci = f"paired 95% CI [{self.delta_ci[0]:+.2f}, {self.delta_ci[1]:+.2f}]"
        if self.kind == "regression":
            return (f"{verdict} {short} ({self.dataset}) / {self.backend} / {name}: {self.candidate:.2f} vs "
                    f"baseline {self.reference:.2f} (delta {self.delta:+.2f}, {ci}; allowed drop {self.tolerance:.2f}, "
                    f"n={self.n})")
        return (f"{verdict} {short} ({self.dataset}) / onnx vs torch / {name}: onnx {self.candidate:.2f}, torch "
                f"{self.reference:.2f} (difference {self.delta:+.2f}, {ci}; allowed +/-{self.tolerance:.2f}, "
                f"n={self.n})")


@dataclass
class GateResult:
    subset: str
    tolerance: float
    agreement_tolerance: float
    metrics: list[str]
    baseline_path: str
    baseline_model: dict
    checks: list[Check] = field(default_factory=list)
    comparison: dict = field(default_factory=dict)  # set -> backend -> metric -> numbers
    agreement: dict = field(default_factory=dict)  # set -> numbers
    worst: dict = field(default_factory=dict)  # set -> backend -> rows
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> dict:
        out = asdict(self)
        out["passed"] = self.passed
        return out


def baseline_backend(run: Run, dataset: str, backend: str) -> str:
    """The baseline backend to compare with: itself, or for a service the backend that served it."""
    if backend != SERVICE:
        return backend
    served = run.results[dataset][backend].get("served_by", [])
    return "torch" if any(s.startswith("torch") for s in served) and not any(s.startswith("onnx") for s in served) \
        else "onnx"


def agreement(run: Run, metric: str = GATE_METRIC) -> dict:
    """How closely ONNX Runtime follows PyTorch on each set (needs both backends in the run)."""
    out = {}
    for name, per_backend in run.examples.items():
        if not all(b in per_backend for b in BACKENDS):
            continue
        ids = list(per_backend["torch"])
        torch_scores = np.array([per_backend["torch"][i]["scores"][metric] for i in ids])
        onnx_scores = np.array([per_backend["onnx"][i]["scores"][metric] for i in ids])
        identical = sum(per_backend["torch"][i]["summary"] == per_backend["onnx"][i]["summary"] for i in ids)
        # How much of PyTorch's summary the ONNX summary reproduces, ROUGE-L F1 against it.
        cross = [score_one(per_backend["onnx"][i]["summary"], [per_backend["torch"][i]["summary"]])["rougeL"]
                 for i in ids]
        diff = onnx_scores - torch_scores
        low, high = bootstrap_ci(diff)
        out[name] = {"n": len(ids), "identical": int(identical), "identical_share": round(identical / len(ids), 4),
                     "onnx_vs_torch_rougeL": round(float(np.mean(cross)), 3), "metric": metric,
                     "torch": round(float(torch_scores.mean()), 3), "onnx": round(float(onnx_scores.mean()), 3),
                     "difference": round(float(diff.mean()), 3), "difference_ci": [round(low, 3), round(high, 3)]}
    return out


def compare(run: Run, baseline: Baseline, subset: str | None = None, tolerance: float | None = None,
            agreement_tolerance: float = AGREEMENT_TOLERANCE, metrics: tuple[str, ...] = (GATE_METRIC,),
            worst_k: int = WORST_EXAMPLES) -> GateResult:
    """Every gate check of ``run`` against ``baseline`` (the entry of the run's subset)."""
    subset = subset or run.subset["name"]
    entry = baseline.entry(subset)
    summaries = baseline.summaries(subset)
    tol = TOLERANCE.get(subset, TOLERANCE["ci"]) if tolerance is None else tolerance
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
    result = GateResult(subset=subset, tolerance=tol, agreement_tolerance=agreement_tolerance, metrics=list(metrics),
                        baseline_path=str(baseline.path), baseline_model=entry.get("model", {}))
    shas = baseline.dialogue_shas(subset)
    for name, per_backend in run.examples.items():
        examples = {ex.id: ex for ex in run.data[name]}
        changed = [i for i, ex in examples.items() if shas.get(name, {}).get(i) not in (None, dialogue_sha(ex))]
        if changed:
            raise BaselineError(f"{len(changed)} {name} dialogues or references differ from those the '{subset}' "
                                f"baseline was scored on (e.g. {changed[:3]}): wrong SUMMARIZER_DATA_DIR, or "
                                "regenerate the baseline")
        result.comparison[name], result.worst[name] = {}, {}
        for backend, cand in per_backend.items():
            base_backend = baseline_backend(run, name, backend)
            base = summaries.get(name, {}).get(base_backend)
            if base is None:
                raise BaselineError(f"the '{subset}' baseline in {baseline.path} has no {base_backend} summaries "
                                    f"for {name}; regenerate it with `python -m eval baseline --subset {subset}`")
            ids = [i for i in cand if i in base]
            if len(ids) < len(cand):
                raise BaselineError(f"{len(cand) - len(ids)} of the candidate's {name} dialogues are not in the "
                                    f"'{subset}' baseline; evaluate the baseline's dialogues (the gate does so)")
            base_scores = {i: score_one(base[i], examples[i].references) for i in ids}
            table = {}
            for metric in METRICS:
                c = np.array([cand[i]["scores"][metric] for i in ids])
                b = np.array([base_scores[i][metric] for i in ids])
                low, high = bootstrap_ci(c - b)
                base_low, base_high = bootstrap_ci(b)
                table[metric] = {"candidate": round(float(c.mean()), 3), "baseline": round(float(b.mean()), 3),
                                 "baseline_ci": [round(base_low, 3), round(base_high, 3)],
                                 "delta": round(float((c - b).mean()), 3), "delta_ci": [round(low, 3), round(high, 3)],
                                 "n": len(ids)}
                if metric in metrics:
                    delta = float((c - b).mean())
                    result.checks.append(Check("regression", name, backend if backend == base_backend else
                                               f"{backend} ({base_backend})", metric, float(c.mean()),
                                               float(b.mean()), delta, (low, high), tol, len(ids), delta >= -tol))
            result.comparison[name][backend] = table
            recorded = entry.get("results", {}).get(name, {}).get(base_backend, {})
            if recorded.get("n") == len(ids):
                drift = abs(recorded["scores"][GATE_METRIC]["mean"] - table[GATE_METRIC]["baseline"])
                if drift > 0.01:
                    result.notes.append(f"{name}/{base_backend}: the baseline's summaries score "
                                        f"{table[GATE_METRIC]['baseline']:.2f} now but {recorded['scores'][GATE_METRIC]['mean']:.2f} "
                                        "when it was written: the scoring changed; regenerate the baseline")
            rows = []
            for i in ids:
                delta = cand[i]["scores"][GATE_METRIC] - base_scores[i][GATE_METRIC]
                if delta < 0:
                    rows.append({"id": i, "delta": round(delta, 2), "references": list(examples[i].references),
                                 "dialogue": examples[i].dialogue,
                                 "baseline": base[i], "baseline_score": round(base_scores[i][GATE_METRIC], 2),
                                 "candidate": cand[i]["summary"],
                                 "candidate_score": round(cand[i]["scores"][GATE_METRIC], 2)})
            rows.sort(key=lambda r: (r["delta"], r["id"]))
            result.worst[name][backend] = rows[:worst_k]
    result.agreement = agreement(run)
    for name, numbers in result.agreement.items():
        diff = numbers["difference"]
        result.checks.append(Check("agreement", name, "onnx vs torch", GATE_METRIC, numbers["onnx"], numbers["torch"],
                                   diff, tuple(numbers["difference_ci"]), agreement_tolerance, numbers["n"],
                                   abs(diff) <= agreement_tolerance))
    result.notes = notes(run, entry) + result.notes
    return result


def notes(run: Run, entry: dict) -> list[str]:
    """What differs between the candidate's configuration and the baseline's (context for a reader)."""
    out = []
    base_model, model = entry.get("model", {}), run.model
    if model.get("weights_sha256") and base_model.get("weights_sha256"):
        same = model["weights_sha256"] == base_model["weights_sha256"]
        out.append("candidate weights are the baseline's (same sha256)" if same else
                   f"candidate weights differ from the baseline's (sha256 {model['weights_sha256'][:12]} vs "
                   f"{base_model['weights_sha256'][:12]}, baseline model {base_model.get('tag') or base_model.get('ref')})")
    for backend, fp in model.get("fingerprints", {}).items():
        base_fp = base_model.get("fingerprints", {}).get(backend)
        if base_fp and fp != base_fp and model.get("weights_sha256") == base_model.get("weights_sha256"):
            out.append(f"{backend}: same weights but other model files than the baseline's (config, tokenizer "
                       "or ONNX export changed)")
    changed = {k: (entry.get("settings", {}).get(k), v) for k, v in run.settings.items()
               if entry.get("settings", {}).get(k) != v}
    if changed:
        out.append("generation settings differ from the baseline's: " +
                   ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()))
    versions = {k: (entry.get("versions", {}).get(k), v) for k, v in run.versions.items()
                if k != "python" and entry.get("versions", {}).get(k) not in (None, v)}
    if versions:
        out.append("library versions differ from the baseline's: " +
                   ", ".join(f"{k} {a} -> {b}" for k, (a, b) in versions.items()))
    if run.subset.get("limit"):
        out.append(f"only the first {run.subset['limit']} dialogues per set of the '{run.subset['name']}' subset "
                   "(--limit): intervals are wider than the tolerance assumes")
    return out

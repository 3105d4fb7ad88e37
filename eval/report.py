"""Reports of a run (and of a gate decision) in Markdown, for people, and JSON, for tools.

Sections: verdict with every check, scores per set and backend with 95 % intervals, the delta against
the baseline on the same dialogues, ONNX Runtime against PyTorch, the dialogues that got most worse
(reference, baseline summary, candidate summary side by side), and the configuration.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from eval.datasets import REPO_ROOT, SUITE_SETS
from eval.gate import GATE_METRIC, GateResult
from eval.rouge import METRIC_NAMES, METRICS
from eval.suite import Run

REPORT_DIR = REPO_ROOT / "runs" / "eval"


def _cell(text: str, limit: int = 0) -> str:
    text = " ".join(str(text).split())
    if limit and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|") or "(empty)"


def _score(block: dict) -> str:
    return f"{block['mean']:.2f} [{block['ci_low']:.2f}, {block['ci_high']:.2f}]"


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def render_markdown(run: Run, gate: GateResult | None = None, console: bool = False, verdict: bool = True) -> str:
    """The report; ``console`` keeps it short: worst dialogues only for failing checks, no configuration.

    ``verdict=False`` (``python -m eval run``): ``gate`` is shown as a comparison with the baseline, each
    check within or outside its tolerance, with no pass/fail heading: only ``python -m eval gate`` decides."""
    lines = _header(run, gate, verdict)
    if gate is not None:
        lines += _checks(gate, verdict)
    lines += _scores(run)
    if gate is not None:
        lines += _against_baseline(gate, console)
    lines += _backend_agreement(gate.agreement if gate is not None else _agreement(run))
    if gate is not None:
        lines += _worst(gate, console)
    if not console:
        lines += ["", "## Configuration", "", "```json",
                  json.dumps({"model": run.model, "settings": run.settings, "subset": run.subset,
                              "generators": run.generators, "timing": run.timing, "versions": run.versions,
                              "host": run.host, "created": run.created}, indent=2), "```"]
    return "\n".join(lines) + "\n"


def _header(run: Run, gate: GateResult | None, verdict: bool) -> list[str]:
    model = run.model.get("tag") or run.model.get("ref")
    where = f"{model} ('{run.subset['name']}' subset)"
    if gate is not None and verdict:
        title = f"# ROUGE-L gate {'PASSED' if gate.passed else 'FAILED'}: {where}"
    elif gate is not None:
        title = (f"# ROUGE evaluation: {where}, compared with its baseline (a report, not the gate: "
                 "`python -m eval gate` gives the verdict)")
    else:
        title = f"# ROUGE evaluation: {where}"
    sizes = ", ".join(f"{SUITE_SETS.get(k, k)} {v}" for k, v in run.subset["sizes"].items())
    lines = [title, "", f"- dialogues: {sizes}; generation: " + ", ".join(f"{k}={v}" for k, v in run.settings.items()),
             f"- scores: F1 x100, rouge-score with stemming, best of the references per metric; "
             f"[95% bootstrap interval]; the gate uses {METRIC_NAMES[GATE_METRIC]} (plain LCS, no sentence split)"]
    if gate is not None:
        lines.append(f"- baseline: {gate.baseline_path} (model {gate.baseline_model.get('tag') or gate.baseline_model.get('ref')}); "
                     f"allowed ROUGE-L drop {gate.tolerance:.2f}, ONNX/PyTorch agreement +/-{gate.agreement_tolerance:.2f}")
    return lines


def _checks(gate: GateResult, verdict: bool) -> list[str]:
    lines = ["", "## Verdict" if verdict else "## The gate's checks (for information: no verdict)", ""]
    marks = ("pass", "**FAIL**") if verdict else ("within tolerance", "**outside tolerance**")
    for check in sorted(gate.checks, key=lambda c: c.passed):
        lines.append(f"- {marks[not check.passed]}: {check.describe().split(' ', 1)[1]}")
    return lines + [f"- note: {note}" for note in gate.notes]


def _scores(run: Run) -> list[str]:
    lines = ["", "## Scores", "", "| set | backend | n | " + " | ".join(METRIC_NAMES[m] for m in METRICS) + " |",
             "|---|---|---|" + "---|" * len(METRICS)]
    for name, per_backend in run.results.items():
        for backend, block in per_backend.items():
            served = f" ({', '.join(block['served_by'])})" if block.get("served_by") else ""
            lines.append(f"| {SUITE_SETS.get(name, name)} | {backend}{served} | {block['n']} | " +
                         " | ".join(_score(block["scores"][m]) for m in METRICS) + " |")
    return lines


def _against_baseline(gate: GateResult, console: bool) -> list[str]:
    lines = ["", "## Against the baseline (same dialogues)", "",
             "| set | backend | metric | baseline [95% CI] | candidate | delta [paired 95% CI] |", "|---|---|---|---|---|---|"]
    for name, per_backend in gate.comparison.items():
        for backend, table in per_backend.items():
            for metric in (gate.metrics if console else METRICS):
                row = table[metric]
                mark = " **gate**" if metric in gate.metrics else ""
                lines.append(f"| {SUITE_SETS.get(name, name)} | {backend} | {METRIC_NAMES[metric]}{mark} | "
                             f"{row['baseline']:.2f} [{row['baseline_ci'][0]:.2f}, {row['baseline_ci'][1]:.2f}] | "
                             f"{row['candidate']:.2f} | {_signed(row['delta'])} "
                             f"[{_signed(row['delta_ci'][0])}, {_signed(row['delta_ci'][1])}] |")
    return lines


def _backend_agreement(agreement: dict) -> list[str]:
    if not agreement:
        return []
    lines = ["", "## ONNX Runtime against PyTorch", "",
             "| set | identical summaries | ROUGE-L of ONNX vs PyTorch summary | ROUGE-L torch | ROUGE-L onnx | "
             "difference [95% CI] |", "|---|---|---|---|---|---|"]
    for name, a in agreement.items():
        lines.append(f"| {SUITE_SETS.get(name, name)} | {a['identical']}/{a['n']} ({a['identical_share']:.0%}) | "
                     f"{a['onnx_vs_torch_rougeL']:.2f} | {a['torch']:.2f} | {a['onnx']:.2f} | "
                     f"{_signed(a['difference'])} [{_signed(a['difference_ci'][0])}, {_signed(a['difference_ci'][1])}] |")
    return lines


def _worst(gate: GateResult, console: bool) -> list[str]:
    """The dialogues that lost most ROUGE-L; on the console only for the failing checks, three each."""
    failing = {(c.dataset, c.backend.split(" ")[0]) for c in gate.failures() if c.kind == "regression"}
    limit = 160 if console else 0
    lines = []
    for name, per_backend in gate.worst.items():
        for backend, rows in per_backend.items():
            if console and (name, backend) not in failing:
                continue
            rows = rows[:3] if console else rows
            if not rows:
                continue
            if not lines:
                lines += ["", "## Dialogues that got most worse (ROUGE-L)"]
            lines += ["", f"### {SUITE_SETS.get(name, name)} / {backend}", "",
                      "| id | delta | reference | baseline summary | candidate summary |", "|---|---|---|---|---|"]
            for r in rows:
                lines.append(f"| {_cell(r['id'])} | {r['delta']:+.1f} | {_cell(r['references'][0], limit)} | "
                             f"{_cell(r['baseline'], limit)} ({r['baseline_score']:.1f}) | "
                             f"{_cell(r['candidate'], limit)} ({r['candidate_score']:.1f}) |")
    return lines


def _agreement(run: Run) -> dict:
    from eval.gate import agreement

    return agreement(run)


def render_json(run: Run, gate: GateResult | None = None, verdict: bool = True) -> dict:
    """``verdict=False``: the checks go under "comparison", without their overall "passed", and "verdict" is
    null, so that no tool reads a report of ``python -m eval run`` as a gate decision."""
    decided = gate is not None and verdict
    out = {"verdict": ("pass" if gate.passed else "fail") if decided else None, "run": run.to_json()}
    out["agreement"] = gate.agreement if gate is not None else _agreement(run)
    if decided:
        out["gate"] = gate.to_json()
    elif gate is not None:
        out["comparison"] = {k: v for k, v in gate.to_json().items() if k != "passed"}
    return out


def write_report(run: Run, gate: GateResult | None = None, directory: str | Path | None = None,
                 verdict: bool = True) -> Path:
    """report.md and report.json in a new directory under runs/eval/ (or ``directory``); returns it.
    ``verdict``: see ``render_markdown``."""
    if directory is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(run.model.get("name") or "model"))
        directory = REPORT_DIR / f"{stamp}-{slug}-{run.subset['name']}"
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.md").write_text(render_markdown(run, gate, verdict=verdict), encoding="utf-8")
    (directory / "report.json").write_text(json.dumps(render_json(run, gate, verdict), indent=2,
                                                      ensure_ascii=False) + "\n", encoding="utf-8")
    return directory

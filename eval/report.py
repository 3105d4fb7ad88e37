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


def render_markdown(run: Run, gate: GateResult | None = None, console: bool = False) -> str:
    """The report; ``console`` keeps it short: worst dialogues only for failing checks, no configuration."""
    model = run.model.get("tag") or run.model.get("ref")
    lines = []
    if gate is not None:
        verdict = "PASSED" if gate.passed else "FAILED"
        lines.append(f"# ROUGE-L gate {verdict}: {model} ('{run.subset['name']}' subset)")
    else:
        lines.append(f"# ROUGE evaluation: {model} ('{run.subset['name']}' subset)")
    sizes = ", ".join(f"{SUITE_SETS.get(k, k)} {v}" for k, v in run.subset["sizes"].items())
    lines += ["", f"- dialogues: {sizes}; generation: " + ", ".join(f"{k}={v}" for k, v in run.settings.items()),
              f"- scores: F1 x100, rouge-score with stemming, best of the references per metric; "
              f"[95% bootstrap interval]; the gate uses {METRIC_NAMES[GATE_METRIC]} (plain LCS, no sentence split)"]
    if gate is not None:
        lines.append(f"- baseline: {gate.baseline_path} (model {gate.baseline_model.get('tag') or gate.baseline_model.get('ref')}); "
                     f"allowed ROUGE-L drop {gate.tolerance:.2f}, ONNX/PyTorch agreement +/-{gate.agreement_tolerance:.2f}")
        lines += ["", "## Verdict", ""]
        for check in sorted(gate.checks, key=lambda c: c.passed):
            lines.append(f"- {'**FAIL**' if not check.passed else 'pass'}: {check.describe().split(' ', 1)[1]}")
        for note in gate.notes:
            lines.append(f"- note: {note}")

    lines += ["", "## Scores", "", "| set | backend | n | " + " | ".join(METRIC_NAMES[m] for m in METRICS) + " |",
              "|---|---|---|" + "---|" * len(METRICS)]
    for name, per_backend in run.results.items():
        for backend, block in per_backend.items():
            served = f" ({', '.join(block['served_by'])})" if block.get("served_by") else ""
            lines.append(f"| {SUITE_SETS.get(name, name)} | {backend}{served} | {block['n']} | " +
                         " | ".join(_score(block["scores"][m]) for m in METRICS) + " |")

    if gate is not None:
        lines += ["", "## Against the baseline (same dialogues)", "",
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

    agreement = gate.agreement if gate is not None else _agreement(run)
    if agreement:
        lines += ["", "## ONNX Runtime against PyTorch", "",
                  "| set | identical summaries | ROUGE-L of ONNX vs PyTorch summary | ROUGE-L torch | ROUGE-L onnx | "
                  "difference [95% CI] |", "|---|---|---|---|---|---|"]
        for name, a in agreement.items():
            lines.append(f"| {SUITE_SETS.get(name, name)} | {a['identical']}/{a['n']} ({a['identical_share']:.0%}) | "
                         f"{a['onnx_vs_torch_rougeL']:.2f} | {a['torch']:.2f} | {a['onnx']:.2f} | "
                         f"{_signed(a['difference'])} [{_signed(a['difference_ci'][0])}, {_signed(a['difference_ci'][1])}] |")

    if gate is not None:
        failing = {(c.dataset, c.backend.split(" ")[0]) for c in gate.failures() if c.kind == "regression"}
        shown = False
        for name, per_backend in gate.worst.items():
            for backend, rows in per_backend.items():
                if console and (name, backend) not in failing:
                    continue
                rows = rows[:3] if console else rows
                if not rows:
                    continue
                if not shown:
                    lines += ["", "## Dialogues that got most worse (ROUGE-L)"]
                    shown = True
                lines += ["", f"### {SUITE_SETS.get(name, name)} / {backend}", "",
                          "| id | delta | reference | baseline summary | candidate summary |", "|---|---|---|---|---|"]
                limit = 160 if console else 0
                for r in rows:
                    lines.append(f"| {_cell(r['id'])} | {r['delta']:+.1f} | {_cell(r['references'][0], limit)} | "
                                 f"{_cell(r['baseline'], limit)} ({r['baseline_score']:.1f}) | "
                                 f"{_cell(r['candidate'], limit)} ({r['candidate_score']:.1f}) |")

    if not console:
        lines += ["", "## Configuration", "", "```json",
                  json.dumps({"model": run.model, "settings": run.settings, "subset": run.subset,
                              "generators": run.generators, "timing": run.timing, "versions": run.versions,
                              "host": run.host, "created": run.created}, indent=2), "```"]
    return "\n".join(lines) + "\n"


def _agreement(run: Run) -> dict:
    from eval.gate import agreement

    return agreement(run)


def render_json(run: Run, gate: GateResult | None = None) -> dict:
    out = {"verdict": None if gate is None else ("pass" if gate.passed else "fail"), "run": run.to_json()}
    out["agreement"] = gate.agreement if gate is not None else _agreement(run)
    if gate is not None:
        out["gate"] = gate.to_json()
    return out


def write_report(run: Run, gate: GateResult | None = None, directory: str | Path | None = None) -> Path:
    """report.md and report.json in a new directory under runs/eval/ (or ``directory``); returns it."""
    if directory is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(run.model.get("name") or "model"))
        directory = REPORT_DIR / f"{stamp}-{slug}-{run.subset['name']}"
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.md").write_text(render_markdown(run, gate), encoding="utf-8")
    (directory / "report.json").write_text(json.dumps(render_json(run, gate), indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    return directory

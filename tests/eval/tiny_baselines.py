"""Baselines of the tiny BART for gate tests (tests/eval, tests/training): its own, and one it cannot meet.

The tiny model's summaries are noise (ROUGE near 0): against its own baseline any tiny candidate passes;
against ``stronger_baseline``, whose SAMSum summaries are the human references, every one fails.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.eval.eval_cli import cli

LIMIT = "3"  # dialogues per set: enough for every check of the gate, quick on the tiny model


def tiny_baseline(model: str, cache: Path, directory: Path) -> Path:
    """``python -m eval baseline`` of ``model`` on the first LIMIT dialogues per set, written in ``directory``."""
    out = directory / "tiny-bart.json"
    assert cli("baseline", "--model", model, "--limit", LIMIT, "--out", str(out), "--cache-dir", str(cache),
               "--report-dir", str(directory / "report"), "--no-progress") == 0
    return out


def stronger_baseline(baseline: Path, directory: Path) -> Path:
    """``baseline`` with SAMSum's summaries replaced by the human references: the tiny model is far worse."""
    from eval.datasets import load_eval_set

    out = directory / "tiny-bart.json"
    shutil.copy(baseline, out)
    refs = {ex.id: ex.references[0] for ex in load_eval_set("samsum_validation")}
    rows = [json.loads(line) for line in baseline.with_name("tiny-bart.ci.jsonl").read_text().splitlines()]
    for row in rows:
        if row["set"] == "samsum_validation":
            row["summaries"] = {b: refs[row["id"]] for b in row["summaries"]}
    out.with_name("tiny-bart.ci.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out

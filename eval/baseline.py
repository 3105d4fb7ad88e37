"""Baselines: the scores a model got, with the exact configuration that produced them, kept in the repository.

    eval/baselines/<model-name>.json                  scores, intervals, settings, hashes, versions, per subset
    eval/baselines/<model-name>.<subset>.jsonl        the baseline's summaries, one line per dialogue

The JSON is keyed by subset ("ci", "full"); the gate compares a candidate with the entry of the same
subset, dialogue by dialogue, so the summaries are kept too (the report shows them beside the
candidate's). Regenerate with ``python -m eval baseline --subset all`` (``make baseline``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from eval.datasets import REPO_ROOT
from eval.suite import Run

BASELINE_DIR = REPO_ROOT / "eval" / "baselines"
FORMAT = 1


def baseline_path(model_name: str) -> Path:
    return BASELINE_DIR / f"{model_name}.json"


def summaries_path(json_path: Path, subset: str) -> Path:
    return json_path.with_name(f"{json_path.stem}.{subset}.jsonl")


class BaselineError(LookupError):
    """No usable baseline: the message says which command makes one."""


@dataclass
class Baseline:
    path: Path
    data: dict

    @classmethod
    def load(cls, path: str | os.PathLike) -> Baseline:
        path = Path(path)
        if not path.exists():
            raise BaselineError(f"no baseline file {path}; create it with `python -m eval baseline` "
                                "(`make baseline`) from the model that is known good")
        return cls(path, json.loads(path.read_text(encoding="utf-8")))

    def subsets(self) -> list[str]:
        return sorted(self.data.get("subsets", {}))

    def entry(self, subset: str) -> dict:
        try:
            return self.data["subsets"][subset]
        except KeyError:
            raise BaselineError(f"{self.path} has no '{subset}' baseline (it has: {', '.join(self.subsets()) or 'none'}); "
                                f"create it with `python -m eval baseline --subset {subset}`") from None

    def summaries(self, subset: str) -> dict[str, dict[str, dict[str, str]]]:
        """set -> backend -> id -> summary."""
        path = summaries_path(self.path, subset)
        if not path.exists():
            raise BaselineError(f"{path} is missing (it belongs to {self.path}); regenerate the baseline with "
                                f"`python -m eval baseline --subset {subset}`")
        out: dict = {}
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                row = json.loads(line)
                for backend, summary in row["summaries"].items():
                    out.setdefault(row["set"], {}).setdefault(backend, {})[row["id"]] = summary
        return out

    def dialogue_shas(self, subset: str) -> dict[str, dict[str, str]]:
        """set -> id -> hash of the dialogue and references the baseline was scored on."""
        out: dict[str, dict[str, str]] = {}
        with open(summaries_path(self.path, subset), encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    out.setdefault(row["set"], {})[row["id"]] = row.get("dialogue_sha", "")
        return out

    def ids(self, subset: str) -> dict[str, list[str]]:
        """set -> dialogue ids, in the baseline's order."""
        out: dict[str, list[str]] = {}
        with open(summaries_path(self.path, subset), encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    out.setdefault(row["set"], []).append(row["id"])
        return out


def write_baseline(run: Run, path: str | os.PathLike, command: str, agreement: dict | None = None) -> Path:
    """Store ``run`` as the baseline of its subset in ``path`` (other subsets in the file are kept)."""
    from eval.datasets import dialogue_sha

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    subset = run.subset["name"]
    data["format"] = FORMAT
    data["model"] = run.model["name"]
    data["about"] = ("ROUGE baseline written by `python -m eval baseline`; `python -m eval gate` compares a "
                     "candidate with the subset of the same name. Scores are F1 x100 (rouge-score, stemming, "
                     "best of the references per metric), mean over dialogues with a bootstrap 95% interval.")
    entry = {**run.to_json(with_examples=False), "command": command, "agreement": agreement or {},
             "summaries_file": summaries_path(path, subset).name}
    data.setdefault("subsets", {})[subset] = entry
    data["subsets"] = dict(sorted(data["subsets"].items()))
    lines = []
    for name, items in run.data.items():
        for ex in items:
            summaries = {b: run.examples[name][b][ex.id]["summary"] for b in run.examples[name]}
            lines.append(json.dumps({"set": name, "id": ex.id, "dialogue_sha": dialogue_sha(ex),
                                     "summaries": summaries}, ensure_ascii=False))
    summaries_path(path, subset).write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path

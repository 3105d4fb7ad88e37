"""Reading the dialogue corpora from the shared data directory (never copied into the repository).

The directory defaults to ``../shared/data`` next to the repository and is overridden with
``SUMMARIZER_DATA_DIR``. Every file is JSON Lines with ``id``, ``dialogue`` and ``summary``; DialogSum's
test split also carries ``references`` (three human summaries), which the scorer uses best-of.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR_ENV = "SUMMARIZER_DATA_DIR"

# Evaluation sets by name -> path relative to the data directory.
EVAL_SETS = {
    "dialogsum_test": "dialogsum/test.jsonl",
    "dialogsum_validation": "dialogsum/validation.jsonl",
    "samsum_validation": "samsum/validation.jsonl",
}
TRAIN_FILES = ("train/samsum_train.jsonl", "train/dialogsum_train.jsonl")


@dataclass(frozen=True)
class Example:
    id: str
    dialogue: str
    references: tuple[str, ...] = field(default_factory=tuple)

    @property
    def summary(self) -> str:
        return self.references[0]


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The corpus directory: the argument, else $SUMMARIZER_DATA_DIR, else ../shared/data."""
    path = Path(override or os.environ.get(DATA_DIR_ENV) or REPO_ROOT.parent / "shared" / "data")
    if not path.is_dir():
        raise FileNotFoundError(
            f"dialogue corpora not found at {path}: pass --data-dir or set {DATA_DIR_ENV} "
            "to the directory that holds dialogsum/, samsum/ and train/"
        )
    return path


def read_jsonl(path: Path) -> list[Example]:
    examples = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            refs = row.get("references") or [row["summary"]]
            examples.append(Example(id=str(row["id"]), dialogue=row["dialogue"], references=tuple(refs)))
    return examples


def load_eval_set(name: str, directory: str | os.PathLike | None = None) -> list[Example]:
    if name not in EVAL_SETS:
        raise ValueError(f"unknown evaluation set {name!r}; known: {', '.join(EVAL_SETS)}")
    return read_jsonl(data_dir(directory) / EVAL_SETS[name])


def load_train_examples(directory: str | os.PathLike | None = None) -> list[Example]:
    root = data_dir(directory)
    return [ex for rel in TRAIN_FILES for ex in read_jsonl(root / rel)]


# --------------------------------------------------------------------------- the regression suite

# The two sets the regression suite scores, with the short names used in reports and Bento labels.
SUITE_SETS = {"dialogsum_test": "dialogsum", "samsum_validation": "samsum"}
SUBSET_SEED = 20240604
# Dialogues per evaluation set; None means all of them (DialogSum test 500, SAMSum validation 818).
SUBSETS: dict[str, int | None] = {"ci": 100, "full": None}


def select_subset(examples: list[Example], size: int | None, seed: int = SUBSET_SEED, name: str = "") -> list[Example]:
    """A fixed, seeded sample of ``size`` examples in corpus order (all of them when size is None).

    The sample depends only on the seed, the set's name and its ids, never on the order of calls.
    """
    import random

    if size is None or size >= len(examples):
        return list(examples)
    chosen = set(random.Random(f"{seed}:{name}").sample(sorted(ex.id for ex in examples), size))
    return [ex for ex in examples if ex.id in chosen]


def load_subset(subset: str, directory: str | os.PathLike | None = None,
                seed: int = SUBSET_SEED) -> dict[str, list[Example]]:
    """The suite's evaluation sets cut to a named subset ('ci' or 'full')."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; known: {', '.join(SUBSETS)}")
    return {name: select_subset(load_eval_set(name, directory), SUBSETS[subset], seed, name) for name in SUITE_SETS}


def dialogue_sha(example: Example) -> str:
    """Short content hash of a dialogue and its references (catches a corpus that changed under an id)."""
    import hashlib

    payload = json.dumps([example.dialogue, list(example.references)], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

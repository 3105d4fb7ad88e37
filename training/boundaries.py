"""Learn where one conversation ends and the next begins (serving/conversation_boundaries.py).

    python -m training.boundaries                       # writes serving/conversation_boundaries.json
    python -m training.boundaries --out /tmp/b.json --joins 500

Training examples are made the way a long meeting is: ``--joins`` runs of 2 to 8 training dialogues of one
corpus (DialogSum's, then SAMSum's) one after the other; each gap between two turns is an example, a boundary
where one dialogue ends. A logistic regression (L2, full-batch Adam; ``torch.nn.EmbeddingBag`` sums the weights
of a gap's features) learns a weight per feature seen at least ``--min-count`` times. Weights under
``--prune`` in size are left out of the file (they change no cut). It reports the average precision of the
boundary scores on joined validation dialogues (DialogSum's and SAMSum's), which training never sees.
Training data comes from ``--data-dir`` (default ../shared/data, SUMMARIZER_DATA_DIR); about 3 minutes on
two cores.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from serving.conversation_boundaries import WEIGHTS_PATH, BoundaryModel, gap_features

SEED = 7
FORMAT = 1


def join_dialogues(dialogues: Sequence[str]) -> tuple[list[str], set[int]]:
    """The turns of ``dialogues`` one after the other, and the index of the turn each but the first starts at."""
    turns: list[str] = []
    starts = set()
    for dialogue in dialogues:
        if turns:
            starts.add(len(turns))
        turns += [line.strip() for line in dialogue.splitlines() if line.strip()]
    return turns, starts


def joined_gaps(dialogues: Sequence[str], joins: int, rng: random.Random) -> list[tuple[set[str], int]]:
    """(features, 1 if a new dialogue starts there) for every gap of ``joins`` runs of 2-8 dialogues."""
    examples = []
    for _ in range(joins):
        turns, starts = join_dialogues(rng.sample(dialogues, rng.randint(2, 8)))
        examples += [(features, int(gap in starts)) for gap, features in enumerate(gap_features(turns), start=1)]
    return examples


def fit(examples: list[tuple[set[str], int]], min_count: int, l2: float, steps: int) -> dict[str, float]:
    import torch

    torch.manual_seed(SEED)
    counts = Counter(f for features, _ in examples for f in features)
    vocabulary = {f: i for i, f in enumerate(sorted(f for f, n in counts.items() if n >= min_count))}
    indices, offsets = [], []
    for features, _ in examples:
        offsets.append(len(indices))
        indices.extend(vocabulary[f] for f in features if f in vocabulary)
    indices_t, offsets_t = torch.tensor(indices), torch.tensor(offsets)
    labels = torch.tensor([y for _, y in examples], dtype=torch.float32)
    weights = torch.nn.EmbeddingBag(len(vocabulary), 1, mode="sum")
    torch.nn.init.zeros_(weights.weight)
    optimizer = torch.optim.Adam(weights.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        logits = weights(indices_t, offsets_t).squeeze(1)
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
                + l2 * weights.weight.pow(2).sum())
        loss.backward()
        optimizer.step()
    learned = weights.weight.detach().squeeze(1).tolist()
    return {f: learned[i] for f, i in vocabulary.items()}


def average_precision(model: BoundaryModel, examples: list[tuple[set[str], int]]) -> float:
    scored = sorted(((sum(model.weights.get(f, 0.0) for f in features), y) for features, y in examples),
                    reverse=True)
    hits, total = 0, 0.0
    for rank, (_, y) in enumerate(scored, start=1):
        if y:
            hits += 1
            total += hits / rank
    return total / max(1, hits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.boundaries", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--joins", type=int, default=3000, help="joined runs per corpus (default %(default)s)")
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--l2", type=float, default=1e-5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--prune", type=float, default=0.05, help="weights smaller than this are left out")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    from eval.datasets import TRAIN_FILES, data_dir, load_eval_set, read_jsonl

    rng = random.Random(SEED)
    root = data_dir(args.data_dir)
    corpora = {Path(rel).stem: [e.dialogue for e in read_jsonl(root / rel)] for rel in TRAIN_FILES}
    # one corpus at a time (dialogsum_train, then samsum_train): a run never joins a DialogSum dialogue to a
    # SAMSum one, whose speakers alone would give the boundary away
    examples = [ex for name in sorted(corpora) for ex in joined_gaps(corpora[name], args.joins, rng)]
    weights = fit(examples, args.min_count, args.l2, args.steps)
    kept = {f: round(w, 4) for f, w in sorted(weights.items()) if abs(w) >= args.prune or f == "bias"}
    check = random.Random(SEED + 1)
    validation = {name: joined_gaps([e.dialogue for e in load_eval_set(eval_set, args.data_dir)], 300, check)
                  for name, eval_set in (("dialogsum", "dialogsum_validation"), ("samsum", "samsum_validation"))}
    ap = {name: round(average_precision(BoundaryModel(kept), gaps), 4) for name, gaps in validation.items()}
    report = {"format": FORMAT, "trained_by": "python -m training.boundaries",
              "training": {"joins_per_corpus": args.joins, "gaps": len(examples),
                           "boundaries": sum(y for _, y in examples), "min_count": args.min_count,
                           "l2": args.l2, "steps": args.steps, "prune": args.prune, "seed": SEED,
                           "features_learned": len(weights), "features_kept": len(kept)},
              "validation_average_precision": ap, "weights": kept}
    args.out.write_text(json.dumps(report, indent=0, sort_keys=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "weights"}, indent=2))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

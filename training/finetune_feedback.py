"""Fine-tune the served model on exported feedback, store the result, and let the ROUGE-L gate decide.

    make finetune FEEDBACK=feedback.jsonl                 # fine-tune, import, gate; prints the next command
    make finetune FEEDBACK=feedback.jsonl BENTO=1         # ... and build the Bento when the gate passes
    python -m training.finetune_feedback --feedback feedback.jsonl [--model TAG] [--bento] [--resume]

Input: the JSON Lines file of ``python -m feedback export``, one object per line with ``dialogue``,
``summary`` (the corrected summary, or the model's own one that a user accepted), ``request_id``, ``rating``,
``model``, ``source`` ("corrected" or "accepted") and ``feedback_at``. Its sha256 (of the file's bytes, as the exporter
prints it) and its number of pairs go into the new model's labels, metadata and model card.

The steps:

1. the source model is the served one (``--model``, default ``$SUMMARIZER_MODEL``, else
   ``dialogue-bart-small:latest``) read from BentoML's model store, its files checked against their sha256;
2. the pairs, mixed with as many pairs drawn (seeded) from the original training corpora (SAMSum + DialogSum
   train, read from ``$SUMMARIZER_DATA_DIR``) per ``--mix``: rehearsal, so that a few epochs on a few dozen
   support-desk pairs do not make the model forget how to summarize everything else;
3. ``training.train_default``'s loop, started from the source model's weights and tokenizer: a few epochs at a
   small learning rate (1e-4, a tenth of the from-scratch peak), label smoothing 0.1, the last epoch kept,
   resumable checkpoints in ``--out`` (default ``runs/finetune/<source>-<export sha256[:12]>``, git-ignored);
4. import into the store as a new version of ``<source name>-feedback`` (never a new version of the served
   name: ``dialogue-bart-small:latest`` must not change before the gate has spoken), with the ONNX export as
   every import, and a model card (``hf/README.md``) that names the export, the source model and the settings;
5. the ROUGE-L gate (``python -m eval gate``) against the baseline of the model the lineage started from
   (``eval/baselines/dialogue-bart-small.json`` for the default: the stored model's ``gate_baseline``), or
   with ``--bento`` ``python -m eval bento``, which builds the Bento only when the gate passes.

Exit status: 0 stored and passed (and built with --bento), 1 the gate failed (no Bento), 2 bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from eval.datasets import REPO_ROOT, Example, load_train_examples  # noqa: E402

SOURCES = ("corrected", "accepted")
NAME_SUFFIX = "-feedback"
FIT_EXAMPLES = 200  # feedback pairs scored before and after (greedy ROUGE-L), for the model card


class FeedbackFileError(ValueError):
    """The export cannot be used: the message names the file, the line and what is wrong."""


@dataclass
class FeedbackExport:
    path: Path
    sha256: str
    examples: list[Example]
    sources: dict[str, int]
    models: dict[str, int]
    duplicates: int
    given: tuple[str, str] | None = None  # the first and last feedback_at in the export, when it has them

    def describe(self) -> dict:
        out = {"export_sha256": self.sha256, "export_file": str(self.path), "pairs": len(self.examples),
               **{s: self.sources.get(s, 0) for s in SOURCES}, "duplicates_dropped": self.duplicates,
               "produced_by": self.models}
        if self.given:
            out["feedback_given_from"], out["feedback_given_until"] = self.given
        return out


def read_export(path: str | os.PathLike) -> FeedbackExport:
    """The export's pairs (exact duplicates once), checked line by line, and the sha256 of its bytes."""
    path = Path(path)
    if not path.is_file():
        raise FeedbackFileError(f"{path}: no such file (write one with `python -m feedback export`)")
    raw = path.read_bytes()
    examples: list[Example] = []
    seen: set[tuple[str, str]] = set()
    sources: Counter = Counter()
    models: Counter = Counter()
    duplicates = 0
    given: list[str] = []
    for number, line in enumerate(raw.decode("utf-8", errors="strict").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FeedbackFileError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise FeedbackFileError(f"{path}:{number}: expected an object with dialogue and summary")
        for key in ("dialogue", "summary"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise FeedbackFileError(f"{path}:{number}: '{key}' must be a non-empty string (an export made "
                                        "with dialogue retention off has no dialogues to learn from)")
        source = row.get("source", "corrected")
        if source not in SOURCES:
            raise FeedbackFileError(f"{path}:{number}: 'source' must be one of {', '.join(SOURCES)}, got {source!r}")
        pair = (row["dialogue"].strip(), row["summary"].strip())
        if pair in seen:
            duplicates += 1
            continue
        seen.add(pair)
        if isinstance(row.get("feedback_at"), str):
            given.append(row["feedback_at"])
        sources[source] += 1
        models[str(row.get("model") or "unknown")] += 1
        examples.append(Example(id=f"feedback:{row.get('request_id') or number}", dialogue=pair[0],
                                references=(pair[1],)))
    if not examples:
        raise FeedbackFileError(f"{path}: no feedback pairs in it: nothing to learn from")
    return FeedbackExport(path=path.resolve(), sha256=hashlib.sha256(raw).hexdigest(), examples=examples,
                          sources=dict(sources), models=dict(models), duplicates=duplicates,
                          given=(min(given), max(given)) if given else None)


def rehearsal_examples(count: int, seed: int, data_dir: str | None) -> list[Example]:
    """``count`` pairs drawn (seeded) from the original training corpora."""
    if count <= 0:
        return []
    corpus = load_train_examples(data_dir)
    return random.Random(seed).sample(corpus, min(count, len(corpus)))


def feedback_name(source_name: str) -> str:
    """The store name of a fine-tune of ``source_name`` (a fine-tune of a fine-tune keeps the name)."""
    return source_name if source_name.endswith(NAME_SUFFIX) else source_name + NAME_SUFFIX


@dataclass
class FinetuneSettings:
    epochs: int = 3
    lr: float = 1e-4
    warmup_ratio: float = 0.1
    label_smoothing: float = 0.1
    mix: float = 1.0
    seed: int = 1234
    max_source_tokens: int = 1024
    max_target_tokens: int = 128
    max_batch_tokens: int = 8192
    max_batch_size: int = 32
    eval_examples: int = 0
    checkpoint_every_min: float = 10.0
    threads: int = 0
    bf16: bool = False


HELP = {
    "epochs": "passes over the pairs (and the rehearsal pairs)",
    "lr": "peak learning rate (the default model was trained from scratch at 1e-3)",
    "warmup_ratio": "share of the steps spent in the linear warm-up (then cosine decay)",
    "label_smoothing": "as the default model's training",
    "mix": "original training pairs per feedback pair (rehearsal against forgetting; 0: feedback only)",
    "seed": "seed of the rehearsal sample, the batches and the weights' updates",
    "max_source_tokens": "dialogue tokens kept per pair (the served context is 1024)",
    "max_target_tokens": "summary tokens kept per pair",
    "max_batch_tokens": "padded tokens per batch at most",
    "max_batch_size": "pairs per batch at most",
    "eval_examples": "DialogSum validation dialogues scored (greedy) after each epoch, for the log; 0: none "
                     "(the gate is the evaluation that decides)",
    "checkpoint_every_min": "a resumable checkpoint at least this often",
    "threads": "torch threads (0: all cores)",
    "bf16": "bf16 autocast",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.finetune_feedback",
                                     description="Fine-tune the served model on exported feedback, import it "
                                                 "into the model store and run the ROUGE-L gate.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--feedback", required=True, help="the JSONL file of `python -m feedback export`")
    parser.add_argument("--model", help="source model tag (default: $SUMMARIZER_MODEL, else dialogue-bart-small:latest)")
    parser.add_argument("--name", help="store name of the result (default: <source name>-feedback)")
    parser.add_argument("--out", help="training directory: checkpoints and the model "
                                      "(default: runs/finetune/<source>-<export sha256[:12]>)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    parser.add_argument("--data-dir", help="corpus directory (default: $SUMMARIZER_DATA_DIR or ../shared/data)")
    for name, value in asdict(FinetuneSettings()).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true", help=HELP[name])
        else:
            parser.add_argument(flag, type=type(value), default=value, help=HELP[name])
    gate = parser.add_argument_group("the gate (python -m eval gate / bento)")
    gate.add_argument("--no-gate", action="store_true", help="stop after the import (run `make gate MODEL=<tag>`)")
    gate.add_argument("--bento", action="store_true", help="build the Bento when the gate passes (python -m eval bento)")
    gate.add_argument("--subset", choices=("ci", "full"), default="ci")
    gate.add_argument("--baseline", help="baseline file (default: the source lineage's eval/baselines/<name>.json)")
    gate.add_argument("--tolerance", type=float, help="allowed ROUGE-L drop in points (default: the gate's)")
    gate.add_argument("--limit", type=int, help="only the first N dialogues of each set (quick checks)")
    gate.add_argument("--cache-dir", help="the suite's summary cache (default: $SUMMARIZER_EVAL_CACHE or .eval_cache)")
    gate.add_argument("--report-dir", help="the gate's report directory (default: runs/eval/<time>-...)")
    gate.add_argument("--bentofile", help="recipe for --bento (default: bentofile.yaml)")
    gate.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the model card


def _front_matter(card: str) -> tuple[dict[str, str], str]:
    """(top-level ``key: value`` lines of a card's YAML front matter, the card's body)."""
    if not card.startswith("---\n"):
        return {}, card
    head, sep, body = card[4:].partition("\n---\n")
    if not sep:
        return {}, card
    keys = {}
    for line in head.splitlines():
        key, colon, value = line.partition(":")
        if colon and key and not key.startswith((" ", "-")):
            keys[key.strip()] = value.strip()
    return keys, body


def model_card(name: str, source_tag: str, source_card: str, export: FeedbackExport, provenance: dict) -> str:
    """hf/README.md of the fine-tune: what it learned from first, then the source model's own card."""
    keys, body = _front_matter(source_card)
    training = provenance["training"]
    fit = provenance.get("feedback_fit") or {}
    front = ["---"]
    for key in ("license", "language"):
        if key in keys:
            front.append(f"{key}: {keys[key]}")
    front += ["library_name: transformers", "pipeline_tag: summarization", f"base_model: {source_tag}",
              "tags: [bart, dialogue-summarization, feedback-fine-tuned]", "---", ""]
    settings = ", ".join(f"{k} {v}" for k, v in training["settings"].items())
    lines = front + [
        f"# {name}",
        "",
        f"`{source_tag}` fine-tuned on user feedback ({provenance['finetuned_at']}).",
        "",
        "## Feedback it learned from",
        "",
        f"- Export: sha256 `{export.sha256}`, {len(export.examples)} pairs "
        f"({export.sources.get('corrected', 0)} corrected, {export.sources.get('accepted', 0)} accepted; "
        f"{export.duplicates} exact duplicates dropped), file `{export.path.name}`.",
        *([f"- Feedback given from {export.given[0]} to {export.given[1]}."] if export.given else []),
        "- Summaries produced by: " + ", ".join(f"`{m}` ({n})" for m, n in sorted(export.models.items())) + ".",
        f"- Mixed with {training['rehearsal_pairs']} pairs drawn from the original training corpora "
        f"(SAMSum + DialogSum train; rehearsal against forgetting).",
        "",
        "## Training",
        "",
        f"- Command: `{provenance['command']}`",
        f"- Settings: {settings}.",
        f"- {training['steps']} optimizer steps in {training['train_seconds']:.0f} s; mean training loss per epoch: "
        + ", ".join(f"{h['train_loss']:.3f}" for h in training["history"]) + ".",
    ]
    if fit:
        lines.append(f"- On the feedback pairs themselves (first {fit['n']}, greedy, ROUGE-L; in-sample, so it shows "
                     f"that the pairs were learned, not that the model is better): {fit['before']:.2f} before, "
                     f"{fit['after']:.2f} after.")
    lines += [
        "",
        "## Gate",
        "",
        f"It may become a Bento only through the ROUGE-L gate against `eval/baselines/{provenance['gate_baseline']}"
        f".json` (`make bento MODEL=<this tag>`); the Bento's labels then carry its scores and this provenance.",
        "",
        f"## The source model's card ({source_tag})",
        "",
        body.strip(),
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the flow


def feedback_fit(model_dir: Path, examples: list[Example], threads: int) -> float:
    """Greedy ROUGE-L of a model on (the first FIT_EXAMPLES of) the feedback pairs."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from training.train_default import greedy_rouge

    if threads:
        torch.set_num_threads(threads)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return greedy_rouge(model, tokenizer, examples[:FIT_EXAMPLES], torch.device("cpu"))["rougeL"]


@dataclass
class Outcome:
    tag: str
    gate: str  # "passed", "failed", "skipped" (--no-gate) or "error" (the gate could not run)
    exit_code: int


def run(args: argparse.Namespace, argv: list[str]) -> Outcome:
    from eval.generate import default_model_ref
    from model_store.layout import HF_SUBDIR, REFERENCE_STATS
    from model_store.store import check_files, get_model, import_model
    from training.train_default import TrainConfig, train

    export = read_export(args.feedback)
    source = get_model(args.model or default_model_ref())
    check_files(source)  # a damaged source is not a base to learn from
    source_tag = str(source.tag)
    source_hf = Path(source.path) / HF_SUBDIR
    name = args.name or feedback_name(source.tag.name)
    gate_baseline = source.info.metadata.get("gate_baseline") or source.tag.name
    settings = FinetuneSettings(**{k: getattr(args, k) for k in asdict(FinetuneSettings())})
    out = Path(args.out) if args.out else \
        REPO_ROOT / "runs" / "finetune" / f"{source_tag.replace(':', '-')}-{export.sha256[:12]}"
    _log(f"source {source_tag}; export {export.path.name}: {len(export.examples)} pairs, sha256 {export.sha256}")

    # What this directory trains: a resume must continue the same run, not mix two.
    manifest = {"source": source_tag, "export_sha256": export.sha256, "settings": asdict(settings)}
    manifest_path = out / "finetune.json"
    if args.resume and manifest_path.exists():
        before = json.loads(manifest_path.read_text())
        if before != manifest:
            raise FeedbackFileError(f"{out} holds a fine-tune of {before['source']} on export "
                                    f"{before['export_sha256'][:12]} with other settings: resume it with those, "
                                    "or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")

    rehearsal = rehearsal_examples(round(settings.mix * len(export.examples)), settings.seed, args.data_dir)
    cfg = TrainConfig(out=str(out), data_dir=args.data_dir, seed=settings.seed, init_from=str(source_hf), keep="last",
                      epochs=settings.epochs, lr=settings.lr, warmup_ratio=settings.warmup_ratio,
                      label_smoothing=settings.label_smoothing, max_source_tokens=settings.max_source_tokens,
                      max_target_tokens=settings.max_target_tokens, max_batch_tokens=settings.max_batch_tokens,
                      max_batch_size=settings.max_batch_size, eval_examples=settings.eval_examples,
                      checkpoint_every_min=settings.checkpoint_every_min, threads=settings.threads,
                      bf16=settings.bf16)
    _log(f"fine-tuning on {len(export.examples)} feedback + {len(rehearsal)} corpus pairs in {out}")
    started = time.monotonic()
    trained = train(cfg, args.resume, train_examples=export.examples + rehearsal)
    state = json.loads((trained / "training_info.json").read_text())

    fit = {"n": min(FIT_EXAMPLES, len(export.examples)), "metric": "rougeL_greedy_in_sample",
           "before": round(feedback_fit(source_hf, export.examples, settings.threads), 2),
           "after": round(feedback_fit(trained, export.examples, settings.threads), 2)}
    finetuned_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    training = {"settings": asdict(settings),
                "feedback_pairs": len(export.examples), "rehearsal_pairs": len(rehearsal),
                "steps": state["step"], "epochs_done": state["epoch"], "train_seconds": round(state["train_seconds"], 1),
                "history": [{"epoch": h["epoch"], "train_loss": round(h["train_loss"], 4)} for h in state["history"]],
                "checkpoints": str(out)}
    provenance = {"feedback": export.describe(), "finetuned_from": source_tag, "finetuned_at": finetuned_at,
                  "gate_baseline": gate_baseline, "training": training, "feedback_fit": fit,
                  "command": "python -m training.finetune_feedback " + " ".join(argv)}
    source_card = (source_hf / "README.md").read_text() if (source_hf / "README.md").exists() else ""
    if (source_hf / REFERENCE_STATS).exists():
        # The drift reference (observability/drift.py) describes the training inputs: the fine-tune has the same
        # tokenizer and, with rehearsal, mostly the same data, so it keeps its source's.
        shutil.copy2(source_hf / REFERENCE_STATS, trained / REFERENCE_STATS)
    (trained / "README.md").write_text(model_card(name, source_tag, source_card, export, provenance))
    labels = {"finetuned_from": source_tag, "finetuned_at": finetuned_at,
              "feedback_export_sha256": export.sha256, "feedback_pairs": str(len(export.examples))}
    result = import_model(str(trained), name, labels=labels, metadata=provenance, progress=_log)
    print(f"fine-tuned {source_tag} on {len(export.examples)} feedback pairs (export sha256 {export.sha256[:12]}) "
          f"+ {len(rehearsal)} corpus pairs: {state['epoch']} epochs, {state['step']} steps, "
          f"{time.monotonic() - started:.0f} s")
    print(f"stored {result.tag} (model card: `bentoml models get {result.tag}`, {HF_SUBDIR}/README.md)")

    if args.no_gate:
        print(f"next: make gate MODEL={result.tag}, then make bento MODEL={result.tag}")
        return Outcome(result.tag, "skipped", 0)
    return decide(args, result.tag)


def decide(args: argparse.Namespace, tag: str) -> Outcome:
    """The gate on the stored fine-tune (and the Bento with --bento); says what happened and what comes next."""
    code = gate(args, tag)
    if code == 0:
        print(f"ROUGE-L gate passed: {tag} may ship")
        print(f"the Bento above packs {tag} (`bentoml list`; `bentoml serve <bento tag>`)" if args.bento else
              f"next: make bento MODEL={tag}")
        return Outcome(tag, "passed", 0)
    if code == 1:
        print(f"ROUGE-L gate FAILED for {tag}: no Bento built. The report above names each set and backend that "
              f"fell below the baseline (or where ONNX Runtime and PyTorch disagree). The model stays in the store "
              f"for inspection; `bentoml models delete {tag}` removes it.")
        return Outcome(tag, "failed", 1)
    print(f"the gate could not run for {tag} (the error above says why); once fixed: make bento MODEL={tag}")
    return Outcome(tag, "error", 2)


def gate(args: argparse.Namespace, tag: str) -> int:
    """``python -m eval gate`` (or ``bento``) on the new model, in this process; its exit status."""
    from eval.__main__ import main as eval_main

    argv = ["bento" if args.bento else "gate", "--model", tag, "--subset", args.subset]
    for flag, value in (("--baseline", args.baseline), ("--tolerance", args.tolerance), ("--limit", args.limit),
                        ("--cache-dir", args.cache_dir), ("--report-dir", args.report_dir),
                        ("--data-dir", args.data_dir)):
        if value is not None:
            argv += [flag, str(value)]
    if args.bento and args.bentofile:
        argv += ["--bentofile", args.bentofile]
    if args.no_progress:
        argv.append("--no-progress")
    _log("python -m eval " + " ".join(argv))
    return eval_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from model_store.store import ModelFileError, ModelNotFoundError

    try:
        return run(args, argv).exit_code
    except (FeedbackFileError, ModelNotFoundError, ModelFileError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

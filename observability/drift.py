"""Input drift: how far what clients send has moved from what the model was trained on.

Each dialogue's statistics (serving/inspection.py) fall into fixed bins per statistic (the buckets of their
histograms in names.py, so Prometheus' ``_bucket`` series are the same bins). The model ships the binned
distribution over its training set (``reference_stats.json`` beside its Hugging Face files). Drift is the
population stability index (PSI) of recent dialogues against it, per statistic:

    PSI = sum over bins of (actual - expected) * ln(actual / expected)     (shares; empty bins floored)

    < 0.1 no shift, 0.1-0.2 moderate, > 0.2 significant (the alert in alerts.yml, held for 15 minutes).

Where it is computed:
- live: each API worker keeps its last SUMMARIZER_DRIFT_WINDOW dialogues' bins (``DriftMonitor``) and
  exports ``summarizer.input.drift.psi{summarizer.statistic}`` at each metric export; the alert takes the max
  over workers;
- on demand: ``python -m observability.drift report`` over a window, from Prometheus (the histograms'
  increase over ``--window``) or from a JSONL file of dialogues (``--dialogues``, e.g. a feedback export).

    python -m observability.drift reference [--data-dir DIR] [--model DIR|TAG] [--out FILE]
    python -m observability.drift report --prometheus http://prometheus:9090 --window 1h [--model TAG]
    python -m observability.drift report --dialogues requests.jsonl [--last 1000] [--model DIR|TAG]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from model_store.layout import REFERENCE_STATS
from observability.names import (DIALOGUE_TOKEN_BUCKETS, FRAGMENTED_WORDS_BUCKETS, INPUT_DIALOGUES,
                                 INPUT_DRIFT_PSI, INPUT_FRAGMENTED_WORDS, INPUT_SPEAKERS, INPUT_TOKENS, LABELLED_LANGUAGES,
                                 LANGUAGE, OTHER_LANGUAGE, OVER_CONTEXT, PROMETHEUS_NAMES, SPEAKER_BUCKETS, STATISTIC)

logger = logging.getLogger(__name__)

REFERENCE_FILE = REFERENCE_STATS  # beside the model's Hugging Face files (hf/ in the store)
FORMAT = 1
PSI_ALERT = 0.2  # alerts.yml's threshold; also the report's "significant"
PSI_MODERATE = 0.1
SHARE_FLOOR = 1e-4  # an empty bin's share, so that ln() stays finite (the usual PSI convention)


@dataclass(frozen=True)
class Binning:
    """The bins of one statistic: numeric (``bounds``: upper bounds as Prometheus' ``le``, then +Inf) or
    categorical (``categories``, the last one taking every value not listed)."""

    name: str
    bounds: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def labels(self) -> list[str]:
        if self.categories:
            return list(self.categories)
        return [_le(b) for b in self.bounds] + ["+Inf"]

    def index(self, value) -> int:
        if self.categories:
            return self.categories.index(value) if value in self.categories else len(self.categories) - 1
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                return i
        return len(self.bounds)


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


STATISTICS: dict[str, Binning] = {b.name: b for b in (
    Binning("tokens", bounds=DIALOGUE_TOKEN_BUCKETS),
    Binning("over_context", categories=("false", "true")),
    Binning("speakers", bounds=SPEAKER_BUCKETS),
    Binning("language", categories=(*LABELLED_LANGUAGES, OTHER_LANGUAGE)),
    Binning("fragmented_words", bounds=FRAGMENTED_WORDS_BUCKETS),
)}


def language_label(code: str) -> str:
    """The bounded language label: a labelled language, or "other"."""
    return code if code in LABELLED_LANGUAGES else OTHER_LANGUAGE


def values_of(stats) -> dict[str, object]:
    """An ``InputStatistics`` (or its dict) as the value each statistic is binned by."""
    s = stats if isinstance(stats, Mapping) else stats.as_dict()
    return {"tokens": s["tokens"], "over_context": "true" if s["over_context"] else "false",
            "speakers": s["speakers"], "language": language_label(s["language"]),
            "fragmented_words": s["fragmented_words"]}


def bin_counts(rows: Iterable) -> dict[str, list[int]]:
    counts = {name: [0] * len(b.labels) for name, b in STATISTICS.items()}
    for stats in rows:
        for name, value in values_of(stats).items():
            counts[name][STATISTICS[name].index(value)] += 1
    return counts


def psi(expected: Sequence[float], actual: Sequence[float], floor: float = SHARE_FLOOR) -> float:
    """Population stability index of ``actual`` counts against ``expected`` counts over the same bins."""
    if len(expected) != len(actual):
        raise ValueError(f"{len(expected)} expected bins, {len(actual)} actual")
    n_expected, n_actual = sum(expected), sum(actual)
    if n_expected <= 0 or n_actual <= 0:
        raise ValueError("PSI needs counts in both distributions")
    total = 0.0
    for e, a in zip(expected, actual):
        e_share, a_share = max(e / n_expected, floor), max(a / n_actual, floor)
        total += (a_share - e_share) * math.log(a_share / e_share)
    return total


# --------------------------------------------------------------------------- the reference distribution


class ReferenceError(ValueError):
    """A reference_stats.json that cannot be used (other bins, other format): the message says how to redo it."""


@dataclass(frozen=True)
class Reference:
    counts: dict[str, list[int]]
    dialogues: int
    source: str = ""

    def psi(self, counts: Mapping[str, Sequence[float]]) -> dict[str, float]:
        return {name: psi(self.counts[name], counts[name]) for name in STATISTICS if sum(counts[name]) > 0}

    def to_json(self) -> dict:
        return {"format": FORMAT, "source": self.source, "dialogues": self.dialogues,
                "statistics": {name: {"bins": STATISTICS[name].labels, "counts": self.counts[name]}
                               for name in STATISTICS}}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        raw = json.loads(Path(path).read_text())
        redo = "recompute it with `python -m observability.drift reference`"
        if raw.get("format") != FORMAT:
            raise ReferenceError(f"{path}: format {raw.get('format')!r}, this service reads {FORMAT}; {redo}")
        counts = {}
        for name, binning in STATISTICS.items():
            entry = raw.get("statistics", {}).get(name)
            if entry is None or entry.get("bins") != binning.labels or len(entry.get("counts", [])) != len(binning.labels):
                raise ReferenceError(f"{path}: statistic {name!r} is missing or has other bins than "
                                     f"{binning.labels}; {redo}")
            counts[name] = [int(c) for c in entry["counts"]]
        return cls(counts=counts, dialogues=int(raw.get("dialogues", 0)), source=str(raw.get("source", "")))


def compute_reference(inspector, dialogues: Iterable[str], source: str) -> Reference:
    rows = [inspector.statistics(d) for d in dialogues]
    return Reference(counts=bin_counts(rows), dialogues=len(rows), source=source)


# --------------------------------------------------------------------------- live: the API worker's window


class DriftMonitor:
    """The last ``window`` dialogues' bins of this process and their PSI against ``reference``; records each
    dialogue's statistics as metrics (a no-op without telemetry)."""

    def __init__(self, reference: Reference | None, window: int = 1000, min_dialogues: int = 100) -> None:
        self.reference, self.min_dialogues = reference, min_dialogues
        self._recent: deque[dict[str, int]] = deque(maxlen=window)
        self._lock = threading.Lock()  # observed on the event loop, read by the metric export thread

    def observe(self, stats) -> None:
        from observability.providers import current

        values = values_of(stats)
        if self.reference is not None:
            bins = {name: STATISTICS[name].index(value) for name, value in values.items()}
            with self._lock:
                self._recent.append(bins)
        runtime = current()
        if runtime is None:
            return
        runtime.record(INPUT_TOKENS, values["tokens"], {})
        runtime.record(INPUT_SPEAKERS, values["speakers"], {})
        runtime.record(INPUT_FRAGMENTED_WORDS, values["fragmented_words"], {})
        runtime.add(INPUT_DIALOGUES, 1, {LANGUAGE: values["language"], OVER_CONTEXT: values["over_context"]})

    def window_counts(self) -> dict[str, list[int]]:
        with self._lock:
            recent = list(self._recent)
        counts = {name: [0] * len(b.labels) for name, b in STATISTICS.items()}
        for bins in recent:
            for name, i in bins.items():
                counts[name][i] += 1
        return counts

    def current_psi(self) -> dict[str, float]:
        """PSI per statistic over the window; empty before ``min_dialogues`` (too few to say anything)."""
        if self.reference is None or len(self._recent) < self.min_dialogues:
            return {}
        return self.reference.psi(self.window_counts())

    def gauge(self) -> list[tuple[float, dict[str, str]]]:
        return [(value, {STATISTIC: name}) for name, value in self.current_psi().items()]


def load_reference(path: Path | None) -> Reference | None:
    """The reference at ``path``; None (drift metrics off, with one log line saying why) when absent or unusable."""
    if path is None or not Path(path).exists():
        logger.warning("input drift: no reference distribution at %s, so no summarizer.input.drift.psi; compute "
                       "one with `python -m observability.drift reference` and re-import the model", path)
        return None
    try:
        return Reference.load(path)
    except (ReferenceError, ValueError, OSError) as exc:
        logger.warning("input drift: %s; no summarizer.input.drift.psi", exc)
        return None


def start_monitor(reference_path: Path | None, window: int, min_dialogues: int) -> DriftMonitor:
    """The API worker's monitor, its PSI gauge registered with this process's telemetry."""
    from observability.providers import active, observe_gauge

    # Without telemetry nothing would export the PSI: no window kept.
    monitor = DriftMonitor(load_reference(reference_path) if active() else None, window, min_dialogues)
    if monitor.reference is not None:
        observe_gauge(INPUT_DRIFT_PSI, monitor.gauge)
    return monitor


# --------------------------------------------------------------------------- the command


def _inspector(model: str | None, min_confidence: float, min_letters: int):
    from serving.inspection import Inspector, LanguageIdentifier
    from serving.model_config import context_length
    from serving.tokenization import ModelTokenizer

    hf_dir = _model_dir(model)
    return Inspector(ModelTokenizer(hf_dir), context_length(hf_dir), LanguageIdentifier(min_confidence, min_letters))


def _model_dir(model: str | None) -> Path:
    """A Hugging Face directory, or a stored model's tag (its hf/ directory); the shipped default model's
    directory when None."""
    from model_store.layout import HF_SUBDIR

    if model is None:
        from model_store.store import DEFAULT_MODEL_DIR
        return Path(DEFAULT_MODEL_DIR)
    if Path(model).is_dir():
        return Path(model) / HF_SUBDIR if (Path(model) / HF_SUBDIR).is_dir() else Path(model)
    from model_store.store import get_model
    return Path(get_model(model if ":" in model else f"{model}:latest").path) / HF_SUBDIR


def _reference_for(args) -> Reference:
    if args.reference:
        return Reference.load(args.reference)
    path = _model_dir(args.model) / REFERENCE_FILE
    if not path.exists():
        raise SystemExit(f"{path} does not exist: pass --reference FILE or compute it with "
                         "`python -m observability.drift reference`")
    return Reference.load(path)


def _read_dialogues(paths: Sequence[str]) -> list[str]:
    out = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    out.append(row["dialogue"] if isinstance(row, dict) else str(row))
    return out


def prometheus_counts(url: str, window: str, selector: str = "") -> dict[str, list[float]]:
    """Each statistic's bins over the last ``window`` from a Prometheus that holds the summarizer's metrics:
    the increase of the histograms' cumulative buckets (differenced into bins) and of the dialogue counter."""
    import httpx

    def query(expr: str) -> list[dict]:
        answer = httpx.get(f"{url.rstrip('/')}/api/v1/query", params={"query": expr}, timeout=30.0)
        answer.raise_for_status()
        return answer.json()["data"]["result"]

    matcher = f"{{{selector}}}" if selector else ""
    counts: dict[str, list[float]] = {}
    for name, metric in (("tokens", INPUT_TOKENS), ("speakers", INPUT_SPEAKERS),
                         ("fragmented_words", INPUT_FRAGMENTED_WORDS)):
        cumulative = {r["metric"]["le"]: float(r["value"][1]) for r in query(
            f"sum by (le) (increase({PROMETHEUS_NAMES[metric]}_bucket{matcher}[{window}]))")}
        labels = STATISTICS[name].labels
        by_le = [cumulative.get(le, cumulative.get(_prometheus_le(le), 0.0)) for le in labels]
        counts[name] = [max(c - (by_le[i - 1] if i else 0.0), 0.0) for i, c in enumerate(by_le)]
    dialogues = PROMETHEUS_NAMES[INPUT_DIALOGUES]
    for name, label in (("language", LANGUAGE), ("over_context", OVER_CONTEXT)):
        prom_label = label.replace(".", "_")
        found = {r["metric"].get(prom_label, ""): float(r["value"][1]) for r in query(
            f"sum by ({prom_label}) (increase({dialogues}{matcher}[{window}]))")}
        binning = STATISTICS[name]
        counts[name] = [0.0] * len(binning.labels)
        for value, n in found.items():
            counts[name][binning.index(value)] += n
    return counts


def _prometheus_le(label: str) -> str:
    """Prometheus writes le as a float ("64.0" from some exporters, "64" from others)."""
    return label if label == "+Inf" else repr(float(label))


def report(reference: Reference, counts: Mapping[str, Sequence[float]], out=None) -> dict[str, float]:
    out = out or sys.stdout
    values = reference.psi(counts)
    n = max((sum(c) for c in counts.values()), default=0)
    print(f"PSI per statistic against the reference ({reference.dialogues} dialogues of {reference.source}), "
          f"over {n:.0f} dialogues:", file=out)
    print(f"{'statistic':<18} {'PSI':>8}  verdict", file=out)
    for name in STATISTICS:
        if name not in values:
            print(f"{name:<18} {'-':>8}  no dialogues", file=out)
            continue
        v = values[name]
        verdict = "significant shift" if v > PSI_ALERT else "moderate shift" if v > PSI_MODERATE else "stable"
        print(f"{name:<18} {v:8.3f}  {verdict}", file=out)
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observability.drift", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("reference", help="the binned statistics of a training corpus (reference_stats.json)")
    ref.add_argument("--corpus", nargs="*", help="JSONL files with a 'dialogue' field (default: the default "
                     "model's training corpus, train/samsum_train.jsonl and train/dialogsum_train.jsonl)")
    ref.add_argument("--data-dir", help="corpus directory (default: $SUMMARIZER_DATA_DIR or ../shared/data)")
    ref.add_argument("--model", help="Hugging Face directory or stored model tag whose tokenizer and context "
                     "to use (default: model_store/default_model)")
    ref.add_argument("--out", help="where to write (default: reference_stats.json in the model directory; for "
                     "a stored model, the current directory)")
    rep = sub.add_parser("report", help="PSI per statistic over a window")
    source = rep.add_mutually_exclusive_group(required=True)
    source.add_argument("--prometheus", help="Prometheus base URL holding the summarizer's metrics")
    source.add_argument("--dialogues", nargs="+", help="JSONL files of dialogues (a 'dialogue' field)")
    rep.add_argument("--window", default="1h", help="with --prometheus: a PromQL duration (default 1h)")
    rep.add_argument("--selector", default="", help="with --prometheus: label matchers, e.g. 'job=\"prod\"'")
    rep.add_argument("--last", type=int, help="with --dialogues: only the last N dialogues")
    rep.add_argument("--model", help="the served model (directory or tag), for its reference and tokenizer")
    rep.add_argument("--reference", help="a reference_stats.json (default: the model's)")
    rep.add_argument("--json", action="store_true", help="print the PSI values as JSON as well")
    for p in (ref, rep):
        p.add_argument("--min-confidence", type=float, default=0.9, help="as SUMMARIZER_LANGUAGE_MIN_CONFIDENCE")
        p.add_argument("--min-letters", type=int, default=20, help="as SUMMARIZER_LANGUAGE_MIN_LETTERS")
    args = parser.parse_args(argv)

    if args.command == "reference":
        if args.corpus:
            paths = list(args.corpus)
        else:
            from eval.datasets import TRAIN_FILES, data_dir
            root = data_dir(args.data_dir)
            paths = [str(root / rel) for rel in TRAIN_FILES]
        dialogues = _read_dialogues(paths)
        reference = compute_reference(_inspector(args.model, args.min_confidence, args.min_letters), dialogues,
                                      source=" + ".join(Path(p).name for p in paths))
        out = Path(args.out) if args.out else (_model_dir(args.model) / REFERENCE_FILE
                                               if args.model is None or Path(args.model).is_dir()
                                               else Path(REFERENCE_FILE))
        reference.save(out)
        languages = dict(zip(STATISTICS["language"].labels, reference.counts["language"]))
        print(f"{out}: {reference.dialogues} dialogues; languages {({k: v for k, v in languages.items() if v})}")
        return 0

    reference = _reference_for(args)
    if args.prometheus:
        counts = prometheus_counts(args.prometheus, args.window, args.selector)
    else:
        dialogues = _read_dialogues(args.dialogues)
        if args.last:
            dialogues = dialogues[-args.last:]
        inspector = _inspector(args.model, args.min_confidence, args.min_letters)
        counts = bin_counts(inspector.statistics(d) for d in dialogues)
    if not any(sum(c) for c in counts.values()):
        print("no dialogues in the window", file=sys.stderr)
        return 1
    values = report(reference, counts)
    if args.json:
        print(json.dumps(values))
    return 0


if __name__ == "__main__":
    sys.exit(main())

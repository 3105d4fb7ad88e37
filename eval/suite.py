"""One evaluation run: a candidate (or a running service) on the suite's sets, per backend, scored.

A ``Run`` holds, per evaluation set and backend, every dialogue's summary and ROUGE scores, the means
with bootstrap 95 % intervals, and the exact configuration: model hashes, resolved generation settings,
subset and its ids, library versions, timings. Baselines are runs written to ``eval/baselines/``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from eval.datasets import SUBSET_SEED, SUBSETS, SUITE_SETS, Example, load_subset
from eval.generate import (BACKENDS, SERVICE, Candidate, EngineGenerator, ServiceGenerator, SummaryCache,
                           ensure_onnx, generate_summaries, library_versions)
from eval.rouge import METRICS, score_one, summarize_metric

BOOTSTRAP_SAMPLES = 1000


@dataclass
class SuiteOptions:
    subset: str = "ci"
    backends: Sequence[str] = BACKENDS
    limit: int | None = None  # at most this many dialogues per set (the first of the subset, corpus order)
    data_dir: str | None = None
    overrides: dict = field(default_factory=dict)  # generation settings over the model's defaults
    batch_size: int = 16
    threads: int = 1  # per engine; 0 = all cores (oversubscribed cores make beam search many times slower)
    cache: bool = True
    cache_dir: str | None = None
    progress: bool = True
    ids: dict[str, list[str]] | None = None  # exactly these dialogues (a baseline's), in this order


@dataclass
class Run:
    """Everything one evaluation produced; ``to_json`` is what reports and baselines store."""

    model: dict
    subset: dict
    settings: dict
    generators: dict
    results: dict  # set -> backend -> {"n", "scores": {metric: {mean, ci_low, ci_high}}}
    examples: dict  # set -> backend -> id -> {"summary", "output_tokens", "scores"}
    timing: dict
    versions: dict
    host: dict
    created: str
    data: dict[str, list[Example]] = field(default_factory=dict, repr=False)

    @property
    def backends(self) -> list[str]:
        return sorted({b for per_set in self.results.values() for b in per_set})

    def to_json(self, with_examples: bool = True) -> dict:
        out = {"created": self.created, "model": self.model, "subset": self.subset, "settings": self.settings,
               "generators": self.generators, "results": self.results, "timing": self.timing,
               "versions": self.versions, "host": self.host}
        if with_examples:
            out["examples"] = self.examples
        return out


def ids_sha256(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def select_examples(options: SuiteOptions) -> dict[str, list[Example]]:
    if options.ids is not None:
        from eval.datasets import load_eval_set

        data = {}
        for name, ids in options.ids.items():
            by_id = {ex.id: ex for ex in load_eval_set(name, options.data_dir)}
            missing = [i for i in ids if i not in by_id]
            if missing:
                raise LookupError(f"{len(missing)} dialogue ids of the baseline are not in {name} "
                                  f"(e.g. {missing[:3]}): is SUMMARIZER_DATA_DIR the right corpus?")
            data[name] = [by_id[i] for i in ids]
    else:
        data = load_subset(options.subset, options.data_dir)
    if options.limit is not None:
        data = {name: examples[: options.limit] for name, examples in data.items()}
    return data


def make_generators(target: Candidate | str, options: SuiteOptions, log=print) -> dict[str, object]:
    if isinstance(target, str):  # a service URL
        return {SERVICE: ServiceGenerator(target)}
    if "onnx" in options.backends:
        ensure_onnx(target, options.cache_dir, log=log)
    return {b: EngineGenerator(target, b, threads=options.threads) for b in options.backends}


def run_suite(target: Candidate | str, options: SuiteOptions, log=print) -> Run:
    """Generate (or reuse cached) summaries for every set and backend, and score them."""
    from serving.protocol import GenerationOptions

    started = time.perf_counter()
    data = select_examples(options)
    generators = make_generators(target, options, log=log)
    cache = SummaryCache(options.cache_dir, enabled=options.cache)
    wanted = GenerationOptions(**options.overrides) if options.overrides else None
    first = next(iter(generators.values()))
    settings = first.default_settings().resolve(wanted)
    results: dict = {}
    examples: dict = {}
    timing: dict = {}
    for name, items in data.items():
        short = SUITE_SETS.get(name, name)
        results[name], examples[name], timing[name] = {}, {}, {}
        for backend, generator in generators.items():
            summaries, stats = generate_summaries(generator, items, settings, cache, options.batch_size,
                                                  options.progress, desc=f"{short} {backend}")
            per_example = {}
            for ex in items:
                record = summaries[ex.id]
                per_example[ex.id] = {"summary": record["summary"], "output_tokens": record.get("output_tokens"),
                                      "scores": score_one(record["summary"], ex.references)}
            results[name][backend] = score_block(per_example)
            if backend == SERVICE:
                results[name][backend]["served_by"] = sorted({summaries[ex.id].get("backend", "?") for ex in items})
            examples[name][backend] = per_example
            timing[name][backend] = {"seconds": round(stats.seconds, 2), "generated": stats.generated,
                                     "cached": stats.cached}
            rate = f", {stats.seconds / stats.generated:.2f} s/dialogue" if stats.generated else ""
            log(f"{short:10} {backend:7} {len(items)} dialogues ({stats.cached} cached{rate}): "
                f"ROUGE-L {results[name][backend]['scores']['rougeL']['mean']:.2f}")
    timing["total_s"] = round(time.perf_counter() - started, 2)
    if isinstance(target, str):
        model = {"name": (generators[SERVICE].info.get("model") or "service").split(":")[0],
                 "ref": target, "tag": generators[SERVICE].info.get("model")}
    else:
        model = target.describe(list(generators))
    subset = {"name": options.subset, "seed": SUBSET_SEED,
              "size_per_set": SUBSETS.get(options.subset), "limit": options.limit,
              "sizes": {name: len(items) for name, items in data.items()},
              "ids_sha256": {name: ids_sha256([ex.id for ex in items]) for name, items in data.items()}}
    return Run(model=model, subset=subset, settings=settings.model_dump(),
               generators={b: g.describe() for b, g in generators.items()}, results=results, examples=examples,
               timing=timing, versions=library_versions(), host=host_info(options.threads),
               created=datetime.now(timezone.utc).isoformat(timespec="seconds"), data=data)


def score_block(per_example: dict[str, dict]) -> dict:
    """Means and intervals of every metric over one set's dialogues."""
    return {"n": len(per_example),
            "scores": {m: summarize_metric([e["scores"][m] for e in per_example.values()], BOOTSTRAP_SAMPLES)
                       for m in METRICS}}


def host_info(threads: int = 0) -> dict:
    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "threads": threads or "default", "processor": platform.processor() or platform.machine()}

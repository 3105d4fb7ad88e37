"""The ONNX engine (ONNX Runtime's BeamSearch graph for every setting, no PyTorch) against PyTorch on a stored
model, by generation-setting family: how many summaries of the evaluation subset are identical, the latency
per summary (one dialogue per call) against the same ONNX graphs under transformers' generate() loop (the
path that settings other than the model's defaults took before), and the memory of the n-gram sessions.

    python -m bench.onnx_parity                          the served model, eval subset 'ci' (2 x 100 dialogues)
    python -m bench.onnx_parity --families defaults,greedy --limit 20 --latency-dialogues 5

Equality counts are exact; latencies are indicative on a busy machine (the load average is recorded).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench.common import git_revision, machine_info, now_iso, write_results
from bench.stats import median

FAMILIES = {
    "defaults": {},
    "greedy": {"num_beams": 1},
    "2 beams n-gram 0": {"num_beams": 2, "no_repeat_ngram_size": 0},
    "n-gram 2": {"no_repeat_ngram_size": 2},
    "greedy n-gram 5": {"no_repeat_ngram_size": 5, "num_beams": 1},
    "length penalty 2": {"length_penalty": 2.0},
    "min = max = 20": {"min_new_tokens": 20, "max_new_tokens": 20},
    "max 1": {"max_new_tokens": 1},
    "max 2": {"max_new_tokens": 2},
    "max 3": {"max_new_tokens": 3},
}


def pss_mib() -> float:
    import psutil

    return round(psutil.Process().memory_full_info().pss / 2**20, 1)


def per_summary_s(engine, texts, settings) -> float:
    times = []
    for text in texts:
        t0 = time.perf_counter()
        engine.summarize([text], settings)
        times.append(time.perf_counter() - t0)
    return median(times)


def compare(engines: dict, name: str, texts: list[str], latency_texts: list[str], update: dict) -> dict:
    from serving.protocol import GenerationOptions

    onnx, torch_engine = engines["onnx"], engines["torch"]
    settings = onnx.defaults.resolve(GenerationOptions(**update))
    before = pss_mib()
    ours = onnx.summarize(texts, settings)
    added = round(pss_mib() - before, 1)  # a session for another n-gram size, its arena's growth
    theirs = torch_engine.summarize(texts, settings)
    differ = [i for i, (a, b) in enumerate(zip(ours, theirs))
              if (a.summary, a.output_tokens) != (b.summary, b.output_tokens)]
    row = {"family": name, "settings": settings.model_dump(), "dialogues": len(texts),
           "identical": len(texts) - len(differ), "differ_at": differ[:20],
           "pss_added_mib": added, "extra_sessions": onnx.searches.extra_sizes}
    if latency_texts:
        row["onnx_ms"] = round(1000 * per_summary_s(onnx, latency_texts, settings), 1)
        if "loop" in engines:
            row["generate_loop_ms"] = round(1000 * per_summary_s(engines["loop"], latency_texts, settings), 1)
    return row


def render(results: dict) -> str:
    lines = [f"{results['model']}: ONNX engine vs PyTorch, {results['threads']} thread(s); "
             f"engine loaded: {results['load_s']} s, PSS +{results['load_pss_mib']} MiB",
             "family | identical | ONNX ms/summary | generate() loop ms | PSS added MiB | extra n-gram sessions"]
    for row in results["families"]:
        lines.append(f"{row['family']} | {row['identical']}/{row['dialogues']} | {row.get('onnx_ms', '-')} | "
                     f"{row.get('generate_loop_ms', '-')} | {row['pss_added_mib']} | {row['extra_sessions']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.onnx_parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="stored model tag (default: $SUMMARIZER_MODEL or the shipped model)")
    parser.add_argument("--subset", default="ci", help="eval subset whose dialogues are compared (ci, full)")
    parser.add_argument("--limit", type=int, default=0, help="compare only the first N dialogues (0: all)")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help=f"comma-separated, of: {', '.join(FAMILIES)}")
    parser.add_argument("--latency-dialogues", type=int, default=10, help="single-dialogue calls timed per family")
    parser.add_argument("--no-loop", action="store_true", help="do not time the generate() loop (no optimum needed)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="results directory (default bench/results)")
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")

    from eval.datasets import load_subset
    from model_store.layout import DEFAULT_MODEL_NAME, HF_SUBDIR, ONNX_SUBDIR
    from model_store.store import get_model
    from serving.engines import OnnxEngine, TorchEngine

    ref = args.model or os.environ.get("SUMMARIZER_MODEL") or f"{DEFAULT_MODEL_NAME}:latest"
    stored = get_model(ref if ":" in ref else ref + ":latest")
    hf, onnx_dir = Path(stored.path) / HF_SUBDIR, Path(stored.path) / ONNX_SUBDIR
    texts = [example.dialogue for examples in load_subset(args.subset).values() for example in examples]
    texts = texts[: args.limit] if args.limit else texts
    latency_texts = texts[: args.latency_dialogues]
    before, t0 = pss_mib(), time.perf_counter()
    engines = {"onnx": OnnxEngine(hf, str(stored.tag), threads=args.threads, onnx_dir=onnx_dir)}
    load_s, load_pss = round(time.perf_counter() - t0, 2), round(pss_mib() - before, 1)
    engines["torch"] = TorchEngine(hf, str(stored.tag), device="cpu", threads=args.threads)
    if not args.no_loop and latency_texts:
        from bench.generate_loop import GenerateLoopEngine

        engines["loop"] = GenerateLoopEngine(hf, str(stored.tag), threads=args.threads, onnx_dir=onnx_dir)
    rows = []
    for name in families:
        rows.append(compare(engines, name, texts, latency_texts, FAMILIES[name]))
        print(f"{name}: {rows[-1]['identical']}/{len(texts)} identical", file=sys.stderr, flush=True)
    results = {"created": now_iso(), "git": git_revision(), "machine": machine_info(), "model": str(stored.tag),
               "subset": args.subset, "threads": args.threads, "load_s": load_s, "load_pss_mib": load_pss,
               "families": rows}
    path = write_results("onnx_parity", results, args.out)
    print(render(results))
    print(f"\nresults: {path}")
    return 0 if all(row["identical"] == row["dialogues"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

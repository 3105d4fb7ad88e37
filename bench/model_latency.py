"""Latency per summary of one model against another, on the same dialogues, in one run.

    python -m bench.model_latency --baseline dialogue-bart-small:<v1 version> [--candidate dialogue-bart-small:latest]

Both models are stored (BentoML tags) or model directories; each runs on the engine the CPU service runs
(``OnnxEngine``: ONNX Runtime's BeamSearch operator, the model's own generation defaults), one dialogue per
call, as a lone request is served. The dialogues: DialogSum test and SAMSum validation (seeded, the same for
both). Rounds alternate the models (baseline, candidate, candidate, baseline, ...) so a machine that gets
busier part-way weighs on both. Reported: per-summary latency (p50, mean) and summary length in tokens per
model, and the candidate's mean latency over the baseline's per round (the ratio issue 15 bounds: at most
1.2). A model that writes longer summaries spends longer per summary: the token counts say whether that is
why. Writes bench/results/model_latency-*.json.
"""

from __future__ import annotations

import argparse
import random
import time

from bench.common import busy_warning, fmt, log, machine_info, now_iso, write_results
from bench.stats import latency_stats, ratio_spread


def dialogues(n: int, seed: int = 15, data_dir: str | None = None) -> list[str]:
    from eval.datasets import load_eval_set

    rng = random.Random(seed)
    half = n // 2
    return ([e.dialogue for e in rng.sample(load_eval_set("dialogsum_test", data_dir), n - half)]
            + [e.dialogue for e in rng.sample(load_eval_set("samsum_validation", data_dir), half)])


def engine_for(ref: str, threads: int):
    from eval.generate import ensure_onnx, resolve_candidate
    from serving.engines import OnnxEngine

    candidate = ensure_onnx(resolve_candidate(ref), log=log)
    return candidate, OnnxEngine(candidate.hf_dir, candidate.name, threads=threads, onnx_dir=candidate.onnx_dir)


def one_round(engine, texts: list[str]) -> tuple[list[float], list[int]]:
    seconds, tokens = [], []
    for text in texts:
        started = time.perf_counter()
        [result] = engine.summarize([text])
        seconds.append(time.perf_counter() - started)
        tokens.append(result.output_tokens)
    return seconds, tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model_latency", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="the model to compare against (tag or directory)")
    parser.add_argument("--candidate", default="dialogue-bart-small:latest", help="the new model (default: %(default)s)")
    parser.add_argument("--n", type=int, default=40, help="dialogues per round (half DialogSum, half SAMSum)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per model, alternating (default 4)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", help="results directory (default: bench/results)")
    args = parser.parse_args(argv)

    busy = busy_warning()
    texts = dialogues(args.n, data_dir=args.data_dir)
    models = {}
    for role, ref in (("baseline", args.baseline), ("candidate", args.candidate)):
        candidate, engine = engine_for(ref, args.threads)
        one_round(engine, texts[:4])  # warm-up: sessions, allocator, caches
        models[role] = {"ref": ref, "tag": candidate.tag, "engine": engine, "seconds": [], "tokens": [],
                        "round_means": []}
    order = ["baseline", "candidate"]
    for r in range(args.rounds):
        for role in (order if r % 2 == 0 else order[::-1]):
            log(f"round {r + 1}/{args.rounds}: {role}")
            seconds, tokens = one_round(models[role]["engine"], texts)
            models[role]["seconds"] += seconds
            models[role]["tokens"] += tokens
            models[role]["round_means"].append(sum(seconds) / len(seconds))
    ratio = ratio_spread(models["candidate"]["round_means"], models["baseline"]["round_means"])
    rows = {}
    for role, m in models.items():
        stats = latency_stats(m["seconds"])
        rows[role] = {"ref": m["ref"], "tag": m["tag"], "summaries": len(m["seconds"]), "latency": stats,
                      "summary_tokens_mean": sum(m["tokens"]) / len(m["tokens"])}
    report = {"benchmark": "model_latency", "started": now_iso(), "machine": machine_info(), "busy_warning": busy,
              "dialogues": args.n, "rounds": args.rounds, "threads": args.threads, "models": rows,
              "candidate_over_baseline_mean_latency": ratio, "target_ratio_at_most": 1.2}
    print(f"latency per summary, ONNX Runtime, {args.threads} threads, {args.n} dialogues x {args.rounds} rounds"
          + (f" ({busy})" if busy else ""))
    print(f"{'model':10} {'tag':42} {'p50 ms':>8} {'mean ms':>8} {'tokens':>7}")
    for role, row in rows.items():
        print(f"{role:10} {str(row['tag'] or row['ref']):42} {fmt(row['latency']['p50_s'] * 1e3, 1):>8} "
              f"{fmt(row['latency']['mean_s'] * 1e3, 1):>8} {fmt(row['summary_tokens_mean'], 1):>7}")
    print(f"candidate / baseline, mean latency per round: {fmt(ratio['median'], 3)} "
          f"(rounds {fmt(ratio['min'], 3)}-{fmt(ratio['max'], 3)}; target at most 1.2)")
    print(f"results: {write_results('model_latency', report, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

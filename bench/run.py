"""The benchmark harness: the service against what users would run instead, same machine, same run.

    python -m bench --quick                          smoke run (minutes): every item, few requests
    python -m bench                                  full run: repeated rounds, medians and spread
    python -m bench --items onnx_vs_torch,cold_start  some items only

On the model in BentoML's store (default: the shipped ``dialogue-bart-small:latest``), DialogSum test
dialogues as inputs, the model's own generation settings (beams, lengths) for every system:

1. serving_overhead     p50 latency through ``bentoml serve`` at concurrency 1 / a direct
                        ``Engine.summarize()`` (generate()) call on the same backend, in this process.
2. adaptive_batching    throughput at concurrency N (32) with adaptive batching on / off
                        (``SUMMARIZER_MAX_BATCH_SIZE=1``).
3. vs_fastapi_pipeline  the service against FastAPI + ``pipeline("summarization")`` one request at a time
                        (bench/baseline_fastapi.py): throughput ratio and p99 latency ratio at concurrency N.
4. onnx_vs_torch        latency of ONNX Runtime (fp32, and int8 from ``model_store.quantize``) / PyTorch on
                        CPU, same beams and threads; int8 ROUGE-L against fp32 with the eval suite; where the
                        time goes (model forward passes vs the generate() loop).
5. cold_start           seconds from launching ``bentoml serve`` to /readyz, memory of all its processes.
6. gpu                  on CUDA only: bench/gpu.py (bart-large-cnn shape, fp16, 4 beams, 128 tokens).

Measurements are taken in rounds; systems alternate within a round, so drift on the machine hits each
alike; a ratio is computed per round (pair by pair) and reported as the median over rounds with its spread.
Results: a table on stdout, JSON in bench/results/bench-<time>.json (and bench-latest.json).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from bench.common import busy_warning, git_revision, log, machine_info, now_iso, write_results  # noqa: E402
from bench.context import BenchContext, Inputs, stored_model  # noqa: E402
from bench.items import ITEMS  # noqa: E402
from bench.report import render_table  # noqa: E402
from bench.targets import targets_json  # noqa: E402

PRESETS = {
    # rounds, requests per overhead round, requests per throughput round, dialogues per engine round, ...
    "quick": dict(repeats=2, overhead_requests=4, load_requests=32, engine_dialogues=3, quality_subset="ci",
                  quality_limit=8, extra_cold_starts=0, ablation=False),
    "full": dict(repeats=5, overhead_requests=20, load_requests=128, engine_dialogues=10, quality_subset="full",
                 quality_limit=None, extra_cold_starts=2, ablation=True),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer rounds and requests")
    parser.add_argument("--model", default=None,
                        help="stored model tag (default: $SUMMARIZER_MODEL or dialogue-bart-small:latest)")
    parser.add_argument("--items", default=",".join(ITEMS), help=f"comma list of {', '.join(ITEMS)} (default: all)")
    parser.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto",
                        help="the service's primary backend and the direct baseline's engine "
                             "(auto: torch on CUDA, else onnx)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads per engine, the same for every system (default: all cores)")
    parser.add_argument("--concurrency", type=int, default=32, help="clients for items 2 and 3 (default: 32)")
    parser.add_argument("--repeats", type=int, help="rounds per measurement (quick 2, full 5)")
    parser.add_argument("--overhead-requests", type=int, help="sequential requests per round for item 1")
    parser.add_argument("--load-requests", type=int, help="requests per round for items 2 and 3")
    parser.add_argument("--engine-dialogues", type=int, help="dialogues per round for item 4")
    parser.add_argument("--quality-subset", choices=("ci", "full"), help="eval-suite subset for the int8 check")
    parser.add_argument("--quality-limit", type=int, help="at most N dialogues per eval set for the int8 check")
    parser.add_argument("--no-quality", action="store_true", help="skip the int8 ROUGE-L check")
    parser.add_argument("--int8-model", help="stored int8 model (model_store.quantize); default: quantize a "
                                             "temporary copy of --model")
    parser.add_argument("--extra-cold-starts", type=int, help="more service starts for item 5 (quick 0, full 2)")
    parser.add_argument("--ablation", action=argparse.BooleanOptionalAction, default=None,
                        help="also time the ONNX engine with its pre-tuning settings (full: on)")
    parser.add_argument("--baseline-mode", choices=("serial", "threaded"), default="serial",
                        help="FastAPI baseline: one pipeline call at a time (default) or FastAPI's threads")
    parser.add_argument("--gpu-args", default="", help="extra arguments for bench/gpu.py (item 6)")
    parser.add_argument("--eval-cache", help="summary cache of the eval suite (default: its own)")
    parser.add_argument("--out", help="results directory (default: bench/results)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (path printed)")
    return parser


def preset_of(args: argparse.Namespace) -> dict:
    """The preset (quick or full) with what the command line overrides."""
    preset = dict(PRESETS["quick" if args.quick else "full"])
    for key in preset:
        value = getattr(args, key, None)
        if value is not None:
            preset[key] = value
    return preset


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    items = [i.strip() for i in args.items.split(",") if i.strip()]
    unknown = [i for i in items if i not in ITEMS]
    if unknown:
        print(f"error: unknown items {unknown}; known: {', '.join(ITEMS)}", file=sys.stderr)
        return 2
    try:
        results = run(args, preset_of(args), items)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    path = write_results("bench", results, args.out)
    print(render_table(results))
    print(f"\nresults: {path}")
    failed = [name for name, item in results["items"].items() if "error" in item]
    return 1 if failed else 0


def header(ctx: BenchContext, warning: str | None) -> dict:
    """What the results were measured on and with: the run's JSON before the items."""
    args, model = ctx.args, ctx.model
    return {"created": now_iso(), "git": git_revision(), "command": "python -m bench " + " ".join(sys.argv[1:]),
            "mode": "quick" if args.quick else "full", "machine": machine_info(), "busy_warning": warning,
            "model": {"tag": model.tag, "parameters": model.metadata.get("parameters"),
                      "architecture": model.metadata.get("architecture")},
            "settings": ctx.settings.model_dump(), "threads": ctx.threads, "backend": ctx.backend,
            "preset": ctx.preset, "concurrency": args.concurrency,
            "inputs": "DialogSum test (seeded order, bench.common.load_dialogues)", "targets": targets_json(),
            "items": {}}


def run_item(ctx: BenchContext, name: str) -> dict:
    """One item's results, or {"error"} when it failed (one failed item must not lose the others)."""
    started = time.perf_counter()
    log(f"[{name}]")
    try:
        out = ITEMS[name](ctx)
    except Exception as exc:  # noqa: BLE001 - reported in the results and the table
        log(traceback.format_exc())
        out = {"error": f"{type(exc).__name__}: {exc}"}
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def run(args: argparse.Namespace, preset: dict, items: list[str]) -> dict:
    from serving.devices import cuda_available
    from serving.engines import default_settings

    model = stored_model(args.model)
    threads = args.threads or (os.cpu_count() or 1)
    backend = args.backend if args.backend != "auto" else ("torch" if cuda_available() else "onnx")
    warning = busy_warning()
    if warning:
        log(f"warning: {warning}")
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    with ExitStack() as stack:
        ctx = BenchContext(args=args, preset=preset, items=items, model=model, settings=default_settings(model.hf_dir),
                           threads=threads, backend=backend, inputs=Inputs.for_preset(preset), logs=logs, stack=stack)
        results = header(ctx, warning)
        log(f"bench: {model.tag} ({results['model']['parameters']} parameters), backend {backend}, {threads} threads, "
            f"settings {results['settings']}, items {', '.join(items)}")
        for name in ITEMS:  # in ITEMS' order, whatever the order asked for
            if name in items:
                results["items"][name] = run_item(ctx, name)
    results["logs"] = str(logs) if args.keep_logs else None
    if not args.keep_logs:
        shutil.rmtree(logs, ignore_errors=True)
    results["finished"] = now_iso()
    return results


if __name__ == "__main__":
    sys.exit(main())

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
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from bench.common import (busy_warning, fmt, git_revision, load_dialogues, machine_info, now_iso,  # noqa: E402
                          ratios, spread, verdict, write_results)

ITEMS = ("onnx_vs_torch", "serving_overhead", "adaptive_batching", "vs_fastapi_pipeline", "cold_start", "gpu")
TARGETS = {
    "serving_overhead": (1.05, "max"),
    "adaptive_batching": (4.0, "min"),
    "baseline_throughput": (5.0, "min"),
    "baseline_p99": (0.5, "max"),
    "onnx_latency": (0.6, "max"),
    "int8_latency": (0.4, "max"),
    "int8_rougeL_drop": (0.5, "max"),
    "gpu_summaries_per_s": (40.0, "min"),
}
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    preset = dict(PRESETS["quick" if args.quick else "full"])
    for key in preset:
        value = getattr(args, key, None)
        if value is not None:
            preset[key] = value
    items = [i.strip() for i in args.items.split(",") if i.strip()]
    unknown = [i for i in items if i not in ITEMS]
    if unknown:
        print(f"error: unknown items {unknown}; known: {', '.join(ITEMS)}", file=sys.stderr)
        return 2
    try:
        results = run(args, preset, items)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    path = write_results("bench", results, args.out)
    print(render_table(results))
    print(f"\nresults: {path}")
    failed = [name for name, item in results["items"].items() if "error" in item]
    return 1 if failed else 0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args, preset: dict, items: list[str]) -> dict:
    import bentoml

    from serving.config import DEFAULT_MODEL_NAME
    from serving.devices import cuda_available
    from serving.engines import HF_SUBDIR, ONNX_SUBDIR, Engine, default_settings

    model_ref = args.model or os.environ.get("SUMMARIZER_MODEL") or f"{DEFAULT_MODEL_NAME}:latest"
    if ":" not in model_ref:
        model_ref += ":latest"
    from model_store.store import get_model

    stored = get_model(model_ref)
    tag = str(stored.tag)
    hf_dir, onnx_dir = Path(stored.path) / HF_SUBDIR, Path(stored.path) / ONNX_SUBDIR
    settings = default_settings(hf_dir)
    threads = args.threads or (os.cpu_count() or 1)
    backend = args.backend if args.backend != "auto" else ("torch" if cuda_available() else "onnx")
    warning = busy_warning()
    if warning:
        log(f"warning: {warning}")
    results = {
        "created": now_iso(), "git": git_revision(), "command": "python -m bench " + " ".join(sys.argv[1:]),
        "mode": "quick" if args.quick else "full", "machine": machine_info(), "busy_warning": warning,
        "model": {"tag": tag, "parameters": stored.info.metadata.get("parameters"),
                  "architecture": stored.info.metadata.get("architecture")},
        "settings": settings.model_dump(), "threads": threads, "backend": backend, "preset": preset,
        "concurrency": args.concurrency, "inputs": "DialogSum test (seeded order, bench.common.load_dialogues)",
        "targets": {k: {"value": v[0], "kind": v[1]} for k, v in TARGETS.items()}, "items": {},
    }
    log(f"bench: {tag} ({results['model']['parameters']} parameters), backend {backend}, {threads} threads, "
        f"settings {settings.model_dump()}, items {', '.join(items)}")
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    overhead_texts = load_dialogues(preset["overhead_requests"], seed=1)
    load_texts = load_dialogues(preset["load_requests"], seed=2)
    engine_texts = load_dialogues(preset["engine_dialogues"], seed=3)
    state: dict = {}
    with ExitStack() as stack:
        def attempt(name: str, fn) -> None:
            if name not in items:
                return
            started = time.perf_counter()
            log(f"[{name}]")
            try:
                results["items"][name] = fn()
            except Exception as exc:  # noqa: BLE001 - one failed item must not lose the others
                log(traceback.format_exc())
                results["items"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            results["items"][name]["seconds"] = round(time.perf_counter() - started, 1)

        # ---- 4. engines in this process (before any server, so nothing else competes)
        def item_engines():
            from bench.engine_bench import int8_quality, load_engines, onnx_vs_torch, quantized_copy

            if args.int8_model:
                int8_stored = get_model(args.int8_model)
                int8_layout = Path(int8_stored.path)
            else:
                int8_layout = stack.enter_context(quantized_copy(hf_dir, onnx_dir))
            engines = load_engines(hf_dir, onnx_dir, threads, int8_dir=int8_layout / ONNX_SUBDIR,
                                   untuned=preset["ablation"], model_tag=tag)
            state["engines"] = engines
            out = onnx_vs_torch(engines, engine_texts, settings, preset["repeats"], log=log)
            out["threads"] = threads
            out["dialogues_per_round"] = len(engine_texts)
            r = out["ratio_to_torch"]
            out["onnx_latency_ratio"] = {**r["onnx"], **verdict(r["onnx"]["median"], *TARGETS["onnx_latency"])}
            out["int8_latency_ratio"] = {**r["onnx_int8"],
                                         **verdict(r["onnx_int8"]["median"], *TARGETS["int8_latency"])}
            if not args.no_quality:
                quality = int8_quality(tag, int8_layout, args.int8_model, preset["quality_subset"],
                                       preset["quality_limit"], threads, args.eval_cache, log=log)
                drop = -quality["worst_set_delta"] if quality["worst_set_delta"] is not None else None
                quality.update(rougeL_drop=drop, **verdict(drop, *TARGETS["int8_rougeL_drop"]))
                out["int8_quality"] = quality
            return out

        attempt("onnx_vs_torch", item_engines)

        def direct_engine():
            if backend == "onnx" and "engines" in state:
                return state["engines"]["onnx"]
            if backend == "torch" and "engines" in state and not cuda_available():
                return state["engines"]["torch"]
            if "direct" not in state:
                from serving.engines import OnnxEngine, TorchEngine

                state["direct"] = (OnnxEngine(hf_dir, tag, threads=threads, onnx_dir=onnx_dir) if backend == "onnx"
                                   else TorchEngine(hf_dir, tag, threads=threads))
            return state["direct"]

        service_env = {"SUMMARIZER_PRIMARY": backend, "SUMMARIZER_ONNX_THREADS": str(threads),
                       "SUMMARIZER_TORCH_THREADS": str(threads),
                       "SUMMARIZER_MAX_PENDING": str(max(64, 4 * args.concurrency)),
                       # benchmarks measure throughput; the default 30 s primary timeout would turn the
                       # queue of a batching-off server at concurrency 32 into 503s
                       "SUMMARIZER_PRIMARY_TIMEOUT_S": "3600", "SUMMARIZER_REQUEST_TIMEOUT_S": "3600",
                       "SUMMARIZER_MAX_LIST_ITEMS": "32"}

        def server(name: str, **env: str):
            from bench.servers import summarizer_server

            if name not in state:
                srv = summarizer_server(name, tag, logs, **service_env, **env)
                log(f"  starting {name} ...")
                srv.start()
                stack.callback(srv.stop)
                log(f"  {name} ready in {srv.cold_start_s:.1f} s on {srv.url}")
                state[name] = srv
                state.setdefault("cold_starts", []).append({"server": name, "seconds": srv.cold_start_s})
            return state[name]

        def batching_on():
            return server("service-batching", SUMMARIZER_MAX_BATCH_SIZE="32")

        def batching_off():
            """The service with adaptive batching off, or None (the reason in state['start_errors'])."""
            errors = state.setdefault("start_errors", {})
            if "batching_off" in errors:
                return None
            try:
                return server("service-no-batching", SUMMARIZER_MAX_BATCH_SIZE="1")
            except RuntimeError as exc:  # reported by item 2; the other items still run
                errors["batching_off"] = _start_error(exc)
                log(f"  batching-off service did not start: {errors['batching_off']}")
                return None

        # ---- 1. serving overhead
        def item_overhead():
            from bench.client import run_load
            from bench.common import latency_stats
            from bench.engine_bench import time_summaries

            engine = direct_engine()
            srv = batching_on()
            # diagnostic: the same path without the batching dispatcher (shows what its wait costs at c=1)
            off = batching_off() if "adaptive_batching" in items else None
            payloads = [{"dialogue": t} for t in overhead_texts]
            for target in filter(None, (srv, off)):
                run_load(target.url + "/summarize", payloads[:2], 1)  # warm-up
            engine.summarize(overhead_texts[:1], settings)

            def through(target) -> dict:
                res = run_load(target.url + "/summarize", payloads, 1)
                if res.ok == 0:
                    raise RuntimeError(f"service answered {dict(res.statuses)}: {res.errors}")
                if res.ok != len(payloads):
                    log(f"  warning: service answered {dict(res.statuses)}: {res.errors[:1]}")
                return {**res.to_json()["latency"], "statuses": dict(res.statuses)}

            systems = ["direct", "service"] + (["service_no_batching"] if off else [])
            p50 = {name: [] for name in systems}
            rounds = []
            for r in range(preset["repeats"]):
                pair = {}
                for which in systems[r % len(systems):] + systems[: r % len(systems)]:
                    if which == "direct":
                        pair["direct"] = latency_stats(time_summaries(engine, overhead_texts, settings))
                    else:
                        pair[which] = through(srv if which == "service" else off)
                    p50[which].append(pair[which]["p50_s"])
                rounds.append(pair)
                log(f"  overhead round {r + 1}: " + ", ".join(f"{n} p50 {pair[n]['p50_s'] * 1000:.1f} ms"
                                                              for n in systems))
            ratio = spread(ratios(p50["service"], p50["direct"]))
            same = _service_matches_direct(srv.url, engine, overhead_texts[:3], settings)
            out = {"direct_p50_s": spread(p50["direct"]), "service_p50_s": spread(p50["service"]),
                   "added_ms": spread([(s - d) * 1000 for s, d in zip(p50["service"], p50["direct"])]),
                   "ratio": {**ratio, **verdict(ratio["median"], *TARGETS["serving_overhead"])},
                   "rounds": rounds, "requests_per_round": len(payloads), "same_summaries": same,
                   "direct": f"{type(engine).__name__}.summarize([dialogue]) in the benchmark process"}
            if off:
                out["service_no_batching_p50_s"] = spread(p50["service_no_batching"])
                out["ratio_no_batching"] = spread(ratios(p50["service_no_batching"], p50["direct"]))
                out["batching_wait_ms"] = spread([(a - b) * 1000 for a, b in
                                                  zip(p50["service"], p50["service_no_batching"])])
            return out

        attempt("serving_overhead", item_overhead)

        # ---- 2 + 3. throughput at concurrency N: batching on, batching off, FastAPI baseline
        def throughput_rounds():
            if "throughput" in state:
                return state["throughput"]
            from bench.client import run_load
            from bench.servers import baseline_server

            systems = {"batching_on": batching_on()}
            if "adaptive_batching" in items and batching_off() is not None:
                systems["batching_off"] = batching_off()
            start_errors = state.get("start_errors", {})
            if "vs_fastapi_pipeline" in items:
                base = baseline_server(hf_dir, Engine.generate_kwargs(settings), logs, threads=threads,
                                       mode=args.baseline_mode)
                log("  starting the FastAPI + pipeline baseline ...")
                stack.callback(base.stop)
                base.start()
                log(f"  baseline ready in {base.cold_start_s:.1f} s on {base.url}")
                systems["fastapi_pipeline"] = base
                state["baseline"] = base
            payloads = [{"dialogue": t} for t in load_texts]
            metrics_before, warmup_errors = {}, {}
            for name, srv in systems.items():  # warm-up; trains BentoML's batching dispatcher
                warm = payloads[: (2 * args.concurrency if name != "fastapi_pipeline" else 2)]
                res = run_load(srv.url + "/summarize", warm, args.concurrency)
                if res.ok != len(warm):
                    log(f"  warning: {name} warm-up answered {dict(res.statuses)}: {res.errors[:1]}")
                    warmup_errors[name] = {"statuses": dict(res.statuses), "errors": res.errors}
                if name != "fastapi_pipeline":
                    metrics_before[name] = _batch_histogram(srv.get("/metrics"))
            per = {name: [] for name in systems}
            names = list(systems)
            for r in range(preset["repeats"]):
                order = names[r % len(names):] + names[: r % len(names)]
                for name in order:
                    res = run_load(systems[name].url + "/summarize", payloads, args.concurrency)
                    if res.ok == 0:
                        raise RuntimeError(f"{name} answered {dict(res.statuses)}: {res.errors}")
                    if res.ok != len(payloads):  # counted and shown; throughput counts answered requests
                        log(f"  warning: {name} answered {dict(res.statuses)}: {res.errors[:1]}")
                    per[name].append(res.to_json())
                log(f"  throughput round {r + 1}: " + ", ".join(
                    f"{n} {per[n][-1]['throughput_rps']:.2f}/s p99 {per[n][-1]['latency']['p99_s']:.2f}s"
                    for n in names))
            batches = {}
            for name, before in metrics_before.items():
                after = _batch_histogram(systems[name].get("/metrics"))
                batches[name] = _histogram_delta(before, after)
            state["throughput"] = {"per_round": per, "batches": batches, "requests_per_round": len(payloads),
                                   "memory_after_load": {n: s.memory() for n, s in systems.items()},
                                   "start_errors": start_errors, "warmup_errors": warmup_errors}
            return state["throughput"]

        def summarize_system(rounds: list[dict]) -> dict:
            failed = sum(x["requests"] - x["ok"] for x in rounds)
            return {"throughput_rps": spread([x["throughput_rps"] for x in rounds]),
                    "p50_s": spread([x["latency"]["p50_s"] for x in rounds]),
                    "p99_s": spread([x["latency"]["p99_s"] for x in rounds]),
                    "failed_requests": failed, "requests": sum(x["requests"] for x in rounds),
                    "rounds": rounds}

        def item_batching():
            t = throughput_rounds()
            if "batching_off" in t["start_errors"]:
                raise RuntimeError("the service with SUMMARIZER_MAX_BATCH_SIZE=1 did not start: "
                                   + t["start_errors"]["batching_off"])
            on, off = t["per_round"]["batching_on"], t["per_round"]["batching_off"]
            ratio = spread(ratios([x["throughput_rps"] for x in on], [x["throughput_rps"] for x in off]))
            out = {"concurrency": args.concurrency, "requests_per_round": t["requests_per_round"],
                   "batching_on": summarize_system(on), "batching_off": summarize_system(off),
                   "throughput_ratio": {**ratio, **verdict(ratio["median"], *TARGETS["adaptive_batching"])},
                   "batch_sizes": t["batches"]}
            engine = direct_engine()
            out["engine_groups"] = _engine_groups(engine, settings, args.concurrency)
            from bench.engine_bench import batching_bound

            # the ceiling for item 2 on this machine: the engine itself, N singles vs one batch of N
            out["engine_batching_bound"] = batching_bound(engine, load_texts[: args.concurrency], settings)
            return out

        def item_baseline():
            t = throughput_rounds()
            svc, base = t["per_round"]["batching_on"], t["per_round"]["fastapi_pipeline"]
            thr = spread(ratios([x["throughput_rps"] for x in svc], [x["throughput_rps"] for x in base]))
            p99 = spread(ratios([x["latency"]["p99_s"] for x in svc], [x["latency"]["p99_s"] for x in base]))
            # The baseline at its best: one client, no queue. Under 32 clients its PyTorch threads compete
            # with uvicorn's for the cores, so the ratio at concurrency N alone would flatter the service.
            from bench.client import run_load

            sequential = []
            for _ in range(preset["repeats"]):
                res = run_load(state["baseline"].url + "/summarize", [{"dialogue": t} for t in overhead_texts], 1)
                sequential.append(res.to_json()["throughput_rps"])
            best = spread(sequential)
            return {"baseline_sequential_throughput_rps": best,
                    "throughput_ratio_to_sequential_baseline": spread(
                        ratios([x["throughput_rps"] for x in svc], sequential)),
                    "concurrency": args.concurrency, "requests_per_round": t["requests_per_round"],
                    "baseline": f"FastAPI + transformers pipeline('summarization') (PyTorch, {args.baseline_mode}),"
                                " bench/baseline_fastapi.py under uvicorn, 1 worker",
                    "service": summarize_system(svc), "fastapi_pipeline": summarize_system(base),
                    "throughput_ratio": {**thr, **verdict(thr["median"], *TARGETS["baseline_throughput"])},
                    "p99_ratio": {**p99, **verdict(p99["median"], *TARGETS["baseline_p99"])}}

        attempt("adaptive_batching", item_batching)
        attempt("vs_fastapi_pipeline", item_baseline)

        # ---- 5. cold start and memory
        def item_cold_start():
            from bench.client import run_load
            from bench.servers import summarizer_server

            srv = batching_on()
            run_load(srv.url + "/summarize", [{"dialogue": overhead_texts[0]}], 1)
            starts = [c["seconds"] for c in state.get("cold_starts", [])]
            for i in range(preset["extra_cold_starts"]):
                extra = summarizer_server(f"service-cold-{i + 1}", tag, logs, **service_env,
                                          SUMMARIZER_MAX_BATCH_SIZE="32")
                extra.start()
                starts.append(extra.cold_start_s)
                log(f"  extra start {i + 1}: ready in {extra.cold_start_s:.1f} s")
                extra.stop()
            out = {"cold_start_s": spread(starts), "starts": state.get("cold_starts", []),
                   "memory_idle_after_one_request": srv.memory(),
                   "memory_after_load": state.get("throughput", {}).get("memory_after_load", {}).get("batching_on"),
                   "note": "RSS counts shared pages once per process; PSS splits them; USS is private memory"}
            if "baseline" in state:
                out["baseline_cold_start_s"] = state["baseline"].cold_start_s
                out["baseline_memory"] = state["baseline"].memory()
            return out

        attempt("cold_start", item_cold_start)

        # ---- 6. GPU
        def item_gpu():
            if not cuda_available():
                return {"skipped": "no CUDA device on this machine; run `python -m bench.gpu` on a GPU machine"}
            from bench.gpu import main as gpu_main

            out_path = logs / "gpu.json"
            gpu_main(["--json", str(out_path), *args.gpu_args.split()])
            import json

            data = json.loads(out_path.read_text())
            best = data.get("best_summaries_per_s")
            return {**data, "target": verdict(best, *TARGETS["gpu_summaries_per_s"])}

        attempt("gpu", item_gpu)
        results["logs"] = str(logs) if args.keep_logs else None
    if not args.keep_logs:
        import shutil

        shutil.rmtree(logs, ignore_errors=True)
    results["finished"] = now_iso()
    return results


def _start_error(exc: Exception) -> str:
    """The last line of a failed server's traceback (its log tail is in the exception text)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


def _service_matches_direct(url: str, engine, texts, settings) -> float:
    import json
    import urllib.request

    same = 0
    for text, direct in zip(texts, engine.summarize(list(texts), settings)):
        req = urllib.request.Request(url + "/summarize", data=json.dumps({"dialogue": text}).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as resp:
            same += json.loads(resp.read())["summary"] == direct.summary
    return same / max(1, len(texts))


def _batch_histogram(metrics_text: str) -> dict:
    """BentoML's adaptive_batch_size histogram of the backends' generate(): {service: {le: count, ...}}."""
    out: dict = {}
    for line in metrics_text.splitlines():
        if not line.startswith("bentoml_service_adaptive_batch_size") or 'method_name="generate"' not in line:
            continue
        name, _, value = line.rpartition(" ")
        service = name.split('runner_name="', 1)[1].split('"', 1)[0] if 'runner_name="' in name else "?"
        entry = out.setdefault(service, {"buckets": {}, "sum": 0.0, "count": 0.0})
        if "_bucket{" in name:
            le = name.split('le="', 1)[1].split('"', 1)[0]
            entry["buckets"][le] = entry["buckets"].get(le, 0.0) + float(value)
        elif "_sum{" in name:
            entry["sum"] += float(value)
        elif "_count{" in name:
            entry["count"] += float(value)
    return out


def _histogram_delta(before: dict, after: dict) -> dict:
    out = {}
    for service, a in after.items():
        b = before.get(service, {"buckets": {}, "sum": 0.0, "count": 0.0})
        count = a["count"] - b["count"]
        if count <= 0:
            continue
        buckets = {le: a["buckets"][le] - b["buckets"].get(le, 0.0) for le in a["buckets"]}
        out[service] = {"batches": count, "mean_batch_size": (a["sum"] - b["sum"]) / count,
                        "cumulative_buckets": buckets}
    return out


def _engine_groups(engine, settings, concurrency: int) -> dict:
    from bench.engine_bench import batching_groups

    texts = load_dialogues(4 * concurrency, seed=4)
    return batching_groups(engine, texts, settings, concurrency)


# --------------------------------------------------------------------------- the table


def _ratio_cell(entry: dict | None, digits: int = 2, unit: str = "x") -> str:
    if not entry or entry.get("median") is None:
        return "-"
    if entry.get("n", 0) > 1:
        return (f"{entry['median']:.{digits}f}{unit} [{entry['min']:.{digits}f}-{entry['max']:.{digits}f}]")
    return f"{entry['median']:.{digits}f}{unit}"


def _met(entry: dict | None) -> str:
    if not entry or entry.get("met") is None:
        return "-"
    return "met" if entry["met"] else "MISSED"


def _target(entry: dict | None, unit: str = "x") -> str:
    if not entry or "target" not in entry:
        return "-"
    return ("<= " if entry["kind"] == "max" else ">= ") + f"{entry['target']:g}{unit}"


def rows(results: dict) -> list[tuple[str, str, str, str]]:
    items = results["items"]
    out: list[tuple[str, str, str, str]] = []

    def err(name: str) -> bool:
        if name in items and "error" in items[name]:
            out.append((name, "error: " + items[name]["error"][-110:], "-", "-"))
            return True
        return name not in items

    if not err("serving_overhead"):
        r = items["serving_overhead"]["ratio"]
        out.append(("1 serving overhead: p50 service c=1 / direct generate()", _ratio_cell(r, 3), _target(r), _met(r)))
    if not err("adaptive_batching"):
        r = items["adaptive_batching"]["throughput_ratio"]
        c = items["adaptive_batching"]["concurrency"]
        out.append((f"2 adaptive batching: throughput c={c} on / off", _ratio_cell(r), _target(r), _met(r)))
        bound = items["adaptive_batching"].get("engine_batching_bound") or {}
        if bound.get("speedup"):
            out.append((f"2 (ceiling) engine alone: {bound['dialogues']} one by one / one batch",
                        f"{bound['speedup']:.2f}x", "-", "-"))
    if not err("vs_fastapi_pipeline"):
        item = items["vs_fastapi_pipeline"]
        r, p = item["throughput_ratio"], item["p99_ratio"]
        c = item["concurrency"]
        out.append((f"3 vs FastAPI+pipeline: throughput c={c}, service / baseline", _ratio_cell(r), _target(r),
                    _met(r)))
        out.append((f"3 vs FastAPI+pipeline: p99 latency c={c}, service / baseline", _ratio_cell(p), _target(p),
                    _met(p)))
        if item.get("throughput_ratio_to_sequential_baseline"):
            out.append((f"3 (context) service c={c} / baseline at its best (1 client, "
                        f"{item['baseline_sequential_throughput_rps']['median']:.2f}/s)",
                        _ratio_cell(item["throughput_ratio_to_sequential_baseline"]), "-", "-"))
    if not err("onnx_vs_torch"):
        item = items["onnx_vs_torch"]
        r = item["onnx_latency_ratio"]
        out.append(("4 ONNX Runtime / PyTorch latency (CPU, batch 1)", _ratio_cell(r), _target(r), _met(r)))
        r = item["int8_latency_ratio"]
        out.append(("4 int8 ONNX / PyTorch latency", _ratio_cell(r), _target(r), _met(r)))
        if "onnx_no_spin" in item["ratio_to_torch"]:
            out.append(("4 (ablation) ONNX BeamSearch, workers sleeping between operators / PyTorch",
                        _ratio_cell(item["ratio_to_torch"]["onnx_no_spin"]), "-", "-"))
        if "onnx_generate" in item["ratio_to_torch"]:
            out.append(("4 (ablation) ONNX under transformers' generate() loop / PyTorch",
                        _ratio_cell(item["ratio_to_torch"]["onnx_generate"]), "-", "-"))
        if "onnx_untuned" in item["ratio_to_torch"]:
            out.append(("4 (ablation) ONNX before tuning / PyTorch", _ratio_cell(item["ratio_to_torch"]["onnx_untuned"]),
                        "-", "-"))
        q = item.get("int8_quality")
        if q:
            n = sum(v["n"] for v in q["sets"].values())
            cell = "-" if q["rougeL_drop"] is None else f"{q['rougeL_drop']:+.2f} pts (worst set; {n} dialogues)"
            out.append(("4 int8 ROUGE-L drop vs fp32 ONNX (eval suite)", cell, _target(q, " pts"), _met(q)))
    if not err("cold_start"):
        item = items["cold_start"]
        out.append(("5 cold start: bentoml serve -> ready", _ratio_cell(item["cold_start_s"], 1, " s"), "-", "-"))
        for label, mem in (("idle", item["memory_idle_after_one_request"]), ("after load", item["memory_after_load"])):
            if mem and mem.get("processes"):
                out.append((f"5 memory of all service processes ({label})",
                            f"PSS {mem['pss_mib']:.0f} MiB, RSS {mem['rss_mib']:.0f} MiB ({mem['processes']} proc)",
                            "-", "-"))
    if not err("gpu"):
        item = items["gpu"]
        if "skipped" in item:
            out.append(("6 GPU summaries/s (bart-large-cnn shape, fp16)", "skipped: no CUDA", ">= 40/s", "-"))
        else:
            t = item["target"]
            out.append((f"6 GPU summaries/s (best batch {item.get('best_batch_size')})",
                        fmt(item.get("best_summaries_per_s"), 1, "/s"), _target(t, "/s"), _met(t)))
    return out


def render_table(results: dict) -> str:
    table_rows = rows(results)
    detail = detail_rows(results)
    m = results["machine"]
    title = (f"{results['model']['tag']} on {m.get('processor')} ({m.get('cpus')} CPUs"
             f"{', ' + m['gpu'] if m.get('gpu') else ''}), {results['threads']} threads, "
             f"backend {results['backend']}, {results['mode']} run; median [min-max] over rounds")
    try:
        from io import StringIO

        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=escape(title), title_justify="left")
        for col in ("measure", "result", "target", ""):
            table.add_column(col)
        for row in table_rows:
            table.add_row(*map(escape, row))
        table2 = Table(title="absolute figures", title_justify="left")
        for col in ("system", "throughput", "p50", "p99"):
            table2.add_column(col)
        for row in detail:
            table2.add_row(*map(escape, row))
        buf = StringIO()
        console = Console(file=buf, width=140, force_terminal=False)
        console.print(table)
        if detail:
            console.print(table2)
        if results.get("busy_warning"):
            console.print(escape(f"warning: {results['busy_warning']}"))
        return buf.getvalue()
    except ImportError:
        lines = [title] + [" | ".join(r) for r in table_rows] + [" | ".join(r) for r in detail]
        return "\n".join(lines)


def detail_rows(results: dict) -> list[tuple[str, str, str, str]]:
    items = results["items"]
    out = []

    def system(label: str, s: dict) -> None:
        if s.get("failed_requests"):
            label += f" ({s['failed_requests']}/{s['requests']} FAILED)"
        out.append((label, _ratio_cell(s["throughput_rps"], 2, "/s"), _ratio_cell(s["p50_s"], 2, " s"),
                    _ratio_cell(s["p99_s"], 2, " s")))

    if "serving_overhead" in items and "error" not in items["serving_overhead"]:
        o = items["serving_overhead"]
        out.append(("direct generate(), sequential", "-", _ratio_cell(o["direct_p50_s"], 3, " s"), "-"))
        out.append(("service, concurrency 1", "-", _ratio_cell(o["service_p50_s"], 3, " s"), "-"))
        if o.get("service_no_batching_p50_s"):
            out.append(("service without batching, concurrency 1", "-",
                        _ratio_cell(o["service_no_batching_p50_s"], 3, " s"), "-"))
    c = results.get("concurrency")
    if "adaptive_batching" in items and "error" not in items["adaptive_batching"]:
        system(f"service, batching on, c={c}", items["adaptive_batching"]["batching_on"])
        system(f"service, batching off, c={c}", items["adaptive_batching"]["batching_off"])
    if "vs_fastapi_pipeline" in items and "error" not in items["vs_fastapi_pipeline"]:
        if "adaptive_batching" not in items or "error" in items["adaptive_batching"]:
            system(f"service, c={c}", items["vs_fastapi_pipeline"]["service"])
        system(f"FastAPI + pipeline, c={c}", items["vs_fastapi_pipeline"]["fastapi_pipeline"])
    if "onnx_vs_torch" in items and "error" not in items["onnx_vs_torch"]:
        for name, s in items["onnx_vs_torch"]["latency_s"].items():
            b = items["onnx_vs_torch"]["breakdown"].get(name, {})
            share = b.get("model_share", 0) * 100
            out.append((f"engine {name}, batch 1 (in the model/runtime {share:.0f}% of time)", "-",
                        _ratio_cell(s, 3, " s"), "-"))
    return out


if __name__ == "__main__":
    sys.exit(main())

"""The service's CUDA path, on a GPU machine: `bentoml serve` with the shipped settings (SUMMARIZER_PRIMARY=auto)
must route to PyTorch on CUDA in fp16, keep ONNX Runtime as the fallback, and answer from the GPU.

    python -m model_store import-default && python -m bench.gpu_service     # bench/gpu_check.sh runs both

Checks (exit 1 when one fails): /model names torch (on cuda) as the primary and onnx as the fallback; one summary and
``--concurrent`` summaries in flight at once all come from 'torch-cuda', none from the fallback. Figures: start
to ready, one summary's latency, and summaries/s with the requests in flight (the service batches them).
Results: bench/results/gpu_service-<time>.json (or --out). Exit 2: no CUDA device, or the service did not start.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import git_revision, load_dialogues, machine_info, now_iso, publish

CUDA_ENGINE = "torch-cuda"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_service", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="stored model (default: $SUMMARIZER_MODEL or dialogue-bart-small:latest)")
    parser.add_argument("--concurrent", type=int, default=32, help="requests in flight at once (default 32)")
    parser.add_argument("--out", help="results directory (default: bench/results)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the service's logs")
    return parser


def summarize_all(client, dialogues: list[str]) -> tuple[list, float]:
    """Each dialogue its own /summarize request, all in flight at once; (summaries, wall seconds)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(dialogues)) as pool:
        summaries = list(pool.map(client.summarize, dialogues))
    return summaries, time.perf_counter() - started


def check(url: str, concurrent: int) -> dict:
    """The routing, one summary and ``concurrent`` at once; the failures are listed under "failures"."""
    from client import SummarizerClient

    dialogues = load_dialogues(concurrent + 1)
    with SummarizerClient(url, timeout_s=300.0) as client:
        routing = client.model()
        [one], one_s = summarize_all(client, dialogues[:1])
        many, many_s = summarize_all(client, dialogues[1:])
    failures = []
    if (routing["primary"], routing["fallback"]) != ("torch", "onnx"):
        failures.append(f"routing is {routing['primary']} -> {routing['fallback']}, not torch -> onnx: "
                        "the service sees no CUDA device (see serving/devices.py)")
    devices = {status["backend"]: status.get("device") for status in routing["backends"]}
    if devices.get("torch") != "cuda":
        failures.append(f"the torch backend runs on {devices.get('torch')}, not cuda")
    engines = sorted({s.backend.value for s in [one, *many]})
    if engines != [CUDA_ENGINE] or any(s.fallback for s in [one, *many]):
        failures.append(f"summaries came from {engines} (fallback: {sum(s.fallback for s in [one, *many])}), "
                        f"not all from {CUDA_ENGINE}")
    return {"routing": {k: routing[k] for k in ("primary", "fallback", "backends")},
            "engines": engines, "one_summary_s": round(one_s, 3), "one_summary": one.summary,
            "concurrent": concurrent, "concurrent_wall_s": round(many_s, 3),
            "summaries_per_s": round(concurrent / many_s, 2),
            "output_tokens_mean": round(sum(s.output_tokens for s in many) / concurrent, 1), "failures": failures}


def render(report: dict) -> str:
    lines = [f"{'measure':<34} value",
             f"{'start to ready':<34} {report['cold_start_s']:.1f} s",
             f"{'routing':<34} {report['routing']['primary']} -> {report['routing']['fallback']}",
             f"{'engines that answered':<34} {', '.join(report['engines'])}",
             f"{'one summary':<34} {report['one_summary_s']:.2f} s",
             f"{str(report['concurrent']) + ' in flight':<34} {report['concurrent_wall_s']:.2f} s, "
             f"{report['summaries_per_s']:.1f} summaries/s"]
    lines += [f"FAILED: {failure}" for failure in report["failures"]] or ["all checks passed"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.concurrent < 1:
        raise SystemExit(f"--concurrent must be at least 1, e.g. 32; got {args.concurrent}")
    from bench.loadtest import start_service
    from serving.devices import cuda_available

    if not cuda_available():
        print("error: PyTorch sees no CUDA device; run this on a GPU machine", file=sys.stderr)
        return 2
    logs = Path(tempfile.mkdtemp(prefix="gpu-service-"))
    server, model, _ = start_service(args.model, {}, logs)
    try:
        report = check(server.url, args.concurrent)
    finally:
        server.stop()
    report.update({"created": now_iso(), "git": git_revision(), "machine": machine_info(), "model": model,
                   "cold_start_s": server.ready_after_s})
    publish("gpu_service", report, args.out, render(report), logs, args.keep_logs or bool(report["failures"]))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    sys.exit(main())

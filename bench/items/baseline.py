"""Item 3, vs_fastapi_pipeline: the service against FastAPI + ``pipeline("summarization")``
(bench/baseline_fastapi.py) at concurrency N: throughput ratio and p99 latency ratio; and against the
baseline at its best, one client."""

from __future__ import annotations

from bench.context import BenchContext
from bench.items.throughput import BASELINE, column, summarize_system, throughput_rounds
from bench.load import run_load
from bench.stats import ratio_spread, spread
from bench.targets import judged_spread


def sequential_throughput(ctx: BenchContext) -> list[float]:
    """The baseline's throughput with one client, no queue, per round. Under N clients its PyTorch threads
    compete with uvicorn's for the cores, so the ratio at concurrency N alone would flatter the service."""
    url = ctx.baseline().url
    return [run_load(url, ctx.inputs.overhead, 1, baseline=True).throughput_rps for _ in range(ctx.preset["repeats"])]


def vs_fastapi_pipeline(ctx: BenchContext) -> dict:
    rounds = throughput_rounds(ctx)
    svc, base = rounds["per_round"]["batching_on"], rounds["per_round"][BASELINE]
    throughput = ratio_spread(column(svc, "throughput_rps"), column(base, "throughput_rps"))
    p99 = ratio_spread(column(svc, "latency", "p99_s"), column(base, "latency", "p99_s"))
    sequential = sequential_throughput(ctx)
    return {"baseline_sequential_throughput_rps": spread(sequential),
            "throughput_ratio_to_sequential_baseline": ratio_spread(column(svc, "throughput_rps"), sequential),
            "concurrency": ctx.concurrency, "requests_per_round": rounds["requests_per_round"],
            "baseline": f"FastAPI + transformers pipeline('summarization') (PyTorch, {ctx.args.baseline_mode}),"
                        " bench/baseline_fastapi.py under uvicorn, 1 worker",
            "service": summarize_system(svc), BASELINE: summarize_system(base),
            "throughput_ratio": judged_spread("baseline_throughput", throughput),
            "p99_ratio": judged_spread("baseline_p99", p99)}

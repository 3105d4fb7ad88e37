"""Throughput rounds at concurrency N shared by items 2 and 3: the service with batching on, with batching
off, and the FastAPI baseline, measured in the same rounds (systems alternate within a round), once."""

from __future__ import annotations

from bench.common import log
from bench.context import BenchContext
from bench.load import run_load
from bench.prometheus import batch_histogram, batch_histogram_delta
from bench.servers import tree_memory
from bench.stats import spread
from harness import ManagedProcess

BASELINE = "fastapi_pipeline"


def systems(ctx: BenchContext) -> dict[str, ManagedProcess]:
    """The servers the chosen items compare, started if needed (batching off only when it starts)."""
    chosen = {"batching_on": ctx.batching_on()}
    if ctx.wants("adaptive_batching") and ctx.batching_off() is not None:
        chosen["batching_off"] = ctx.batching_off()
    if ctx.wants("vs_fastapi_pipeline"):
        chosen[BASELINE] = ctx.baseline()
    return chosen


def metrics_text(url: str) -> str:
    from client import SummarizerClient

    with SummarizerClient(url, timeout_s=10) as summarizer:
        return summarizer.metrics_text()


def warm_up(ctx: BenchContext, chosen: dict[str, ManagedProcess]) -> dict:
    """A few requests per system (this trains BentoML's batching dispatcher); the failures, by system."""
    errors = {}
    for name, server in chosen.items():
        warm = ctx.inputs.load[: (2 * ctx.concurrency if name != BASELINE else 2)]
        res = run_load(server.url, warm, ctx.concurrency, baseline=name == BASELINE)
        if res.ok != len(warm):
            log(f"  warning: {name} warm-up answered {dict(res.statuses)}: {res.errors[:1]}")
            errors[name] = {"statuses": dict(res.statuses), "errors": res.errors}
    return errors


def one_round(ctx: BenchContext, chosen: dict[str, ManagedProcess], order: list[str], per: dict) -> None:
    for name in order:
        res = run_load(chosen[name].url, ctx.inputs.load, ctx.concurrency, baseline=name == BASELINE)
        if res.ok == 0:
            raise RuntimeError(f"{name} answered {dict(res.statuses)}: {res.errors}")
        if res.ok != len(ctx.inputs.load):  # counted and shown; throughput counts answered requests
            log(f"  warning: {name} answered {dict(res.statuses)}: {res.errors[:1]}")
        per[name].append(res.to_json())


def throughput_rounds(ctx: BenchContext) -> dict:
    """Per system: every round's load result; the batches BentoML formed; memory after the load."""
    if "throughput" in ctx.shared:
        return ctx.shared["throughput"]
    chosen = systems(ctx)
    warmup_errors = warm_up(ctx, chosen)
    services = [name for name in chosen if name != BASELINE]
    before = {name: batch_histogram(metrics_text(chosen[name].url)) for name in services}
    names = list(chosen)
    per: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(ctx.preset["repeats"]):
        one_round(ctx, chosen, names[r % len(names):] + names[: r % len(names)], per)
        log(f"  throughput round {r + 1}: " + ", ".join(
            f"{n} {per[n][-1]['throughput_rps']:.2f}/s p99 {per[n][-1]['latency']['p99_s']:.2f}s" for n in names))
    batches = {name: batch_histogram_delta(before[name], batch_histogram(metrics_text(chosen[name].url)))
               for name in services}
    ctx.shared["throughput"] = {"per_round": per, "batches": batches, "requests_per_round": len(ctx.inputs.load),
                                "memory_after_load": {n: tree_memory(s) for n, s in chosen.items()},
                                "start_errors": dict(ctx.start_errors), "warmup_errors": warmup_errors}
    return ctx.shared["throughput"]


def summarize_system(rounds: list[dict]) -> dict:
    """One system's rounds: throughput, p50 and p99 as median [min-max] over rounds, failed requests."""
    return {"throughput_rps": spread([x["throughput_rps"] for x in rounds]),
            "p50_s": spread([x["latency"]["p50_s"] for x in rounds]),
            "p99_s": spread([x["latency"]["p99_s"] for x in rounds]),
            "failed_requests": sum(x["requests"] - x["ok"] for x in rounds),
            "requests": sum(x["requests"] for x in rounds), "rounds": rounds}


def column(rounds: list[dict], *path: str) -> list[float]:
    """One figure of every round, e.g. ``column(rounds, "latency", "p99_s")``."""
    out = []
    for x in rounds:
        for key in path:
            x = x[key]
        out.append(x)
    return out

"""Item 1, serving_overhead: p50 latency through ``bentoml serve`` at concurrency 1 against a direct
``Engine.summarize()`` call on the same backend in this process; with batching off as a diagnostic."""

from __future__ import annotations

from bench.common import log
from bench.context import BenchContext
from bench.load import run_load
from bench.stats import differences, latency_stats, ratio_spread, spread
from bench.targets import judged_spread


def through_service(url: str, dialogues: list[str]) -> dict:
    """Latency statistics of ``dialogues`` sent one after another; fails when none was answered."""
    res = run_load(url, dialogues, 1)
    if res.ok == 0:
        raise RuntimeError(f"service answered {dict(res.statuses)}: {res.errors}")
    if res.ok != len(dialogues):
        log(f"  warning: service answered {dict(res.statuses)}: {res.errors[:1]}")
    return {**res.to_json()["latency"], "statuses": dict(res.statuses)}


def same_summaries(url: str, engine, dialogues: list[str], settings) -> float:
    """Share of dialogues the service summarizes exactly as the direct engine does."""
    from client import SummarizerClient

    direct = engine.summarize(list(dialogues), settings)
    with SummarizerClient(url, timeout_s=600) as summarizer:
        same = sum(summarizer.summarize(text).summary == d.summary for text, d in zip(dialogues, direct, strict=True))
    return same / max(1, len(dialogues))


def measure_rounds(ctx: BenchContext, engine, targets: dict) -> tuple[dict[str, list[float]], list[dict]]:
    """p50 per round of the direct engine and each service in ``targets``, rotating the order per round."""
    from bench.engine_bench import time_summaries

    dialogues = ctx.inputs.overhead
    systems = ["direct", *targets]
    p50: dict[str, list[float]] = {name: [] for name in systems}
    rounds = []
    for r in range(ctx.preset["repeats"]):
        pair = {}
        for which in systems[r % len(systems):] + systems[: r % len(systems)]:
            if which == "direct":
                pair[which] = latency_stats(time_summaries(engine, dialogues, ctx.settings))
            else:
                pair[which] = through_service(targets[which].url, dialogues)
            p50[which].append(pair[which]["p50_s"])
        rounds.append(pair)
        log(f"  overhead round {r + 1}: " + ", ".join(f"{n} p50 {pair[n]['p50_s'] * 1000:.1f} ms" for n in systems))
    return p50, rounds


def serving_overhead(ctx: BenchContext) -> dict:
    engine = ctx.direct_engine()
    targets = {"service": ctx.batching_on()}
    # diagnostic: the same path without the batching dispatcher (shows what its wait costs at c=1)
    off = ctx.batching_off() if ctx.wants("adaptive_batching") else None
    if off:
        targets["service_no_batching"] = off
    for target in targets.values():
        run_load(target.url, ctx.inputs.overhead[:2], 1)  # warm-up
    engine.summarize(ctx.inputs.overhead[:1], ctx.settings)
    p50, rounds = measure_rounds(ctx, engine, targets)
    out = {"direct_p50_s": spread(p50["direct"]), "service_p50_s": spread(p50["service"]),
           "added_ms": differences(p50["service"], p50["direct"], 1000),
           "ratio": judged_spread("serving_overhead", ratio_spread(p50["service"], p50["direct"])),
           "rounds": rounds, "requests_per_round": len(ctx.inputs.overhead),
           "same_summaries": same_summaries(targets["service"].url, engine, ctx.inputs.overhead[:3], ctx.settings),
           "direct": f"{type(engine).__name__}.summarize([dialogue]) in the benchmark process"}
    if off:
        out["service_no_batching_p50_s"] = spread(p50["service_no_batching"])
        out["ratio_no_batching"] = ratio_spread(p50["service_no_batching"], p50["direct"])
        out["batching_wait_ms"] = differences(p50["service"], p50["service_no_batching"], 1000)
    return out

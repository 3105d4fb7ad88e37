"""Item 2, adaptive_batching: throughput at concurrency N with adaptive batching on / off
(``SUMMARIZER_MAX_BATCH_SIZE=1``), and what batching can gain inside the engine on this machine."""

from __future__ import annotations

from bench.common import load_dialogues
from bench.context import BenchContext
from bench.items.throughput import column, summarize_system, throughput_rounds
from bench.stats import ratio_spread
from bench.targets import judged_spread


def adaptive_batching(ctx: BenchContext) -> dict:
    from bench.engine_bench import batching_bound, batching_groups

    rounds = throughput_rounds(ctx)
    if "batching_off" in rounds["start_errors"]:
        raise RuntimeError("the service with SUMMARIZER_MAX_BATCH_SIZE=1 did not start: "
                           + rounds["start_errors"]["batching_off"])
    on, off = rounds["per_round"]["batching_on"], rounds["per_round"]["batching_off"]
    ratio = ratio_spread(column(on, "throughput_rps"), column(off, "throughput_rps"))
    engine = ctx.direct_engine()
    n = ctx.concurrency
    return {"concurrency": n, "requests_per_round": rounds["requests_per_round"],
            "batching_on": summarize_system(on), "batching_off": summarize_system(off),
            "throughput_ratio": judged_spread("adaptive_batching", ratio), "batch_sizes": rounds["batches"],
            # how the engine splits a batch of N into generate() calls (it groups dialogues by length)
            "engine_groups": batching_groups(engine, load_dialogues(4 * n, seed=4), ctx.settings, n),
            # the ceiling for this item on this machine: the engine itself, N singles vs one batch of N
            "engine_batching_bound": batching_bound(engine, ctx.inputs.load[:n], ctx.settings)}

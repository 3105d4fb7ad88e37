"""Item 5, cold_start: seconds from launching ``bentoml serve`` to /readyz (every service this run started,
plus ``--extra-cold-starts``), and the memory of all the service's processes, idle and after load."""

from __future__ import annotations

from bench.common import log
from bench.context import BenchContext
from bench.load import run_load
from bench.servers import START_TIMEOUT_S, summarizer_server, tree_memory
from bench.stats import spread


def extra_starts(ctx: BenchContext, count: int) -> list[float]:
    """Seconds to ready of ``count`` more services like the batching one, each stopped once ready."""
    seconds = []
    for i in range(count):
        process = summarizer_server(f"service-cold-{i + 1}", ctx.model.tag, ctx.logs, **ctx.service_env(),
                                    SUMMARIZER_MAX_BATCH_SIZE="32")
        try:
            process.start(timeout_s=START_TIMEOUT_S)
            seconds.append(process.ready_after_s)
            log(f"  extra start {i + 1}: ready in {process.ready_after_s:.1f} s")
        finally:
            process.stop()
    return seconds


def cold_start(ctx: BenchContext) -> dict:
    server = ctx.batching_on()
    run_load(server.url, ctx.inputs.overhead[:1], 1)
    starts = [c["seconds"] for c in ctx.cold_starts] + extra_starts(ctx, ctx.preset["extra_cold_starts"])
    out = {"cold_start_s": spread(starts), "starts": list(ctx.cold_starts),
           "memory_idle_after_one_request": tree_memory(server),
           "memory_after_load": ctx.shared.get("throughput", {}).get("memory_after_load", {}).get("batching_on"),
           "note": "RSS counts shared pages once per process; PSS splits them; USS is private memory"}
    if "fastapi-pipeline" in ctx.servers:
        baseline = ctx.servers["fastapi-pipeline"]
        out["baseline_cold_start_s"] = baseline.ready_after_s
        out["baseline_memory"] = tree_memory(baseline)
    return out

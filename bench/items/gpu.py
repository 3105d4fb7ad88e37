"""Item 6, gpu: on CUDA only, bench/gpu.py (bart-large-cnn's architecture, fp16, 4 beams, 128 tokens)."""

from __future__ import annotations

import json

from bench.context import BenchContext
from bench.targets import judged


def gpu(ctx: BenchContext) -> dict:
    from bench.gpu import main as gpu_main
    from serving.devices import cuda_available

    if not cuda_available():
        return {"skipped": "no CUDA device on this machine; run `python -m bench.gpu` on a GPU machine"}
    out_path = ctx.logs / "gpu.json"
    gpu_main(["--json", str(out_path), *ctx.args.gpu_args.split()])
    data = json.loads(out_path.read_text())
    return {**data, "target": judged("gpu_summaries_per_s", data.get("best_summaries_per_s"))}

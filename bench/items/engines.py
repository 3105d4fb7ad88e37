"""Item 4, onnx_vs_torch: ONNX Runtime (fp32, int8) against PyTorch on CPU in this process, same model,
inputs, beams and threads; int8's ROUGE-L against fp32 with the eval suite. Runs before any server, so
nothing else competes for the cores."""

from __future__ import annotations

from pathlib import Path

from bench.common import log
from bench.context import BenchContext
from bench.targets import judged, judged_spread


def int8_layout(ctx: BenchContext) -> Path:
    """The int8 model's directory: ``--int8-model`` from the store, else a temporary quantized copy."""
    from bench.engine_bench import quantized_copy
    from model_store.store import get_model

    if ctx.args.int8_model:
        return Path(get_model(ctx.args.int8_model).path)
    return ctx.stack.enter_context(quantized_copy(ctx.model.hf_dir, ctx.model.onnx_dir))


def int8_quality(ctx: BenchContext, layout: Path) -> dict:
    from bench.engine_bench import int8_quality as measure

    preset = ctx.preset
    quality = measure(ctx.model.tag, layout, ctx.args.int8_model, preset["quality_subset"], preset["quality_limit"],
                      ctx.threads, ctx.args.eval_cache, log=log)
    drop = -quality["worst_set_delta"] if quality["worst_set_delta"] is not None else None
    quality.update(rougeL_drop=drop, **judged("int8_rougeL_drop", drop))
    return quality


def onnx_vs_torch(ctx: BenchContext) -> dict:
    from bench.engine_bench import load_engines, onnx_vs_torch as measure
    from serving.engines import ONNX_SUBDIR

    layout = int8_layout(ctx)
    ctx.engines.update(load_engines(ctx.model.hf_dir, ctx.model.onnx_dir, ctx.threads, int8_dir=layout / ONNX_SUBDIR,
                                    untuned=ctx.preset["ablation"], model_tag=ctx.model.tag))
    out = measure(ctx.engines, ctx.inputs.engine, ctx.settings, ctx.preset["repeats"], log=log)
    out["threads"] = ctx.threads
    out["dialogues_per_round"] = len(ctx.inputs.engine)
    ratio = out["ratio_to_torch"]
    out["onnx_latency_ratio"] = judged_spread("onnx_latency", ratio["onnx"])
    out["int8_latency_ratio"] = judged_spread("int8_latency", ratio["onnx_int8"])
    if not ctx.args.no_quality:
        out["int8_quality"] = int8_quality(ctx, layout)
    return out

"""The benchmark's items, in the order they run: each takes the shared ``BenchContext`` and returns its
part of the results (a dict; the report is made from it). Engines in this process come first, so no
server competes with them for the cores."""

from __future__ import annotations

from collections.abc import Callable

from bench.context import BenchContext
from bench.items.baseline import vs_fastapi_pipeline
from bench.items.batching import adaptive_batching
from bench.items.cold_start import cold_start
from bench.items.engines import onnx_vs_torch
from bench.items.gpu import gpu
from bench.items.overhead import serving_overhead

Item = Callable[[BenchContext], dict]

ITEMS: dict[str, Item] = {
    "onnx_vs_torch": onnx_vs_torch,
    "serving_overhead": serving_overhead,
    "adaptive_batching": adaptive_batching,
    "vs_fastapi_pipeline": vs_fastapi_pipeline,
    "cold_start": cold_start,
    "gpu": gpu,
}

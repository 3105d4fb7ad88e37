"""The benchmarks' targets (issues 6 and 12) and the verdict of a measurement against one."""

from __future__ import annotations

# name -> (target, kind): 'max' means the measured value must be at most the target, 'min' at least
TARGETS: dict[str, tuple[float, str]] = {
    "serving_overhead": (1.05, "max"),
    "adaptive_batching": (4.0, "min"),
    "baseline_throughput": (5.0, "min"),
    "baseline_p99": (0.5, "max"),
    "onnx_latency": (0.6, "max"),
    "int8_latency": (0.4, "max"),
    "int8_rougeL_drop": (0.5, "max"),
    "gpu_summaries_per_s": (40.0, "min"),
    # issue 12: health probes while the service is 2x past its admission limit (bench/probes.py)
    "readyz_p99_ms": (100.0, "max"),
    "livez_p99_ms": (50.0, "max"),
}


def verdict(value: float | None, target: float, kind: str) -> dict:
    """{'target', 'kind', 'met'}: kind 'max' means value <= target, 'min' means value >= target."""
    if kind not in ("max", "min"):
        raise ValueError(f"a target's kind is 'max' or 'min', got {kind!r}")
    met = None if value is None else (value <= target if kind == "max" else value >= target)
    return {"target": target, "kind": kind, "met": met}


def judged(name: str, value: float | None) -> dict:
    """``verdict`` of ``value`` against the target called ``name`` (a key of TARGETS)."""
    if name not in TARGETS:
        raise KeyError(f"no target {name!r}; known: {', '.join(TARGETS)}")
    return verdict(value, *TARGETS[name])


def judged_spread(name: str, spread: dict) -> dict:
    """A ``bench.stats.spread`` with the verdict of its median against the target ``name`` added."""
    return {**spread, **judged(name, spread["median"])}


def targets_json() -> dict:
    return {name: {"value": value, "kind": kind} for name, (value, kind) in TARGETS.items()}

"""Serving configuration, read once from environment variables (documented in the README's table).

Every knob has a default that works on a laptop without a GPU; invalid values fail at start-up with a
message naming the variable, never at the first request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_MODEL_NAME = "dialogue-bart-small"

BACKENDS = ("torch", "onnx")


def _int(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is out of range [{low}, {high}]")
    return value


def _float(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is out of range [{low}, {high}]")
    return value


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in choices:
        raise ValueError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class Faults:
    """Fault injection for drills and tests: SUMMARIZER_INJECT_FAULT="torch:error,onnx:hang"."""

    error: frozenset[str] = frozenset()
    hang: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: str) -> Faults:
        error, hang = set(), set()
        for item in filter(None, (part.strip() for part in raw.split(","))):
            backend, _, kind = item.partition(":")
            if backend not in BACKENDS or kind not in ("error", "hang"):
                raise ValueError(f"SUMMARIZER_INJECT_FAULT item {item!r} must be BACKEND:error or BACKEND:hang "
                                 f"with BACKEND one of {', '.join(BACKENDS)}")
            (error if kind == "error" else hang).add(backend)
        return cls(frozenset(error), frozenset(hang))


@dataclass(frozen=True)
class ServingConfig:
    model_tag: str = f"{DEFAULT_MODEL_NAME}:latest"
    # "auto": PyTorch on CUDA when a GPU is visible, else ONNX Runtime on CPU.
    primary: str = "auto"
    # "auto": the other backend when the primary is PyTorch on a GPU; none when ONNX is primary
    # (loading PyTorch on CPU as a fallback for CPU ONNX would hold a second model for little gain).
    fallback: str = "auto"
    primary_timeout_s: float = 30.0
    max_dialogue_chars: int = 20_000
    max_list_items: int = 32
    max_batch_size: int = 32
    max_latency_ms: int = 20_000
    batch_wait_ms: int = 0
    max_pending_requests: int = 64
    request_timeout_s: int = 120
    onnx_threads: int = 0
    torch_threads: int = 0
    faults: Faults = field(default_factory=Faults)

    @classmethod
    def from_env(cls) -> ServingConfig:
        model = os.environ.get("SUMMARIZER_MODEL", "").strip() or f"{DEFAULT_MODEL_NAME}:latest"
        if ":" not in model:
            model += ":latest"
        return cls(
            model_tag=model,
            primary=_choice("SUMMARIZER_PRIMARY", "auto", ("auto", *BACKENDS)),
            fallback=_choice("SUMMARIZER_FALLBACK", "auto", ("auto", "none", *BACKENDS)),
            primary_timeout_s=_float("SUMMARIZER_PRIMARY_TIMEOUT_S", 30.0, 0.1, 3600.0),
            max_dialogue_chars=_int("SUMMARIZER_MAX_DIALOGUE_CHARS", 20_000, 1, 1_000_000),
            max_list_items=_int("SUMMARIZER_MAX_LIST_ITEMS", 32, 1, 1024),
            max_batch_size=_int("SUMMARIZER_MAX_BATCH_SIZE", 32, 1, 1024),
            max_latency_ms=_int("SUMMARIZER_MAX_LATENCY_MS", 20_000, 10, 600_000),
            max_pending_requests=_int("SUMMARIZER_MAX_PENDING", 64, 1, 100_000),
            request_timeout_s=_int("SUMMARIZER_REQUEST_TIMEOUT_S", 120, 1, 3600),
            onnx_threads=_int("SUMMARIZER_ONNX_THREADS", 0, 0, 1024),
            torch_threads=_int("SUMMARIZER_TORCH_THREADS", 0, 0, 1024),
            faults=Faults.parse(os.environ.get("SUMMARIZER_INJECT_FAULT", "")),
        )

    def routing(self, cuda_available: bool) -> tuple[str, str | None]:
        """(primary, fallback) backends for this machine."""
        primary = self.primary if self.primary != "auto" else ("torch" if cuda_available else "onnx")
        if self.fallback == "none":
            return primary, None
        if self.fallback == "auto":
            return primary, ("onnx" if primary == "torch" else None)
        return primary, (self.fallback if self.fallback != primary else None)

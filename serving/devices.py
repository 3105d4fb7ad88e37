"""Where PyTorch can run. BentoML starts a service with resources={"gpu": 1} on a machine without a GPU,
so the code asks CUDA itself; every process asks the same question and so agrees on the routing."""

from __future__ import annotations

import functools


@functools.cache
def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver means no GPU, not a crash
        return False

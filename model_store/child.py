"""Run a heavy import step in a fresh interpreter, so that its memory goes back to the system when it ends.

Exporting and wiring a bart-large-cnn-sized model takes several GB for a minute (PyTorch's tracing, the ONNX
protobufs); in the importing process, Python's and PyTorch's allocators keep much of it, and the next step
would add its own on top. A spawned child (not forked: nothing of the parent's memory or threads is shared)
returns its result and exits; the import's peak is then the largest step's, not their sum.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def run_in_child(function: Callable[..., T], *args, **kwargs) -> T:
    """``function(*args, **kwargs)`` in a spawned process; its exception is raised here. ``function`` and the
    arguments must be picklable (module-level functions, paths, ``functools.partial`` of those)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args, **kwargs).result()

"""Where PyTorch can run. BentoML starts a service with resources={"gpu": 1} on a machine without a GPU,
so the code asks CUDA itself; every process asks the same question and so agrees on the routing.

The question is asked without importing PyTorch: the public service's API workers only route, and importing
torch there made each one 120 MB bigger (USS 194 MB with it, 73 MB without; README "When a worker
dies"). PyTorch can use CUDA when its CUDA build is installed (``torch/lib/libtorch_cuda.so``) and the
driver sees a device (``cuInit`` and ``cuDeviceGetCount`` of libcuda, which honour CUDA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
from pathlib import Path


@functools.cache
def cuda_available() -> bool:
    return torch_has_cuda_build() and cuda_devices() > 0


def torch_has_cuda_build() -> bool:
    """PyTorch is installed, built with CUDA (found on disk, not imported)."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    return any((Path(location) / "lib" / "libtorch_cuda.so").exists() for location in spec.submodule_search_locations)


def cuda_devices() -> int:
    """CUDA devices the driver makes visible to this process; 0 without a driver or on any driver error."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    try:
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
    except Exception:  # noqa: BLE001 - a broken driver means no GPU, not a crash
        return 0
    return count.value

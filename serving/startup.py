"""The service's start-up checks: a bad setting, a model that is not stored or a damaged model file stops
``bentoml serve`` with one line that names the problem and its fix, before any worker starts.

The checks run where service.py is first imported: BentoML's main process (and ``bentoml build``). A worker
that failed instead would print a traceback and be respawned by BentoML for ever; the main process that
raises SystemExit at import prints the message alone and exits with status 1.

Hashes are checked at every start, not only by ``python -m model_store verify``: only the files the backends
that may serve on this machine read (the CPU image holds no PyTorch weights). Measured on 2 shared cores with
the files in the page cache: the default model in 0.03 s (0.06 s with its PyTorch weights); a
bart-large-cnn-shaped model's 1.63 GB of safetensors in 1.5 s, its ONNX weights (1.62 GB) the same, 3 s for
both; ONNX Runtime then reads the same pages from the cache. Sizes alone would be cheaper but miss an altered
byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import bentoml

from model_store.layout import HF_SUBDIR, ONNX_SUBDIR
from model_store.store import SAFETENSORS_INDEX, ModelFileError, ModelNotFoundError, check_files, get_model
from serving.config import ConfigError, ServingConfig
from serving.devices import cuda_available
from serving.protocol import BackendName

STARTUP_ERRORS = (ConfigError, ModelNotFoundError, ModelFileError)
# PyTorch's weights: what the CPU image leaves out (container/Dockerfile.j2), read by the PyTorch backend alone
TORCH_WEIGHTS = (".safetensors", ".bin")


@contextmanager
def explained_exit() -> Iterator[None]:
    """A start-up error becomes SystemExit with its message: one line on stderr, exit status 1, no traceback."""
    try:
        yield
    except STARTUP_ERRORS as exc:
        raise SystemExit(f"error: {exc}") from None


def in_main_process() -> bool:
    """True outside BentoML's workers (the ``bentoml serve`` process that starts them, ``bentoml build``)."""
    return bentoml.server_context.worker_index is None


def backends_that_may_serve(config: ServingConfig) -> set[BackendName]:
    """The backends routed on this machine (asking CUDA imports no PyTorch: serving/devices.py)."""
    return {backend for backend in config.routing(cuda_available()) if backend is not None}


def files_read_by(backends: set[BackendName]) -> Callable[[str], bool]:
    """Whether a stored model's file (path relative to the model) is read by one of ``backends``: the ONNX
    export by ONNX Runtime, the safetensors weights by PyTorch, the rest (config, tokenizer, card) by both."""
    def wanted(rel: str) -> bool:
        folder, _, name = rel.partition("/")
        if folder == ONNX_SUBDIR:
            return BackendName.ONNX in backends
        if folder == HF_SUBDIR and (name.endswith(TORCH_WEIGHTS) or name == SAFETENSORS_INDEX):
            return BackendName.TORCH in backends
        return True
    return wanted


def stored_model(config: ServingConfig):
    """The configured model from the store; in the main process, its files checked against their sha256
    (the workers load what the main process checked)."""
    stored = get_model(config.model_tag)
    if in_main_process():
        check_files(stored, files_read_by(backends_that_may_serve(config)))
    return stored

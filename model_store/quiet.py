"""Keep the ONNX export's known, harmless noise off the operator's screen.

torch.onnx's tracer warns at every Python condition on a tensor in transformers' BART code (TracerWarning:
expected, the export is traced at fixed shapes and optimum checks the result), transformers warns about its
own deprecated config field, and optimum suggests installing accelerate for a check that BART does not
need (its tied embeddings are shared by model_store/beam_search.py instead). A screen of these ahead of
the one line that matters hid that line; real errors still raise.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# Loggers that repeat the harmless messages above at WARNING level during an export.
NOISY_LOGGERS = ("transformers", "optimum")


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence tracer warnings and the two libraries' WARNING logs inside the block (errors still show)."""
    import torch

    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)

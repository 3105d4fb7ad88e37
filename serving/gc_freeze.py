"""Keep the garbage collector's full collections short in the serving processes.

A service worker holds a few hundred thousand objects from start-up (BentoML, Starlette, pydantic models,
OpenTelemetry, ONNX Runtime's and the tokenizer's Python side), and CPython's full (generation 2)
collection traverses every one of them each time it runs, holding the GIL: under 2x overload on 2 cores
the public service paused 0.5-1.3 s every ~30 s that way (the requests that wait in the queue survive
into generation 2 and trigger it), and /readyz and /livez timed out behind it (bench/probes.py).
Objects that live for the whole process need not be traversed again: ``gc.freeze()`` moves them to a
permanent generation that collections skip (CPython's documented remedy; see the ``gc`` module).
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def freeze_startup_objects() -> int:
    """Collect what start-up left as garbage, then exempt every surviving object from future collections.

    Call once a service has loaded everything it keeps for its lifetime (end of its ``__init__``).
    Objects created later are collected as usual. Returns how many objects are frozen in all.
    """
    gc.collect()  # garbage in cycles is freed first: once frozen it would never be
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("%d start-up objects exempted from garbage collection (gc.freeze)", frozen)
    return frozen

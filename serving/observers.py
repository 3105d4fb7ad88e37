"""What engines and backends report, and to whom: observers plugged in from outside (telemetry, tests).

Serving code calls ``notify``-style methods of an ``EngineObserver`` and knows nothing of OpenTelemetry;
observability/ implements one. An observer's failure is logged and isolated: it never fails a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from serving.protocol import BackendName, EngineName, GenerationJob, GenerationSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationCall:
    """One ``generate()`` call of an engine: one group of jobs with the same settings."""

    engine: EngineName
    model: str
    jobs: Sequence[GenerationJob]
    input_tokens: Sequence[int]
    settings: GenerationSettings
    padding_share: float


class EngineObserver:
    """No-op base: override what you observe. Methods run on the engine's thread, so keep them short."""

    def batch_started(self, backend: BackendName, jobs: Sequence[GenerationJob]) -> None:
        """A backend starts a batch (jobs of one or more requests) after their queue wait."""

    def generation_started(self, call: GenerationCall) -> Any:
        """Before one generate() call; the returned token comes back to ``generation_finished``."""

    def generation_finished(self, token: Any, call: GenerationCall, output_tokens: Sequence[int] | None,
                            error: BaseException | None) -> None:
        """After it: output token counts when it succeeded, the error when it raised."""


class Isolated(EngineObserver):
    """Wraps an observer so that its exceptions are logged (once per method) and never propagate."""

    def __init__(self, inner: EngineObserver) -> None:
        self.inner = inner
        self._failed: set[str] = set()

    def batch_started(self, backend, jobs):
        return self._guard("batch_started", backend, jobs)

    def generation_started(self, call):
        return self._guard("generation_started", call)

    def generation_finished(self, token, call, output_tokens, error):
        return self._guard("generation_finished", token, call, output_tokens, error)

    def _guard(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.inner, method)(*args)
        except Exception:  # noqa: BLE001 - observing must never fail the work observed
            if method not in self._failed:
                self._failed.add(method)
                logger.exception("observer %s.%s failed; the batch goes on (logged once)",
                                 type(self.inner).__name__, method)
            return None


NO_OBSERVER = EngineObserver()

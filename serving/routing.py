"""Primary/fallback routing: a request never fails because one backend did.

The primary backend gets a bounded time to answer; if it raises or does not answer in time, the same
jobs go to the fallback backend. Only when no backend can answer does the caller get an error, and that
error is a 503 the client can retry, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from serving.protocol import GenerationJob, GenerationResult

logger = logging.getLogger(__name__)

BackendCall = Callable[[list[GenerationJob]], Awaitable[list]]


class BackendUnavailable(RuntimeError):
    """Neither backend produced a result; the message says what each one did."""


@dataclass
class Backend:
    name: str
    call: BackendCall


@dataclass
class Routed:
    results: list[GenerationResult]
    backend: str
    fallback: bool
    primary_error: str | None = None


class Router:
    def __init__(self, primary: Backend, fallback: Backend | None, primary_timeout_s: float,
                 on_fallback: Callable[[str, str], None] | None = None) -> None:
        if primary_timeout_s <= 0:
            raise ValueError(f"primary_timeout_s must be positive, got {primary_timeout_s}")
        if fallback is not None and fallback.name == primary.name:
            raise ValueError(f"fallback backend must differ from the primary ({primary.name})")
        self.primary = primary
        self.fallback = fallback
        self.primary_timeout_s = primary_timeout_s
        self.on_fallback = on_fallback

    async def generate(self, jobs: Sequence[GenerationJob]) -> Routed:
        jobs = list(jobs)
        try:
            results = await asyncio.wait_for(self.primary.call(jobs), timeout=self.primary_timeout_s)
            return Routed(_as_results(results), self.primary.name, fallback=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any primary failure is a reason to fall back
            reason = (f"no answer within {self.primary_timeout_s:g}s" if isinstance(exc, asyncio.TimeoutError)
                      else f"{type(exc).__name__}: {exc}")
            if self.fallback is None:
                raise BackendUnavailable(f"{self.primary.name} backend failed ({reason}) and no fallback "
                                         "backend is configured (SUMMARIZER_FALLBACK)") from exc
            logger.warning("primary backend %s failed (%s); falling back to %s", self.primary.name, reason,
                           self.fallback.name)
            if self.on_fallback:
                self.on_fallback(self.primary.name, reason)
        try:
            results = await self.fallback.call(jobs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise BackendUnavailable(f"{self.primary.name} backend failed ({reason}) and fallback "
                                     f"{self.fallback.name} failed too ({type(exc).__name__}: {exc})") from exc
        return Routed(_as_results(results), self.fallback.name, fallback=True, primary_error=reason)


def _as_results(items: list) -> list[GenerationResult]:
    # Dependency calls may hand back plain dicts (HTTP) or models (in-process); normalise.
    return [item if isinstance(item, GenerationResult) else GenerationResult.model_validate(item) for item in items]

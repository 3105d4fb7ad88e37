"""Primary/fallback routing: a request never fails because one backend did.

The primary backend gets a bounded time to answer; if it raises, reports a failure or does not answer in
time, the same jobs go to the fallback backend. Only when no backend can answer does the caller get an
error, and that error is a 503 the client can retry, never a 500. Why a backend failed travels as a typed
``BackendFailure`` (the original error's class name), not as text to be parsed again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from serving.protocol import BackendFailure, BackendName, GenerationJob, GenerationOutcome, GenerationResult

logger = logging.getLogger(__name__)

BackendCall = Callable[[list[GenerationJob]], Awaitable[list]]
TIMEOUT = "TimeoutError"  # error_type of a backend that did not answer within the primary timeout


class BackendUnavailable(RuntimeError):
    """Neither backend produced a result; ``failures`` says what each one did."""

    def __init__(self, message: str, failures: Sequence[BackendFailure]) -> None:
        super().__init__(message)
        self.failures = list(failures)


class BackendFailed(RuntimeError):
    """A backend answered, but with a failure for at least one job."""

    def __init__(self, failure: BackendFailure) -> None:
        super().__init__(f"{failure.error_type}: {failure.message}")
        self.failure = failure


@dataclass
class Backend:
    name: BackendName
    call: BackendCall


@dataclass
class Routed:
    results: list[GenerationResult]
    backend: BackendName
    fallback: bool
    primary_failure: BackendFailure | None = None


class Router:
    def __init__(self, primary: Backend, fallback: Backend | None, primary_timeout_s: float,
                 on_fallback: Callable[[BackendFailure], None] | None = None) -> None:
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
            results = await asyncio.wait_for(self._call(self.primary, jobs), timeout=self.primary_timeout_s)
            return Routed(results, self.primary.name, fallback=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any primary failure is a reason to fall back
            failure = _failure(self.primary.name, exc, self.primary_timeout_s)
        if self.fallback is None:
            raise BackendUnavailable(f"{self.primary.name} backend failed ({_describe(failure)}) and no fallback "
                                     "backend is configured (SUMMARIZER_FALLBACK)", [failure])
        logger.warning("primary backend %s failed (%s); falling back to %s", self.primary.name, _describe(failure),
                       self.fallback.name)
        if self.on_fallback:
            self.on_fallback(failure)
        try:
            results = await self._call(self.fallback, jobs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            second = _failure(self.fallback.name, exc, None)
            raise BackendUnavailable(f"{self.primary.name} backend failed ({_describe(failure)}) and fallback "
                                     f"{self.fallback.name} failed too ({_describe(second)})", [failure, second])
        return Routed(results, self.fallback.name, fallback=True, primary_failure=failure)

    @staticmethod
    async def _call(backend: Backend, jobs: list[GenerationJob]) -> list[GenerationResult]:
        outcomes = [_as_outcome(item) for item in await backend.call(jobs)]
        if len(outcomes) != len(jobs):
            raise BackendFailed(BackendFailure(backend=backend.name, error_type="WrongAnswerCount",
                                               message=f"{len(outcomes)} answers for {len(jobs)} jobs"))
        for outcome in outcomes:
            if outcome.failure is not None:
                raise BackendFailed(outcome.failure)
            if outcome.result is None:
                raise BackendFailed(BackendFailure(backend=backend.name, error_type="EmptyAnswer",
                                                   message="an answer with neither result nor failure"))
        return [outcome.result for outcome in outcomes]


def failure_in(answers: Sequence[object]) -> BackendFailure | None:
    """The first failure among a backend's answers (dicts over HTTP, or GenerationOutcome), if any."""
    for item in answers:
        failure = item.failure if isinstance(item, GenerationOutcome) else (
            item.get("failure") if isinstance(item, dict) else None)
        if failure:
            return failure if isinstance(failure, BackendFailure) else BackendFailure.model_validate(failure)
    return None


def _failure(backend: BackendName, exc: Exception, timeout_s: float | None) -> BackendFailure:
    if isinstance(exc, BackendFailed):
        return exc.failure
    if isinstance(exc, asyncio.TimeoutError) and timeout_s is not None:
        return BackendFailure(backend=backend, error_type=TIMEOUT, message=f"no answer within {timeout_s:g}s")
    return BackendFailure(backend=backend, error_type=type(exc).__name__, message=str(exc))


def _describe(failure: BackendFailure) -> str:
    return failure.message if failure.error_type == TIMEOUT else f"{failure.error_type}: {failure.message}"


def _as_outcome(item: object) -> GenerationOutcome:
    # Dependency calls hand back plain dicts (HTTP) or models (in-process); normalise.
    return item if isinstance(item, GenerationOutcome) else GenerationOutcome.model_validate(item)

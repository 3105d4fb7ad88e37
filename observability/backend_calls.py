"""The public service's calls to its backends, traced: one CLIENT span per attempt, a ``fallback`` span
and the ``summarizer.fallbacks`` counter (with the primary's original error type) when the primary failed.

    text_completion <model>              (observability/requests.py)
      generate torch                     CLIENT   (the primary's attempt; error status when it failed)
      fallback                           INTERNAL (only when the primary failed)
        generate onnx                    CLIENT
          queue, text_completion <model> (in the backend: observability/batches.py)

Each job carries the W3C context of its attempt's span (``GenerationJob.trace_context``): adaptive batching
generates jobs of many requests in one call, and the backend puts each job's spans in its own trace.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Optional

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from observability.names import BACKEND, ERROR_TYPE, FALLBACK_FROM, FALLBACK_TO, FALLBACKS
from observability.providers import current, mark_failed
from serving.protocol import BackendFailure, BackendName, GenerationJob
from serving.routing import BackendCall, BackendFailed, failure_in

_primary_failure: ContextVar[Optional[BackendFailure]] = ContextVar("summarizer_primary_failure", default=None)


def _carry_context(jobs: list[GenerationJob]) -> None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    for job in jobs:
        job.trace_context = carrier


def traced_call(name: BackendName, call: BackendCall, fallback_for: BackendName | None = None) -> BackendCall:
    """Wrap a router backend call (see the module's docstring); ``call`` itself when telemetry is off."""

    async def attempt(jobs: list[GenerationJob]):
        runtime = current()
        if runtime is None:
            return await call(jobs)
        with runtime.tracer.start_as_current_span(f"generate {name}", kind=SpanKind.CLIENT,
                                                  attributes={BACKEND: str(name), "summarizer.dialogues": len(jobs)},
                                                  record_exception=False, set_status_on_exception=False) as span:
            _carry_context(jobs)
            try:
                answers = await call(jobs)
            except BaseException as exc:
                mark_failed(span, _error_type(exc))
                raise
            failure = failure_in(answers)  # the backend answered, with its own error
            if failure is not None:
                mark_failed(span, failure.error_type)
            return answers

    if fallback_for is None:
        return attempt

    async def fallback(jobs: list[GenerationJob]):
        runtime = current()
        if runtime is None:
            return await call(jobs)
        failure = _primary_failure.get()
        labels = {FALLBACK_FROM: str(fallback_for), FALLBACK_TO: str(name),
                  ERROR_TYPE: failure.error_type if failure else "unknown"}
        runtime.add(FALLBACKS, 1, labels)
        with runtime.tracer.start_as_current_span("fallback", attributes=labels):
            return await attempt(jobs)

    return fallback


def on_fallback(failure: BackendFailure) -> None:
    """``Router(on_fallback=...)``: remember why the primary failed (for the fallback span and counter)."""
    if current() is None:
        return
    _primary_failure.set(failure)
    trace.get_current_span().add_event("fallback", {FALLBACK_FROM: str(failure.backend),
                                                    ERROR_TYPE: failure.error_type})


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, BackendFailed):
        return exc.failure.error_type
    # The router cancels an attempt that outlives the primary timeout.
    return "TimeoutError" if isinstance(exc, asyncio.CancelledError) else type(exc).__name__


__all__ = ["traced_call", "on_fallback"]

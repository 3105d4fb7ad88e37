"""The public service's side of a request: its scope (set by middleware.RequestTelemetry), the request
metrics when it ends, and the GenAI operation span around the handler's work (``summarize``).

    POST /summarize                      SERVER   (BentoML, public service)
      validate                           INTERNAL (read + parse + validate the body)
      text_completion <model>            INTERNAL (gen_ai.* attributes, tokens, backend, fallback)
        generate torch / fallback ...    (observability/backend_calls.py)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace

from observability.names import (API_KEY_ID, BACKEND, CACHE_LOOKUPS, CACHE_RESULT, CACHE_STORE, CACHE_STORES,
                                 CACHED_BACKEND, ERROR_TYPE, ERRORS, GEN_AI_INPUT_MESSAGES, GEN_AI_INPUT_TOKENS,
                                 GEN_AI_MAX_TOKENS, GEN_AI_OPERATION, GEN_AI_OUTPUT_MESSAGES, GEN_AI_OUTPUT_TOKENS,
                                 GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL, GEN_AI_TOKEN_TYPE, HTTP_ROUTE,
                                 OPERATION, OUTCOME, REQUEST_DURATION, REQUEST_TOKENS, REQUESTS, REQUESTS_IN_FLIGHT)
from observability.providers import Runtime, current, mark_failed, messages
from serving.protocol import GenerationSettings
from serving.routing import Routed


@dataclass
class RequestState:
    route: str
    started: float = field(default_factory=time.perf_counter)
    started_ns: int = field(default_factory=time.time_ns)
    parent: Any = field(default_factory=otel_context.get_current)
    handler_started: bool = False
    status: int = 0
    cancelled: bool = False
    backend: str = "none"
    input_tokens: int = 0
    output_tokens: int = 0


_request: ContextVar[Optional[RequestState]] = ContextVar("summarizer_request", default=None)


def on_api_key(key_id: str) -> None:
    """The API key middleware's hook: the request's server span (BentoML's, around our middlewares) says
    which key sent it, by its id."""
    trace.get_current_span().set_attribute(API_KEY_ID, key_id)


def begin_request(route: str) -> tuple[RequestState, Any] | None:
    runtime = current()
    if runtime is None:
        return None
    state = RequestState(route=route)
    runtime.add(REQUESTS_IN_FLIGHT, 1, {HTTP_ROUTE: route})
    return state, _request.set(state)


def _outcome(state: RequestState) -> tuple[str, str | None]:
    """(outcome, error.type) of a finished request."""
    status = state.status
    if state.cancelled and not status:
        return "cancelled", "cancelled"
    if 200 <= status < 400:
        return "success", None
    if status in (400, 422):
        return "client_error", "validation"
    if 400 <= status < 500:
        return "client_error", str(status)
    if status == 503:
        # AdmissionControl answers 503 before our handler runs; the handler's 503 means no backend could.
        return ("unavailable", "unavailable") if state.handler_started else ("overloaded", "overloaded")
    return "error", "internal" if status >= 500 or not status else str(status)


def end_request(begun: tuple[RequestState, Any] | None) -> None:
    runtime = current()
    if begun is None:
        return
    state, token = begun
    try:
        _request.reset(token)
    except ValueError:  # reset from another context (should not happen with plain ASGI middleware)
        pass
    if runtime is None:
        return
    outcome, error_type = _outcome(state)
    if not state.handler_started and outcome == "client_error":
        _validation_span(runtime, state, time.time_ns(), error_type)
    route = {HTTP_ROUTE: state.route}
    runtime.add(REQUESTS_IN_FLIGHT, -1, route)
    labels = {**route, BACKEND: state.backend, OUTCOME: outcome}
    runtime.add(REQUESTS, 1, labels)
    runtime.record(REQUEST_DURATION, time.perf_counter() - state.started, labels)
    if error_type is not None:
        runtime.add(ERRORS, 1, {**route, ERROR_TYPE: error_type})
    elif state.input_tokens or state.output_tokens:
        labels = {**route, BACKEND: state.backend}
        runtime.record(REQUEST_TOKENS, state.input_tokens, {**labels, GEN_AI_TOKEN_TYPE: "input"})
        runtime.record(REQUEST_TOKENS, state.output_tokens, {**labels, GEN_AI_TOKEN_TYPE: "output"})


def _validation_span(runtime: Runtime, state: RequestState, end_ns: int, error_type: str | None) -> None:
    validate = runtime.tracer.start_span("validate", context=state.parent, start_time=state.started_ns,
                                        attributes={HTTP_ROUTE: state.route})
    if error_type is not None:
        mark_failed(validate, error_type)
    validate.end(end_time=end_ns)


class _Summarize:
    """What the handler reports about one request, onto its span and its request-scope metrics."""

    def __init__(self, runtime: Runtime | None, span: trace.Span | None, state: RequestState | None) -> None:
        self.runtime, self.span, self.state = runtime, span, state

    def routed(self, routed: Routed) -> None:
        """Record a ``serving.routing.Routed``: backend, fallback, tokens (and, opted in, the summaries)."""
        if self.runtime is None:
            return
        results = routed.results
        n_in = sum(r.input_tokens for r in results)
        n_out = sum(r.output_tokens for r in results)
        if self.state is not None:
            self.state.backend = str(routed.backend)
            self.state.input_tokens += n_in
            self.state.output_tokens += n_out
        if self.span is not None:
            self.span.set_attributes({
                BACKEND: str(routed.backend), "summarizer.fallback": bool(routed.fallback),
                GEN_AI_INPUT_TOKENS: n_in, GEN_AI_OUTPUT_TOKENS: n_out,
                "summarizer.truncated": sum(1 for r in results if r.truncated)})
            if results:
                self.span.set_attribute(GEN_AI_RESPONSE_MODEL, results[0].model)
                self.span.set_attribute("summarizer.engine", str(results[0].backend))
            if self.runtime.capture_content:
                self.span.set_attribute(GEN_AI_OUTPUT_MESSAGES, messages([r.summary for r in results], "assistant"))


    def cache_lookups(self, results: dict[str, int], store: str) -> None:
        """The response cache's lookups of this request's dialogues (``results``: hit/miss/error -> count):
        counted, and on the operation span as summarizer.cache.<result>. A request whose every dialogue was
        a hit is counted with backend "cache" in the request metrics."""
        if self.runtime is None:
            return
        for result, count in results.items():
            self.runtime.add(CACHE_LOOKUPS, count, {CACHE_RESULT: result, CACHE_STORE: store})
        if self.span is not None:
            self.span.set_attributes({f"summarizer.cache.{result}": count for result, count in results.items()})
        if self.state is not None and results.get("hit") and results.keys() == {"hit"}:
            self.state.backend = CACHED_BACKEND

    def cache_stores(self, results: dict[str, int], store: str) -> None:
        """What the response cache did with this request's new summaries (stored/too_large/error -> count)."""
        if self.runtime is None:
            return
        for result, count in results.items():
            self.runtime.add(CACHE_STORES, count, {CACHE_RESULT: result, CACHE_STORE: store})


@contextlib.contextmanager
def summarize(model: str, dialogues: Sequence[str], settings_: GenerationSettings) -> Iterator[_Summarize]:
    """The public service's span for one request's work after validation (the GenAI operation span)."""
    runtime = current()
    if runtime is None:
        yield _Summarize(None, None, None)
        return
    state = _request.get()
    if state is not None and not state.handler_started:
        state.handler_started = True
        _validation_span(runtime, state, time.time_ns(), None)
    attributes = {GEN_AI_OPERATION: OPERATION, GEN_AI_REQUEST_MODEL: model,
                  GEN_AI_MAX_TOKENS: settings_.max_new_tokens, "summarizer.num_beams": settings_.num_beams,
                  "summarizer.dialogues": len(dialogues)}
    if runtime.capture_content:
        attributes[GEN_AI_INPUT_MESSAGES] = messages(dialogues, "user")
    with runtime.tracer.start_as_current_span(f"{OPERATION} {model}", attributes=attributes) as operation:
        try:
            yield _Summarize(runtime, operation, state)
        except asyncio.CancelledError:  # BentoML's request timeout cancels the handler
            mark_failed(operation, "cancelled")
            raise
        except Exception as exc:
            mark_failed(operation, type(exc).__name__)
            raise

"""The backends' side: an ``EngineObserver`` that turns batches into spans and metrics.

Adaptive batching runs one ``generate`` for jobs of many requests, outside any of their contexts. Each job
carries the trace context of the attempt that sent it (observability/backend_calls.py); per request in
a batch this observer records, in that request's trace:

    queue                      INTERNAL (from when the public service sent it to when the batch started)
    text_completion <model>    INTERNAL (one generate() call: batch size, beams, padding, tokens; linked to
                                         the other requests generated with it)

and, per batch, the queue-wait, batch-size and batch-duration metrics.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link

from observability.names import (BACKEND, BATCH_DURATION, BATCH_SIZE, GEN_AI_INPUT_TOKENS, GEN_AI_MAX_TOKENS,
                                 GEN_AI_OPERATION, GEN_AI_OUTPUT_TOKENS, GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL,
                                 OPERATION, QUEUE_DURATION)
from observability.providers import Runtime, current, mark_failed
from serving.observers import EngineObserver, GenerationCall
from serving.protocol import BackendName, GenerationJob

MAX_LINKS = 16  # links from one request's generation span to the others of its batch


@dataclass(frozen=True)
class _Request:
    """The trace of the request (one attempt) that sent some jobs of a batch."""

    context: otel_context.Context
    span_id: int


def _request_of(job: GenerationJob) -> _Request | None:
    if not job.trace_context:
        return None
    context = propagate.extract(job.trace_context)
    span_context = trace.get_current_span(context).get_span_context()
    return _Request(context, span_context.span_id) if span_context.is_valid else None


def _by_request(jobs: Sequence[GenerationJob]) -> dict[int, tuple[_Request, list[int]]]:
    """Request span id -> (its trace, the indices of its jobs), in order of first appearance."""
    out: dict[int, tuple[_Request, list[int]]] = {}
    for i, job in enumerate(jobs):
        request = _request_of(job)
        if request is not None:
            out.setdefault(request.span_id, (request, []))[1].append(i)
    return out


class BatchTelemetry(EngineObserver):
    def batch_started(self, backend: BackendName, jobs: Sequence[GenerationJob]) -> None:
        runtime = current()
        if runtime is None:
            return
        now_ns, now = time.time_ns(), time.time()
        for job in jobs:
            runtime.record(QUEUE_DURATION, max(0.0, now - job.enqueued_at), {BACKEND: str(backend)})
        for request, indices in _by_request(jobs).values():
            sent_ns = int(min(jobs[i].enqueued_at for i in indices) * 1e9)
            queue = runtime.tracer.start_span("queue", context=request.context, start_time=min(sent_ns, now_ns),
                                              attributes={BACKEND: str(backend)})
            queue.end(end_time=now_ns)

    def generation_started(self, call: GenerationCall) -> Any:
        return (time.time_ns(), time.perf_counter()) if current() is not None else None

    def generation_finished(self, token: Any, call: GenerationCall, output_tokens: Sequence[int] | None,
                            error: BaseException | None) -> None:
        runtime = current()
        if runtime is None or token is None:
            return
        started_ns, started = token
        backend = {BACKEND: str(call.engine.backend)}
        runtime.record(BATCH_SIZE, len(call.jobs), backend)
        runtime.record(BATCH_DURATION, time.perf_counter() - started, backend)
        _generation_spans(runtime, call, output_tokens, started_ns, time.time_ns(), error)


def _generation_spans(runtime: Runtime, call: GenerationCall, output_tokens: Sequence[int] | None,
                      started_ns: int, ended_ns: int, error: BaseException | None) -> None:
    by_request = _by_request(call.jobs)
    if not by_request:
        return
    settings = call.settings
    common = {GEN_AI_OPERATION: OPERATION, GEN_AI_REQUEST_MODEL: call.model, GEN_AI_RESPONSE_MODEL: call.model,
              GEN_AI_MAX_TOKENS: settings.max_new_tokens, BACKEND: str(call.engine.backend),
              "summarizer.engine": str(call.engine), "summarizer.num_beams": settings.num_beams,
              "summarizer.batch.size": len(call.jobs), "summarizer.batch.requests": len(by_request),
              "summarizer.batch.input_tokens": sum(call.input_tokens),
              "summarizer.batch.padding_share": round(float(call.padding_share), 4)}
    requests = list(by_request.items())
    for span_id, (request, indices) in requests:
        attributes = {**common, "summarizer.dialogues": len(indices),
                      GEN_AI_INPUT_TOKENS: sum(call.input_tokens[i] for i in indices)}
        if output_tokens is not None:
            attributes[GEN_AI_OUTPUT_TOKENS] = sum(output_tokens[i] for i in indices)
        links = [Link(trace.get_current_span(other.context).get_span_context())
                 for other_id, (other, _) in requests[:MAX_LINKS + 1] if other_id != span_id][:MAX_LINKS]
        span = runtime.tracer.start_span(f"{OPERATION} {call.model}", context=request.context,
                                         start_time=started_ns, attributes=attributes, links=links)
        if error is not None:
            mark_failed(span, type(error).__name__)
        span.end(end_time=ended_ns)

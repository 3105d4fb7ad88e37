"""OpenTelemetry traces and metrics over OTLP: what the service imports (the modules beside it do the work).

    settings.py        OTEL_* variables: whether and how to export (off without an OTLP endpoint)
    providers.py       this process's tracer and meter providers (``start``, ``shutdown``), instruments
    names.py           metric, attribute and instrument names, and their Prometheus translations
    requests.py        the public service's request scope, request metrics and GenAI operation span
    backend_calls.py   the public service's calls to its backends: attempt and fallback spans, fallbacks
    batches.py         the backends' batches: queue and generation spans, batch metrics (an EngineObserver)

One trace per request, across the public service and the backends (BentoML's HTTP server spans continue
the caller's W3C ``traceparent``):

    POST /summarize                      SERVER   (BentoML, public service)
      validate                           INTERNAL (read + parse + validate the body)
      text_completion <model>            INTERNAL (gen_ai.* attributes, tokens, backend, fallback)
        generate torch                   CLIENT   (the primary's attempt; error status when it failed)
        fallback                         INTERNAL (only when the primary failed)
          generate onnx                  CLIENT
            POST /generate               SERVER   (BentoML, backend service)
            queue                        INTERNAL (waiting for the batch to start)
            text_completion <model>      INTERNAL (one generate() call: batch size, beams, padding, tokens)

Dialogue text and summaries are recorded (``gen_ai.input.messages`` / ``gen_ai.output.messages``) only
when ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
"""

from __future__ import annotations

from observability.backend_calls import on_fallback, traced_call
from observability.batches import BatchTelemetry
from observability.names import *  # noqa: F401,F403 - the names are part of this facade
from observability.providers import active, configure_bentoml, current, shutdown, span, start
from observability.requests import begin_request, end_request, on_api_key, summarize
from observability.settings import TelemetrySettings, enabled, settings


def engine_observer() -> BatchTelemetry:
    """What a backend passes to its engine (``BackendWorker(observer=...)``): batch spans and metrics."""
    return BatchTelemetry()


__all__ = ["BatchTelemetry", "TelemetrySettings", "active", "begin_request", "configure_bentoml", "current",
           "enabled", "end_request", "engine_observer", "on_api_key", "on_fallback", "settings", "shutdown", "span",
           "start", "summarize", "traced_call"]

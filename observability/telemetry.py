"""OpenTelemetry traces and metrics over OTLP, configured by the standard ``OTEL_*`` variables.

Off unless an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT``, or the per-signal
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``); when off, every
function here returns at its first line and no SDK object exists. When on, each BentoML worker process
(public service and backends) gets its own tracer and meter provider, exporting in background threads
with bounded queues and short timeouts: a collector that is down or slow costs dropped telemetry (counted
by the SDK's ``otel.sdk.*`` metrics), never a failed or slower request.

One trace per request: BentoML's HTTP server spans are routed through our tracer provider (it extracts
the caller's W3C ``traceparent``), BentoML's HTTP client injects the current span into calls to the
backends, and a backend job remembers the trace of the request that brought it, because adaptive batching
runs one ``generate`` call for jobs of many requests.

    POST /summarize                      SERVER   (BentoML, public service)
      validate                           INTERNAL (read + parse + validate the body)
      text_completion <model>            INTERNAL (gen_ai.* attributes, tokens, backend, fallback)
        generate torch                   CLIENT   (the primary's attempt; error status when it failed)
        fallback                         INTERNAL (only when the primary failed)
          generate onnx                  CLIENT
            POST /generate               SERVER   (BentoML, backend service)
              queue                      INTERNAL (waiting for the batch to start)
              text_completion <model>    INTERNAL (one generate() call: batch size, beams, padding, tokens)

Dialogue text and summaries are recorded (``gen_ai.input.messages`` / ``gen_ai.output.messages``) only
when ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from pydantic import PrivateAttr

from serving.protocol import GenerationJob

logger = logging.getLogger(__name__)

SERVICE_NAMESPACE = "dialogue-summarizer"
SCOPE = "summarizer"
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
DEFAULT_EXPORT_TIMEOUT_S = 5.0  # when OTEL_EXPORTER_OTLP_[SIGNAL_]TIMEOUT is unset (the SDK's own default is 10 s)
DEFAULT_METRIC_INTERVAL_MS = 15_000  # when OTEL_METRIC_EXPORT_INTERVAL is unset (the SDK's own default is 60 s)
DEFAULT_METRIC_TIMEOUT_MS = 5_000  # when OTEL_METRIC_EXPORT_TIMEOUT is unset (the SDK's own default is 30 s)
# Health, readiness, metrics and backend status calls are polled; tracing them would bury the requests.
UNTRACED_PATHS = (r"/readyz$", r"/livez$", r"/healthz$", r"/metrics$", r"/status$", r"/docs\.json$")

# Metric names as emitted over OTLP. After the usual OTLP -> Prometheus translation (dots to underscores,
# unit suffix, "_total" on counters) they read as in the comment; alerts.yml and the dashboard use those.
REQUESTS = "summarizer.requests"  # summarizer_requests_total
REQUEST_DURATION = "summarizer.request.duration"  # summarizer_request_duration_seconds_{bucket,sum,count}
REQUEST_TOKENS = "summarizer.request.tokens"  # summarizer_request_tokens_{bucket,sum,count}
REQUESTS_IN_FLIGHT = "summarizer.requests.in_flight"  # summarizer_requests_in_flight
ERRORS = "summarizer.errors"  # summarizer_errors_total
FALLBACKS = "summarizer.fallbacks"  # summarizer_fallbacks_total
QUEUE_DURATION = "summarizer.queue.duration"  # summarizer_queue_duration_seconds_{bucket,sum,count}
BATCH_SIZE = "summarizer.batch.size"  # summarizer_batch_size_{bucket,sum,count}
BATCH_DURATION = "summarizer.batch.duration"  # summarizer_batch_duration_seconds_{bucket,sum,count}
MODEL_INFO = "summarizer.model.info"  # summarizer_model_info

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0,
                     30.0, 60.0, 120.0)
TOKEN_BUCKETS = (8, 16, 32, 64, 128, 256, 400, 600, 800, 1000, 1200, 1600, 2048, 4096, 8192)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# Attribute keys (OpenTelemetry semantic conventions where one fits; ours under "summarizer.").
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
OPERATION = "text_completion"  # the GenAI well-known operation closest to seq2seq summarization
ERROR_TYPE = "error.type"
HTTP_ROUTE = "http.route"
BACKEND = "summarizer.backend"
OUTCOME = "summarizer.outcome"


# --------------------------------------------------------------------------------------------- settings


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "false", "0", "no", "off"):
        return False
    if raw in ("true", "1", "yes", "on"):
        return True
    raise ValueError(f"{name}={raw!r} must be true or false")


@dataclass(frozen=True)
class TelemetrySettings:
    traces: bool = False
    metrics: bool = False
    traces_protocol: str = "http/protobuf"
    metrics_protocol: str = "http/protobuf"
    capture_content: bool = False

    @property
    def enabled(self) -> bool:
        return self.traces or self.metrics

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TelemetrySettings:
        env = os.environ if env is None else env
        capture = _flag(env, CAPTURE_CONTENT_ENV)
        if _flag(env, "OTEL_SDK_DISABLED"):
            return cls(capture_content=capture)
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        default_protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip().lower() or "http/protobuf"

        def signal(name: str) -> tuple[bool, str]:
            exporter = env.get(f"OTEL_{name}_EXPORTER", "").strip().lower() or "otlp"
            if exporter not in ("otlp", "none"):
                raise ValueError(f"OTEL_{name}_EXPORTER={exporter!r}: the summarizer exports 'otlp' or 'none'")
            protocol = env.get(f"OTEL_EXPORTER_OTLP_{name}_PROTOCOL", "").strip().lower() or default_protocol
            if protocol not in ("grpc", "http/protobuf"):
                var = f"OTEL_EXPORTER_OTLP_{name}_PROTOCOL" if env.get(f"OTEL_EXPORTER_OTLP_{name}_PROTOCOL") \
                    else "OTEL_EXPORTER_OTLP_PROTOCOL"
                raise ValueError(f"{var}={protocol!r} must be 'grpc' or 'http/protobuf'")
            endpoint = env.get(f"OTEL_EXPORTER_OTLP_{name}_ENDPOINT", "").strip() or base
            return exporter == "otlp" and bool(endpoint), protocol

        traces, traces_protocol = signal("TRACES")
        metrics, metrics_protocol = signal("METRICS")
        return cls(traces, metrics, traces_protocol, metrics_protocol, capture)


_settings: TelemetrySettings | None = None


def settings() -> TelemetrySettings:
    global _settings
    if _settings is None:
        _settings = TelemetrySettings.from_env()
    return _settings


def enabled() -> bool:
    """Whether OTLP export is configured (read once per process from the environment)."""
    return settings().enabled


def active() -> bool:
    """Whether this process has started its providers (``start``)."""
    return _runtime is not None


# --------------------------------------------------------------------------------------------- setup


def configure_bentoml() -> bool:
    """Call at import of the service module, before BentoML builds its ASGI apps.

    BentoML creates an OpenTelemetry ASGI middleware per service with ``BentoMLContainer.tracer_provider``
    (its own ``tracing.*`` config, off by default). When OTLP traces are configured here, that provider
    becomes a proxy of the global one that ``start`` sets, so BentoML's server spans, which continue the
    caller's ``traceparent``, are exported with ours, in the same traces.
    """
    if not settings().traces:
        return False
    from opentelemetry.util.http import ExcludeList, get_excluded_urls

    from bentoml._internal.configuration.containers import BentoMLContainer

    BentoMLContainer.tracer_provider.set(trace.ProxyTracerProvider())
    excluded = get_excluded_urls("ASGI")  # OTEL_PYTHON_ASGI_EXCLUDED_URLS / OTEL_PYTHON_EXCLUDED_URLS
    BentoMLContainer.tracing_excluded_urls.set(excluded if excluded is not None and excluded._excluded_urls
                                               else ExcludeList(list(UNTRACED_PATHS)))
    return True


@dataclass
class _Runtime:
    tracer: trace.Tracer
    capture_content: bool
    tracer_provider: Any = None
    meter_provider: Any = None
    instruments: dict[str, Any] = field(default_factory=dict)
    model_info: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: float, attributes: Mapping[str, Any]) -> None:
        instrument = self.instruments.get(name)
        if instrument is not None:
            instrument.add(value, attributes)

    def record(self, name: str, value: float, attributes: Mapping[str, Any]) -> None:
        instrument = self.instruments.get(name)
        if instrument is not None:
            instrument.record(value, attributes)


_runtime: _Runtime | None = None
_lock = threading.Lock()


def _env_set(*names: str) -> bool:
    return any(os.environ.get(n, "").strip() for n in names)


def _span_exporter(protocol: str, meter_provider: Any):
    kwargs: dict[str, Any] = {"meter_provider": meter_provider}
    if not _env_set("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        kwargs["timeout"] = DEFAULT_EXPORT_TIMEOUT_S
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter(**kwargs)


def _metric_exporter(protocol: str):
    kwargs: dict[str, Any] = {}
    if not _env_set("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        kwargs["timeout"] = DEFAULT_EXPORT_TIMEOUT_S
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    return OTLPMetricExporter(**kwargs)


def _service_version() -> str:
    """The project's version (pyproject.toml), else the Bento's, else "dev"."""
    try:
        import tomllib
        from pathlib import Path

        with open(Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except Exception:  # noqa: BLE001 - not shipped in every Bento
        pass
    try:
        from bentoml._internal.context import server_context

        version = server_context.bento_version
    except Exception:  # noqa: BLE001 - outside a BentoML worker
        version = None
    return version if version and version != "not available" else "dev"


def start(*, service: str, component: str, model: str, backend: str, fallback: str | None = None,
          role: str | None = None, device: str | None = None) -> bool:
    """Set up this process's tracer and meter providers; a no-op (False) when no OTLP endpoint is set.

    Called from each BentoML service's ``__init__`` (one per worker process). ``service`` is the BentoML
    service name and the default ``service.name`` (``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``
    override it); the resource also names the version, the model tag and the backend.
    """
    global _runtime
    current = settings()
    if not current.enabled:
        return False
    with _lock:
        if _runtime is not None:
            return True
        from opentelemetry import metrics
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource

        # The SDK then counts what it drops (otel.sdk.processor.span.processed{error.type="queue_full"}) and
        # what exports fail (otel.sdk.exporter.span.exported{error.type=...}); set it to false to silence.
        os.environ.setdefault("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
        attributes = {"service.name": service, "service.namespace": SERVICE_NAMESPACE,
                      "service.version": _service_version(), "summarizer.component": component,
                      "summarizer.model": model, BACKEND: backend}
        if fallback:
            attributes["summarizer.fallback_backend"] = fallback
        resource = Resource.create(attributes).merge(OTELResourceDetector().detect())

        meter_provider = None
        if current.metrics:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            reader = PeriodicExportingMetricReader(
                _metric_exporter(current.metrics_protocol),
                export_interval_millis=None if _env_set("OTEL_METRIC_EXPORT_INTERVAL") else DEFAULT_METRIC_INTERVAL_MS,
                export_timeout_millis=None if _env_set("OTEL_METRIC_EXPORT_TIMEOUT") else DEFAULT_METRIC_TIMEOUT_MS)
            meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
            metrics.set_meter_provider(meter_provider)

        tracer_provider = None
        if current.traces:
            from opentelemetry.sdk.trace import TracerProvider, sampling
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            # Sampler from OTEL_TRACES_SAMPLER / _ARG (default parentbased_always_on); queue bounded by
            # OTEL_BSP_MAX_QUEUE_SIZE (2048): when full, spans are dropped and counted, never queued forever.
            # Per-span SDK metrics (otel.sdk.span.live/started) off: 3 measurements a span for little use.
            tracer_provider = TracerProvider(resource=resource, meter_provider=metrics.NoOpMeterProvider(),
                                             sampler=_WithoutAsgiEvents(sampling._get_from_env_or_default()))
            tracer_provider.add_span_processor(
                BatchSpanProcessor(_span_exporter(current.traces_protocol, meter_provider),
                                   meter_provider=meter_provider))
            trace.set_tracer_provider(tracer_provider)
            tracer = tracer_provider.get_tracer(SCOPE)
        else:
            tracer = trace.NoOpTracer()

        runtime = _Runtime(tracer=tracer, capture_content=current.capture_content,
                           tracer_provider=tracer_provider, meter_provider=meter_provider)
        if meter_provider is not None:
            _create_instruments(runtime, meter_provider.get_meter(SCOPE))
            if role is not None and role != "idle":
                runtime.model_info = {"summarizer.model": model, BACKEND: backend, "summarizer.role": role,
                                      "summarizer.device": device or "unknown"}
        _runtime = runtime
    try:  # BentoML's log lines carry trace ids once a provider is set; give them the service name too
        from bentoml._internal.context import trace_context

        trace_context.service_name = resource.attributes.get("service.name")
    except Exception:  # noqa: BLE001 - cosmetic
        pass
    logger.info("OpenTelemetry on for %s: traces %s, metrics %s", service,
                current.traces_protocol if current.traces else "off",
                current.metrics_protocol if current.metrics else "off")
    return True


class _WithoutAsgiEvents:
    """The configured sampler, minus the ASGI middleware's per-message "http send"/"http receive" spans
    (BentoML does not pass ``exclude_spans``): 4 to 6 zero-length spans per hop that explain nothing."""

    _SUFFIXES = (" http send", " http receive")

    def __init__(self, sampler) -> None:
        self.sampler = sampler

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                      trace_state=None):
        if kind == SpanKind.INTERNAL and name.endswith(self._SUFFIXES):
            from opentelemetry.sdk.trace.sampling import Decision, SamplingResult

            parent = trace.get_current_span(parent_context).get_span_context()
            return SamplingResult(Decision.DROP, None, parent.trace_state if parent.is_valid else None)
        return self.sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"WithoutAsgiEvents{{{self.sampler.get_description()}}}"


# The names above as Prometheus shows them after the usual OTLP translation (OpenTelemetry Collector's
# prometheus/prometheusremotewrite exporters, Prometheus' own OTLP receiver): dots become underscores, the
# unit is appended (s -> _seconds; {annotations} are dropped), counters end in _total, histograms expose
# _bucket/_sum/_count. Attributes become labels the same way (summarizer.backend -> summarizer_backend),
# service.name/service.namespace become job, service.instance.id instance.
PROMETHEUS_NAMES = {
    REQUESTS: "summarizer_requests_total",
    REQUEST_DURATION: "summarizer_request_duration_seconds",
    REQUEST_TOKENS: "summarizer_request_tokens",
    REQUESTS_IN_FLIGHT: "summarizer_requests_in_flight",
    ERRORS: "summarizer_errors_total",
    FALLBACKS: "summarizer_fallbacks_total",
    QUEUE_DURATION: "summarizer_queue_duration_seconds",
    BATCH_SIZE: "summarizer_batch_size",
    BATCH_DURATION: "summarizer_batch_duration_seconds",
    MODEL_INFO: "summarizer_model_info",
}
HISTOGRAMS = (REQUEST_DURATION, REQUEST_TOKENS, QUEUE_DURATION, BATCH_SIZE, BATCH_DURATION)


def _create_instruments(runtime: _Runtime, meter) -> None:
    from opentelemetry.metrics import Observation

    i = runtime.instruments
    i[REQUESTS] = meter.create_counter(
        REQUESTS, unit="{request}", description="Summarize requests answered, by route, backend and outcome.")
    i[REQUEST_DURATION] = meter.create_histogram(
        REQUEST_DURATION, unit="s", description="Time from receiving a summarize request to its response.",
        explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S)
    i[REQUEST_TOKENS] = meter.create_histogram(
        REQUEST_TOKENS, unit="{token}", description="Tokens of one successful request (all its dialogues), "
        "by gen_ai.token.type input or output.", explicit_bucket_boundaries_advisory=TOKEN_BUCKETS)
    i[REQUESTS_IN_FLIGHT] = meter.create_up_down_counter(
        REQUESTS_IN_FLIGHT, unit="{request}", description="Summarize requests being served now.")
    i[ERRORS] = meter.create_counter(
        ERRORS, unit="{error}", description="Requests that did not succeed, by error.type.")
    i[FALLBACKS] = meter.create_counter(
        FALLBACKS, unit="{fallback}", description="Requests whose primary backend failed and that went to "
        "the fallback backend, by from, to and error.type.")
    i[QUEUE_DURATION] = meter.create_histogram(
        QUEUE_DURATION, unit="s", description="Time a dialogue waited before the backend batch that "
        "generated it started.", explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S)
    i[BATCH_SIZE] = meter.create_histogram(
        BATCH_SIZE, unit="{dialogue}", description="Dialogues generated together in one generate() call.",
        explicit_bucket_boundaries_advisory=BATCH_BUCKETS)
    i[BATCH_DURATION] = meter.create_histogram(
        BATCH_DURATION, unit="s", description="Time of one generate() call (one batch) in a backend.",
        explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S)

    def model_info(_options):
        return [Observation(1, runtime.model_info)] if runtime.model_info else []

    meter.create_observable_gauge(MODEL_INFO, callbacks=[model_info],
                                  description="1 for the model each loaded backend serves (labels say which).")


def shutdown() -> None:
    """Flush and stop this process's providers (tests; the SDK also does it at exit)."""
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is None:
        return
    for provider in (runtime.tracer_provider, runtime.meter_provider):
        if provider is not None:
            provider.shutdown()


# --------------------------------------------------------------------------------------------- facade


@contextlib.contextmanager
def span(name: str, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any) -> Iterator[Optional[trace.Span]]:
    """A span around a block (None when tracing is off); exceptions mark it as an error and propagate."""
    runtime = _runtime
    if runtime is None:
        yield None
        return
    with runtime.tracer.start_as_current_span(name, kind=kind, attributes=attributes or None) as current:
        yield current


def _fail(current: trace.Span, error_type: str) -> None:
    current.set_attribute(ERROR_TYPE, error_type)
    current.set_status(Status(StatusCode.ERROR))


def _messages(texts: Sequence[str], role: str) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": t}]} for t in texts])


# -- request scope (set by middleware.RequestTelemetry in the public service) -------------------------------


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
_fallback_error: ContextVar[Optional[str]] = ContextVar("summarizer_fallback_error", default=None)


def begin_request(route: str) -> tuple[RequestState, Any] | None:
    runtime = _runtime
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
    runtime = _runtime
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


def _validation_span(runtime: _Runtime, state: RequestState, end_ns: int, error_type: str | None) -> None:
    current = runtime.tracer.start_span("validate", context=state.parent, start_time=state.started_ns,
                                        attributes={HTTP_ROUTE: state.route})
    if error_type is not None:
        _fail(current, error_type)
    current.end(end_time=end_ns)


class _Summarize:
    """What the handler reports about one request, onto its span and its request-scope metrics."""

    def __init__(self, runtime: _Runtime | None, current: trace.Span | None, state: RequestState | None) -> None:
        self.runtime, self.span, self.state = runtime, current, state

    def routed(self, routed: Any) -> None:
        """Record a ``serving.routing.Routed``: backend, fallback, tokens (and, opted in, the summaries)."""
        if self.runtime is None:
            return
        results = routed.results
        n_in = sum(r.input_tokens for r in results)
        n_out = sum(r.output_tokens for r in results)
        if self.state is not None:
            self.state.backend = routed.backend
            self.state.input_tokens += n_in
            self.state.output_tokens += n_out
        if self.span is not None:
            self.span.set_attributes({
                BACKEND: routed.backend, "summarizer.fallback": bool(routed.fallback),
                GEN_AI_INPUT_TOKENS: n_in, GEN_AI_OUTPUT_TOKENS: n_out,
                "summarizer.truncated": sum(1 for r in results if r.truncated)})
            if results:
                self.span.set_attribute(GEN_AI_RESPONSE_MODEL, results[0].model)
                self.span.set_attribute("summarizer.engine", results[0].backend)
            if self.runtime.capture_content:
                self.span.set_attribute(GEN_AI_OUTPUT_MESSAGES, _messages([r.summary for r in results], "assistant"))


@contextlib.contextmanager
def summarize(model: str, dialogues: Sequence[str], settings_: Any) -> Iterator[_Summarize]:
    """The public service's span for one request's work after validation (the GenAI operation span)."""
    runtime = _runtime
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
        attributes[GEN_AI_INPUT_MESSAGES] = _messages(dialogues, "user")
    with runtime.tracer.start_as_current_span(f"{OPERATION} {model}", attributes=attributes) as current:
        try:
            yield _Summarize(runtime, current, state)
        except Exception as exc:
            _fail(current, type(exc).__name__)
            raise


def traced_call(name: str, call: Any, fallback_for: str | None = None) -> Any:
    """Wrap a router backend call: a CLIENT span per attempt (the HTTP client injects it as traceparent);
    for the fallback backend, inside a ``fallback`` span, and counted in ``summarizer.fallbacks``."""

    async def attempt(jobs: list):
        runtime = _runtime
        if runtime is None:
            return await call(jobs)
        with runtime.tracer.start_as_current_span(f"generate {name}", kind=SpanKind.CLIENT,
                                                  attributes={BACKEND: name, "summarizer.dialogues": len(jobs)},
                                                  record_exception=False, set_status_on_exception=False) as current:
            try:
                return await call(jobs)
            except BaseException as exc:
                _fail(current, "timeout" if isinstance(exc, asyncio.CancelledError) else type(exc).__name__)
                raise

    if fallback_for is None:
        return attempt

    async def fallback(jobs: list):
        runtime = _runtime
        if runtime is None:
            return await call(jobs)
        error_type = _fallback_error.get() or "unknown"
        labels = {"summarizer.fallback.from": fallback_for, "summarizer.fallback.to": name, ERROR_TYPE: error_type}
        runtime.add(FALLBACKS, 1, labels)
        with runtime.tracer.start_as_current_span("fallback", attributes=labels):
            return await attempt(jobs)

    return fallback


def on_fallback(primary: str, reason: str) -> None:
    """``Router(on_fallback=...)``: note why the primary failed (for the fallback span and counter)."""
    if _runtime is None:
        return
    error_type = fallback_error_type(reason)
    _fallback_error.set(error_type)
    trace.get_current_span().add_event("fallback", {"summarizer.fallback.from": primary, ERROR_TYPE: error_type})


def fallback_error_type(reason: str) -> str:
    """Bounded error.type from ``Router``'s reason: "no answer within 30s" or "ExcType: message"."""
    if reason.startswith("no answer within"):
        return "timeout"
    head = reason.split(":", 1)[0].strip()
    return head if head.isidentifier() else "error"


# -- backend side -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Captured:
    context: Any
    span_id: int
    arrived_ns: int


class TracedGenerationJob(GenerationJob):
    """A ``GenerationJob`` that remembers the trace of the request that carried it.

    Adaptive batching runs one ``generate`` for jobs of many requests, outside any of their contexts; the
    job is validated inside its request (where BentoML has extracted the caller's ``traceparent``), so it
    captures that context then. Same fields on the wire as ``GenerationJob``.
    """

    _telemetry: Optional[_Captured] = PrivateAttr(default=None)

    def model_post_init(self, _context: Any) -> None:
        if _runtime is None:
            return
        current = otel_context.get_current()
        span_context = trace.get_current_span(current).get_span_context()
        if span_context.is_valid:
            self._telemetry = _Captured(current, span_context.span_id, time.time_ns())


def _captured(job: Any) -> _Captured | None:
    return getattr(job, "_telemetry", None)


def batch_started(backend: str, jobs: Sequence[Any]) -> None:
    """In a backend, as ``generate`` starts: a ``queue`` span per request (from its arrival here) and
    the queue-wait metric per dialogue (from when the public service sent it, like ``queue_wait_ms``)."""
    runtime = _runtime
    if runtime is None:
        return
    now_ns, now = time.time_ns(), time.time()
    seen: dict[int, int] = {}
    for job in jobs:
        runtime.record(QUEUE_DURATION, max(0.0, now - job.enqueued_at), {BACKEND: backend})
        captured = _captured(job)
        if captured is not None:
            seen[captured.span_id] = seen.get(captured.span_id, 0) + 1
            if seen[captured.span_id] == 1:
                current = runtime.tracer.start_span("queue", context=captured.context,
                                                    start_time=min(captured.arrived_ns, now_ns),
                                                    attributes={BACKEND: backend})
                current.end(end_time=now_ns)


class _Generation:
    def __init__(self) -> None:
        self.output_tokens: list[int] | None = None

    def done(self, output_tokens: Sequence[int]) -> None:
        self.output_tokens = list(output_tokens)


@contextlib.contextmanager
def generation(engine_backend: str, model: str, jobs: Sequence[Any], input_tokens: Sequence[int],
               settings_: Any, padding_share: float) -> Iterator[_Generation]:
    """Around one ``generate()`` call of an engine (one batch): for each request with jobs in it, a span in
    that request's trace (with links to the other requests of the batch); batch size and time metrics."""
    observed = _Generation()
    runtime = _runtime
    if runtime is None:
        yield observed
        return
    started_ns, started = time.time_ns(), time.perf_counter()
    error: BaseException | None = None
    try:
        yield observed
    except BaseException as exc:
        error = exc
        raise
    finally:
        backend = engine_backend.split("-", 1)[0]
        runtime.record(BATCH_SIZE, len(jobs), {BACKEND: backend})
        runtime.record(BATCH_DURATION, time.perf_counter() - started, {BACKEND: backend})
        _generation_spans(runtime, engine_backend, model, jobs, input_tokens, observed.output_tokens, settings_,
                          padding_share, started_ns, time.time_ns(), error)


def _generation_spans(runtime, engine_backend, model, jobs, input_tokens, output_tokens, settings_,
                      padding_share, started_ns, ended_ns, error) -> None:
    by_request: dict[int, tuple[_Captured, list[int]]] = {}
    for i, job in enumerate(jobs):
        captured = _captured(job)
        if captured is not None:
            by_request.setdefault(captured.span_id, (captured, []))[1].append(i)
    if not by_request:
        return
    common = {GEN_AI_OPERATION: OPERATION, GEN_AI_REQUEST_MODEL: model, GEN_AI_RESPONSE_MODEL: model,
              GEN_AI_MAX_TOKENS: settings_.max_new_tokens, BACKEND: engine_backend.split("-", 1)[0],
              "summarizer.engine": engine_backend, "summarizer.num_beams": settings_.num_beams,
              "summarizer.batch.size": len(jobs), "summarizer.batch.requests": len(by_request),
              "summarizer.batch.input_tokens": sum(input_tokens),
              "summarizer.batch.padding_share": round(float(padding_share), 4)}
    for span_id, (captured, indices) in by_request.items():
        attributes = {**common, "summarizer.dialogues": len(indices),
                      GEN_AI_INPUT_TOKENS: sum(input_tokens[i] for i in indices)}
        if output_tokens is not None:
            attributes[GEN_AI_OUTPUT_TOKENS] = sum(output_tokens[i] for i in indices)
        links = [Link(trace.get_current_span(c.context).get_span_context())
                 for other_id, (c, _) in list(by_request.items())[:17] if other_id != span_id][:16]
        current = runtime.tracer.start_span(f"{OPERATION} {model}", context=captured.context,
                                            start_time=started_ns, attributes=attributes, links=links)
        if error is not None:
            _fail(current, type(error).__name__)
        current.end(end_time=ended_ns)

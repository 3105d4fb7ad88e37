"""This process's OpenTelemetry providers: created by ``start`` from the OTEL_* settings, one per worker.

Each BentoML worker process (public service and backends) gets its own tracer and meter provider,
exporting in background threads with bounded queues and short timeouts: a collector that is down or slow
costs dropped telemetry (counted by the SDK's ``otel.sdk.*`` metrics), never a failed or slower request.
Until ``start`` ran (or when no endpoint is set), ``current()`` is None and every recording function of
this package returns at its first line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, MutableMapping, Optional, Sequence

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from observability.names import BACKEND, ERROR_TYPE, INSTRUMENTS, MODEL_INFO, SCOPE, SERVICE_NAMESPACE
from observability.settings import settings

logger = logging.getLogger(__name__)

DEFAULT_EXPORT_TIMEOUT_S = 5.0  # when OTEL_EXPORTER_OTLP_[SIGNAL]_TIMEOUT is unset (the SDK's own default is 10 s)
DEFAULT_METRIC_INTERVAL_MS = 15_000  # when OTEL_METRIC_EXPORT_INTERVAL is unset (the SDK's own default is 60 s)
DEFAULT_METRIC_TIMEOUT_MS = 5_000  # when OTEL_METRIC_EXPORT_TIMEOUT is unset (the SDK's own default is 30 s)
# Health, readiness, metrics and backend status calls are polled; tracing them would bury the requests.
UNTRACED_PATHS = (r"/readyz$", r"/livez$", r"/healthz$", r"/metrics$", r"/status$", r"/docs\.json$")


def configure_bentoml() -> bool:
    """Call at import of the service module, before BentoML builds its ASGI apps.

    BentoML creates an OpenTelemetry ASGI middleware per service with ``BentoMLContainer.tracer_provider``
    (its own ``tracing.*`` config, off by default). When OTLP traces are configured here, that provider
    becomes a proxy of the global one that ``start`` sets, so BentoML's server spans, which continue the
    caller's ``traceparent``, are exported with ours, in the same traces.
    """
    redact_credential_headers()
    if not settings().traces:
        return False
    from opentelemetry.util.http import ExcludeList, get_excluded_urls

    from bentoml._internal.configuration.containers import BentoMLContainer

    BentoMLContainer.tracer_provider.set(trace.ProxyTracerProvider())
    excluded = get_excluded_urls("ASGI")  # OTEL_PYTHON_ASGI_EXCLUDED_URLS / OTEL_PYTHON_EXCLUDED_URLS
    BentoMLContainer.tracing_excluded_urls.set(excluded if excluded is not None and excluded._excluded_urls
                                               else ExcludeList(list(UNTRACED_PATHS)))
    return True


# Request headers that carry credentials (the API key among them).
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "cookie", "set-cookie")
SANITIZE_HEADERS_ENV = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"


def redact_credential_headers(environ: MutableMapping[str, str] = os.environ) -> None:
    """An operator may record request headers on server spans (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_
    SERVER_REQUEST=".*"); the ASGI instrumentation then writes "[REDACTED]" for the headers of its sanitize
    list, which this extends with the credential headers, so an API key is never traced. Read by the
    instrumentation when BentoML builds its apps, after the service module is imported."""
    listed = [h.strip() for h in environ.get(SANITIZE_HEADERS_ENV, "").split(",") if h.strip()]
    environ[SANITIZE_HEADERS_ENV] = ",".join(dict.fromkeys([*listed, *CREDENTIAL_HEADERS]))


@dataclass
class Runtime:
    tracer: trace.Tracer
    capture_content: bool
    tracer_provider: Any = None
    meter_provider: Any = None
    instruments: dict[str, Any] = field(default_factory=dict)
    model_info: dict[str, str] = field(default_factory=dict)
    # Observable gauges other than model info: name -> what gives its (value, attributes) at each export
    # (``observe_gauge``).
    gauges: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: float, attributes: Mapping[str, Any]) -> None:
        instrument = self.instruments.get(name)
        if instrument is not None:
            instrument.add(value, attributes)

    def record(self, name: str, value: float, attributes: Mapping[str, Any]) -> None:
        instrument = self.instruments.get(name)
        if instrument is not None:
            instrument.record(value, attributes)


_runtime: Runtime | None = None
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
    # Enum members (serving.protocol's BackendName, Role, Device) go out as their plain values.
    backend, fallback, role, device = (None if v is None else str(v) for v in (backend, fallback, role, device))
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

        runtime = Runtime(tracer=tracer, capture_content=current.capture_content,
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


def _create_instruments(runtime: Runtime, meter) -> None:
    from opentelemetry.metrics import Observation

    def model_info(_options):
        return [Observation(1, runtime.model_info)] if runtime.model_info else []

    create = {"counter": meter.create_counter, "histogram": meter.create_histogram,
              "up_down_counter": meter.create_up_down_counter}
    def observed(name: str):
        def callback(_options):
            source = runtime.gauges.get(name)
            return [Observation(value, attributes) for value, attributes in source()] if source else []
        return callback

    for spec in INSTRUMENTS:
        if spec.kind == "gauge":
            meter.create_observable_gauge(spec.name, callbacks=[model_info if spec.name == MODEL_INFO
                                                                else observed(spec.name)],
                                          unit=spec.unit, description=spec.description)
            continue
        extra = {"explicit_bucket_boundaries_advisory": spec.buckets} if spec.buckets else {}
        runtime.instruments[spec.name] = create[spec.kind](spec.name, unit=spec.unit, description=spec.description,
                                                           **extra)


def observe_gauge(name: str, source) -> None:
    """Have the observable gauge ``name`` report ``source()`` (a list of (value, attributes)) at each export;
    nothing when telemetry is off."""
    if _runtime is not None:
        _runtime.gauges[name] = source


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


def current() -> Optional[Runtime]:
    """This process's providers, or None when telemetry is off or not started."""
    return _runtime


def active() -> bool:
    """Whether this process has started its providers (``start``)."""
    return _runtime is not None


@contextlib.contextmanager
def span(name: str, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any) -> Iterator[Optional[trace.Span]]:
    """A span around a block (None when tracing is off); exceptions mark it as an error and propagate."""
    runtime = _runtime
    if runtime is None:
        yield None
        return
    with runtime.tracer.start_as_current_span(name, kind=kind, attributes=attributes or None) as started:
        yield started


def mark_failed(failed: trace.Span, error_type: str) -> None:
    failed.set_attribute(ERROR_TYPE, error_type)
    failed.set_status(Status(StatusCode.ERROR))


def messages(texts: Sequence[str], role: str) -> str:
    """GenAI message content (only recorded when content capture is on)."""
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": t}]} for t in texts])

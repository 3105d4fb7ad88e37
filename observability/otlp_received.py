"""What an OTLP collector received, decoded with opentelemetry-proto into spans and metric points.

``decode_traces`` / ``decode_metrics`` read the protobuf body of an OTLP/HTTP export request
(``ExportTraceServiceRequest`` / ``ExportMetricsServiceRequest``, the bytes on the wire); ``Received``
holds the result and answers the questions tests ask: the latest value of a series, a trace's spans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

Attributes = dict[str, Any]


class _Present:
    """``Received.latest(name, key=ANY)``: the point has attribute ``key``, whatever its value."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Present()


@dataclass
class SpanEvent:
    name: str
    time_ns: int
    attributes: Attributes = field(default_factory=dict)


@dataclass
class SpanLink:
    trace_id: str
    span_id: str
    attributes: Attributes = field(default_factory=dict)


@dataclass
class Span:
    trace_id: str = ""
    span_id: str = ""
    parent_id: str = ""  # "" for a root span
    name: str = ""
    kind: str = ""  # SERVER, CLIENT, INTERNAL, PRODUCER, CONSUMER
    start_ns: int = 0
    end_ns: int = 0
    status: str = ""  # UNSET, OK, ERROR
    attributes: Attributes = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    links: list[SpanLink] = field(default_factory=list)
    resource: Attributes = field(default_factory=dict)
    scope: str = ""

    @property
    def service(self) -> str:
        return str(self.resource.get("service.name", ""))

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@dataclass
class Point:
    """One data point of one metric in one export."""

    name: str
    unit: str
    kind: str  # Sum, Gauge, Histogram (the OTLP data type)
    monotonic: bool = False  # a Sum from a counter (not an up-down counter)
    attributes: Attributes = field(default_factory=dict)
    resource: Attributes = field(default_factory=dict)
    timestamp: int = 0
    value: float | None = None
    count: int | None = None
    sum: float | None = None
    bounds: list[float] = field(default_factory=list)
    buckets: list[int] = field(default_factory=list)

    def series(self) -> tuple:
        """Identity of the time series: resource instance, metric, attributes."""
        return (self.resource.get("service.instance.id"), self.name, tuple(sorted(self.attributes.items())))


@dataclass
class Received:
    spans: list[Span] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)

    def metric_names(self) -> set[str]:
        return {p.name for p in self.points}

    def latest(self, name: str, **attributes: Any) -> list[Point]:
        """The last exported point of each series of ``name`` whose attributes include ``attributes``
        (cumulative temporality: the last point holds the total); a value ``ANY`` only asks for the key."""
        last: dict[tuple, Point] = {}
        for p in self.points:
            if p.name == name and all(k in p.attributes if v is ANY else p.attributes.get(k) == v
                                      for k, v in attributes.items()):
                key = p.series()
                if key not in last or p.timestamp >= last[key].timestamp:
                    last[key] = p
        return list(last.values())

    def total(self, name: str, **attributes: Any) -> float:
        """Sum over series of the latest value (counters, gauges) or count (histograms)."""
        return sum((p.count if p.kind == "Histogram" else p.value) or 0 for p in self.latest(name, **attributes))

    def histogram_sum(self, name: str, **attributes: Any) -> float:
        return sum(p.sum or 0.0 for p in self.latest(name, **attributes))

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]


# --------------------------------------------------------------------------------------------- decoding


def value_of(value: AnyValue) -> Any:
    """An OTLP attribute value as Python: str, bool, int, float, bytes, list or dict."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    raw = getattr(value, which)
    if which == "array_value":
        return [value_of(v) for v in raw.values]
    if which == "kvlist_value":
        return attributes_of(raw.values)
    return raw


def attributes_of(pairs: list[KeyValue]) -> Attributes:
    return {kv.key: value_of(kv.value) for kv in pairs}


def decode_traces(body: bytes) -> list[Span]:
    """The spans of one ``ExportTraceServiceRequest`` (protobuf bytes)."""
    request = ExportTraceServiceRequest.FromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            spans += [_span(s, resource, scope_spans.scope.name) for s in scope_spans.spans]
    return spans


def _span(span: trace_pb2.Span, resource: Attributes, scope: str) -> Span:
    return Span(
        trace_id=span.trace_id.hex(), span_id=span.span_id.hex(), parent_id=span.parent_span_id.hex(),
        name=span.name, kind=trace_pb2.Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
        start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
        status=trace_pb2.Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
        attributes=attributes_of(span.attributes),
        events=[SpanEvent(e.name, e.time_unix_nano, attributes_of(e.attributes)) for e in span.events],
        links=[SpanLink(link.trace_id.hex(), link.span_id.hex(), attributes_of(link.attributes))
               for link in span.links],
        resource=resource, scope=scope)


def decode_metrics(body: bytes) -> list[Point]:
    """The data points of one ``ExportMetricsServiceRequest`` (protobuf bytes); exponential histograms
    and summaries (which the summarizer does not emit) are left out."""
    request = ExportMetricsServiceRequest.FromString(body)
    points = []
    for resource_metrics in request.resource_metrics:
        resource = attributes_of(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points += _points(metric, resource)
    return points


def _points(metric: metrics_pb2.Metric, resource: Attributes) -> list[Point]:
    which = metric.WhichOneof("data")
    if which in ("sum", "gauge"):
        data = getattr(metric, which)
        monotonic = which == "sum" and data.is_monotonic
        return [Point(metric.name, metric.unit, which.capitalize(), monotonic, attributes_of(p.attributes), resource,
                      p.time_unix_nano, value=float(getattr(p, p.WhichOneof("value") or "as_double")))
                for p in data.data_points]
    if which == "histogram":
        return [Point(metric.name, metric.unit, "Histogram", False, attributes_of(p.attributes), resource,
                      p.time_unix_nano, count=p.count, sum=p.sum, bounds=list(p.explicit_bounds),
                      buckets=list(p.bucket_counts))
                for p in metric.histogram.data_points]
    return []

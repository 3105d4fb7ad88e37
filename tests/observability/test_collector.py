"""The test collector itself: rotel forwarding to an OTLP/HTTP sink whose bodies are decoded with
opentelemetry-proto. What an OpenTelemetry SDK sends arrives field for field; a stop leaves nothing."""

from __future__ import annotations

import socket

import psutil
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from observability.collector import Collector


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_a_stop_leaves_no_rotel_process_and_frees_both_ports(tmp_path):
    collector = Collector(tmp_path / "collector.log").start()
    processes = collector.process.descendants()
    assert any(p.name().startswith("rotel") for p in processes)
    assert not port_free(collector.grpc_port) and not port_free(collector.http_port)
    collector.stop()
    assert not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert port_free(collector.grpc_port) and port_free(collector.http_port)


def test_what_an_sdk_sends_arrives_field_for_field(collector):
    """Spans over OTLP/gRPC and metrics over OTLP/HTTP, through rotel, decoded back to the values sent."""
    resource = Resource.create({"service.name": "probe", "service.instance.id": "i-1"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(GrpcSpanExporter(endpoint=collector.grpc_endpoint,
                                                                            insecure=True)))
    tracer = tracer_provider.get_tracer("probe-scope")
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        other = tracer.start_span("other")
        other.end()
        with tracer.start_as_current_span("child", kind=SpanKind.CLIENT, links=[Link(other.get_span_context())],
                                          attributes={"s": "x", "b": True, "i": 7, "f": 0.5, "l": [1, 2]}) as child:
            child.add_event("happened", {"n": 3})
            child.set_status(Status(StatusCode.ERROR))
    tracer_provider.shutdown()

    reader = PeriodicExportingMetricReader(HttpMetricExporter(endpoint=f"{collector.http_endpoint}/v1/metrics"),
                                           export_interval_millis=60_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader], views=[
        View(instrument_name="h", aggregation=ExplicitBucketHistogramAggregation((1.0, 10.0)))])
    meter = meter_provider.get_meter("probe-scope")
    meter.create_counter("c", unit="{thing}").add(3, {"k": "v"})
    meter.create_up_down_counter("u").add(-2)
    histogram = meter.create_histogram("h", unit="s")
    for value in (0.5, 5.0, 50.0):
        histogram.record(value)
    meter.create_observable_gauge("g", callbacks=[lambda _options: [Observation(1.5, {"role": "primary"})]])
    meter_provider.shutdown()  # exports once more on the way out

    received = collector.wait_for(lambda r: len(r.spans) == 3 and {"c", "u", "h", "g"} <= r.metric_names(),
                                  timeout_s=20)
    spans = {s.name: s for s in received.spans}
    ids = parent.get_span_context()
    assert spans["parent"].trace_id == f"{ids.trace_id:032x}" and spans["parent"].span_id == f"{ids.span_id:016x}"
    assert spans["parent"].parent_id == "" and spans["parent"].kind == "SERVER"
    c = spans["child"]
    assert c.parent_id == spans["parent"].span_id and c.kind == "CLIENT" and c.status == "ERROR"
    assert c.attributes == {"s": "x", "b": True, "i": 7, "f": 0.5, "l": [1, 2]}
    assert [(e.name, e.attributes) for e in c.events] == [("happened", {"n": 3})]
    assert [(link.trace_id, link.span_id) for link in c.links] == [(spans["other"].trace_id, spans["other"].span_id)]
    assert c.service == "probe" and c.scope == "probe-scope" and c.end_ns > c.start_ns

    [counter] = received.latest("c")
    assert (counter.kind, counter.monotonic, counter.unit, counter.attributes, counter.value) == \
        ("Sum", True, "{thing}", {"k": "v"}, 3.0)
    [up_down] = received.latest("u")
    assert (up_down.kind, up_down.monotonic, up_down.value) == ("Sum", False, -2.0)
    [hist] = received.latest("h")
    assert (hist.kind, hist.unit, hist.count, hist.sum, hist.bounds, hist.buckets) == \
        ("Histogram", "s", 3, 55.5, [1.0, 10.0], [1, 1, 1])
    [gauge] = received.latest("g")
    assert (gauge.kind, gauge.value, gauge.attributes, gauge.resource["service.instance.id"]) == \
        ("Gauge", 1.5, {"role": "primary"}, "i-1")
    assert received.total("c", k="v") == 3 and received.total("h") == 3 and received.histogram_sum("h") == 55.5

"""Telemetry never costs a request: a collector that is gone or hangs costs spans, not time, and what is
lost is counted. Message content reaches telemetry only when the operator opts in."""

from __future__ import annotations

import json

import pytest

from observability import telemetry
from observability.collector import ANY
from tests.observability.otel_checks import one
from tests.observability.scenarios import EXPORTED, SPAN_QUEUE, run_python


def test_requests_do_not_wait_for_a_missing_collector_and_telemetry_resumes(fallback_run):
    before = max(a.seconds for a in fallback_run.answers if a.status == 200)
    assert [a.status for a in fallback_run.without_collector] == [200, 200]
    assert max(a.seconds for a in fallback_run.without_collector) < before + 2.0
    # A collector on the same ports again: the cumulative counts include the requests served meanwhile,
    # and each process counted the exports that failed while it was gone.
    recovered = fallback_run.recovered
    answered = len(fallback_run.answers) + len(fallback_run.batch_answers) + len(fallback_run.without_collector)
    assert recovered.total(telemetry.REQUESTS) == answered
    for name in EXPORTED:
        failed = recovered.latest(name, **{telemetry.ERROR_TYPE: ANY})
        assert {p.resource["service.name"] for p in failed} >= {"dialogue_summarizer"}, name
        assert all(p.value >= 1 for p in failed)


def test_bentomls_prometheus_endpoint_is_unaffected(fallback_run):
    assert "bentoml_service_request_total" in fallback_run.prometheus_text


def test_a_hanging_collector_costs_spans_not_time_and_drops_are_counted(export_stall_run):
    result = export_stall_run.result
    assert result["queued"] <= SPAN_QUEUE  # memory bounded by OTEL_BSP_MAX_QUEUE_SIZE, whatever the collector does
    assert result["mean_s"] < 0.002 and result["max_s"] < 0.25  # a span never waits for the exporter
    assert result["shutdown_s"] < 10  # and stopping the process waits a bounded time
    dropped = export_stall_run.received.total("otel.sdk.processor.span.processed",
                                              **{telemetry.ERROR_TYPE: "queue_full"})
    assert 1000 < dropped <= 5000


CAPTURE_SCRIPT = """
from observability import telemetry
from serving.protocol import GenerationResult, GenerationSettings
from serving.routing import Routed
telemetry.start(service="t", component="api", model="m:1", backend="onnx")
settings = GenerationSettings(num_beams=1, max_new_tokens=8, min_new_tokens=0, length_penalty=1.0,
                              no_repeat_ngram_size=0)
result = GenerationResult(summary="Amanda bakes cookies for Jerry.", input_tokens=5, output_tokens=7,
                          truncated=False, backend="onnx-cpu", model="m:1", batch_size=1, queue_wait_ms=0.0,
                          generate_ms=1.0, padding_share=0.0)
with telemetry.summarize("m:1", ["Amanda: cookies?"], settings) as observed:
    observed.routed(Routed([result], "onnx", fallback=False))
telemetry.shutdown()
"""


@pytest.mark.timeout(60)
def test_dialogue_and_summary_only_with_the_operators_opt_in(collector, tmp_path):
    run_python(CAPTURE_SCRIPT, {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
                                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"},
               tmp_path / "capture.log", timeout_s=50)
    received = collector.wait_for(lambda r: r.spans, timeout_s=20)
    span = one(received.spans, name="text_completion m:1")
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Amanda: cookies?"}]}]
    assert "Amanda bakes cookies" in span.attributes["gen_ai.output.messages"]
    assert (span.attributes["gen_ai.usage.input_tokens"], span.attributes["gen_ai.usage.output_tokens"]) == (5, 7)

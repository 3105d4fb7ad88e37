"""The telemetry module without a collector: settings from the OTEL_* variables, the fallback cause's
error.type, and a facade that does nothing (and costs nothing) when telemetry is off."""

from __future__ import annotations

import asyncio

import pytest

from observability import telemetry
from serving.routing import Backend, Router


def test_off_without_an_endpoint_and_settings_errors_name_the_variable():
    assert not telemetry.TelemetrySettings.from_env({}).enabled
    assert not telemetry.TelemetrySettings.from_env({"OTEL_SERVICE_NAME": "x"}).enabled
    on = telemetry.TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
                                               "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert on.traces and on.metrics and on.traces_protocol == "grpc" and not on.capture_content
    split = telemetry.TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces",
                                                  "OTEL_METRICS_EXPORTER": "none"})
    assert split.traces and not split.metrics and split.traces_protocol == "http/protobuf"
    assert not telemetry.TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
                                                     "OTEL_SDK_DISABLED": "true"}).enabled
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        telemetry.TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c",
                                              "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER"):
        telemetry.TelemetrySettings.from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ValueError, match="OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"):
        telemetry.TelemetrySettings.from_env({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "maybe"})


def test_fallback_error_type_reads_the_routers_reasons():
    """Pins the contract with serving.routing: its reason strings map to a bounded error.type."""
    reasons = []

    async def fails(jobs):
        raise RuntimeError("injected")

    async def hangs(jobs):
        await asyncio.sleep(10)

    async def works(jobs):
        return []

    for primary, timeout in ((fails, 5.0), (hangs, 0.1)):
        router = Router(Backend("torch", primary), Backend("onnx", works), timeout,
                        on_fallback=lambda name, reason: reasons.append(reason))
        asyncio.run(router.generate([]))
    assert [telemetry.fallback_error_type(r) for r in reasons] == ["RuntimeError", "timeout"]
    assert telemetry.fallback_error_type("something odd happened") == "error"


def test_facade_is_inert_when_off():
    assert not telemetry.active()
    with telemetry.summarize("m:1", ["text"], type("S", (), {"max_new_tokens": 8, "num_beams": 1})()) as observed:
        observed.routed(None)  # not even looked at
    job = telemetry.TracedGenerationJob(text="x", settings={"num_beams": 1, "max_new_tokens": 4, "min_new_tokens": 0,
                                                             "length_penalty": 1.0, "no_repeat_ngram_size": 0},
                                        enqueued_at=0.0)
    assert job._telemetry is None and job.model_dump()["text"] == "x"
    telemetry.batch_started("onnx", [job])
    with telemetry.generation("onnx-cpu", "m:1", [job], [3], job.settings, 0.0) as gen:
        gen.done([2])

"""The telemetry module without a collector: settings from the OTEL_* variables, and a facade that does
nothing (and costs nothing) when telemetry is off. (The fallback's error.type is the router's typed
BackendFailure: tests/serving/test_routing.py.)"""

from __future__ import annotations

import pytest

from observability import telemetry
from serving.observers import GenerationCall
from serving.protocol import BackendName, EngineName, GenerationJob, GenerationSettings


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


def test_facade_is_inert_when_off():
    assert not telemetry.active()
    settings = GenerationSettings(num_beams=1, max_new_tokens=4, min_new_tokens=0, length_penalty=1.0,
                                  no_repeat_ngram_size=0)
    with telemetry.summarize("m:1", ["text"], settings) as observed:
        observed.routed(None)  # not even looked at
    job = GenerationJob(text="x", settings=settings, enqueued_at=0.0)
    observer = telemetry.engine_observer()
    observer.batch_started(BackendName.ONNX, [job])
    call = GenerationCall(EngineName.ONNX_CPU, "m:1", [job], [3], settings, 0.0)
    token = observer.generation_started(call)
    assert token is None
    observer.generation_finished(token, call, [2], None)
    assert job.trace_context == {} and not telemetry.active()

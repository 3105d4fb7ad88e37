"""OpenTelemetry over OTLP, checked against a real collector (rotel) and a real ``bentoml serve``.

The collector logs everything it receives; the assertions read that log: trace ids and parent links
across the public service and the backends, span attributes, and metric values compared with what the
responses said. Then the collector is stopped and requests must still succeed, as fast as before.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from observability import telemetry
from observability.collector import Collector, Received, Span
from serving.observers import GenerationCall
from serving.protocol import BackendName, EngineName, GenerationJob, GenerationSettings
from tests.server import REPO_ROOT, ServedSummarizer

DIALOGUES = [
    "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)",
    "Tom: Lunch at noon at the Zanzibar place?\nAnna: OK, see you there.",
    "Lena: Did the parcel arrive?\nMax: Yes, this morning, thanks a lot!\nLena: Great.",
]
SECRET_WORDS = ("cookies", "Zanzibar", "parcel")  # must never reach telemetry (content capture is opt-in)
PUBLIC, ONNX, TORCH = "dialogue_summarizer", "summarizer_onnx", "summarizer_torch"


def traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def otel_env(collector: Collector, protocol: str, **extra: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint(protocol), "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_METRIC_EXPORT_INTERVAL": "500", "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test", **extra}


async def _post(client: httpx.AsyncClient, path: str, body: dict, header: str | None) -> tuple[int, dict, float]:
    started = time.perf_counter()
    resp = await client.post(path, json=body, headers={"traceparent": header} if header else {})
    return resp.status_code, resp.json(), time.perf_counter() - started


def send(url: str, requests: list[tuple[str, dict, str | None]]) -> list[tuple[int, dict, float]]:
    """Send the requests concurrently (so that the backend may batch them); (status, body, seconds) each."""
    async def run():
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            return await asyncio.gather(*(_post(client, p, b, h) for p, b, h in requests))
    return asyncio.run(run())


def tokens(body: dict) -> tuple[int, int]:
    summaries = body.get("summaries", [body])
    return sum(s["input_tokens"] for s in summaries), sum(s["output_tokens"] for s in summaries)


def one(spans: list[Span], **where) -> Span:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in where.items())]
    assert len(found) == 1, f"expected one span with {where}, got {[(s.service, s.name, s.kind) for s in found]}"
    return found[0]


def children(spans: list[Span], parent: Span, **where) -> list[Span]:
    return [s for s in spans if s.parent_id == parent.span_id and all(getattr(s, k) == v for k, v in where.items())]


def assert_no_content(received: Received) -> None:
    for s in received.spans:
        for value in [*s.attributes.values(), *(v for e in s.events for v in e["attributes"].values())]:
            assert not any(w in str(value) for w in SECRET_WORDS), f"dialogue text in span {s.name}: {value!r}"


def assert_backend_side(spans: list[Span], client: Span, service: str, model: str, n_in: int, n_out: int,
                        dialogues: int) -> None:
    """The backend's server span continues the public service's client span; the job carried that span's
    context, so the backend's queue and generation spans are its children too, within the server span's time."""
    server = one(children(spans, client), kind="SERVER")
    assert server.service == service
    assert one(children(spans, client), name="queue").service == service
    generations = children(spans, client, name=f"text_completion {model}")
    assert generations and all(g.service == service for g in generations)
    for g in generations:
        a = g.attributes
        assert a["gen_ai.operation.name"] == "text_completion" and a["gen_ai.request.model"] == model
        assert a["summarizer.batch.size"] >= a["summarizer.dialogues"] >= 1
        assert a["summarizer.batch.requests"] >= 1 and a["summarizer.num_beams"] >= 1
        assert 0.0 <= a["summarizer.batch.padding_share"] < 1.0
        assert g.start_ns >= server.start_ns and g.end_ns <= server.end_ns
    assert sum(g.attributes["summarizer.dialogues"] for g in generations) == dialogues
    assert sum(g.attributes["gen_ai.usage.input_tokens"] for g in generations) == n_in
    assert sum(g.attributes["gen_ai.usage.output_tokens"] for g in generations) == n_out


def public_side(spans: list[Span], caller_span: str, model: str) -> tuple[Span, Span]:
    """The public server span continues the caller's; validation and the GenAI operation span below it."""
    server = one(spans, service=PUBLIC, kind="SERVER")
    assert server.parent_id == caller_span
    validate = one(children(spans, server), name="validate")
    assert validate.status != "ERROR"
    operation = one(children(spans, server), name=f"text_completion {model}")
    assert validate.end_ns <= operation.start_ns
    return server, operation


@pytest.fixture
def collector(tmp_path):
    with Collector(tmp_path / "collector.log") as running:
        yield running


@pytest.mark.timeout(300)
def test_grpc_one_trace_per_request_with_fallback_and_metrics(collector, tiny_model, serve_env, tmp_path):
    env = serve_env(tiny_model, SUMMARIZER_PRIMARY="torch", SUMMARIZER_FALLBACK="onnx",
                    SUMMARIZER_INJECT_FAULT="torch:error", **otel_env(collector, "grpc"))
    with ServedSummarizer(env, tmp_path / "serve.log") as server:
        sent = [("/summarize", {"dialogue": DIALOGUES[0]}, traceparent()),
                ("/summarize", {"dialogue": DIALOGUES[1]}, traceparent()),
                ("/summarize_batch", {"dialogues": DIALOGUES[1:]}, traceparent()),
                ("/summarize", {"dialogue": "   "}, traceparent())]  # rejected by validation: 400
        answers = send(server.url, [(path, body, tp[0]) for path, body, tp in sent])
        assert [status for status, _, _ in answers] == [200, 200, 200, 400]
        ok = [(tp, body) for (_, _, tp), (status, body, _) in zip(sent, answers) if status == 200]
        assert all(s["fallback"] for _, body in ok for s in body.get("summaries", [body]))

        received = collector.wait_for(lambda r: all(
            any(s.service == ONNX and s.name.startswith("text_completion") for s in r.trace(tp[1]))
            for tp, _ in ok) and r.total(telemetry.REQUESTS) >= 4, timeout_s=60)
        for (header, trace_id, caller), body in ok:
            spans = received.trace(trace_id)
            _, operation = public_side(spans, caller, tiny_model)
            n_in, n_out = tokens(body)
            a = operation.attributes
            assert a["gen_ai.request.model"] == tiny_model and a["summarizer.backend"] == "onnx"
            assert a["summarizer.fallback"] is True
            assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (n_in, n_out)
            # The primary's attempt failed; its backend's server span is in the same trace.
            attempt = one(children(spans, operation), name="generate torch", kind="CLIENT")
            assert attempt.status == "ERROR" and attempt.attributes["error.type"]
            assert one(children(spans, attempt), kind="SERVER").service == TORCH
            fallback = one(children(spans, operation), name="fallback")
            assert fallback.attributes["summarizer.fallback.from"] == "torch"
            assert fallback.attributes["summarizer.fallback.to"] == "onnx"
            assert fallback.start_ns >= attempt.end_ns
            client = one(children(spans, fallback), name="generate onnx", kind="CLIENT")
            assert_backend_side(spans, client, ONNX, tiny_model, n_in, n_out, len(body.get("summaries", [body])))
            assert {s.resource["deployment.environment.name"] for s in spans} == {"test"}  # OTEL_RESOURCE_ATTRIBUTES
        # The rejected request: its trace has the server span and a failed validation, nothing else.
        _, rejected_trace, rejected_caller = sent[3][2]
        spans = received.trace(rejected_trace)
        rejected = one(spans, service=PUBLIC, kind="SERVER")
        assert rejected.parent_id == rejected_caller
        assert one(children(spans, rejected), name="validate").attributes["error.type"] == "validation"
        assert not [s for s in spans if s.name.startswith("text_completion")]
        assert_no_content(received)

        # Resources name the service, version, model and backend.
        resources = {s.service: s.resource for s in received.spans}
        assert resources[PUBLIC]["summarizer.model"] == tiny_model
        assert resources[PUBLIC]["summarizer.backend"] == "torch" and resources[ONNX]["summarizer.backend"] == "onnx"
        assert resources[PUBLIC]["service.version"] == resources[ONNX]["service.version"] != ""
        assert resources[PUBLIC]["service.namespace"] == "dialogue-summarizer"

        # Metrics: counts and token totals equal what was sent and answered.
        n_in = sum(tokens(body)[0] for _, body in ok)
        n_out = sum(tokens(body)[1] for _, body in ok)
        received = collector.wait_for(lambda r: r.total(telemetry.REQUESTS) == 4
                                      and r.total(telemetry.REQUEST_TOKENS, **{"gen_ai.token.type": "output"}) == 3
                                      and r.total(telemetry.QUEUE_DURATION, **{"summarizer.backend": "onnx"}) == 4,
                                      timeout_s=30)
        assert received.total(telemetry.REQUESTS, **{"summarizer.outcome": "success", "summarizer.backend": "onnx",
                                                     "http.route": "/summarize"}) == 2
        assert received.total(telemetry.REQUESTS, **{"summarizer.outcome": "success",
                                                     "http.route": "/summarize_batch"}) == 1
        assert received.total(telemetry.REQUESTS, **{"summarizer.outcome": "client_error"}) == 1
        assert received.total(telemetry.REQUEST_DURATION) == 4
        assert received.total(telemetry.ERRORS, **{"error.type": "validation"}) == 1
        assert received.total(telemetry.FALLBACKS, **{"summarizer.fallback.from": "torch",
                                                      "summarizer.fallback.to": "onnx"}) == 3
        assert received.histogram_sum(telemetry.REQUEST_TOKENS, **{"gen_ai.token.type": "input"}) == n_in
        assert received.histogram_sum(telemetry.REQUEST_TOKENS, **{"gen_ai.token.type": "output"}) == n_out
        assert received.total(telemetry.REQUESTS_IN_FLIGHT) == 0
        assert received.histogram_sum(telemetry.BATCH_SIZE, **{"summarizer.backend": "onnx"}) == 4
        assert received.total(telemetry.BATCH_DURATION, **{"summarizer.backend": "onnx"}) >= 1
        info = {p.attributes["summarizer.backend"]: p for p in received.latest(telemetry.MODEL_INFO)}
        assert info["onnx"].value == 1 and info["onnx"].attributes["summarizer.role"] == "fallback"
        assert info["torch"].attributes["summarizer.role"] == "primary"
        assert info["onnx"].attributes["summarizer.model"] == tiny_model
        before = max(seconds for _, _, seconds in answers)

        # Collector gone: requests are served as before, without errors or waiting on the exporter.
        collector.stop()
        answers = send(server.url, [("/summarize", {"dialogue": d}, traceparent()[0]) for d in DIALOGUES[:2]])
        assert [status for status, _, _ in answers] == [200, 200]
        assert max(seconds for _, _, seconds in answers) < before + 2.0
        answers = send(server.url, [("/summarize", {"dialogue": DIALOGUES[2]}, None)])
        assert answers[0][0] == 200


@pytest.mark.timeout(300)
def test_http_protobuf_traces_continue_the_caller_and_batch_links(collector, tiny_model, serve_env, tmp_path):
    env = serve_env(tiny_model, **otel_env(collector, "http/protobuf"))
    with ServedSummarizer(env, tmp_path / "serve.log") as server:
        sent = [traceparent() for _ in DIALOGUES]
        answers = send(server.url, [("/summarize", {"dialogue": d}, tp[0]) for d, tp in zip(DIALOGUES, sent)])
        untraced = send(server.url, [("/summarize", {"dialogue": DIALOGUES[0]}, None)])
        assert [status for status, _, _ in answers + untraced] == [200] * (len(DIALOGUES) + 1)

        received = collector.wait_for(lambda r: all(
            any(s.service == ONNX and s.name.startswith("text_completion") for s in r.trace(tp[1])) for tp in sent)
            and r.total(telemetry.REQUESTS) == len(DIALOGUES) + 1, timeout_s=60)
        linked = 0
        for (header, trace_id, caller), (_, body, _) in zip(sent, answers):
            spans = received.trace(trace_id)
            _, operation = public_side(spans, caller, tiny_model)
            assert operation.attributes["summarizer.fallback"] is False
            client = one(children(spans, operation), name="generate onnx", kind="CLIENT")
            assert_backend_side(spans, client, ONNX, tiny_model, *tokens(body), dialogues=1)
            assert not [s for s in spans if s.name == "fallback"]
            for g in (s for s in spans if s.service == ONNX and s.name.startswith("text_completion")):
                # A batch shared with other requests links to them.
                assert len(g.links) == g.attributes["summarizer.batch.requests"] - 1
                linked += len(g.links)
        # The request without traceparent started a trace of its own at the public service.
        roots = [s for s in received.spans if s.service == PUBLIC and s.kind == "SERVER" and not s.parent_id]
        assert len(roots) == 1 and roots[0].trace_id not in {tp[1] for tp in sent}
        assert_no_content(received)
        assert received.total(telemetry.REQUESTS, **{"summarizer.outcome": "success"}) == len(DIALOGUES) + 1
        assert received.total(telemetry.FALLBACKS) == 0
        # BentoML's own Prometheus endpoint is unaffected.
        metrics = httpx.get(server.url + "/metrics", timeout=30)
        assert metrics.status_code == 200 and "bentoml_service_request_total" in metrics.text


HANGING_COLLECTOR_SCRIPT = """
import json, time
from observability import telemetry
telemetry.start(service="t", component="api", model="m:1", backend="onnx", role="primary", device="cpu")
durations = []
for i in range(5000):
    started = time.perf_counter()
    with telemetry.span("work", i=i):
        pass
    durations.append(time.perf_counter() - started)
processor = telemetry.current().tracer_provider._active_span_processor._span_processors[0]
queued = len(processor._batch_processor._queue)
time.sleep(1.5)  # metric exports (to the working collector) carry the drop counts
started = time.perf_counter()
telemetry.shutdown()
print(json.dumps({"mean_s": sum(durations) / len(durations), "max_s": max(durations), "queued": queued,
                  "shutdown_s": time.perf_counter() - started}))
"""


def hanging_listener() -> tuple[socket.socket, int]:
    """A 'collector' that accepts connections, reads, and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held = []

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1]


@pytest.mark.timeout(120)
def test_a_hanging_collector_costs_spans_not_time_and_drops_are_counted(collector):
    listener, port = hanging_listener()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT),
           "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces",
           "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1",
           "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": collector.grpc_endpoint,
           "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc", "OTEL_METRIC_EXPORT_INTERVAL": "300",
           "OTEL_BSP_MAX_QUEUE_SIZE": "256", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "128", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    try:
        out = subprocess.run([sys.executable, "-c", HANGING_COLLECTOR_SCRIPT], env=env, capture_output=True,
                             text=True, timeout=90, cwd=REPO_ROOT)
    finally:
        listener.close()
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["queued"] <= 256  # memory bounded by OTEL_BSP_MAX_QUEUE_SIZE, whatever the collector does
    assert result["mean_s"] < 0.002 and result["max_s"] < 0.25  # a span never waits for the exporter
    assert result["shutdown_s"] < 10  # and stopping the process waits a bounded time
    received = collector.wait_for(lambda r: r.total("otel.sdk.processor.span.processed", **{"error.type": "queue_full"})
                                  > 1000, timeout_s=20)
    dropped = received.total("otel.sdk.processor.span.processed", **{"error.type": "queue_full"})
    assert dropped <= 5000


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
def test_dialogue_and_summary_only_with_the_operators_opt_in(collector):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
           "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    out = subprocess.run([sys.executable, "-c", CAPTURE_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=50, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    received = collector.wait_for(lambda r: r.spans, timeout_s=20)
    span = one(received.spans, name="text_completion m:1")
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Amanda: cookies?"}]}]
    assert "Amanda bakes cookies" in span.attributes["gen_ai.output.messages"]
    assert (span.attributes["gen_ai.usage.input_tokens"], span.attributes["gen_ai.usage.output_tokens"]) == (5, 7)


# ------------------------------------------------------------------------------------------- fast checks


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

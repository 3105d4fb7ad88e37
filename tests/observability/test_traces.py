"""Traces of a real ``bentoml serve`` as a real collector received them (scenarios.py runs the service).

One trace per request across the public service and the backends, continuing the caller's traceparent;
the primary's timeout and the fallback; requests generated in one batch linked to each other.
"""

from __future__ import annotations

from observability import telemetry
from tests.observability.otel_checks import (ONNX, PUBLIC, TORCH, assert_backend_side, assert_no_content,
                                             children, generations, one, public_side, tokens)
from tests.observability.scenarios import BATCHED

PRIMARY_TIMEOUT_S = 1.0  # SUMMARIZER_PRIMARY_TIMEOUT_S of the fallback and outage runs
# How much later than the primary timeout the fallback may start: scheduling, not a second timeout.
LATE_S = 1.0


def test_one_trace_per_request_falling_back_after_the_primary_timeout(fallback_run, tiny_model):
    answered = [(r, a) for r, a in zip(fallback_run.requests, fallback_run.answers) if r.caller and a.status == 200]
    assert len(answered) == 3
    for request, answer in answered:
        spans = fallback_run.received.trace(request.caller.trace_id)
        _, operation = public_side(spans, request.caller.span_id, tiny_model)
        n_in, n_out = tokens(answer.body)
        a = operation.attributes
        assert a["gen_ai.request.model"] == tiny_model and a[telemetry.BACKEND] == "onnx"
        assert a["summarizer.fallback"] is True
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (n_in, n_out)
        # The primary (PyTorch, hanging) got exactly SUMMARIZER_PRIMARY_TIMEOUT_S, then the fallback started.
        attempt = one(children(spans, operation), name="generate torch", kind="CLIENT")
        assert attempt.status == "ERROR" and attempt.attributes[telemetry.ERROR_TYPE] == "TimeoutError"
        assert PRIMARY_TIMEOUT_S - 0.1 <= attempt.duration_s < PRIMARY_TIMEOUT_S + LATE_S
        fallback = one(children(spans, operation), name="fallback")
        assert fallback.attributes["summarizer.fallback.from"] == "torch"
        assert fallback.attributes["summarizer.fallback.to"] == "onnx"
        assert fallback.attributes[telemetry.ERROR_TYPE] == "TimeoutError"
        assert attempt.end_ns <= fallback.start_ns < attempt.start_ns + int((PRIMARY_TIMEOUT_S + LATE_S) * 1e9)
        client = one(children(spans, fallback), name="generate onnx", kind="CLIENT")
        assert_backend_side(spans, client, ONNX, tiny_model, n_in, n_out, len(answer.body.get("summaries", [1])))
        assert {s.resource["deployment.environment.name"] for s in spans} == {"test"}  # OTEL_RESOURCE_ATTRIBUTES

    # The rejected request: its trace has the server span and a failed validation, nothing else.
    rejected = fallback_run.requests[3]
    assert fallback_run.answers[3].status == 400
    spans = fallback_run.received.trace(rejected.caller.trace_id)
    server = one(spans, service=PUBLIC, kind="SERVER")
    assert server.parent_id == rejected.caller.span_id
    assert one(children(spans, server), name="validate").attributes[telemetry.ERROR_TYPE] == "validation"
    assert {s.name for s in spans} == {server.name, "validate"}

    # The request without traceparent started a trace of its own at the public service.
    callers = {r.caller.trace_id for r in fallback_run.requests + fallback_run.batch if r.caller}
    roots = [s for s in fallback_run.received.spans if s.service == PUBLIC and s.kind == "SERVER" and not s.parent_id]
    assert len(roots) == 1 and roots[0].trace_id not in callers
    assert generations(fallback_run.received.trace(roots[0].trace_id))
    assert_no_content(fallback_run.received)


def test_resources_name_the_service_version_model_and_backend(fallback_run, tiny_model):
    resources = {s.service: s.resource for s in fallback_run.received.spans}
    assert set(resources) == {PUBLIC, ONNX, TORCH}
    assert resources[PUBLIC]["summarizer.model"] == tiny_model
    assert resources[PUBLIC][telemetry.BACKEND] == "torch" and resources[ONNX][telemetry.BACKEND] == "onnx"
    assert resources[PUBLIC]["service.version"] == resources[ONNX]["service.version"] != ""
    assert resources[PUBLIC]["service.namespace"] == "dialogue-summarizer"


def test_requests_generated_in_one_batch_link_to_each_other(fallback_run):
    """The batched requests arrived at ONNX while the slow one ran there: one generate() call for them
    all, and in each request's trace a generation span linking to the other requests' attempts (the
    context each job carried to the backend)."""
    slow, *batched = fallback_run.batch
    assert len(batched) == BATCHED
    assert [a.status for a in fallback_run.batch_answers] == [200] * (BATCHED + 1)
    backend_span = {}  # trace id -> the public service's attempt on ONNX for that request
    for request in batched:
        spans = fallback_run.received.trace(request.caller.trace_id)
        backend_span[request.caller.trace_id] = one(spans, service=PUBLIC, name="generate onnx", kind="CLIENT")
    for request in batched:
        [generation] = generations(fallback_run.received.trace(request.caller.trace_id))
        assert generation.attributes["summarizer.batch.requests"] == BATCHED
        assert generation.attributes["summarizer.batch.size"] == BATCHED
        others = {t: s for t, s in backend_span.items() if t != request.caller.trace_id}
        assert {(link.trace_id, link.span_id) for link in generation.links} == \
            {(t, s.span_id) for t, s in others.items()}
    # The slow request was generated alone (other settings): no links.
    [alone] = generations(fallback_run.received.trace(slow.caller.trace_id))
    assert alone.attributes["summarizer.num_beams"] == 8 and alone.links == []


def test_a_failing_primary_backend_is_in_the_trace(timeout_run, tiny_model):
    """PyTorch fails at once: its server span continues the attempt; the fallback carries the cause."""
    request = timeout_run.requests[0]
    spans = timeout_run.received.trace(request.caller.trace_id)
    server = one(spans, service=PUBLIC, kind="SERVER")
    assert server.parent_id == request.caller.span_id
    operation = one(children(spans, server), name=f"text_completion {tiny_model}")
    attempt = one(children(spans, operation), name="generate torch", kind="CLIENT")
    # The backend answered with a typed failure: the attempt and the fallback carry the original error type.
    assert attempt.status == "ERROR" and attempt.attributes[telemetry.ERROR_TYPE] == "InjectedFault"
    torch_server = one(children(spans, attempt), kind="SERVER")
    assert torch_server.service == TORCH
    fallback = one(children(spans, operation), name="fallback")
    assert fallback.attributes[telemetry.ERROR_TYPE] == "InjectedFault"
    assert fallback.start_ns >= attempt.end_ns

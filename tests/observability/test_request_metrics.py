"""Request metrics of a real ``bentoml serve`` as a real collector received them: counts and token totals
equal what was sent and answered, and every outcome the error-rate alert counts happens for real."""

from __future__ import annotations

from observability import telemetry
from observability.collector import Received
from serving.errors import ErrorCode
from tests.observability.otel_checks import PUBLIC, tokens

ROUTE, OUTCOME, BACKEND, ERROR_TYPE = telemetry.HTTP_ROUTE, telemetry.OUTCOME, telemetry.BACKEND, telemetry.ERROR_TYPE


def test_counts_and_tokens_equal_what_was_answered(fallback_run, tiny_model):
    answered = list(zip(fallback_run.requests + fallback_run.batch, fallback_run.answers + fallback_run.batch_answers))
    ok = [(r, a) for r, a in answered if a.status == 200]
    assert [a.status for _, a in answered].count(400) == 1 and len(ok) == len(answered) - 1
    received = fallback_run.received
    single = sum(1 for r, _ in ok if r.path == "/summarize")
    assert received.total(telemetry.REQUESTS, **{OUTCOME: "success", BACKEND: "onnx", ROUTE: "/summarize"}) == single
    assert received.total(telemetry.REQUESTS, **{OUTCOME: "success", ROUTE: "/summarize_batch"}) == 1
    assert received.total(telemetry.REQUESTS, **{OUTCOME: "client_error"}) == 1
    assert received.total(telemetry.REQUESTS) == received.total(telemetry.REQUEST_DURATION) == len(answered)
    assert received.total(telemetry.ERRORS) == received.total(telemetry.ERRORS, **{ERROR_TYPE: "validation"}) == 1
    # Every answered request fell back after the primary's timeout.
    assert received.total(telemetry.FALLBACKS, **{"summarizer.fallback.from": "torch", "summarizer.fallback.to": "onnx",
                                                  ERROR_TYPE: "TimeoutError"}) == len(ok)
    assert received.total(telemetry.FALLBACKS) == len(ok)
    n_in = sum(tokens(a.body)[0] for _, a in ok)
    n_out = sum(tokens(a.body)[1] for _, a in ok)
    assert received.histogram_sum(telemetry.REQUEST_TOKENS, **{"gen_ai.token.type": "input"}) == n_in
    assert received.histogram_sum(telemetry.REQUEST_TOKENS, **{"gen_ai.token.type": "output"}) == n_out
    assert received.total(telemetry.REQUEST_TOKENS, **{"gen_ai.token.type": "output"}) == len(ok)
    dialogues = sum(len(a.body.get("summaries", [a.body])) for _, a in ok)
    assert received.total(telemetry.QUEUE_DURATION, **{BACKEND: "onnx"}) == dialogues
    assert received.histogram_sum(telemetry.BATCH_SIZE, **{BACKEND: "onnx"}) == dialogues
    assert 1 <= received.total(telemetry.BATCH_DURATION, **{BACKEND: "onnx"}) < dialogues  # some were batched
    info = {p.attributes[BACKEND]: p for p in received.latest(telemetry.MODEL_INFO)}
    assert info["onnx"].value == 1 and info["onnx"].attributes["summarizer.role"] == "fallback"
    assert info["torch"].attributes["summarizer.role"] == "primary"
    assert info["onnx"].attributes["summarizer.model"] == tiny_model


def assert_in_flight_rose_and_returned_to_0(received: Received) -> None:
    exported = [p for p in received.points if p.name == telemetry.REQUESTS_IN_FLIGHT]
    assert exported, f"{telemetry.REQUESTS_IN_FLIGHT} was never exported"
    assert max(p.value for p in exported) >= 1  # caught while requests were being served
    assert received.total(telemetry.REQUESTS_IN_FLIGHT) == 0


def test_requests_in_flight_is_exported_rises_and_returns_to_0(fallback_run, outage_run):
    # Each request of these runs took at least the primary timeout (1 s); metrics export every 0.5 s.
    assert_in_flight_rose_and_returned_to_0(fallback_run.received)
    assert_in_flight_rose_and_returned_to_0(outage_run.received)


def test_overloaded_and_unavailable_from_a_real_service(outage_run):
    """The only backend hangs: the first request waits for the primary timeout, then 503 "unavailable";
    one sent meanwhile is past SUMMARIZER_MAX_PENDING=1: 503 "overloaded" at once."""
    unavailable, overloaded, disconnected = outage_run.answers
    assert unavailable.status == 503 and unavailable.body["code"] == ErrorCode.UNAVAILABLE
    assert overloaded.status == 503 and overloaded.body["code"] == ErrorCode.OVERLOADED
    assert overloaded.seconds < unavailable.seconds
    assert disconnected.status == 0  # the client gave up after 0.3 s
    received = outage_run.received
    route = {ROUTE: "/summarize"}
    # uvicorn does not cancel a request whose client went away: it ends as the server ended it (unavailable).
    assert received.total(telemetry.REQUESTS, **route, **{OUTCOME: "unavailable"}) == 2
    assert received.total(telemetry.REQUESTS, **route, **{OUTCOME: "overloaded"}) == 1
    assert received.total(telemetry.REQUESTS) == 3
    assert received.total(telemetry.ERRORS, **route, **{ERROR_TYPE: "unavailable"}) == 2
    assert received.total(telemetry.ERRORS, **route, **{ERROR_TYPE: "overloaded"}) == 1
    assert received.total(telemetry.ERRORS) == 3
    assert received.total(telemetry.REQUEST_DURATION, **{OUTCOME: "unavailable"}) == 2


def test_cancelled_when_the_request_timeout_ends_a_request(timeout_run):
    """The fallback hangs past SUMMARIZER_REQUEST_TIMEOUT_S=1: BentoML answers 504 and cancels the handler."""
    [answer] = timeout_run.answers
    assert answer.status == 504 and 1.0 <= answer.seconds < 5.0
    received = timeout_run.received
    assert received.total(telemetry.REQUESTS, **{ROUTE: "/summarize", OUTCOME: "cancelled"}) == 1
    assert received.total(telemetry.REQUESTS) == 1
    assert received.total(telemetry.ERRORS, **{ROUTE: "/summarize", ERROR_TYPE: "cancelled"}) == 1
    assert received.total(telemetry.ERRORS) == 1
    assert received.total(telemetry.FALLBACKS, **{"summarizer.fallback.from": "torch"}) == 1
    # The handler's GenAI operation span says so too.
    [operation] = [s for s in received.trace(timeout_run.requests[0].caller.trace_id)
                   if s.service == PUBLIC and s.name.startswith("text_completion")]
    assert operation.status == "ERROR" and operation.attributes[telemetry.ERROR_TYPE] == "cancelled"

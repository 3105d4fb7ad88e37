"""What the telemetry tests share: requests with a caller's traceparent, and checks over received spans."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

import httpx

from observability.collector import Collector, Received, Span

DIALOGUES = [
    "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)",
    "Tom: Lunch at noon at the Zanzibar place?\nAnna: OK, see you there.",
    "Lena: Did the parcel arrive?\nMax: Yes, this morning, thanks a lot!\nLena: Great.",
]
SECRET_WORDS = ("cookies", "Zanzibar", "parcel")  # must never reach telemetry (content capture is opt-in)
PUBLIC, ONNX, TORCH = "dialogue_summarizer", "summarizer_onnx", "summarizer_torch"


@dataclass(frozen=True)
class Caller:
    """A W3C traceparent header and the ids in it."""

    header: str
    trace_id: str
    span_id: str


def caller() -> Caller:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return Caller(f"00-{trace_id}-{span_id}-01", trace_id, span_id)


@dataclass(frozen=True)
class Request:
    path: str
    body: dict
    caller: Caller | None = None
    delay_s: float = 0.0  # sent this long after the others start
    client_timeout_s: float = 120.0  # shorter: the client gives up (disconnects) mid-request


@dataclass(frozen=True)
class Answer:
    status: int  # 0 when the client gave up
    body: dict
    headers: dict
    seconds: float


def otel_env(collector: Collector, traces: str, metrics: str, **extra: str) -> dict[str, str]:
    """OTEL_* for a service exporting traces and metrics to ``collector`` over the given protocols."""
    return {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": _signal_endpoint(collector, traces, "traces"),
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": traces,
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": _signal_endpoint(collector, metrics, "metrics"),
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": metrics,
            "OTEL_METRIC_EXPORT_INTERVAL": "500", "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test", **extra}


def _signal_endpoint(collector: Collector, protocol: str, signal: str) -> str:
    # Per-signal HTTP endpoints are full URLs; gRPC ones are the server address.
    return collector.grpc_endpoint if protocol == "grpc" else f"{collector.http_endpoint}/v1/{signal}"


async def _post(client: httpx.AsyncClient, request: Request) -> Answer:
    await asyncio.sleep(request.delay_s)
    headers = {"traceparent": request.caller.header} if request.caller else {}
    started = time.perf_counter()
    try:
        resp = await client.post(request.path, json=request.body, headers=headers,
                                 timeout=request.client_timeout_s)
    except httpx.TimeoutException:
        return Answer(0, {}, {}, time.perf_counter() - started)
    return Answer(resp.status_code, resp.json(), dict(resp.headers), time.perf_counter() - started)


def send(url: str, requests: list[Request]) -> list[Answer]:
    """Send the requests concurrently (so that the backend may batch them), each after its delay."""
    async def run():
        async with httpx.AsyncClient(base_url=url) as client:
            return await asyncio.gather(*(_post(client, r) for r in requests))
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


def generations(spans: list[Span], service: str = ONNX) -> list[Span]:
    return [s for s in spans if s.service == service and s.name.startswith("text_completion")]


def assert_no_content(received: Received) -> None:
    for s in received.spans:
        for value in [*s.attributes.values(), *(v for e in s.events for v in e.attributes.values())]:
            assert not any(w in str(value) for w in SECRET_WORDS), f"dialogue text in span {s.name}: {value!r}"


def assert_backend_side(spans: list[Span], client: Span, service: str, model: str, n_in: int, n_out: int,
                        dialogues: int) -> None:
    """The backend's server span continues the public service's client span; the jobs carried that span's
    context, so the backend's queue and generation spans are its children too, within the server span's time."""
    server = one(children(spans, client), kind="SERVER")
    assert server.service == service
    assert one(children(spans, client), name="queue").service == service
    found = children(spans, client, name=f"text_completion {model}")
    assert found and all(g.service == service for g in found)
    for g in found:
        a = g.attributes
        assert a["gen_ai.operation.name"] == "text_completion" and a["gen_ai.request.model"] == model
        assert a["summarizer.batch.size"] >= a["summarizer.dialogues"] >= 1
        assert a["summarizer.batch.requests"] >= 1 and a["summarizer.num_beams"] >= 1
        assert 0.0 <= a["summarizer.batch.padding_share"] < 1.0
        assert g.start_ns >= server.start_ns and g.end_ns <= server.end_ns
    assert sum(g.attributes["summarizer.dialogues"] for g in found) == dialogues
    assert sum(g.attributes["gen_ai.usage.input_tokens"] for g in found) == n_in
    assert sum(g.attributes["gen_ai.usage.output_tokens"] for g in found) == n_out


def public_side(spans: list[Span], caller_span: str, model: str) -> tuple[Span, Span]:
    """The public server span continues the caller's; validation and the GenAI operation span below it."""
    server = one(spans, service=PUBLIC, kind="SERVER")
    assert server.parent_id == caller_span
    validate = one(children(spans, server), name="validate")
    assert validate.status != "ERROR"
    operation = one(children(spans, server), name=f"text_completion {model}")
    assert validate.end_ns <= operation.start_ns
    return server, operation

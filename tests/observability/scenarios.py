"""Runs of a real ``bentoml serve`` exporting to a real collector (rotel): each run sends its requests to
its service (services.py), waits until the collector holds what they should produce, stops the service
and returns what it saw. The assertions live in the tests; a run only observes. Runs are session
fixtures (conftest.py), shared by the trace, metric and alert tests: three services in all, as few as the
outcomes to produce allow.

- ``fallback_run``: the primary (PyTorch) hangs; after SUMMARIZER_PRIMARY_TIMEOUT_S=1 each request falls
  back to ONNX. Also a batch of several requests, a rejected one, one without traceparent; then the
  collector stops (requests must not care) and comes back (telemetry resumes, export errors counted).
- ``outage_run``: ONNX hangs, no fallback, SUMMARIZER_MAX_PENDING=1: "unavailable" after the primary
  timeout, "overloaded" for a request sent meanwhile, and a client that disconnects.
- ``timeout_run``: PyTorch fails at once, the fallback (ONNX) hangs, SUMMARIZER_REQUEST_TIMEOUT_S=1:
  BentoML's request timeout cancels the request ("cancelled").
- ``export_stall_run``: no service, the telemetry module alone, its traces going to an endpoint that never
  answers: what spans cost then, and the SDK's counts of what it dropped.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from harness import ManagedProcess
from harness.process import REPO_ROOT
from observability import telemetry
from observability.collector import ANY, Collector, Received
from tests.observability.otel_checks import DIALOGUES, ONNX, PUBLIC, TORCH, Answer, Request, caller, send
from tests.observability.services import Service

BATCHED = 4  # requests sent together while the backend is busy, so that they form one batch
# The request that keeps the backend busy meanwhile: many beams, a long fixed output (about 1 s here).
SLOW = {"num_beams": 8, "max_new_tokens": 512, "min_new_tokens": 512}
EXPORT_GIVES_UP_S = 2.0  # OTEL_EXPORTER_OTLP_*_TIMEOUT=1 in the fallback run, and a margin
# The SDK's counts of exported spans and metric points; a failed export adds error.type.
EXPORTED = ("otel.sdk.exporter.span.exported", "otel.sdk.exporter.metric_data_point.exported")


@dataclass
class Run:
    requests: list[Request]
    answers: list[Answer]
    received: Received


@dataclass
class FallbackRun(Run):
    batch: list[Request]  # the slow request first, then BATCHED requests sent while it ran
    batch_answers: list[Answer]
    without_collector: list[Answer]  # sent while the collector was down
    recovered: Received  # what a new collector on the same ports received afterwards
    prometheus_text: str  # BentoML's own /metrics at the end


def run_python(script: str, env: dict[str, str], log: Path, timeout_s: float) -> str:
    """Run ``python -c script`` from the repository with ``env`` added; its output, or fail with its tail."""
    process = ManagedProcess("python -c", [sys.executable, "-c", script], log,
                             env={"PYTHONPATH": str(REPO_ROOT), **env}).start()
    try:
        code = process.proc.wait(timeout=timeout_s)
    finally:
        process.stop()
    assert code == 0, f"the script exited with {code}:\n{process.log_tail(3000)}"
    return process.log()


def _ok(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.status == 200]


def _ended(received: Received, trace_id: str, *services: str) -> bool:
    """Whether the trace holds the server span of each service. A process exports its spans in the order
    they end, and its server span ends last: the spans it made below it are in as well."""
    found = {s.service for s in received.trace(trace_id) if s.kind == "SERVER"}
    return set(services) <= found


def fallback_run(service: Service) -> FallbackRun:
    try:
        requests = [Request("/summarize", {"dialogue": DIALOGUES[0]}, caller()),
                    Request("/summarize", {"dialogue": DIALOGUES[1]}, caller()),
                    Request("/summarize_batch", {"dialogues": DIALOGUES[1:]}, caller()),
                    Request("/summarize", {"dialogue": "   "}, caller()),  # rejected by validation: 400
                    Request("/summarize", {"dialogue": DIALOGUES[2]})]  # no traceparent: a trace of its own
        answers = send(service.url, requests)
        # While the slow request runs in the ONNX backend, the others queue there: one batch.
        batch = [Request("/summarize", {"dialogue": DIALOGUES[0], "generation": SLOW}, caller()),
                 *(Request("/summarize", {"dialogue": DIALOGUES[i % 3]}, caller(), delay_s=0.2)
                   for i in range(BATCHED))]
        batch_answers = send(service.url, batch)
        served = [(r.caller.trace_id, (PUBLIC, ONNX) if a.status == 200 else (PUBLIC,))
                  for r, a in zip(requests + batch, answers + batch_answers) if r.caller]
        answered = len(requests) + len(batch)
        dialogues = sum(len(a.body.get("summaries", [a.body])) for a in _ok(answers + batch_answers))
        received = service.collector.wait_for(
            lambda r: all(_ended(r, trace_id, *services) for trace_id, services in served)
            and any(s.service == PUBLIC and s.kind == "SERVER" and not s.parent_id for s in r.spans)
            # the hung PyTorch worker exports its spans (queue waits, status calls) on its own schedule
            and any(s.service == TORCH for s in r.spans)
            and r.total(telemetry.REQUESTS) == answered
            # Each process exports on its own schedule: wait for the backend's last batch to be in, too.
            and r.total(telemetry.QUEUE_DURATION, **{telemetry.BACKEND: "onnx"}) == dialogues
            and r.histogram_sum(telemetry.BATCH_SIZE, **{telemetry.BACKEND: "onnx"}) == dialogues, timeout_s=60)

        collector = service.collector
        collector.stop()
        without_collector = send(service.url, [Request("/summarize", {"dialogue": d}, caller())
                                               for d in DIALOGUES[:2]])
        time.sleep(EXPORT_GIVES_UP_S)  # long enough for an export of traces and of metrics to fail
        # The same ports again: the service's exporters reconnect on their own.
        service.collector = Collector(collector.log_path.with_name("collector-again.log"), collector.grpc_port,
                                      collector.http_port).start()
        recovered = service.collector.wait_for(
            lambda r: r.total(telemetry.REQUESTS) == answered + len(without_collector)
            and all(r.latest(name, **{telemetry.ERROR_TYPE: ANY}) for name in EXPORTED), timeout_s=30)
        prometheus_text = httpx.get(service.url + "/metrics", timeout=30).text
        return FallbackRun(requests, answers, received, batch, batch_answers, without_collector, recovered,
                           prometheus_text)
    finally:
        service.stop()


def outage_run(service: Service) -> Run:
    try:
        requests = [Request("/summarize", {"dialogue": DIALOGUES[0]}, caller()),  # unavailable after 1 s
                    Request("/summarize", {"dialogue": DIALOGUES[1]}, caller(), delay_s=0.3)]  # overloaded
        answers = send(service.url, requests)
        # A client that gives up after 0.3 s; the server goes on with the request.
        disconnecting = Request("/summarize", {"dialogue": DIALOGUES[2]}, caller(), client_timeout_s=0.3)
        answers += send(service.url, [disconnecting])
        requests.append(disconnecting)
        received = service.collector.wait_for(
            lambda r: r.total(telemetry.REQUESTS) == 3 and r.latest(telemetry.REQUESTS_IN_FLIGHT)
            and r.total(telemetry.REQUESTS_IN_FLIGHT) == 0, timeout_s=30)
        return Run(requests, answers, received)
    finally:
        service.stop()


def timeout_run(service: Service) -> Run:
    try:
        requests = [Request("/summarize", {"dialogue": DIALOGUES[0]}, caller())]
        answers = send(service.url, requests)
        received = service.collector.wait_for(
            lambda r: r.total(telemetry.REQUESTS) == 1 and r.total(telemetry.FALLBACKS) == 1
            and _ended(r, requests[0].caller.trace_id, PUBLIC, TORCH), timeout_s=30)
        return Run(requests, answers, received)
    finally:
        service.stop()


# The telemetry module in a process of its own, its traces going nowhere: 5,000 spans, then shutdown.
EXPORT_STALL_SCRIPT = """
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
SPAN_QUEUE = 256  # OTEL_BSP_MAX_QUEUE_SIZE of that process


@dataclass
class ExportStallRun:
    result: dict  # what the script printed: span times, queue length, shutdown time
    received: Received  # its metrics, exported to a working collector


def _hanging_listener() -> socket.socket:
    """A 'collector' that accepts connections, reads nothing, and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server


def export_stall_run(workdir: Path) -> ExportStallRun:
    listener = _hanging_listener()
    port = listener.getsockname()[1]
    with Collector(workdir / "collector.log") as collector:
        env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces",
               "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1",
               "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": collector.grpc_endpoint,
               "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc", "OTEL_METRIC_EXPORT_INTERVAL": "300",
               "OTEL_BSP_MAX_QUEUE_SIZE": str(SPAN_QUEUE), "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "128",
               "OTEL_BSP_SCHEDULE_DELAY": "50"}
        try:
            output = run_python(EXPORT_STALL_SCRIPT, env, workdir / "script.log", timeout_s=90)
        finally:
            listener.close()
        result = json.loads([line for line in output.splitlines() if line.startswith("{")][-1])
        received = collector.wait_for(lambda r: r.total("otel.sdk.processor.span.processed",
                                                        **{telemetry.ERROR_TYPE: "queue_full"}) > 1000, timeout_s=20)
        return ExportStallRun(result, received)
